/**
 * The acceptance rule of Proof-of-Learning (protocols/attestation.md, "The
 * rule"), in integers: losses in micro-nats, ratios in parts per million,
 * the paired t test squared so no root and no float is ever compared. The
 * validator service applies it to its own measurements to choose its
 * verdict; the fold applies the same function to every attestation's
 * numbers (an attestation's verdict field is not trusted).
 *
 * For m pairs (base_i, cand_i) of the proposal's dataset: d_i = base_i -
 * cand_i, S1 = sum d_i, S2 = sum d_i^2, B = sum base_i. It passes iff
 * m >= 2; gain_ppm = floor(S1 x 1e6 / B) >= minGainPpm (B > 0); S1 > 0 and
 * S1^2 x (m - 1) x 1e6 >= tEff^2 x (m x S2 - S1^2), where tEff =
 * ceil(tCritMilli x T95[m - 1] / 1645) scales the parameter (a normal
 * quantile) by Student's t over the normal one-sided 95% quantile at m - 1
 * degrees of freedom (studentScaleMilli), so few windows need a larger
 * statistic; and for every
 * regression dataset (sum cand - sum base) x 1e6 <= maxRegressionPpm x
 * sum base. The first condition that fails names the reason.
 */
import { Reason } from '../../protocols/learning-blocks.ts'
import type { Params } from '../../protocols/params.ts'

const PPM = 1_000_000n

/**
 * Student's t one-sided 95% quantile x 1000 for df = 1..30 (index df - 1),
 * then a step table for larger df (the value at the step's lower end, so
 * never below the true quantile), reaching the normal 1645 past df 1000.
 */
const T95_MILLI = [6314, 2920, 2353, 2132, 2015, 1943, 1895, 1860, 1833, 1812, 1796, 1782, 1771, 1761, 1753, 1746, 1740, 1734, 1729, 1725, 1721, 1717, 1714, 1711, 1708, 1706, 1703, 1701, 1699, 1697]
const T95_STEPS_MILLI: ReadonlyArray<readonly [number, number]> = [[40, 1697], [60, 1684], [120, 1671], [1000, 1658]]
const NORMAL_95_MILLI = 1645n

/** Student's t over the normal one-sided 95% quantile at `df` degrees of freedom, as a numerator over 1645. */
export function studentScaleMilli (df: number): bigint {
  if (df <= T95_MILLI.length) {
    return BigInt(T95_MILLI[Math.max(1, df) - 1])
  }
  for (const [upTo, value] of T95_STEPS_MILLI) {
    if (df <= upTo) {
      return BigInt(value)
    }
  }
  return NORMAL_95_MILLI
}

/** The t threshold (x1000) for m pairs: tCritMilli scaled by studentScaleMilli(m - 1) / 1645, rounded up. */
export function tThresholdMilli (tCritMilli: number, m: number): bigint {
  const scaled = BigInt(tCritMilli) * studentScaleMilli(m - 1)
  return (scaled + NORMAL_95_MILLI - 1n) / NORMAL_95_MILLI
}

/** One dataset's paired losses in micro-nats: entry i of both lists is window i of the sample. */
export interface PairedLosses {
  base: readonly bigint[]
  cand: readonly bigint[]
}

/** The thresholds the rule reads from a model's params. */
export type RuleParams = Pick<Params, 'minGainPpm' | 'maxRegressionPpm' | 'tCritMilli'>

export type RuleReason = typeof Reason.OK | typeof Reason.TOO_FEW_WINDOWS | typeof Reason.INSUFFICIENT_GAIN | typeof Reason.NOT_SIGNIFICANT | typeof Reason.REGRESSION

/** The rule's verdict with the integers it was decided on. */
export interface RuleResult {
  pass: boolean
  /** `ok`, or the first condition that failed */
  reason: RuleReason
  /** pairs of the proposal's dataset */
  m: number
  /** sum of base losses (B) and of candidate losses, micro-nats */
  baseSum: bigint
  candSum: bigint
  /** S1 = sum (base_i - cand_i) */
  s1: bigint
  /** S2 = sum (base_i - cand_i)^2 */
  s2: bigint
  /** floor(S1 x 1e6 / B); null when B = 0 */
  gainPpm: bigint | null
  /** per regression dataset, in order: floor((sum cand - sum base) x 1e6 / sum base) (null when sum base = 0), and whether it is within maxRegressionPpm */
  regressions: Array<{ increasePpm: bigint | null, pass: boolean }>
}

/** floor(a / b) for b > 0 (BigInt division truncates toward zero). */
export function floorDiv (a: bigint, b: bigint): bigint {
  const q = a / b
  return (a % b !== 0n && a < 0n) ? q - 1n : q
}

function sum (values: readonly bigint[]): bigint {
  let s = 0n
  for (const v of values) {
    s += v
  }
  return s
}

/**
 * The rule of the file comment on `main` (the proposal's dataset) and
 * `regressions` (the regression datasets, in params order). Pure and
 * deterministic; throws RangeError when a dataset's lists differ in length.
 */
export function rule (main: PairedLosses, regressions: readonly PairedLosses[], params: RuleParams): RuleResult {
  const m = main.base.length
  if (main.cand.length !== m) {
    throw new RangeError(`${m} base losses but ${main.cand.length} candidate losses`)
  }
  let s1 = 0n
  let s2 = 0n
  for (let i = 0; i < m; i++) {
    const d = main.base[i] - main.cand[i]
    s1 += d
    s2 += d * d
  }
  const baseSum = sum(main.base)
  const candSum = sum(main.cand)
  const gainPpm = baseSum > 0n ? floorDiv(s1 * PPM, baseSum) : null
  const maxRegression = BigInt(params.maxRegressionPpm)
  const regressionResults = regressions.map(r => {
    if (r.cand.length !== r.base.length) {
      throw new RangeError(`${r.base.length} base losses but ${r.cand.length} candidate losses on a regression dataset`)
    }
    const b = sum(r.base)
    const c = sum(r.cand)
    return { increasePpm: b > 0n ? floorDiv((c - b) * PPM, b) : null, pass: (c - b) * PPM <= maxRegression * b }
  })
  const result = (pass: boolean, reason: RuleReason): RuleResult => ({ pass, reason, m, baseSum, candSum, s1, s2, gainPpm, regressions: regressionResults })
  if (m < 2) {
    return result(false, Reason.TOO_FEW_WINDOWS)
  }
  if (gainPpm == null || gainPpm < BigInt(params.minGainPpm)) {
    return result(false, Reason.INSUFFICIENT_GAIN)
  }
  const t = tThresholdMilli(params.tCritMilli, m)
  const mm = BigInt(m)
  if (s1 <= 0n || s1 * s1 * (mm - 1n) * PPM < t * t * (mm * s2 - s1 * s1)) {
    return result(false, Reason.NOT_SIGNIFICANT)
  }
  if (regressionResults.some(r => !r.pass)) {
    return result(false, Reason.REGRESSION)
  }
  return result(true, Reason.OK)
}

/**
 * The paired t statistic of a result, for display only (a float; the rule
 * compares its square in integers): S1 / sqrt((m S2 - S1^2) / (m - 1)).
 * Infinity when every difference is equal and positive; null when m < 2.
 */
export function tStatistic (r: Pick<RuleResult, 'm' | 's1' | 's2'>): number | null {
  if (r.m < 2) {
    return null
  }
  const spread = BigInt(r.m) * r.s2 - r.s1 * r.s1
  if (spread === 0n) {
    if (r.s1 > 0n) {
      return Infinity
    }
    return r.s1 < 0n ? -Infinity : 0
  }
  return Number(r.s1) / Math.sqrt(Number(spread) / (r.m - 1))
}

/** Attestations needed from a validator set of `n`: ceil(n x quorumNum / quorumDen). */
export function quorum (n: number, params: Pick<Params, 'quorumNum' | 'quorumDen'>): number {
  return Math.floor((n * params.quorumNum + params.quorumDen - 1) / params.quorumDen)
}

/**
 * A measured mean loss (nats, a float from the model) as micro-nats:
 * round(loss x 1e6). Throws RangeError on NaN, ±Inf or a negative loss (a
 * cross-entropy is >= 0): a validator never attests numbers it cannot write.
 */
export function toMicroNats (loss: number): bigint {
  if (!Number.isFinite(loss) || loss < 0) {
    throw new RangeError(`a loss must be a finite number >= 0 (got ${loss})`)
  }
  return BigInt(Math.round(loss * 1e6))
}
