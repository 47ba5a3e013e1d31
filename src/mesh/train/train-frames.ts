/**
 * The /bly/train/1.0.0 codec as a FrameStream codec: failures are
 * TrainProtocolErrors (a frame that does not decode or a bad length prefix
 * ERR_PTRAIN_BAD_FRAME, a write on a closed stream ERR_PTRAIN_STREAM_CLOSED).
 */
import { TrainProtocolError, TrainProtocolErrorCode } from '../../protocols/train-errors.ts'
import { decodeTrainFrame, encodeTrainFrame } from '../../protocols/train.ts'
import type { ChannelErrors } from '../../net/frame-reader.ts'
import type { FrameCodec } from '../../net/frame-stream.ts'
import type { TrainFrame } from '../../protocols/train.ts'

export const trainFrameErrors: ChannelErrors = {
  badFrame: (message, cause) => new TrainProtocolError(TrainProtocolErrorCode.BAD_FRAME, message, cause != null ? { cause } : {}),
  budgetFull: (message) => new TrainProtocolError(TrainProtocolErrorCode.BAD_FRAME, message),
  closed: (message) => new TrainProtocolError(TrainProtocolErrorCode.STREAM_CLOSED, message),
  owns: (err) => err instanceof TrainProtocolError
}

export const trainFrameCodec: FrameCodec<TrainFrame> = {
  name: 'train',
  encode: encodeTrainFrame,
  decode: decodeTrainFrame,
  errors: trainFrameErrors
}

/** True when every value is finite. */
export function allFinite (a: ArrayLike<number>): boolean {
  for (let i = 0; i < a.length; i++) {
    if (!Number.isFinite(a[i])) {
      return false
    }
  }
  return true
}
