import { expect } from 'aegir/chai'
import { Prng } from '../../src/model/prng.ts'
import type { F32Tensors } from '../../src/learning/f32-tensors.ts'

/** Seeded tensors of the given shapes, values N(0, std). */
export function randomTensors (seed: number, shapes: Record<string, number[]>, std = 0.02): F32Tensors {
  const rng = new Prng(seed)
  const out: F32Tensors = new Map()
  for (const [name, shape] of Object.entries(shapes)) {
    const n = shape.reduce((a, b) => a * b, 1)
    out.set(name, { shape, values: Float32Array.from({ length: n }, () => rng.normal() * std) })
  }
  return out
}

/** The bytes of a float32 array (to compare bit patterns). */
export function bitsOf (values: Float32Array): Uint8Array {
  return new Uint8Array(values.buffer, values.byteOffset, values.byteLength)
}

/** Expects `fn` to throw an error carrying `code`. */
export function expectCode (fn: () => unknown, code: string): void {
  let err: any
  try {
    fn()
  } catch (e) {
    err = e
  }
  expect(err, `expected ${code}`).to.be.an('error')
  expect(err.code).to.equal(code)
}

/** A small unit-like set of shapes: 1-D, 2-D, odd sizes. */
export const UNIT_SHAPES: Record<string, number[]> = {
  'layer.a_norm.weight': [17],
  'layer.b_proj.weight': [24, 40],
  'layer.c_proj.weight': [33, 7],
  'layer.d_one.weight': [1, 1]
}
