/**
 * A model's parameters on chain (normative text: protocols/params.md): the
 * canonical params body a Params block (the genesis parameters) and a
 * `params.set` Motion carry.
 *
 * Body, integers little-endian: u8 version (= 1), u8 entry count, then the
 * entries with keys strictly ascending (bytewise): u8 key length, the key
 * (ASCII, one of PARAM_KEYS: unknown keys are refused), the value by the
 * key's kind: `uint` is a u64 within the key's range; `ids` is a u8 count n
 * then n 32-byte ids, strictly ascending. No bytes follow the last entry.
 * Every value has one encoding and the keys one order, so a list of entries
 * has exactly one body.
 *
 * A body may hold any subset of the keys: a Params block's absent keys take
 * their defaults (src/learning/params-defaults.ts), a `params.set` motion
 * sets the keys it holds and leaves the others. `resolveParams` overlays a
 * body on complete params and checks the combination rules.
 *
 * Imports nothing but node built-ins and other protocol modules.
 */
import { BlydError } from './errors.ts'

/** Params body format version written and accepted. */
export const PARAMS_VERSION = 1

/** The keys of the params table. */
export const ParamKey = {
  QUORUM_NUM: 'quorumNum',
  QUORUM_DEN: 'quorumDen',
  MIN_GAIN_PPM: 'minGainPpm',
  MAX_REGRESSION_PPM: 'maxRegressionPpm',
  T_CRIT_MILLI: 'tCritMilli',
  SAMPLE_WINDOWS: 'sampleWindows',
  REGRESSION_DATASETS: 'regressionDatasets',
  /** the ledger (protocols/ledger.md): base units minted to the importer by the genesis params */
  GENESIS_ALLOCATION: 'genesisAllocation',
  /** base units a client pays a stage per decoder layer per position */
  PRICE_LAYER_POSITION: 'priceLayerPosition',
  /** base units minted to an accepted proposal's author per micro-nat of measured gain */
  REWARD_PER_MICRO_NAT: 'rewardPerMicroNat',
  /** base units per validator whose counted attestation matched a proposal's outcome */
  VALIDATOR_REWARD: 'validatorReward'
} as const
// eslint-disable-next-line @typescript-eslint/no-redeclare
export type ParamKey = typeof ParamKey[keyof typeof ParamKey]

/** Complete parameters of a model: every key has a value. */
export interface Params {
  /** quorum: ceil(n x quorumNum / quorumDen) of a validator set of n */
  quorumNum: number
  quorumDen: number
  /** relative eval-loss gain needed, parts per million */
  minGainPpm: number
  /** largest relative loss increase allowed on each regression dataset, ppm */
  maxRegressionPpm: number
  /** one-sided paired t statistic needed, x1000 */
  tCritMilli: number
  /** eval windows a validator samples per dataset */
  sampleWindows: number
  /** Dataset block ids checked for regressions, strictly ascending */
  regressionDatasets: Uint8Array[]
  /** ledger: base units minted to the importer (read from the genesis params only) */
  genesisAllocation: number
  /** ledger: base units per decoder layer per position a client pays a stage */
  priceLayerPosition: number
  /** ledger: base units minted to an accepted proposal's author per micro-nat of gain */
  rewardPerMicroNat: number
  /** ledger: base units per validator whose counted attestation matched the outcome */
  validatorReward: number
}

/** A params body: any subset of the keys. */
export type ParamsBody = Partial<Params>

/** Most regression datasets a model may name. */
export const MAX_REGRESSION_DATASETS = 16

/** Most eval windows a validator may sample per dataset. */
export const MAX_SAMPLE_WINDOWS = 4096

/**
 * Largest value of a ledger amount key: amounts are u64 on the wire, and a
 * params value is a JS number in code, so the keys stop at 2^53 - 1 (the
 * ledger computes in bigint from there).
 */
export const MAX_PARAM_AMOUNT = Number.MAX_SAFE_INTEGER

interface UintSpec { kind: 'uint', min: number, max: number }
interface IdsSpec { kind: 'ids', max: number }

/** Every key with its kind and range (consensus bounds, not defaults). */
export const PARAM_KEYS: Record<ParamKey, UintSpec | IdsSpec> = {
  [ParamKey.QUORUM_NUM]: { kind: 'uint', min: 1, max: 1000 },
  [ParamKey.QUORUM_DEN]: { kind: 'uint', min: 1, max: 1000 },
  [ParamKey.MIN_GAIN_PPM]: { kind: 'uint', min: 0, max: 1_000_000 },
  [ParamKey.MAX_REGRESSION_PPM]: { kind: 'uint', min: 0, max: 1_000_000 },
  [ParamKey.T_CRIT_MILLI]: { kind: 'uint', min: 0, max: 100_000 },
  [ParamKey.SAMPLE_WINDOWS]: { kind: 'uint', min: 2, max: MAX_SAMPLE_WINDOWS },
  [ParamKey.REGRESSION_DATASETS]: { kind: 'ids', max: MAX_REGRESSION_DATASETS },
  [ParamKey.GENESIS_ALLOCATION]: { kind: 'uint', min: 0, max: MAX_PARAM_AMOUNT },
  [ParamKey.PRICE_LAYER_POSITION]: { kind: 'uint', min: 0, max: MAX_PARAM_AMOUNT },
  [ParamKey.REWARD_PER_MICRO_NAT]: { kind: 'uint', min: 0, max: MAX_PARAM_AMOUNT },
  [ParamKey.VALIDATOR_REWARD]: { kind: 'uint', min: 0, max: MAX_PARAM_AMOUNT }
}

/** The keys in canonical (bytewise ascending) order. */
export const PARAM_KEY_ORDER: ParamKey[] = (Object.keys(PARAM_KEYS) as ParamKey[]).sort(compareAscii)

/** Largest params body: every key at its widest (a consensus limit on Params and params.set payloads). */
export const MAX_PARAMS_BYTES = 2 + PARAM_KEY_ORDER.reduce((n, key) => {
  const spec = PARAM_KEYS[key]
  return n + 1 + key.length + (spec.kind === 'uint' ? 8 : 1 + 32 * spec.max)
}, 0)

export const ParamsErrorCode = {
  /** the body ends inside an entry */
  TRUNCATED: 'ERR_PARAMS_TRUNCATED',
  /** bytes follow the last entry */
  TRAILING: 'ERR_PARAMS_TRAILING',
  /** a body longer than MAX_PARAMS_BYTES */
  TOO_LARGE: 'ERR_PARAMS_TOO_LARGE',
  /** a format version other than PARAMS_VERSION */
  VERSION: 'ERR_PARAMS_VERSION',
  /** a key that is not in the params table */
  UNKNOWN_KEY: 'ERR_PARAMS_UNKNOWN_KEY',
  /** keys not strictly ascending (out of order or repeated) */
  KEY_ORDER: 'ERR_PARAMS_KEY_ORDER',
  /** a value outside its key's range, or not an integer */
  RANGE: 'ERR_PARAMS_RANGE',
  /** dataset ids not strictly ascending, or not 32 bytes */
  DATASET_ORDER: 'ERR_PARAMS_DATASET_ORDER',
  /** quorumNum / quorumDen not in (1/2, 1] */
  QUORUM: 'ERR_PARAMS_QUORUM'
} as const
// eslint-disable-next-line @typescript-eslint/no-redeclare
export type ParamsErrorCode = typeof ParamsErrorCode[keyof typeof ParamsErrorCode]

/** A params body or value that breaks a rule of protocols/params.md. */
export class ParamsError extends BlydError {
  constructor (code: ParamsErrorCode, message: string) {
    super(code, message)
    this.name = 'ParamsError'
  }
}

function compareAscii (a: string, b: string): number {
  if (a === b) {
    return 0
  }
  return a < b ? -1 : 1
}

function compareBytes (a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) {
    if (a[i] !== b[i]) {
      return a[i] - b[i]
    }
  }
  return a.length - b.length
}

function isParamKey (key: string): key is ParamKey {
  return Object.hasOwn(PARAM_KEYS, key)
}

function checkUint (key: string, spec: UintSpec, value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < spec.min || value > spec.max) {
    throw new ParamsError(ParamsErrorCode.RANGE, `'${key}' must be an integer from ${spec.min} to ${spec.max} (got ${String(value)})`)
  }
  return value
}

function checkIds (key: string, spec: IdsSpec, value: unknown): Uint8Array[] {
  if (!Array.isArray(value)) {
    throw new ParamsError(ParamsErrorCode.RANGE, `'${key}' must be a list of 32-byte dataset ids`)
  }
  if (value.length > spec.max) {
    throw new ParamsError(ParamsErrorCode.RANGE, `'${key}' holds ${value.length} ids, at most ${spec.max}`)
  }
  value.forEach((id, i) => {
    if (!(id instanceof Uint8Array) || id.length !== 32) {
      throw new ParamsError(ParamsErrorCode.DATASET_ORDER, `'${key}' entry ${i} is not a 32-byte id`)
    }
    if (i > 0 && compareBytes(value[i - 1], id) >= 0) {
      throw new ParamsError(ParamsErrorCode.DATASET_ORDER, `'${key}' ids must be strictly ascending (entry ${i})`)
    }
  })
  return value
}

/** Dataset ids sorted ascending, duplicates dropped (what a body's id list must be). */
export function canonicalDatasetIds (ids: Uint8Array[]): Uint8Array[] {
  const sorted = [...ids].sort(compareBytes)
  return sorted.filter((id, i) => i === 0 || compareBytes(sorted[i - 1], id) !== 0)
}

/** The canonical body of `body` (its defined keys). Throws ParamsError on an unknown key or a value out of range. */
export function encodeParams (body: ParamsBody): Uint8Array {
  const entries: Array<[ParamKey, unknown]> = []
  for (const [key, value] of Object.entries(body)) {
    if (value === undefined) {
      continue
    }
    if (!isParamKey(key)) {
      throw new ParamsError(ParamsErrorCode.UNKNOWN_KEY, `unknown params key '${key}'`)
    }
    entries.push([key, value])
  }
  entries.sort((a, b) => compareAscii(a[0], b[0]))
  const parts: number[] = [PARAMS_VERSION, entries.length]
  for (const [key, value] of entries) {
    const spec = PARAM_KEYS[key]
    parts.push(key.length, ...Buffer.from(key, 'ascii'))
    if (spec.kind === 'uint') {
      const u = Buffer.alloc(8)
      u.writeBigUInt64LE(BigInt(checkUint(key, spec, value)))
      parts.push(...u)
    } else {
      const ids = checkIds(key, spec, value)
      parts.push(ids.length)
      for (const id of ids) {
        parts.push(...id)
      }
    }
  }
  return Uint8Array.from(parts)
}

/**
 * Decodes a params body, checking every rule of the file comment: version,
 * no truncation, known keys strictly ascending, values in range, ids
 * strictly ascending, no trailing bytes. Returns the keys it holds.
 */
export function decodeParams (bytes: Uint8Array): ParamsBody {
  if (bytes.length > MAX_PARAMS_BYTES) {
    throw new ParamsError(ParamsErrorCode.TOO_LARGE, `params body of ${bytes.length} bytes exceeds the limit of ${MAX_PARAMS_BYTES}`)
  }
  if (bytes.length < 2) {
    throw new ParamsError(ParamsErrorCode.TRUNCATED, `params body of ${bytes.length} bytes has no header`)
  }
  if (bytes[0] !== PARAMS_VERSION) {
    throw new ParamsError(ParamsErrorCode.VERSION, `params body version ${bytes[0]}, expected ${PARAMS_VERSION}`)
  }
  const count = bytes[1]
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const body: Record<string, unknown> = {}
  let at = 2
  let previous: string | undefined
  const need = (n: number, what: string): void => {
    if (at + n > bytes.length) {
      throw new ParamsError(ParamsErrorCode.TRUNCATED, `params body ends inside ${what}`)
    }
  }
  for (let e = 0; e < count; e++) {
    need(1, `the key length of entry ${e}`)
    const keyLen = bytes[at++]
    need(keyLen, `the key of entry ${e}`)
    const keyBytes = bytes.subarray(at, at + keyLen)
    at += keyLen
    const key = String.fromCharCode(...keyBytes)
    if (!isParamKey(key)) {
      throw new ParamsError(ParamsErrorCode.UNKNOWN_KEY, `unknown params key ${JSON.stringify(key)} (entry ${e})`)
    }
    if (previous != null && compareAscii(previous, key) >= 0) {
      throw new ParamsError(ParamsErrorCode.KEY_ORDER, `params key '${key}' follows '${previous}': keys must be strictly ascending`)
    }
    previous = key
    const spec = PARAM_KEYS[key]
    if (spec.kind === 'uint') {
      need(8, `the value of '${key}'`)
      const value = view.getBigUint64(at, true)
      at += 8
      if (value < BigInt(spec.min) || value > BigInt(spec.max)) {
        throw new ParamsError(ParamsErrorCode.RANGE, `'${key}' is ${value}, not in ${spec.min}..${spec.max}`)
      }
      body[key] = Number(value)
    } else {
      need(1, `the id count of '${key}'`)
      const n = bytes[at++]
      if (n > spec.max) {
        throw new ParamsError(ParamsErrorCode.RANGE, `'${key}' holds ${n} ids, at most ${spec.max}`)
      }
      need(32 * n, `the ids of '${key}'`)
      const ids: Uint8Array[] = []
      for (let i = 0; i < n; i++) {
        ids.push(bytes.slice(at, at + 32))
        at += 32
      }
      body[key] = checkIds(key, spec, ids)
    }
  }
  if (at !== bytes.length) {
    throw new ParamsError(ParamsErrorCode.TRAILING, `${bytes.length - at} bytes follow the last params entry`)
  }
  return body as ParamsBody
}

/**
 * `base` with the keys of `body` set, checked: every value in range and
 * quorumNum / quorumDen in (1/2, 1] (so any two quorums of one set share a
 * member, and a quorum never exceeds the set). Throws ParamsError.
 */
export function resolveParams (base: Params, body: ParamsBody): Params {
  const out: Params = { ...base, regressionDatasets: [...base.regressionDatasets] }
  for (const [key, value] of Object.entries(body)) {
    if (value === undefined) {
      continue
    }
    if (!isParamKey(key)) {
      throw new ParamsError(ParamsErrorCode.UNKNOWN_KEY, `unknown params key '${key}'`)
    }
    const spec = PARAM_KEYS[key]
    if (spec.kind === 'uint') {
      (out as unknown as Record<string, number>)[key] = checkUint(key, spec, value)
    } else {
      out.regressionDatasets = [...checkIds(key, spec, value)]
    }
  }
  for (const key of PARAM_KEY_ORDER) {
    const spec = PARAM_KEYS[key]
    if (spec.kind === 'uint') {
      checkUint(key, spec, out[key])
    } else {
      checkIds(key, spec, out[key])
    }
  }
  if (out.quorumNum > out.quorumDen || 2 * out.quorumNum <= out.quorumDen) {
    throw new ParamsError(ParamsErrorCode.QUORUM, `quorum ${out.quorumNum}/${out.quorumDen} must be more than 1/2 and at most 1`)
  }
  return out
}
