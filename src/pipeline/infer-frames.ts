/**
 * The /bly/infer/1.0.0 codec, one for both transports: a libp2p stream
 * (net/frame-stream.ts FrameStream) and a direct TLS channel
 * (direct-channel/direct-channel.ts). The length prefix and fixed header go
 * first, the tensor bytes after them as the caller's memory (not copied);
 * failures are PipelineErrors: a frame that does not decode or a bad length
 * prefix ERR_INFER_BAD_FRAME, a partial frame past the stage's
 * PartialFrameBudget ERR_INFER_PARTIAL_FRAMES_FULL, a write on a closed
 * channel ERR_INFER_STREAM_CLOSED.
 */
import { decodeInferFrame, encodeInferFrame } from '../protocols/infer.ts'
import { PipelineError, PipelineErrorCode } from './errors.ts'
import type { ChannelErrors } from '../net/frame-reader.ts'
import type { FrameCodec } from '../net/frame-stream.ts'
import type { InferFrame } from '../protocols/infer.ts'

export const inferFrameErrors: ChannelErrors = {
  badFrame: (message, cause) => new PipelineError(PipelineErrorCode.BAD_FRAME, message, cause != null ? { cause } : {}),
  budgetFull: (message) => new PipelineError(PipelineErrorCode.PARTIAL_FRAMES_FULL, message),
  closed: (message) => new PipelineError(PipelineErrorCode.STREAM_CLOSED, message),
  owns: (err) => err instanceof PipelineError
}

export const inferFrameCodec: FrameCodec<InferFrame> = {
  name: 'infer',
  encode: encodeInferFrame,
  decode: decodeInferFrame,
  errors: inferFrameErrors
}
