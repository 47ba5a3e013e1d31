import { ChainError, ChainErrorCode } from './errors.ts'
import type { ChainLimits } from './constants.ts'
import type { BlockSigner, BlockType, ChainCounts, ChainId, ChainStoreApi, NewBlock, StoredBlock, VerifyReport } from './types.ts'

export interface ChainStoreInit {
  /** directory of the store: LevelDB under `path/index`, chunk files under `path/chunks` */
  path: string
  /** default chunk size of blocks this node creates */
  chunkSize?: number
  /** orphan pool bound (entries); 0 disables the pool (unknown parents throw ERR_UNKNOWN_PARENT) */
  orphanPoolSize?: number
  /** orphan pool bound (bytes of headers + payloads held) */
  orphanPoolBytes?: number
  /** override validation limits */
  limits?: Partial<ChainLimits>
  /** fsync chunk files and the index batch (default true) */
  fsync?: boolean
}

export class ChainStore implements ChainStoreApi {
  readonly path: string

  constructor (init: ChainStoreInit) {
    this.path = init.path
  }

  async start (): Promise<void> {}
  async stop (): Promise<void> {}

  async createBlock (block: NewBlock, signer: BlockSigner): Promise<StoredBlock> {
    throw new ChainError(ChainErrorCode.NotStarted, 'not implemented yet')
  }

  async addBlock (signedHeaderBytes: Uint8Array, payload?: Uint8Array): Promise<'added' | 'duplicate' | 'orphaned'> {
    throw new ChainError(ChainErrorCode.NotStarted, 'not implemented yet')
  }

  async putChunk (id: Uint8Array, index: number, bytes: Uint8Array): Promise<void> {
    throw new ChainError(ChainErrorCode.NotStarted, 'not implemented yet')
  }

  async get (id: Uint8Array): Promise<StoredBlock | undefined> { return undefined }
  async has (id: Uint8Array): Promise<boolean> { return false }
  async getEncoded (id: Uint8Array): Promise<Uint8Array | undefined> { return undefined }
  async getChunk (id: Uint8Array, index: number): Promise<Uint8Array> {
    throw new ChainError(ChainErrorCode.NotStarted, 'not implemented yet')
  }

  async * readPayload (id: Uint8Array): AsyncIterable<Uint8Array> {}
  async children (id: Uint8Array): Promise<Uint8Array[]> { return [] }
  async tips (chain?: ChainId): Promise<Uint8Array[]> { return [] }
  async * topological (chain?: ChainId): AsyncIterable<StoredBlock> {}
  async * byType (type: BlockType): AsyncIterable<StoredBlock> {}
  async byModelUnit (modelId: Uint8Array, unit: number): Promise<StoredBlock[]> { return [] }
  async counts (): Promise<ChainCounts> { return { A: 0, B: 0, total: 0, orphans: 0 } }
  async verify (): Promise<VerifyReport> { return { blocks: 0, chunks: 0, bytes: 0, issues: [], ok: true } }
}

export function createChainStore (init: ChainStoreInit): ChainStore {
  return new ChainStore(init)
}
