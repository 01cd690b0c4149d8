// The browser demo's doorbell round trip between two Web Workers in headless Chromium, for the
// Atomics benchmark: `npm run web`'s server on a free port, the page with two peers and one sender,
// and the page's own percentiles (performance.now(), which an isolated page gives to 5 µs). The
// page does the demo's work per message (mailbox writes, a checksum), so this is the round trip a
// page sees, not a bare ring. Returns null, with the reason printed, when there is no Chromium.
import { fileURLToPath } from 'node:url';
import type { DemoState } from '../../web/demo-state.js';
import { browserUnavailableReason, launchChromium } from '../../test/support/chromium.js';
import { LineProcess } from '../../test/support/line-process.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** A round-trip measurement's figures, in nanoseconds, and what the peers counted. */
export interface RoundTripFigures {
  p50: number;
  p99: number;
  p999: number;
  max: number;
  count: number;
  interrupts: number;
  doorbells: number;
}

export interface BrowserRoundTrip extends RoundTripFigures {
  browser: string;
}

export async function chromiumRoundTrip(total: number, warmup: number): Promise<BrowserRoundTrip | null> {
  const missing = browserUnavailableReason();
  if (missing !== null) {
    console.log(`atomics.bench: no Chromium round trip: ${missing}`);
    return null;
  }
  const server = new LineProcess(process.execPath, [`${ROOT}scripts/web-server.mjs`, '--port', '0'], {
    name: 'web server',
    timeoutMs: 60_000,
  });
  try {
    const line = await server.expectLine((l) => l.includes('http://'), 'the URL');
    const base = line.slice(line.indexOf('http://')).replace(/\/$/, '');
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      await page.goto(`${base}/?peers=2&senders=1&count=${total}&warmup=${warmup}`);
      const deadline = Date.now() + 120_000;
      let doneAt: number | undefined;
      for (;;) {
        const s = (await page.evaluate(() =>
          JSON.parse(JSON.stringify((window as unknown as { ivshmemDemo: unknown }).ivshmemDemo)),
        )) as DemoState;
        if (s.failures.length > 0) throw new Error(`the demo page failed: ${s.failures.join('; ')}`);
        // Done is the sender's word; the receiver's counts arrive with its next report (every
        // REPORT_MS), so they are given a few seconds to add up before they are taken as they are.
        const complete = s.done && s.latency.count === total - warmup;
        if (complete) doneAt ??= Date.now();
        const counted = s.totals.doorbells === 2 * total && s.totals.interrupts === 2 * total;
        if (complete && (counted || Date.now() > doneAt! + 5000)) {
          const us = (v: number) => Math.round(v * 1000);
          return {
            browser: `Chromium ${browser.version()}`,
            p50: us(s.latency.p50),
            p99: us(s.latency.p99),
            p999: us(s.latency.p999),
            max: us(s.latency.max),
            count: s.latency.count,
            interrupts: s.totals.interrupts,
            doorbells: s.totals.doorbells,
          };
        }
        if (Date.now() > deadline) throw new Error(`the page did not finish ${total} round trips within 120 s`);
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      await browser.close();
    }
  } finally {
    await server.close();
  }
}
