// What `node:util` is to the browser build (scripts/bundle.mjs aliases it here): only debuglog,
// which NODE_DEBUG switches on in Node; a page has no NODE_DEBUG, so its lines go nowhere.
export function debuglog(_section: string): (format: string, ...args: unknown[]) => void {
  return () => {};
}
