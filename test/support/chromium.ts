// Headless Chromium for the browser tests: Debian's `chromium` (installed by .ci/run with apt;
// CHROMIUM_PATH overrides where it is), driven by playwright-core, which downloads no browser of
// its own. browserUnavailableReason() says why the tests must skip, or null when they can run.
import { accessSync, constants } from 'node:fs';
import type { Browser } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export function browserUnavailableReason(): string | null {
  try {
    accessSync(CHROMIUM, constants.X_OK);
    return null;
  } catch {
    return `no Chromium at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH)`;
  }
}

export async function launchChromium(): Promise<Browser> {
  const { chromium } = await import('playwright-core');
  return chromium.launch({
    executablePath: CHROMIUM,
    // --no-sandbox: Chromium's sandbox refuses to run as root, as CI machines often do.
    args: ['--no-sandbox', '--headless=new'],
    timeout: 20_000,
  });
}
