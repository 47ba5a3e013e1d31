/**
 * The canonical payload of a Motion block (normative text:
 * protocols/motion.md), by the header's `kind`: for validators.add and
 * validators.remove, the 32-byte Ed25519 public key; for params.set, a
 * canonical params body (protocols/params.md) holding at least one key: the
 * keys it holds are set, the others are left.
 *
 * Imports nothing but node built-ins and other protocol modules.
 */
import { BlydError } from './errors.ts'
import { MotionKind, isMotionKind } from './learning-blocks.ts'
import { MAX_PARAMS_BYTES, decodeParams, encodeParams } from './params.ts'
import type { ParamsBody } from './params.ts'

/** Ed25519 public keys are 32 bytes. */
export const VALIDATOR_KEY_LENGTH = 32

/** Largest motion payload (a consensus limit checked on every Motion header). */
export const MAX_MOTION_BYTES = Math.max(VALIDATOR_KEY_LENGTH, MAX_PARAMS_BYTES)

/** What a motion asks for. */
export type MotionBody =
  | { kind: typeof MotionKind.ADD_VALIDATOR, key: Uint8Array }
  | { kind: typeof MotionKind.REMOVE_VALIDATOR, key: Uint8Array }
  | { kind: typeof MotionKind.SET_PARAMS, params: ParamsBody }

export const MotionCodecErrorCode = {
  /** a kind other than validators.add, validators.remove, params.set */
  KIND: 'ERR_MOTION_PAYLOAD_KIND',
  /** a validators motion whose payload is not a 32-byte key */
  KEY: 'ERR_MOTION_PAYLOAD_KEY',
  /** a params.set payload that is not a canonical params body (the cause says why) */
  PARAMS: 'ERR_MOTION_PAYLOAD_PARAMS',
  /** a params.set payload holding no key */
  EMPTY: 'ERR_MOTION_PAYLOAD_EMPTY'
} as const
// eslint-disable-next-line @typescript-eslint/no-redeclare
export type MotionCodecErrorCode = typeof MotionCodecErrorCode[keyof typeof MotionCodecErrorCode]

/** A motion payload that breaks a rule of protocols/motion.md. */
export class MotionCodecError extends BlydError {
  constructor (code: MotionCodecErrorCode, message: string, options?: ErrorOptions) {
    super(code, message, options)
    this.name = 'MotionCodecError'
  }
}

function definedKeys (params: ParamsBody): number {
  return Object.values(params).filter(v => v !== undefined).length
}

/** The canonical payload of `body`. Throws MotionCodecError. */
export function encodeMotionPayload (body: MotionBody): Uint8Array {
  if (!isMotionKind(body.kind)) {
    throw new MotionCodecError(MotionCodecErrorCode.KIND, `unknown motion kind ${JSON.stringify(body.kind)}`)
  }
  if (body.kind === MotionKind.SET_PARAMS) {
    if (definedKeys(body.params) === 0) {
      throw new MotionCodecError(MotionCodecErrorCode.EMPTY, 'a params.set motion sets at least one key')
    }
    try {
      return encodeParams(body.params)
    } catch (err: any) {
      throw new MotionCodecError(MotionCodecErrorCode.PARAMS, `params.set: ${String(err?.message ?? err)}`, { cause: err })
    }
  }
  if (!(body.key instanceof Uint8Array) || body.key.length !== VALIDATOR_KEY_LENGTH) {
    throw new MotionCodecError(MotionCodecErrorCode.KEY, `a ${body.kind} motion names a ${VALIDATOR_KEY_LENGTH}-byte Ed25519 public key`)
  }
  return Uint8Array.from(body.key)
}

/** Decodes the payload of a motion of `kind`, checking every rule. */
export function decodeMotionPayload (kind: string, bytes: Uint8Array): MotionBody {
  if (!isMotionKind(kind)) {
    throw new MotionCodecError(MotionCodecErrorCode.KIND, `unknown motion kind ${JSON.stringify(kind)}`)
  }
  if (kind === MotionKind.SET_PARAMS) {
    let params: ParamsBody
    try {
      params = decodeParams(bytes)
    } catch (err: any) {
      throw new MotionCodecError(MotionCodecErrorCode.PARAMS, `params.set: ${String(err?.message ?? err)}`, { cause: err })
    }
    if (definedKeys(params) === 0) {
      throw new MotionCodecError(MotionCodecErrorCode.EMPTY, 'a params.set motion sets at least one key')
    }
    return { kind, params }
  }
  if (bytes.length !== VALIDATOR_KEY_LENGTH) {
    throw new MotionCodecError(MotionCodecErrorCode.KEY, `a ${kind} payload is a ${VALIDATOR_KEY_LENGTH}-byte key, not ${bytes.length} bytes`)
  }
  return { kind, key: bytes.slice() }
}
