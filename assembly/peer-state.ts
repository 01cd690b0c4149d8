// The opt-in peer state registers (docs/peer-state-table.md): State (0x10) holds the 32-bit state
// this device's guest published last, StateTable (0x14) the table's offset in the shared memory,
// StateSlot (0x18) this device's entry in it. The table itself lives in the shared memory, which
// the core does not see: a write to State is handed to the glue (statePublished), which updates
// the entry and rings the listening peers. Off unless enabled: the registers then stay reserved.
@external("env", "statePublished")
declare function hostStatePublished(value: u32): void;

let enabled: bool = false;
let value: u32 = 0;
let tableOffset: u32 = 0;
let slot: u32 = 0;

export function peerStateEnable(offset: u32, ownSlot: u32): void {
  enabled = true;
  tableOffset = offset;
  slot = ownSlot;
}

export function peerStateOn(): bool {
  return enabled;
}

export function stateValue(): u32 {
  return value;
}

/** From a saved state: the value, without publishing it again (the table kept it). */
export function restoreStateValue(v: u32): void {
  value = v;
}

export function publishState(v: u32): void {
  value = v;
  hostStatePublished(v);
}

export function stateTableOffset(): u32 {
  return tableOffset;
}

export function stateSlot(): u32 {
  return slot;
}
