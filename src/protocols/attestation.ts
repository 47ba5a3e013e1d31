/**
 * The canonical payload of an Attestation block (normative text:
 * protocols/attestation.md): a validator's per-window losses of the base
 * and the candidate on the windows it sampled.
 *
 * Payload, integers little-endian: u8 version (= 1), u8 dataset count
 * (0..MAX_ATTESTATION_DATASETS), then per dataset in the attestation's
 * order: the 32-byte dataset id (no dataset twice), u16 m
 * (0..MAX_SAMPLE_WINDOWS), then m entries of (u32 window, u64 base, u64
 * cand): window numbers in sample order, none twice; base and cand the mean
 * per-token cross-entropy of that window in micro-nats (round(loss x 1e6)).
 * No bytes follow the last dataset. Every value has a fixed width and the
 * order is the attestation's own, so a list of measurements has exactly one
 * payload. The order the fold expects: the proposal's dataset first, then the
 * model's regression datasets in params order (ascending ids); an attestation
 * that measured nothing (a structural reject) holds zero datasets.
 *
 * Imports nothing but node built-ins and other protocol modules.
 */
import { BlydError } from './errors.ts'
import { MAX_REGRESSION_DATASETS, MAX_SAMPLE_WINDOWS } from './params.ts'

/** Attestation payload format version written and accepted. */
export const ATTESTATION_VERSION = 1

/** Most datasets one attestation measures: the proposal's and every regression dataset. */
export const MAX_ATTESTATION_DATASETS = 1 + MAX_REGRESSION_DATASETS

/** Bytes of one (window, base, cand) entry. */
const ENTRY_BYTES = 4 + 8 + 8

/** Largest attestation payload (a consensus limit checked on every Attestation header). */
export const MAX_ATTESTATION_BYTES = 2 + MAX_ATTESTATION_DATASETS * (32 + 2 + MAX_SAMPLE_WINDOWS * ENTRY_BYTES)

const MAX_U64 = 0xffff_ffff_ffff_ffffn

/** One dataset's measurements: entry i is window `windows[i]` with losses `base[i]`, `cand[i]`. */
export interface DatasetMeasurement {
  datasetId: Uint8Array
  /** window numbers of the dataset, in sample order */
  windows: number[]
  /** base model loss per window, micro-nats */
  base: bigint[]
  /** candidate (base + deltas) loss per window, micro-nats */
  cand: bigint[]
}

export const AttestationCodecErrorCode = {
  /** the payload ends inside a field */
  TRUNCATED: 'ERR_ATTESTATION_PAYLOAD_TRUNCATED',
  /** bytes follow the last dataset */
  TRAILING: 'ERR_ATTESTATION_PAYLOAD_TRAILING',
  /** a format version other than ATTESTATION_VERSION */
  VERSION: 'ERR_ATTESTATION_PAYLOAD_VERSION',
  /** more datasets or windows than the limits, or lists of unequal lengths */
  COUNT: 'ERR_ATTESTATION_PAYLOAD_COUNT',
  /** a dataset named twice, or a window measured twice in one dataset */
  DUPLICATE: 'ERR_ATTESTATION_PAYLOAD_DUPLICATE',
  /** a value that is not a u32 window or a u64 loss, or an id that is not 32 bytes */
  VALUE: 'ERR_ATTESTATION_PAYLOAD_VALUE',
  /** a payload longer than MAX_ATTESTATION_BYTES */
  TOO_LARGE: 'ERR_ATTESTATION_PAYLOAD_TOO_LARGE'
} as const
// eslint-disable-next-line @typescript-eslint/no-redeclare
export type AttestationCodecErrorCode = typeof AttestationCodecErrorCode[keyof typeof AttestationCodecErrorCode]

/** An attestation payload that breaks a rule of protocols/attestation.md. */
export class AttestationCodecError extends BlydError {
  constructor (code: AttestationCodecErrorCode, message: string) {
    super(code, message)
    this.name = 'AttestationCodecError'
  }
}

function idHex (id: Uint8Array): string {
  return Buffer.from(id.buffer, id.byteOffset, id.byteLength).toString('hex')
}

function checkMeasurements (datasets: DatasetMeasurement[]): void {
  if (datasets.length > MAX_ATTESTATION_DATASETS) {
    throw new AttestationCodecError(AttestationCodecErrorCode.COUNT, `${datasets.length} datasets, at most ${MAX_ATTESTATION_DATASETS}`)
  }
  const seen = new Set<string>()
  datasets.forEach((d, k) => {
    if (!(d.datasetId instanceof Uint8Array) || d.datasetId.length !== 32) {
      throw new AttestationCodecError(AttestationCodecErrorCode.VALUE, `dataset ${k}: the id is not 32 bytes`)
    }
    const hex = idHex(d.datasetId)
    if (seen.has(hex)) {
      throw new AttestationCodecError(AttestationCodecErrorCode.DUPLICATE, `dataset ${hex} is measured twice`)
    }
    seen.add(hex)
    const m = d.windows.length
    if (m > MAX_SAMPLE_WINDOWS) {
      throw new AttestationCodecError(AttestationCodecErrorCode.COUNT, `dataset ${k}: ${m} windows, at most ${MAX_SAMPLE_WINDOWS}`)
    }
    if (d.base.length !== m || d.cand.length !== m) {
      throw new AttestationCodecError(AttestationCodecErrorCode.COUNT, `dataset ${k}: ${m} windows but ${d.base.length} base and ${d.cand.length} candidate losses`)
    }
    const windows = new Set<number>()
    for (let i = 0; i < m; i++) {
      const w = d.windows[i]
      if (!Number.isInteger(w) || w < 0 || w > 0xffffffff) {
        throw new AttestationCodecError(AttestationCodecErrorCode.VALUE, `dataset ${k}: window ${String(w)} is not a u32`)
      }
      if (windows.has(w)) {
        throw new AttestationCodecError(AttestationCodecErrorCode.DUPLICATE, `dataset ${k}: window ${w} is measured twice`)
      }
      windows.add(w)
      for (const v of [d.base[i], d.cand[i]]) {
        if (typeof v !== 'bigint' || v < 0n || v > MAX_U64) {
          throw new AttestationCodecError(AttestationCodecErrorCode.VALUE, `dataset ${k}: loss ${String(v)} at entry ${i} is not a u64`)
        }
      }
    }
  })
}

/** The canonical payload of `datasets`. Throws AttestationCodecError when a rule is broken. */
export function encodeAttestationPayload (datasets: DatasetMeasurement[]): Uint8Array {
  checkMeasurements(datasets)
  const size = 2 + datasets.reduce((n, d) => n + 32 + 2 + d.windows.length * ENTRY_BYTES, 0)
  const out = new Uint8Array(size)
  const view = new DataView(out.buffer)
  out[0] = ATTESTATION_VERSION
  out[1] = datasets.length
  let at = 2
  for (const d of datasets) {
    out.set(d.datasetId, at)
    at += 32
    view.setUint16(at, d.windows.length, true)
    at += 2
    for (let i = 0; i < d.windows.length; i++) {
      view.setUint32(at, d.windows[i], true)
      view.setBigUint64(at + 4, d.base[i], true)
      view.setBigUint64(at + 12, d.cand[i], true)
      at += ENTRY_BYTES
    }
  }
  return out
}

/** Decodes an attestation payload, checking every rule of the file comment. */
export function decodeAttestationPayload (bytes: Uint8Array): DatasetMeasurement[] {
  if (bytes.length > MAX_ATTESTATION_BYTES) {
    throw new AttestationCodecError(AttestationCodecErrorCode.TOO_LARGE, `attestation payload of ${bytes.length} bytes exceeds the limit of ${MAX_ATTESTATION_BYTES}`)
  }
  if (bytes.length < 2) {
    throw new AttestationCodecError(AttestationCodecErrorCode.TRUNCATED, `attestation payload of ${bytes.length} bytes has no header`)
  }
  if (bytes[0] !== ATTESTATION_VERSION) {
    throw new AttestationCodecError(AttestationCodecErrorCode.VERSION, `attestation payload version ${bytes[0]}, expected ${ATTESTATION_VERSION}`)
  }
  const count = bytes[1]
  if (count > MAX_ATTESTATION_DATASETS) {
    throw new AttestationCodecError(AttestationCodecErrorCode.COUNT, `${count} datasets, at most ${MAX_ATTESTATION_DATASETS}`)
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const out: DatasetMeasurement[] = []
  let at = 2
  for (let k = 0; k < count; k++) {
    if (at + 34 > bytes.length) {
      throw new AttestationCodecError(AttestationCodecErrorCode.TRUNCATED, `attestation payload ends inside the head of dataset ${k}`)
    }
    const datasetId = bytes.slice(at, at + 32)
    const m = view.getUint16(at + 32, true)
    at += 34
    if (m > MAX_SAMPLE_WINDOWS) {
      throw new AttestationCodecError(AttestationCodecErrorCode.COUNT, `dataset ${k}: ${m} windows, at most ${MAX_SAMPLE_WINDOWS}`)
    }
    if (at + m * ENTRY_BYTES > bytes.length) {
      throw new AttestationCodecError(AttestationCodecErrorCode.TRUNCATED, `attestation payload ends inside the ${m} windows of dataset ${k}`)
    }
    const windows: number[] = []
    const base: bigint[] = []
    const cand: bigint[] = []
    for (let i = 0; i < m; i++) {
      windows.push(view.getUint32(at, true))
      base.push(view.getBigUint64(at + 4, true))
      cand.push(view.getBigUint64(at + 12, true))
      at += ENTRY_BYTES
    }
    out.push({ datasetId, windows, base, cand })
  }
  if (at !== bytes.length) {
    throw new AttestationCodecError(AttestationCodecErrorCode.TRAILING, `${bytes.length - at} bytes follow the last dataset of the attestation payload`)
  }
  checkMeasurements(out)
  return out
}
