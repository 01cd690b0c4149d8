// Compiling a benchmark's C baseline at bench time with the machine's C compiler (CC, default cc).
// Failures are thrown as Errors with a message for a person; each bench reports them its own way.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

/** The compiler the baselines are built with. */
export const C_COMPILER = process.env.CC ?? 'cc';

export interface CompileOptions {
  /** A missing compiler is not an error: null is returned and the bench goes on without the baseline. */
  optional?: boolean;
}

/** Compiles `source` into `binary` (-O2 -Wall); returns how (e.g. "cc -O2"), or null (see optional). */
export function compileC(source: string, binary: string, options?: { optional?: false }): string;
export function compileC(source: string, binary: string, options: CompileOptions): string | null;
export function compileC(source: string, binary: string, options: CompileOptions = {}): string | null {
  if (!existsSync(source)) throw new Error(`${source} is missing (run from the package root: npm run bench)`);
  mkdirSync(dirname(binary), { recursive: true });
  const args = ['-O2', '-Wall', '-o', binary, source];
  const r = spawnSync(C_COMPILER, args, { encoding: 'utf8' });
  if ((r.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') {
    if (options.optional) return null;
    throw new Error(
      `no C compiler: '${C_COMPILER}' was not found. The baseline is a C program compiled at bench time; ` +
        'install one (e.g. apt-get install gcc) or point CC at it.',
    );
  }
  if (r.error !== undefined) throw new Error(`${C_COMPILER} could not run: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${C_COMPILER} ${args.join(' ')} failed (exit ${r.status}):\n${r.stderr}`);
  return `${C_COMPILER} -O2`;
}
