/**
 * The /bly/blocks/1.0.0 codec for FrameStream: a block-sync frame behind its
 * unsigned-varint length prefix, failures as NetErrors (a frame that does not
 * decode: ERR_SYNC_BAD_MESSAGE; a write on a closed stream:
 * ERR_SYNC_STREAM_CLOSED).
 */
import { decodeSyncFrame, encodeSyncFrame } from '../protocols/block-sync.ts'
import { PbWriter } from '../protocols/pb-wire.ts'
import { NetError, NetErrorCode } from './errors.ts'
import type { FrameCodec } from './frame-stream.ts'
import type { SyncFrame } from '../protocols/block-sync.ts'

const badMessage = (message: string, cause?: unknown): NetError =>
  new NetError(NetErrorCode.BAD_MESSAGE, `bad block-sync frame: ${message}`, cause != null ? { cause } : undefined)

export const syncFrameCodec: FrameCodec<SyncFrame> = {
  name: 'block-sync',
  encode (frame) {
    const payload = encodeSyncFrame(frame)
    const head = new PbWriter(8).uint32(payload.length).finish()
    return { head, payload, byteLength: head.length + payload.length }
  },
  decode: decodeSyncFrame,
  errors: {
    badFrame: badMessage,
    // block-sync streams have no partial-frame budget: their frames are bounded by maxFrameBytes alone
    budgetFull: badMessage,
    closed: (message) => new NetError(NetErrorCode.STREAM_CLOSED, message),
    owns: (err) => err instanceof NetError
  }
}
