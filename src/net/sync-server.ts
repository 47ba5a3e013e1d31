/**
 * The answering side of /bly/blocks/1.0.0: serves tips, headers, payload
 * status and chunks from the chain store on one inbound stream. At most
 * `maxInflight` requests per stream are worked on at once; more are answered
 * BUSY at once so the requester can back off or ask another peer.
 */
import { ChainError, ChainErrorCode } from '../chain/errors.ts'
import { HaveStatus, MAX_IDS_PER_MESSAGE, SyncErrorCode, isSyncRequest } from '../protocols/block-sync.ts'
import { FrameStream } from './frame-stream.ts'
import { syncFrameCodec } from './sync-frames.ts'
import type { ChainStoreApi } from '../chain/types.ts'
import type { SyncFrame, SyncRequest, SyncResponse } from '../protocols/block-sync.ts'
import type { BlyLogger } from '../protocols/logger.ts'
import type { Stream } from '@libp2p/interface'

export interface SyncServerInit {
  store: ChainStoreApi
  maxMessageBytes: number
  idleTimeoutMs: number
  maxInflight: number
  /** the block exchange's logger, scoped */
  log: BlyLogger
  /** counts served requests by type (metrics) */
  onServed?(type: SyncRequest['type'], ok: boolean): void
}

/** Answer a request from the store. Exported for unit tests of the handler logic. */
export async function answerSyncRequest (store: ChainStoreApi, request: SyncRequest): Promise<SyncResponse> {
  switch (request.type) {
    case 'get-tips':
      // a DAG with more tips than one message holds answers with the first ones
      return { type: 'tips', ids: (await store.tips()).slice(0, MAX_IDS_PER_MESSAGE) }
    case 'get-headers':
      return { type: 'headers', headers: await Promise.all(request.ids.map(async id => store.getEncoded(id))) }
    case 'get-have':
      return {
        type: 'have',
        status: await Promise.all(request.ids.map(async id => {
          const block = await store.get(id)
          if (block == null) {
            return HaveStatus.Unknown
          }
          return block.payloadComplete ? HaveStatus.Complete : HaveStatus.Partial
        }))
      }
    case 'get-chunk':
      return { type: 'chunk', data: await store.getChunk(request.id, request.index) }
    default:
      throw new TypeError(`unknown request ${(request as { type: string }).type}`)
  }
}

function errorResponse (err: unknown): SyncResponse {
  if (err instanceof ChainError && (err.code === ChainErrorCode.CHUNK_MISSING || err.code === ChainErrorCode.BLOCK_NOT_FOUND)) {
    return { type: 'error', code: SyncErrorCode.NOT_FOUND, message: err.message }
  }
  if (err instanceof ChainError && err.code === ChainErrorCode.INVALID_ARGUMENT) {
    return { type: 'error', code: SyncErrorCode.BAD_REQUEST, message: err.message }
  }
  return { type: 'error', code: SyncErrorCode.INTERNAL, message: 'internal error' }
}

/** Serve one inbound block-sync stream until it closes. */
export function serveSyncStream (stream: Stream, init: SyncServerInit): void {
  let inflight = 0
  const maybeClose = (): void => {
    if (inflight === 0 && stream.remoteWriteStatus !== 'writable') {
      void frames.close()
    }
  }
  const respond = async (frame: SyncFrame, request: SyncRequest): Promise<void> => {
    let response: SyncResponse
    try {
      response = await answerSyncRequest(init.store, request)
      init.onServed?.(request.type, true)
    } catch (err) {
      response = errorResponse(err)
      init.onServed?.(request.type, false)
      if (response.type === 'error' && response.code === SyncErrorCode.INTERNAL) {
        init.log.error('serving %s on stream %s failed - %e', request.type, stream.id, err)
      }
    }
    await frames.send({ id: frame.id, body: response })
  }
  const frames = new FrameStream<SyncFrame>(stream, {
    codec: syncFrameCodec,
    maxFrameBytes: init.maxMessageBytes,
    idleTimeoutMs: init.idleTimeoutMs,
    isIdle: () => inflight === 0,
    onClose: () => {},
    onFrame: (frame) => {
      const request = frame.body
      if (!isSyncRequest(request)) {
        throw new Error(`unexpected ${request.type} frame on an inbound block-sync stream`)
      }
      if (inflight >= init.maxInflight) {
        frames.send({ id: frame.id, body: { type: 'error', code: SyncErrorCode.BUSY, message: `more than ${init.maxInflight} requests in flight` } })
          .catch(() => {})
        return
      }
      inflight++
      respond(frame, request)
        .catch((err: Error) => {
          init.log('could not answer %s on stream %s - %e', request.type, stream.id, err)
        })
        .finally(() => {
          inflight--
          maybeClose()
        })
    }
  })
}
