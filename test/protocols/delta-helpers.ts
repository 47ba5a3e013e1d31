import { Prng } from '../../src/model/prng.ts'
import type { Delta, DeltaCodec, DeltaTensor } from '../../src/protocols/delta.ts'

/** Writes a body field by field, valid or not, for codec tests. */
export class BodyBuilder {
  private readonly parts: number[] = []

  u8 (v: number): this {
    this.parts.push(v & 0xff)
    return this
  }

  u16 (v: number): this {
    return this.u8(v).u8(v >>> 8)
  }

  u32 (v: number): this {
    return this.u16(v & 0xffff).u16(v >>> 16)
  }

  f32 (v: number): this {
    const b = new Uint8Array(new Float32Array([v]).buffer)
    return this.raw(...b)
  }

  raw (...bytes: number[]): this {
    this.parts.push(...bytes)
    return this
  }

  /** "BLYD", version, codec byte, tensor count */
  header (codecByte: number, count: number, version = 1): this {
    return this.raw(0x42, 0x4c, 0x59, 0x44).u8(version).u8(codecByte).u32(count)
  }

  /** name (UTF-8 or raw bytes), ndim, dims */
  tensor (name: string | number[], dims: number[]): this {
    const bytes = typeof name === 'string' ? [...new TextEncoder().encode(name)] : name
    this.u16(bytes.length).raw(...bytes).u8(dims.length)
    for (const d of dims) {
      this.u32(d)
    }
    return this
  }

  f32s (values: number[]): this {
    for (const v of values) {
      this.f32(v)
    }
    return this
  }

  bytes (): Uint8Array {
    return Uint8Array.from(this.parts)
  }
}

function count (dims: number[]): number {
  return dims.reduce((a, b) => a * b, 1)
}

/** A random canonical tensor of `kind` and dims (seeded). */
export function randomTensor (rng: Prng, kind: DeltaTensor['kind'], name: string, dims: number[], opts: { zero?: boolean } = {}): DeltaTensor {
  const n = count(dims)
  const rows = dims.length === 1 ? 1 : dims[0]
  const cols = dims[dims.length - 1]
  switch (kind) {
    case 'dense':
      return { kind, name, dims, values: Float32Array.from({ length: n }, () => opts.zero === true ? 0 : rng.normal() * 0.01) }
    case 'int8': {
      const scales = new Float32Array(rows)
      const q = new Int8Array(n)
      for (let r = 0; r < rows; r++) {
        if (opts.zero === true || (rows > 1 && r === 1)) {
          continue // a zero row
        }
        scales[r] = Math.fround(0.001 + rng.next() * 0.01)
        for (let j = 0; j < cols; j++) {
          q[r * cols + j] = Math.round((rng.next() * 2 - 1) * 127)
        }
        q[r * cols + Math.floor(rng.next() * cols)] = rng.next() < 0.5 ? 127 : -127
      }
      return { kind, name, dims, scales, q }
    }
    case 'sparse': {
      const k = opts.zero === true ? 0 : Math.max(1, Math.floor(n * 0.3))
      const picked = new Set<number>()
      while (picked.size < k) {
        picked.add(Math.floor(rng.next() * n))
      }
      const indices = Uint32Array.from([...picked].sort((a, b) => a - b))
      const q = Int8Array.from({ length: k }, () => {
        const v = Math.round((rng.next() * 2 - 1) * 127)
        return v === 0 ? 1 : v
      })
      if (k > 0) {
        q[0] = -127
      }
      return { kind, name, dims, scale: k === 0 ? 0 : Math.fround(0.0005 + rng.next() * 0.001), indices, q }
    }
    default: { // lowrank
      const rank = Math.max(1, Math.min(3, dims[0], dims[1]))
      return {
        kind,
        name,
        dims,
        rank,
        us: Float32Array.from({ length: dims[0] * rank }, () => rng.normal() * 0.1),
        vt: Float32Array.from({ length: rank * dims[1] }, () => rng.normal() * 0.1)
      }
    }
  }
}

/** The kind a codec stores a tensor of `ndim` dims as. */
export function kindOf (codec: DeltaCodec, ndim: number): DeltaTensor['kind'] {
  if (codec === 'lowrank') {
    return ndim === 2 ? 'lowrank' : 'dense'
  }
  return codec === 'f32' ? 'dense' : codec
}

/** Shapes the round-trip and fuzz tests cover: 1-D, 2-D, odd sizes, a single element. */
export const SHAPES: number[][] = [[7], [1], [3, 5], [1, 1], [13, 17], [64]]

/** A small delta of every shape in SHAPES (names "t0".."t5"), seeded. */
export function sampleDelta (codec: DeltaCodec, seed: number, opts: { zero?: boolean } = {}): Delta {
  const rng = new Prng(seed)
  return {
    codec,
    tensors: SHAPES.map((dims, i) => randomTensor(rng, kindOf(codec, dims.length), `t${i}`, dims, opts))
  }
}
