/**
 * A deterministic sample of indices from a seed (normative text:
 * protocols/dataset.md, "Eval window sample"). Validators of Proof-of-Learning
 * choose the eval windows they measure this way, so anyone holding the seed
 * recomputes the exact sample.
 *
 * PRNG: key = sha256(seed); block k (k = 0, 1, ...) =
 * sha256("bly/sample/v1" || key || u64be(k)); the stream is the blocks' bytes
 * in order, read as consecutive u32be words (8 per block). No floats.
 *
 * uniform(n), 1 <= n <= 2^32: draw x; while x >= 2^32 - (2^32 mod n) draw
 * again; return x mod n (rejection sampling: exactly uniform).
 *
 * sample(items, seed, m): a = copy of items; k = min(m, a.length);
 * for i = 0 .. k-1: j = i + uniform(a.length - i); swap a[i], a[j];
 * result a[0 .. k) (the first k steps of a forward Fisher-Yates shuffle, so
 * the result is a uniformly random k-subset in a uniformly random order).
 */
import { createHash } from 'node:crypto'
import { BlydError } from './errors.ts'

/** Domain of the PRNG blocks. */
export const SAMPLE_DOMAIN = 'bly/sample/v1'

const TWO_32 = 0x1_0000_0000

export const SampleErrorCode = {
  /** a sample size, a range or a seed out of range */
  ARGUMENT: 'ERR_SAMPLE_ARGUMENT'
} as const

export class SampleError extends BlydError {
  constructor (message: string) {
    super(SampleErrorCode.ARGUMENT, message)
    this.name = 'SampleError'
  }
}

/** The sha256-counter PRNG described in the file comment. */
export class HashPrng {
  private readonly key: Buffer
  private counter: bigint
  private block: Buffer
  private at: number

  constructor (seed: Uint8Array) {
    this.key = createHash('sha256').update(seed).digest()
    this.counter = 0n
    this.block = Buffer.alloc(0)
    this.at = 0
  }

  /** The next u32 of the stream. */
  nextU32 (): number {
    if (this.at >= this.block.length) {
      const k = Buffer.alloc(8)
      k.writeBigUInt64BE(this.counter)
      this.counter++
      this.block = createHash('sha256').update(SAMPLE_DOMAIN).update(this.key).update(k).digest()
      this.at = 0
    }
    const x = this.block.readUInt32BE(this.at)
    this.at += 4
    return x
  }

  /** A uniform integer in [0, n), 1 <= n <= 2^32, by rejection. */
  uniform (n: number): number {
    if (!Number.isSafeInteger(n) || n < 1 || n > TWO_32) {
      throw new SampleError(`uniform(n) needs an integer n from 1 to 2^32 (got ${n})`)
    }
    const limit = TWO_32 - (TWO_32 % n)
    while (true) {
      const x = this.nextU32()
      if (x < limit) {
        return x % n
      }
    }
  }
}

/**
 * The first min(m, items.length) entries of a forward Fisher-Yates shuffle of
 * `items` driven by HashPrng(seed). Deterministic in (items, seed, m).
 */
export function sampleIndices (items: ArrayLike<number>, seed: Uint8Array, m: number): number[] {
  if (!Number.isSafeInteger(m) || m < 0) {
    throw new SampleError(`the sample size must be an integer >= 0 (got ${m})`)
  }
  const a = Array.from(items)
  const k = Math.min(m, a.length)
  const prng = new HashPrng(seed)
  for (let i = 0; i < k; i++) {
    const j = i + prng.uniform(a.length - i)
    const t = a[i]
    a[i] = a[j]
    a[j] = t
  }
  return a.slice(0, k)
}
