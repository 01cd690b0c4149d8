// Undoing what a test started, newest first, even after a failure midway: each step runs, and
// what fails is kept so the suite can report it at the end instead of hiding the test's own error.

export async function runNewestFirst(cleanups: Array<() => unknown>, failures: string[]): Promise<void> {
  for (const c of cleanups.splice(0).reverse()) {
    try {
      await c();
    } catch (error) {
      failures.push(String(error));
    }
  }
}
