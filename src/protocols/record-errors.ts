/**
 * The error class and codes of node records, their announcement and the
 * swarm view. It lives in protocols/ because the node-record codec
 * (node-record.ts) throws it; src/net/records/errors.ts re-exports it.
 */
import { BlydError } from './errors.ts'

/** Stable codes of node-record, announcement and discovery errors. */
export const RecordErrorCode = {
  /** malformed or non-canonical node record / envelope bytes */
  ENCODING: 'ERR_RECORD_ENCODING',
  /** the signature does not verify against the record's peer id */
  SIGNATURE: 'ERR_RECORD_SIGNATURE',
  /** the record names another peer or model than its DHT key (or than expected) */
  MISMATCH: 'ERR_RECORD_MISMATCH',
  /** the record expired (beyond the allowed clock skew) */
  EXPIRED: 'ERR_RECORD_EXPIRED',
  /** an older record (lower seq) than one this node already accepted for the same key: a replay */
  STALE: 'ERR_RECORD_STALE',
  /** a field is out of its sane range (span, expiry too far ahead, backend name...) */
  RANGE: 'ERR_RECORD_RANGE',
  /** a DHT key that is not a known `/bly/...` key */
  BAD_KEY: 'ERR_RECORD_BAD_KEY',
  /** the peer id is not an Ed25519 id carrying its public key */
  UNSUPPORTED_PEER: 'ERR_RECORD_UNSUPPORTED_PEER',
  /** a record fetch got nothing (peer does not announce the model, or no DHT value) */
  NOT_FOUND: 'ERR_RECORD_NOT_FOUND',
  /** bad argument from a local caller */
  INVALID_ARGUMENT: 'ERR_RECORD_INVALID_ARGUMENT',
  /** the service is not started */
  NOT_STARTED: 'ERR_RECORD_NOT_STARTED'
} as const
// eslint-disable-next-line @typescript-eslint/no-redeclare
export type RecordErrorCode = typeof RecordErrorCode[keyof typeof RecordErrorCode]

/** An error node records, the announcer or the swarm view raise on purpose. */
export class RecordError extends BlydError {
  constructor (code: RecordErrorCode, message: string, options?: ErrorOptions) {
    super(code, message, options)
    this.name = 'RecordError'
  }
}
