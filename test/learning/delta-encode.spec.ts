import { expect } from 'aegir/chai'
import { deltaTensorValues } from '../../src/learning/delta-apply.ts'
import { encodeDelta } from '../../src/learning/delta-encode.ts'
import { WeightDeltaErrorCode } from '../../src/learning/delta-errors.ts'
import { symmetricEigen } from '../../src/learning/lowrank.ts'
import { topKIndices } from '../../src/learning/top-k.ts'
import { Prng } from '../../src/model/prng.ts'
import { decodeDeltaBody, encodeDeltaBody } from '../../src/protocols/delta.ts'
import { UNIT_SHAPES, expectCode, randomTensors } from './helpers.ts'
import type { F32Tensors } from '../../src/learning/f32-tensors.ts'
import type { Delta, DeltaTensor } from '../../src/protocols/delta.ts'

/** max |decoded - exact| and the relative Frobenius error, recomputed here */
function errors (diffs: F32Tensors, delta: Delta | null): { max: number, rel: number } {
  let max = 0
  let es = 0
  let ds = 0
  const decoded = new Map((delta?.tensors ?? []).map(t => [t.name, deltaTensorValues(t)]))
  for (const [name, t] of diffs) {
    const d = decoded.get(name) ?? new Float32Array(t.values.length)
    for (let i = 0; i < d.length; i++) {
      const e = d[i] - t.values[i]
      max = Math.max(max, Math.abs(e))
      es += e * e
      ds += t.values[i] * t.values[i]
    }
  }
  return { max, rel: Math.sqrt(es / ds) }
}

/** A rows x cols matrix U diag(s) V^T with orthonormal U, V (Gram-Schmidt of Gaussian columns). */
function matrixWithSpectrum (rng: Prng, rows: number, cols: number, s: number[]): Float32Array {
  const ortho = (n: number, k: number): Float64Array[] => {
    const out: Float64Array[] = []
    for (let c = 0; c < k; c++) {
      const v = Float64Array.from({ length: n }, () => rng.normal())
      for (let pass = 0; pass < 2; pass++) {
        for (const u of out) {
          let dot = 0
          for (let i = 0; i < n; i++) {
            dot += u[i] * v[i]
          }
          for (let i = 0; i < n; i++) {
            v[i] -= dot * u[i]
          }
        }
      }
      const norm = Math.hypot(...v)
      out.push(v.map(x => x / norm))
    }
    return out
  }
  const u = ortho(rows, s.length)
  const v = ortho(cols, s.length)
  const a = new Float32Array(rows * cols)
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      let x = 0
      for (let k = 0; k < s.length; k++) {
        x += u[k][i] * s[k] * v[k][j]
      }
      a[i * cols + j] = x
    }
  }
  return a
}

describe('learning/delta-encode', () => {
  const diffs = randomTensors(11, UNIT_SHAPES, 0.001)

  it('f32 is exact: error 0, every tensor carried', () => {
    const r = encodeDelta(diffs, { codec: 'f32' })
    expect(r.maxAbsError).to.equal(0)
    expect(r.relFrobError).to.equal(0)
    expect(r.delta?.tensors.map(t => t.name)).to.deep.equal([...diffs.keys()].sort())
    expect(r.params).to.equal(17 + 24 * 40 + 33 * 7 + 1)
  })

  it('int8: every element within half a row scale; reported errors match a recomputation', () => {
    const r = encodeDelta(diffs, { codec: 'int8' })
    for (const t of r.delta?.tensors ?? []) {
      const { scales } = t as Extract<DeltaTensor, { kind: 'int8' }>
      const exact = diffs.get(t.name)?.values as Float32Array
      const d = deltaTensorValues(t)
      const cols = t.dims[t.dims.length - 1]
      for (let i = 0; i < d.length; i++) {
        // scale / 2 of quantization, plus the float32 rounding of q x scale
        expect(Math.abs(d[i] - exact[i])).to.be.at.most(scales[Math.floor(i / cols)] / 2 * (1 + 2 ** -14))
      }
    }
    const again = errors(diffs, r.delta)
    expect(r.maxAbsError).to.equal(again.max)
    expect(r.relFrobError).to.be.closeTo(again.rel, 1e-12)
    // Gaussian values, 127 levels per row: about 1% relative Frobenius error
    expect(r.relFrobError).to.be.within(0.002, 0.02)
  })

  it('sparse: keeps the ceil(density x n) largest, error bounded by the threshold and half the scale', () => {
    const density = 0.1
    const r = encodeDelta(diffs, { codec: 'sparse', density })
    for (const t of r.delta?.tensors ?? []) {
      const s = t as Extract<DeltaTensor, { kind: 'sparse' }>
      const exact = diffs.get(t.name)?.values as Float32Array
      const n = exact.length
      expect(s.indices.length).to.be.at.most(Math.ceil(density * n))
      const kept = new Set(s.indices)
      let minKept = Infinity
      for (const i of s.indices) {
        minKept = Math.min(minKept, Math.abs(exact[i]))
      }
      const d = deltaTensorValues(t)
      for (let i = 0; i < n; i++) {
        if (kept.has(i)) {
          expect(Math.abs(d[i] - exact[i])).to.be.at.most(s.scale / 2 * (1 + 2 ** -14))
        } else {
          // a dropped element is no larger than the smallest kept one (or it quantized to 0)
          expect(d[i]).to.equal(0)
          expect(Math.abs(exact[i])).to.be.at.most(Math.max(minKept, s.scale / 2))
        }
      }
    }
    const again = errors(diffs, r.delta)
    expect(r.maxAbsError).to.equal(again.max)
    expect(r.relFrobError).to.be.closeTo(again.rel, 1e-12)
  })

  it('lowrank: recovers an exactly low-rank matrix, and is near the optimal truncation error with noise', () => {
    const rng = new Prng(5)
    const rows = 60
    const cols = 45
    const spectrum = [5, 3, 2, 1, 0.5]
    const exact: F32Tensors = new Map([['m', { shape: [rows, cols], values: matrixWithSpectrum(rng, rows, cols, spectrum) }]])
    const r5 = encodeDelta(exact, { codec: 'lowrank', rank: 5 })
    expect(r5.relFrobError).to.be.below(1e-5)
    // rank 3 of that spectrum: the best possible relative error is sqrt(1 + 0.25) / |s|
    const best = Math.hypot(1, 0.5) / Math.hypot(...spectrum)
    const r3 = encodeDelta(exact, { codec: 'lowrank', rank: 3 })
    expect(r3.relFrobError).to.be.within(best * 0.999, best * 1.01)
    // with a dense noise floor, subspace iteration lands within 2% of the optimum (from the eigenvalues of A^T A)
    const noisy = Float32Array.from(exact.get('m')?.values as Float32Array, x => x + rng.normal() * 0.05)
    const gram = new Float64Array(cols * cols)
    for (let i = 0; i < rows; i++) {
      for (let a = 0; a < cols; a++) {
        for (let b = 0; b < cols; b++) {
          gram[a * cols + b] += noisy[i * cols + a] * noisy[i * cols + b]
        }
      }
    }
    const lambda = Array.from(symmetricEigen(gram, cols).values)
    const bestNoisy = Math.sqrt(lambda.slice(3).reduce((x, y) => x + y, 0) / lambda.reduce((x, y) => x + y, 0))
    const rn = encodeDelta(new Map([['m', { shape: [rows, cols], values: noisy }]]), { codec: 'lowrank', rank: 3, powerIterations: 2 })
    expect(rn.relFrobError).to.be.within(bestNoisy * 0.999, bestNoisy * 1.02)
    expect(rn.delta?.tensors[0]).to.include({ kind: 'lowrank', rank: 3 })
  })

  it('lowrank: 1-D tensors go dense; the same seed gives the same bytes, another seed other factors', () => {
    const a = encodeDelta(diffs, { codec: 'lowrank', rank: 2, seed: 7 })
    const b = encodeDelta(diffs, { codec: 'lowrank', rank: 2, seed: 7 })
    const c = encodeDelta(diffs, { codec: 'lowrank', rank: 2, seed: 8 })
    expect(a.delta?.tensors.find(t => t.name === 'layer.a_norm.weight')?.kind).to.equal('dense')
    expect(encodeDeltaBody(a.delta as Delta)).to.deep.equal(encodeDeltaBody(b.delta as Delta))
    expect(encodeDeltaBody(a.delta as Delta)).to.not.deep.equal(encodeDeltaBody(c.delta as Delta))
  })

  it('every codec output is a canonical body; all-zero tensors are left out, all-zero units give null', () => {
    const withZero: F32Tensors = new Map([...diffs, ['z', { shape: [3, 4], values: new Float32Array(12) }]])
    for (const codec of ['f32', 'int8', 'sparse', 'lowrank'] as const) {
      const r = encodeDelta(withZero, { codec, rank: 2 })
      const body = encodeDeltaBody(r.delta as Delta)
      expect(encodeDeltaBody(decodeDeltaBody(body, { codec }))).to.deep.equal(body)
      expect(r.delta?.tensors.map(t => t.name)).to.not.include('z')
    }
    const zero = encodeDelta(new Map([['z', { shape: [2], values: new Float32Array(2) }]]), { codec: 'int8' })
    expect(zero.delta).to.equal(null)
    expect(zero.relFrobError).to.equal(0)
  })

  it('rows too small for a normal float32 scale become zero rows (still canonical)', () => {
    // 2e-40 / 127 is far below 2^-126: the row is stored as zero, an error of at most 2e-40
    const tiny: F32Tensors = new Map([['t', { shape: [1, 2], values: Float32Array.of(1e-40, -2e-40) }]])
    for (const codec of ['int8', 'sparse'] as const) {
      const r = encodeDelta(tiny, { codec, density: 1 })
      const body = encodeDeltaBody(r.delta as Delta)
      expect(decodeDeltaBody(body).tensors[0]).to.satisfy((t: DeltaTensor) => t.kind === 'int8' ? t.scales[0] === 0 : t.kind === 'sparse' && t.indices.length === 0)
      expect(r.maxAbsError).to.equal(Math.fround(2e-40))
    }
  })

  it('refuses bad options, non-finite differences and tensors of 3 dims', () => {
    expectCode(() => encodeDelta(diffs, { codec: 'gzip' as any }), WeightDeltaErrorCode.BAD_OPTIONS)
    for (const density of [0, -0.1, 1.5, NaN]) {
      expectCode(() => encodeDelta(diffs, { codec: 'sparse', density }), WeightDeltaErrorCode.BAD_OPTIONS)
    }
    for (const rank of [0, 1.5, 70000]) {
      expectCode(() => encodeDelta(diffs, { codec: 'lowrank', rank }), WeightDeltaErrorCode.BAD_OPTIONS)
    }
    expectCode(() => encodeDelta(new Map([['n', { shape: [2], values: Float32Array.of(1, NaN) }]]), { codec: 'f32' }), WeightDeltaErrorCode.NON_FINITE_INPUT)
    expectCode(() => encodeDelta(new Map([['n', { shape: [1, 1, 2], values: Float32Array.of(1, 2) }]]), { codec: 'f32' }), WeightDeltaErrorCode.SHAPE_MISMATCH)
  })

  it('symmetricEigen: eigenvalues descending, A v = lambda v', () => {
    const a = Float64Array.of(2, 1, 0, 1, 2, 0, 0, 0, 5)
    const { values, vectors } = symmetricEigen(a, 3)
    expect(Array.from(values).map(x => Math.round(x * 1e12) / 1e12)).to.deep.equal([5, 3, 1])
    for (let k = 0; k < 3; k++) {
      for (let i = 0; i < 3; i++) {
        let av = 0
        for (let j = 0; j < 3; j++) {
          av += a[i * 3 + j] * vectors[j * 3 + k]
        }
        expect(av).to.be.closeTo(values[k] * vectors[i * 3 + k], 1e-12)
      }
    }
  })

  describe('topKIndices', () => {
    it('returns the k largest magnitudes in ascending index order, ties to the lower index', () => {
      const v = Float32Array.of(0.5, -3, 2, -2, 2, 0, -0.5, 7)
      expect(Array.from(topKIndices(v, 3))).to.deep.equal([1, 2, 7])
      expect(Array.from(topKIndices(v, 4))).to.deep.equal([1, 2, 3, 7])
      expect(Array.from(topKIndices(v, 5))).to.deep.equal([1, 2, 3, 4, 7])
      expect(Array.from(topKIndices(v, 0))).to.deep.equal([])
      expect(Array.from(topKIndices(v, 8))).to.deep.equal([0, 1, 2, 3, 4, 5, 6, 7])
      expect(() => topKIndices(v, 9)).to.throw(RangeError)
    })

    it('agrees with a full sort on random data (values sharing their top 16 bits included)', () => {
      const rng = new Prng(3)
      const v = Float32Array.from({ length: 5000 }, () => (1 + rng.next() * 1e-3) * (rng.next() < 0.5 ? -1 : 1))
      for (const k of [1, 17, 500, 4999]) {
        const sorted = Array.from(v.keys()).sort((a, b) => Math.abs(v[b]) - Math.abs(v[a]) || a - b).slice(0, k).sort((a, b) => a - b)
        expect(Array.from(topKIndices(v, k))).to.deep.equal(sorted)
      }
    })
  })
})
