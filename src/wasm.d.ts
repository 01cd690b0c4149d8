// Built WebAssembly files are imported as their bytes (esbuild's binary loader, and the matching
// plugin in vitest.config.ts).
declare module '*.wasm' {
  const bytes: Uint8Array<ArrayBuffer>;
  export default bytes;
}
