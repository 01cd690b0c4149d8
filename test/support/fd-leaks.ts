// Counting this process's open file descriptors, for suites that must give back every fd they
// open: count in beforeAll, close everything, compare in afterAll.
import { readdirSync, readlinkSync } from 'node:fs';
import { afterAll, beforeAll, expect } from 'vitest';

/** How many fds this process has open (the listing's own fd is not counted). */
export function openFdCount(): number {
  return openFds().length;
}

/** The open fds, each with what it points at (for messages when a count differs). */
export function openFds(): { fd: number; target: string }[] {
  const out: { fd: number; target: string }[] = [];
  for (const name of readdirSync('/proc/self/fd')) {
    const fd = Number(name);
    let target: string;
    try {
      target = readlinkSync(`/proc/self/fd/${name}`);
    } catch {
      continue; // the directory listing's own fd, closed by now
    }
    out.push({ fd, target });
  }
  return out;
}

/** The kinds of fd open now (anon_inode:[eventfd], socket:[…], /memfd:…), counted. */
function kinds(): Map<string, number> {
  const m = new Map<string, number>();
  for (const { target } of openFds()) {
    const kind = target.replace(/\[\d+\]$/, '[]').replace(/ \(deleted\)$/, '');
    m.set(kind, (m.get(kind) ?? 0) + 1);
  }
  return m;
}

/**
 * Registers beforeAll/afterAll hooks in the current suite: the afterAll hook (which runs after
 * the suite's own afterAll cleanups registered after this call) fails if fds were leaked.
 * Call it first in a describe block, so its afterAll runs last. `warmUp` runs before the count,
 * for what Node opens once per process and keeps (libuv's SIGCHLD pipes on the first spawn).
 */
export function expectNoFdLeak(warmUp?: () => unknown): void {
  let before = new Map<string, number>();
  let count = 0;
  beforeAll(async () => {
    await warmUp?.();
    count = openFdCount();
    before = kinds();
  });
  afterAll(() => {
    const after = openFdCount();
    if (after > count) {
      const grown = [...kinds()]
        .filter(([k, n]) => n > (before.get(k) ?? 0))
        .map(([k, n]) => `${k}: ${before.get(k) ?? 0} → ${n}`);
      expect.fail(`${after - count} fd(s) leaked: ${grown.join(', ')}`);
    }
  });
}
