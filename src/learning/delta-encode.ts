/**
 * From exact float32 differences to a delta of one codec
 * (protocols/delta.md), with the reconstruction error against the exact
 * differences:
 * - f32: the differences themselves (lossless w.r.t. the f32 differences);
 * - int8: per row scale = fround(max |x| / 127), q = round(x / scale)
 * (half away from zero), |error| <= scale / 2;
 * - sparse: the k = ceil(density x n) entries of largest |x| (ties: lower
 * index), one scale for the tensor as int8, entries that quantize to 0
 * dropped (so k may come out smaller);
 * - lowrank: rank-r factors of each 2-D tensor by deterministic randomized
 * subspace iteration (lowrank.ts); 1-D tensors dense f32.
 *
 * Tensors whose difference is all zero are left out; a unit with no
 * changed tensor gives no delta (null). Dense tensors of the result share
 * the caller's difference arrays (no copy).
 */
import { DELTA_CODECS } from '../protocols/delta.ts'
import { deltaTensorValues } from './delta-apply.ts'
import { WeightDeltaError, WeightDeltaErrorCode } from './delta-errors.ts'
import { LOWRANK_DEFAULTS, lowRankFactors } from './lowrank.ts'
import { topKIndices } from './top-k.ts'
import type { F32Tensor, F32Tensors } from './f32-tensors.ts'
import type { Delta, DeltaCodec, DeltaTensor } from '../protocols/delta.ts'

/** default sparse density (fraction of each tensor's elements kept) */
export const DEFAULT_SPARSE_DENSITY = 0.01
/** default lowrank rank */
export const DEFAULT_LOWRANK_RANK = 16
/** smallest normal float32: a scale below it would lose precision, so such a row counts as zero */
const MIN_NORMAL_F32 = 2 ** -126

export interface DeltaEncodeOptions {
  codec: DeltaCodec
  /** sparse: fraction of each tensor's elements kept, in (0, 1] (default 0.01) */
  density?: number
  /** lowrank: rank of each 2-D tensor (default 16) */
  rank?: number
  /** lowrank: extra test vectors (default 8) */
  oversample?: number
  /** lowrank: power iterations (default 1) */
  powerIterations?: number
  /** lowrank: seed of the random test matrix (default 1) */
  seed?: number
}

export interface TensorEncodeReport {
  name: string
  params: number
  maxAbsError: number
  /** sum of squared errors (float64) */
  errorSquares: number
  /** sum of squared exact differences (float64) */
  diffSquares: number
}

export interface DeltaEncodeResult {
  /** null when every difference is zero */
  delta: Delta | null
  /** max |decoded - exact| over every tensor given (left-out zero tensors count as exact) */
  maxAbsError: number
  /** |decoded - exact|_F / |exact|_F over every tensor given (0 when the difference is zero) */
  relFrobError: number
  /** elements of the tensors the delta carries */
  params: number
  tensors: TensorEncodeReport[]
}

function checkOptions (o: DeltaEncodeOptions): Required<DeltaEncodeOptions> {
  if (!(DELTA_CODECS as readonly string[]).includes(o.codec)) {
    throw new WeightDeltaError(WeightDeltaErrorCode.BAD_OPTIONS, `codec must be one of ${DELTA_CODECS.join(', ')}, got ${JSON.stringify(o.codec)}`)
  }
  const density = o.density ?? DEFAULT_SPARSE_DENSITY
  if (typeof density !== 'number' || !(density > 0 && density <= 1)) {
    throw new WeightDeltaError(WeightDeltaErrorCode.BAD_OPTIONS, `density must be a number in (0, 1], got ${density}`)
  }
  const rank = o.rank ?? DEFAULT_LOWRANK_RANK
  if (!Number.isSafeInteger(rank) || rank < 1 || rank > 0xffff) {
    throw new WeightDeltaError(WeightDeltaErrorCode.BAD_OPTIONS, `rank must be an integer in [1, 65535], got ${rank}`)
  }
  const oversample = o.oversample ?? LOWRANK_DEFAULTS.oversample
  const powerIterations = o.powerIterations ?? LOWRANK_DEFAULTS.powerIterations
  const seed = o.seed ?? LOWRANK_DEFAULTS.seed
  for (const [k, v, max] of [['oversample', oversample, 1024], ['powerIterations', powerIterations, 16], ['seed', seed, 0xffffffff]] as const) {
    if (!Number.isSafeInteger(v) || v < 0 || v > max) {
      throw new WeightDeltaError(WeightDeltaErrorCode.BAD_OPTIONS, `${k} must be an integer in [0, ${max}], got ${v}`)
    }
  }
  return { codec: o.codec, density, rank, oversample, powerIterations, seed }
}

/** q = round(x / scale), half away from zero, clamped to [-127, 127] */
function quantize (x: number, scale: number): number {
  const r = Math.round(Math.abs(x) / scale)
  const q = r > 127 ? 127 : r
  return x < 0 ? -q : q
}

/** scale for a max |x|: fround(max / 127), or 0 when that is not a normal float32 */
function scaleFor (maxAbs: number): number {
  const s = Math.fround(maxAbs / 127)
  return s >= MIN_NORMAL_F32 ? s : 0
}

function encodeInt8 (name: string, t: F32Tensor): DeltaTensor {
  const x = t.values
  const cols = t.shape[t.shape.length - 1]
  const rows = x.length / cols
  const scales = new Float32Array(rows)
  const q = new Int8Array(x.length)
  for (let r = 0; r < rows; r++) {
    let max = 0
    for (let i = r * cols; i < (r + 1) * cols; i++) {
      const a = Math.abs(x[i])
      if (a > max) {
        max = a
      }
    }
    const scale = scaleFor(max)
    scales[r] = scale
    if (scale === 0) {
      continue
    }
    for (let i = r * cols; i < (r + 1) * cols; i++) {
      q[i] = quantize(x[i], scale)
    }
  }
  return { kind: 'int8', name, dims: [...t.shape], scales, q }
}

function encodeSparse (name: string, t: F32Tensor, density: number): DeltaTensor {
  const x = t.values
  const n = x.length
  const k = Math.min(n, Math.max(1, Math.ceil(density * n)))
  const top = topKIndices(x, k)
  let max = 0
  for (let i = 0; i < k; i++) {
    const a = Math.abs(x[top[i]])
    if (a > max) {
      max = a
    }
  }
  const scale = scaleFor(max)
  if (scale === 0) {
    return { kind: 'sparse', name, dims: [...t.shape], scale: 0, indices: new Uint32Array(0), q: new Int8Array(0) }
  }
  const qs = new Int8Array(k)
  let kept = 0
  for (let i = 0; i < k; i++) {
    const v = quantize(x[top[i]], scale)
    if (v !== 0) {
      top[kept] = top[i]
      qs[kept] = v
      kept++
    }
  }
  return { kind: 'sparse', name, dims: [...t.shape], scale, indices: top.slice(0, kept), q: qs.slice(0, kept) }
}

function encodeTensor (name: string, t: F32Tensor, o: Required<DeltaEncodeOptions>): DeltaTensor {
  const dims = [...t.shape]
  switch (o.codec) {
    case 'f32':
      return { kind: 'dense', name, dims, values: t.values }
    case 'int8':
      return encodeInt8(name, t)
    case 'sparse':
      return encodeSparse(name, t, o.density)
    default: { // lowrank
      if (dims.length !== 2) {
        return { kind: 'dense', name, dims, values: t.values }
      }
      const f = lowRankFactors(t.values, dims[0], dims[1], o)
      return { kind: 'lowrank', name, dims, rank: f.rank, us: f.us, vt: f.vt }
    }
  }
}

function isZero (values: Float32Array): boolean {
  for (let i = 0; i < values.length; i++) {
    if (values[i] !== 0) {
      return false
    }
  }
  return true
}

/**
 * Encodes the differences of one unit (tensor name -> exact f32 difference)
 * with one codec; measures the error of what a decoder will reconstruct.
 * Tensors of 1 or 2 dims; differences must be finite.
 */
export function encodeDelta (diffs: F32Tensors, options: DeltaEncodeOptions): DeltaEncodeResult {
  const o = checkOptions(options)
  const tensors: DeltaTensor[] = []
  const reports: TensorEncodeReport[] = []
  let maxAbsError = 0
  let errorSquares = 0
  let diffSquares = 0
  let params = 0
  for (const name of [...diffs.keys()].sort()) {
    const t = diffs.get(name) as F32Tensor
    if (t.shape.length < 1 || t.shape.length > 2) {
      throw new WeightDeltaError(WeightDeltaErrorCode.SHAPE_MISMATCH, `a delta tensor has 1 or 2 dims, got [${t.shape.join(', ')}]`, { tensor: name })
    }
    for (let i = 0; i < t.values.length; i++) {
      if (!Number.isFinite(t.values[i])) {
        throw new WeightDeltaError(WeightDeltaErrorCode.NON_FINITE_INPUT, `difference [${i}] is ${t.values[i]}`, { tensor: name })
      }
    }
    if (isZero(t.values)) {
      continue
    }
    const enc = encodeTensor(name, t, o)
    const decoded = deltaTensorValues(enc)
    let max = 0
    let es = 0
    let ds = 0
    for (let i = 0; i < t.values.length; i++) {
      const x = t.values[i]
      const e = decoded[i] - x
      const a = Math.abs(e)
      if (a > max) {
        max = a
      }
      es += e * e
      ds += x * x
    }
    tensors.push(enc)
    reports.push({ name, params: t.values.length, maxAbsError: max, errorSquares: es, diffSquares: ds })
    maxAbsError = Math.max(maxAbsError, max)
    errorSquares += es
    diffSquares += ds
    params += t.values.length
  }
  return {
    delta: tensors.length === 0 ? null : { codec: o.codec, tensors },
    maxAbsError,
    relFrobError: diffSquares === 0 ? 0 : Math.sqrt(errorSquares / diffSquares),
    params,
    tensors: reports
  }
}
