/**
 * Finite-value checks on f32 tensors, for inputs a stage is sent and for
 * results a client gets back: one tight loop, no allocation.
 */

/**
 * Index of the first NaN, +Inf or -Inf in `data`, or -1 when every value is
 * finite. `v - v` is 0 for a finite v and NaN for the rest, so one compare
 * per value covers all three.
 */
export function firstNonFinite (data: Float32Array): number {
  for (let i = 0; i < data.length; i++) {
    const v = data[i]
    if (v - v !== 0) {
      return i
    }
  }
  return -1
}
