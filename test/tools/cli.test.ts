// The built `ivshmem` command (dist/cli.js, what `npm start` and the bin run).
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));
const cli = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));

describe('ivshmem CLI', () => {
  beforeAll(() => {
    // The bundle is built by npm install; build it here too when tests run from a fresh edit.
    if (!existsSync(cli)) execFileSync('node', ['scripts/bundle.mjs'], { cwd: root });
  });

  it('info shows what a guest probe finds, from the bundle with the embedded WASM core', () => {
    const out = execFileSync('node', [cli, 'info', '--mode', 'doorbell', '--vectors', '3', '--size', '2M'], {
      encoding: 'utf8',
    });
    expect(out).toContain('1af4:1110 RAM memory: Inter-VM shared memory (rev 01)');
    expect(out).toContain('BAR2: memory, 64-bit, prefetchable, size 2097152 bytes');
    expect(out).toContain('MSI-X: 3 vectors, table BAR1+0x000, PBA BAR1+0x800');
  });

  it('info --json is machine-readable', () => {
    const out = execFileSync('node', [cli, 'info', '--mode', 'plain', '--json'], { encoding: 'utf8' });
    const found = JSON.parse(out);
    expect(found).toMatchObject({ vendor: 0x1af4, device: 0x1110, revision: 1, msix: null });
    expect(found.bars.map((b: { size: number }) => b.size)).toEqual([256, 1048576]);
  });

  it('refuses bad input with the error code and a non-zero exit', () => {
    const r = spawnSync('node', [cli, 'info', '--size', '3000'], { encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('ERR_IVSHMEM_INVALID_SIZE');
    const unknown = spawnSync('node', [cli, 'frobnicate'], { encoding: 'utf8' });
    expect(unknown.status).toBe(1);
    expect(unknown.stderr).toContain('unknown command');
  });
});
