// What every benchmark records beside its figures, and where it writes them.
import { mkdirSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';

/** The machine and runtime a result was measured on. */
export function machine(): { date: string; node: string; v8: string; cpu: string; cpuCount: number; platform: string } {
  return {
    date: new Date().toISOString(),
    node: process.version,
    v8: process.versions.v8,
    cpu: cpus()[0]?.model ?? 'unknown',
    cpuCount: cpus().length,
    platform: `${process.platform}/${process.arch}`,
  };
}

/** Path of a results file in bench/results/ (created if missing) under `root`. */
export function resultsFile(name: string, root = process.cwd()): string {
  const dir = join(root, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  return join(dir, name);
}
