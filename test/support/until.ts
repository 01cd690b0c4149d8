// Waiting, bounded, for something another process or the event loop will make true.

/** Polls `check` until it holds; fails with `what` after `ms`. */
export async function until(
  check: () => boolean | Promise<boolean>,
  what: string,
  ms = 5000,
  stepMs = 5,
): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}
