/**
 * The measured gain of an accepted proposal in micro-nats (docs/ledger.md):
 * per counted accepting attestation, the mean per-window loss decrease on
 * the proposal's dataset, floor(sum(base_i - cand_i) / m); the lower median
 * over those attestations; 0 when negative or when there is none. Integers
 * only: the proposer's reward is this times rewardPerMicroNat.
 */
import { floorDiv } from '../pol/rule.ts'
import type { DatasetMeasurement } from '../../protocols/attestation.ts'

/** floor(mean(base_i - cand_i)) of one dataset's pairs; 0 for no pairs. */
export function meanGainMicroNats (m: Pick<DatasetMeasurement, 'base' | 'cand'>): bigint {
  const n = Math.min(m.base.length, m.cand.length)
  if (n === 0) {
    return 0n
  }
  let s1 = 0n
  for (let i = 0; i < n; i++) {
    s1 += m.base[i] - m.cand[i]
  }
  return floorDiv(s1, BigInt(n))
}

/** The lower median of `gains` (the element at floor((k - 1) / 2) ascending), at least 0; 0 for none. */
export function lowerMedian (gains: readonly bigint[]): bigint {
  if (gains.length === 0) {
    return 0n
  }
  const sorted = [...gains].sort((a, b) => Number(a > b) - Number(a < b))
  const median = sorted[Math.floor((sorted.length - 1) / 2)]
  return median > 0n ? median : 0n
}
