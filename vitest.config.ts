// Tests import built .wasm files as bytes, as the esbuild bundle does.
import { readFileSync } from 'node:fs';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  plugins: [
    {
      name: 'wasm-bytes',
      enforce: 'pre',
      load(id) {
        if (!id.endsWith('.wasm')) return null;
        const base64 = readFileSync(id).toString('base64');
        return `export default new Uint8Array(Buffer.from(${JSON.stringify(base64)}, 'base64'));`;
      },
    },
  ],
  test: {
    include: ['test/**/*.test.ts'],
    // CI also keeps a JSON report, from which .ci/run prints a plain closing line.
    reporters: process.env.CI ? ['default', ['json', { outputFile: 'out/vitest-report.json' }]] : ['default'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
