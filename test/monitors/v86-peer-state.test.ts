// The peer-state example (examples/peer-state/run.mjs) as a user runs it: an ivshmem-server
// process with --state-table, two peer processes, and a Linux guest in v86 whose own shell driver
// reads the table. One peer is killed with SIGKILL and the other leaves with SIGTERM; the guest
// must print each one's entry as gone, with the state it last published, and nothing may be left
// behind. The times it prints are reported, not asserted.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { v86Unavailable } from '../support/v86-guest.js';

const EXAMPLE = fileURLToPath(new URL('../../examples/peer-state/run.mjs', import.meta.url));
const v86Missing = await v86Unavailable();
if (v86Missing !== null) console.warn(`monitors/v86-peer-state.test.ts: skipping: ${v86Missing}`);

describe.skipIf(v86Missing !== null)('the peer-state example', () => {
  it('a v86 guest sees a SIGKILLed peer and a departed one go to "gone", keeping their last states', () => {
    const run = spawnSync(process.execPath, [EXAMPLE], { encoding: 'utf8', timeout: 150_000 });
    const out = run.stdout;
    expect(run.status, `exit status; stderr:\n${run.stderr}\nstdout:\n${out}`).toBe(0);
    const guest = (re: RegExp) => out.match(re)?.slice(1).map(Number);
    const [a, b] = [
      guest(/peer A \(pid \d+\) joined as id (\d+)/)![0],
      guest(/peer B \(pid \d+\) joined as id (\d+)/)![0],
    ];
    expect(out, 'the guest found the table through its registers').toMatch(
      /guest: TABLE magic 0x54535649 at \d+, 4 slots/,
    );
    expect(out).toMatch(new RegExp(`guest: slot \\d: peer ${a} present, state 0xa11ce`));
    expect(out).toMatch(new RegExp(`guest: slot \\d: peer ${b} present, state 0xb0b`));
    const results = JSON.parse(out.match(/^RESULT (.*)$/m)![1]) as {
      peer: number;
      signal: string;
      hostMs: number;
      guestMs: number;
      state: number;
    }[];
    expect(results.map(({ peer, signal, state }) => ({ peer, signal, state }))).toEqual([
      { peer: a, signal: 'SIGKILL', state: 0xa11ce },
      { peer: b, signal: 'SIGTERM', state: 0xb0b },
    ]);
    for (const r of results) {
      expect(r.hostMs, 'the host saw it before the guest printed it').toBeLessThanOrEqual(r.guestMs);
      console.log(
        `${r.signal}: gone in memory after ${r.hostMs.toFixed(1)} ms, printed by the guest after ${r.guestMs.toFixed(0)} ms`,
      );
    }
    expect(out).toContain('shut down: no process, socket or shared memory left behind');
  }, 160_000);
});
