// The constants the WebAssembly core and the TypeScript side share must agree.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import * as abi from '../../src/core/abi.js';

describe('core ABI constants', () => {
  it('assembly/abi.ts and src/core/abi.ts define the same numbers', () => {
    const text = readFileSync(new URL('../../assembly/abi.ts', import.meta.url), 'utf8');
    const found = [...text.matchAll(/export const (\w+): \w+ = (-?(?:0x[0-9a-fA-F]+|\d+));/g)];
    expect(found.length).toBeGreaterThan(20);
    for (const [, name, value] of found) {
      expect({ name, value: (abi as Record<string, unknown>)[name] }).toEqual({ name, value: Number(value) });
    }
  });
});
