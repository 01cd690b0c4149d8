// Event counters. f64 cells count exactly up to 2^53, which no run reaches, and cross to
// JavaScript as plain numbers.
import { COUNTER_COUNT } from "./abi";

const cells: usize = memory.data(COUNTER_COUNT << 3);

// @ts-ignore: decorator
@inline
export function count(id: i32): void {
  const at = cells + (<usize>id << 3);
  store<f64>(at, load<f64>(at) + 1.0);
}

export function counterValue(id: i32): f64 {
  if (<u32>id >= <u32>COUNTER_COUNT) return 0;
  return load<f64>(cells + (<usize>id << 3));
}
