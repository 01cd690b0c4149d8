// The browser demo in a real browser: `npm run web`'s server (scripts/web-server.mjs, on a free
// port) and headless Chromium. Peers in Web Workers pass numbered messages through the shared
// memory, each announced by a doorbell; the test reads what the page shows and what the peers
// counted (messages intact, doorbells = interrupts), terminates a worker and sees its leave
// announced while the others go on, saves a screenshot (out/web-demo.png), loads dist/web.js
// itself into the page, and prints the doorbell round trip between two workers. With the v86 guest
// prepared, a Linux guest in a worker joins as one more peer and its own driver receives and
// acknowledges messages. Skipped, with the reason, when there is no Chromium (or no guest).
import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DemoState } from '../../web/demo-state.js';
import { browserUnavailableReason, launchChromium } from '../support/chromium.js';
import { LineProcess } from '../support/line-process.js';
import { v86Unavailable } from '../support/v86-guest.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const missing = browserUnavailableReason();
if (missing !== null) console.warn(`web/browser-demo.test.ts: skipping the browser tests: ${missing}`);
const guestMissing = missing ?? (await v86Unavailable());
if (missing === null && guestMissing !== null)
  console.warn(`web/browser-demo.test.ts: skipping the v86 guest in the browser: ${guestMissing}`);

describe.skipIf(missing !== null)('the browser demo in headless Chromium', () => {
  let server: LineProcess | undefined;
  let browser: Browser | undefined;
  let base = '';

  beforeAll(async () => {
    server = new LineProcess(process.execPath, [`${ROOT}scripts/web-server.mjs`, '--port', '0'], {
      name: 'web server',
      timeoutMs: 30_000,
    });
    const line = await server.expectLine((l) => l.includes('http://'), 'the URL');
    base = line.slice(line.indexOf('http://')).replace(/\/$/, '');
    browser = await launchChromium();
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  async function open(query: string): Promise<Page> {
    const page = await browser!.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${base}${query}`);
    expect(await page.evaluate(() => crossOriginIsolated)).toBe(true);
    expect(errors).toEqual([]);
    return page;
  }

  const state = (page: Page) =>
    page.evaluate(() => JSON.parse(JSON.stringify((window as unknown as { ivshmemDemo: unknown }).ivshmemDemo)));

  async function waitFor(page: Page, what: string, check: (s: DemoState) => boolean, ms = 10_000): Promise<DemoState> {
    const end = Date.now() + ms;
    for (;;) {
      const s = (await state(page)) as DemoState;
      if (s.failures.length > 0) throw new Error(`the page failed: ${s.failures.join('; ')}`);
      if (check(s)) return s;
      if (Date.now() > end) throw new Error(`not within ${ms} ms: ${what}; the page has ${JSON.stringify(s.totals)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  it('passes 100 numbered messages from each of 3 workers intact, one doorbell for every interrupt', async () => {
    const page = await open('/?peers=3&count=100');
    try {
      const s = await waitFor(page, 'every message sent and received', (s) => s.done && s.totals.intact === 300);
      expect(s.totals).toEqual({ sent: 300, intact: 300, corrupt: 0, doorbells: 600, interrupts: 600 });
      for (const p of s.peers) {
        expect({ id: p.id, sent: p.sent, acked: p.acked, received: p.received, dropped: p.doorbellsDropped }).toEqual({
          id: p.id,
          sent: 100,
          acked: 100,
          received: 100,
          dropped: 0,
        });
        expect(p.interrupts).toBe(p.interruptsDelivered);
        expect(p.peers).toHaveLength(2);
      }
      await page.waitForFunction(() => document.querySelector('#total-intact')?.textContent === '300');
      for (const [cell, text] of [
        ['#total-sent', '300'],
        ['#total-corrupt', '0'],
        ['#total-doorbells', '600'],
        ['#total-interrupts', '600'],
      ])
        expect(await page.textContent(cell)).toBe(text);
      expect(await page.textContent('#status')).toContain('3 peers running — all messages sent');
    } finally {
      await page.close();
    }
  });

  it('announces a terminated worker as gone; the others close the ring and go on', async () => {
    const page = await open('/?peers=3');
    try {
      const before = await waitFor(page, '200 messages', (s) => s.totals.intact >= 200 && s.peers.length === 3);
      const victim = before.peers.map((p) => p.id).sort((a, b) => a - b)[1];
      const others = before.peers.map((p) => p.id).filter((id) => id !== victim);
      await page.click(`button:text("Terminate peer ${victim}")`);
      const after = await waitFor(page, 'the leave heard by both others', (s) =>
        s.leaves.some((l) => l.id === victim && others.every((id) => l.heardBy.includes(id))),
      );
      expect(after.leaves).toEqual([
        { id: victim, reason: 'its worker was terminated', heardBy: expect.arrayContaining(others) },
      ]);
      await page.waitForFunction(
        (id) =>
          Array.from(document.querySelectorAll('#log li')).some(
            (li) => li.textContent === `peer ${id} left: its worker was terminated`,
          ),
        victim,
      );
      const intact = (s: DemoState) => s.peers.filter((p) => others.includes(p.id)).reduce((a, p) => a + p.received, 0);
      const mark = intact(after);
      const later = await waitFor(page, '200 more messages between the others', (s) => intact(s) >= mark + 200);
      expect(later.totals.corrupt).toBe(0);
      for (const p of later.peers.filter((p) => others.includes(p.id))) {
        expect(p.peers).toEqual(others.filter((id) => id !== p.id));
        expect(p.alive).toBe(true);
      }
      expect(later.peers.find((p) => p.id === victim)?.alive).toBe(false);
      expect(await page.textContent(`tr[data-peer="${victim}"] th`)).toBe(`peer ${victim} (left)`);
      mkdirSync(`${ROOT}out`, { recursive: true });
      await page.screenshot({ path: `${ROOT}out/web-demo.png`, fullPage: true });
    } finally {
      await page.close();
    }
  });

  it('runs dist/web.js, the published bundle, in the page: two devices ring each other, bad input is coded', async () => {
    const page = await open('/');
    try {
      // A module script of the page's own, so that the import is the browser's (not the test runner's).
      await page.addScriptTag({ type: 'module', content: "window.ivshmemWeb = await import('/dist/web.js');" });
      await page.waitForFunction(() => 'ivshmemWeb' in window);
      const result = await page.evaluate(async () => {
        // eslint-disable-next-line @typescript-eslint/no-explicit-any
        const web = (window as any).ivshmemWeb;
        const codeOf = (f: () => unknown) => {
          try {
            f();
            return 'no error';
          } catch (err) {
            return (err as { code?: string }).code;
          }
        };
        const directory = new web.PeerDirectory({ vectors: 1, size: 4096 });
        const interrupts = [0, 0];
        const devices = await Promise.all(
          [0, 1].map((i) =>
            web.WebDevice.create({
              mode: 'doorbell',
              directory: directory.connect(),
              transport: { setIrqLevel() {}, sendMsi: () => interrupts[i]++ },
            }),
          ),
        );
        for (const d of devices) {
          d.configWrite(0x04, 2, 0x0006);
          d.configWrite(0x42, 2, 0x8000);
          d.mmioWrite(1, 12, 4, 0);
        }
        devices[0].mmioWrite(2, 0, 4, 0xfeedf00d);
        devices[0].mmioWrite(0, 0x0c, 4, devices[1].id << 16);
        const deadline = Date.now() + 2000;
        while (interrupts[1] === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
        // A port that the directory end closes mid-join: Chromium fires no 'close' on a
        // MessagePort, so the join ends at its setup timeout.
        const cut = new MessageChannel();
        cut.port1.postMessage({ type: 'version', version: 0 });
        cut.port1.close();
        const midJoin = await web.WebDevice.create({
          mode: 'doorbell',
          directory: cut.port2,
          setupTimeoutMs: 300,
          transport: { setIrqLevel() {}, sendMsi() {} },
        }).then(
          () => 'no error',
          (err: { code: string }) => err.code,
        );
        return {
          interrupts,
          seen: devices[1].mmioRead(2, 0, 4),
          ids: directory.peerIds,
          size: codeOf(() => new web.PeerDirectory({ size: 1000 })),
          notShared: codeOf(() => new web.Signals(new ArrayBuffer(8))),
          midJoin,
        };
      });
      expect(result).toEqual({
        interrupts: [0, 1],
        seen: 0xfeedf00d,
        ids: [0, 1],
        size: 'ERR_IVSHMEM_INVALID_SIZE',
        notShared: 'ERR_INVALID_ARG_TYPE',
        midJoin: 'ERR_IVSHMEM_PROTOCOL_TIMEOUT',
      });
    } finally {
      await page.close();
    }
  });

  it('measures the doorbell round trip between two workers (message, interrupt, acknowledgement, interrupt)', async () => {
    const page = await open('/?peers=2&senders=1&count=20000&warmup=1000');
    try {
      const s = await waitFor(
        page,
        '20000 round trips',
        (s) => s.done && s.latency.count === 19_000 && s.totals.intact === 20_000,
        20_000,
      );
      const { p50, p99, p999, max } = s.latency;
      console.log(
        `Chromium ${browser!.version()}: Atomics doorbell round trip between two Web Workers, ` +
          `${s.latency.count} samples: p50 ${p50} µs, p99 ${p99} µs, p99.9 ${p999} µs, max ${max} µs`,
      );
      expect(s.totals.corrupt).toBe(0);
      expect(s.totals.doorbells).toBe(40_000);
      expect(s.totals.interrupts).toBe(40_000);
      expect(p50).toBeGreaterThan(0);
      expect(p50).toBeLessThanOrEqual(p99);
      expect(p99).toBeLessThanOrEqual(p999);
      await page.waitForFunction(
        (p50) => document.querySelector('#latency')?.textContent?.includes(`p50 ${p50} µs`),
        p50,
      );
    } finally {
      await page.close();
    }
  });

  it.skipIf(guestMissing !== null)(
    'a v86 Linux guest in a worker is a peer: its driver wakes on INTx for each of 10 messages, checks and acknowledges it; terminated, it is announced gone',
    async () => {
      const page = await open('/?peers=2&guest=1&count=10');
      try {
        const guestOf = (s: DemoState) => s.peers.find((p) => p.kind === 'v86');
        const s = await waitFor(
          page,
          'the guest has received 10 messages and both senders are done',
          (s) => s.done && guestOf(s)?.received === 10,
          120_000,
        );
        const guest = guestOf(s)!;
        const sender = s.peers.find(
          (p) => p.kind === 'worker' && p.id !== guest.id && p.sent === 10 && p.received === 10,
        );
        expect(sender, 'the worker that sends to the guest (it also receives from the other)').toBeDefined();
        expect(s.totals).toEqual({ sent: 20, intact: 20, corrupt: 0, doorbells: 40, interrupts: 40 });
        // The guest kernel counted one interrupt per message, as did the device; each ack is one doorbell.
        expect({
          received: guest.received,
          corrupt: guest.corrupt,
          kernelInterrupts: guest.interrupts,
          deviceInterrupts: guest.interruptsDelivered,
          doorbells: guest.doorbellsSent,
          dropped: guest.doorbellsDropped,
        }).toEqual({ received: 10, corrupt: 0, kernelInterrupts: 10, deviceInterrupts: 10, doorbells: 10, dropped: 0 });
        expect(sender!.acked).toBe(10);
        expect(s.guestConsole).toContain(`RX ${sender!.id} 10 10 ok 10`);
        expect(await page.textContent(`tr[data-peer="${guest.id}"] th`)).toBe(`peer ${guest.id} (v86 Linux)`);
        await page.waitForFunction(() =>
          document.querySelector('#guest-console')?.textContent?.includes(' 10 10 ok 10'),
        );
        expect(await page.isVisible('#guest')).toBe(true);
        mkdirSync(`${ROOT}out`, { recursive: true });
        await page.screenshot({ path: `${ROOT}out/web-guest.png`, fullPage: true });

        // Its worker (v86 and all) terminated: both JavaScript peers hear the guest leave.
        await page.click(`button:text("Terminate peer ${guest.id}")`);
        const others = s.peers.filter((p) => p.id !== guest.id).map((p) => p.id);
        const after = await waitFor(page, "the guest's leave heard by both others", (s) =>
          s.leaves.some((l) => l.id === guest.id && others.every((id) => l.heardBy.includes(id))),
        );
        expect(after.peers.find((p) => p.id === guest.id)?.alive).toBe(false);
      } finally {
        await page.close();
      }
    },
    150_000,
  );
});
