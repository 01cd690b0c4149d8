// What `node:diagnostics_channel` is to the browser build (scripts/bundle.mjs aliases it here): a
// page has no diagnostics channels, so every channel is one nobody subscribes to, and the
// library's publish calls, guarded by hasSubscribers, cost a property read.
export interface Channel {
  readonly name: string;
  readonly hasSubscribers: boolean;
  publish(message: unknown): void;
}

export function channel(name: string): Channel {
  return { name, hasSubscribers: false, publish() {} };
}
