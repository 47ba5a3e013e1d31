/**
 * Top-k by magnitude in O(n): a two-pass radix select on the bit patterns
 * of |x| (for non-negative floats the IEEE bit pattern orders like the
 * value), no sort of the whole tensor.
 */

/**
 * Indices of the k elements of largest |x|, ascending. Ties at the
 * threshold go to the lower indices, so the result is a pure function of
 * the values. `values` must be finite (NaN has no magnitude order).
 */
export function topKIndices (values: Float32Array, k: number): Uint32Array {
  const n = values.length
  if (!Number.isSafeInteger(k) || k < 0 || k > n) {
    throw new RangeError(`k must be an integer in [0, ${n}], got ${k}`)
  }
  const out = new Uint32Array(k)
  if (k === 0) {
    return out
  }
  if (k === n) {
    for (let i = 0; i < n; i++) {
      out[i] = i
    }
    return out
  }
  const bits = new Uint32Array(values.buffer, values.byteOffset, n)
  // pass 1: histogram of the top 16 bits of |x|
  const hist = new Float64Array(65536)
  for (let i = 0; i < n; i++) {
    hist[(bits[i] & 0x7fffffff) >>> 16]++
  }
  let above = 0
  let hi = 65535
  for (; hi >= 0; hi--) {
    if (above + hist[hi] >= k) {
      break
    }
    above += hist[hi]
  }
  // pass 2: within bucket hi, histogram of the low 16 bits
  hist.fill(0)
  for (let i = 0; i < n; i++) {
    const a = bits[i] & 0x7fffffff
    if (a >>> 16 === hi) {
      hist[a & 0xffff]++
    }
  }
  let lo = 65535
  for (; lo >= 0; lo--) {
    if (above + hist[lo] >= k) {
      break
    }
    above += hist[lo]
  }
  // every |x| above the threshold, then threshold ties by index until k
  const threshold = ((hi << 16) | lo) >>> 0
  let ties = k - above
  let j = 0
  for (let i = 0; i < n; i++) {
    const a = (bits[i] & 0x7fffffff) >>> 0
    if (a > threshold) {
      out[j++] = i
    } else if (a === threshold && ties > 0) {
      out[j++] = i
      ties--
    }
  }
  return out
}
