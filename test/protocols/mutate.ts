/**
 * Deterministic payload mutants for codec fuzzing: bit flips, byte
 * overwrites, insertions, deletions, truncations, extensions and splices of
 * a valid encoding, driven by a seeded LCG (the same mutants on every run).
 */
export class Mutator {
  private x: number

  constructor (seed: number) {
    this.x = seed >>> 0
  }

  next (): number {
    this.x = (Math.imul(this.x, 1664525) + 1013904223) >>> 0
    return this.x
  }

  below (n: number): number {
    return this.next() % n
  }

  /** one to three mutations of `bytes` (a new array) */
  mutate (bytes: Uint8Array): Uint8Array {
    let out = Uint8Array.from(bytes)
    const rounds = 1 + this.below(3)
    for (let r = 0; r < rounds; r++) {
      const at = out.length === 0 ? 0 : this.below(out.length)
      switch (this.below(7)) {
        case 0:
          if (out.length > 0) { out[at] ^= 1 << this.below(8) }
          break
        case 1:
          if (out.length > 0) { out[at] = this.below(256) }
          break
        case 2: {
          const insert = Uint8Array.from({ length: 1 + this.below(4) }, () => this.below(256))
          out = Uint8Array.from([...out.subarray(0, at), ...insert, ...out.subarray(at)])
          break
        }
        case 3:
          out = Uint8Array.from([...out.subarray(0, at), ...out.subarray(at + 1 + this.below(4))])
          break
        case 4:
          out = out.slice(0, this.below(out.length + 1))
          break
        case 5:
          out = Uint8Array.from([...out, ...Uint8Array.from({ length: 1 + this.below(40) }, () => this.below(256))])
          break
        default: {
          // interesting values: 0, 0xff, and a counter's edges
          const v = [0, 1, 0x7f, 0x80, 0xfe, 0xff][this.below(6)]
          if (out.length > 0) { out[at] = v }
        }
      }
    }
    return out
  }
}
