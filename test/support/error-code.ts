// The code a call fails with, as a value a test can compare in one expect (e.g. a table of calls).

/** The `code` of what `f` throws, or 'no error' when it returns. */
export function codeOf(f: () => unknown): unknown {
  try {
    f();
  } catch (err) {
    return (err as { code?: unknown }).code;
  }
  return 'no error';
}
