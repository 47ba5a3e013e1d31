/**
 * Header rules of the ledger blocks on chain A (protocols/ledger.md):
 * Receipt (type 9) and Transfer (type 10): fields, counts, payload sizes,
 * the recipient, the model parent. One test per rule, through a real chain
 * store.
 */
import { BlockType, ChainId } from '../../src/chain/types.ts'
import { encodeReceiptBatch, receiptBatchBytes } from '../../src/protocols/receipt.ts'
import { openStore, removeDir, signer, tempDir } from './helpers.ts'
import { add, addManifest, bytes, learningHeader, refused, str, uint } from './learning-helpers.ts'
import type { Fields } from './learning-helpers.ts'
import type { ChainStore } from '../../src/chain/index.ts'
import type { BlockHeader, BlockSigner } from '../../src/chain/types.ts'
import type { SignedReceipt } from '../../src/protocols/receipt.ts'

const stage = signer(1)
const client = signer(2)
const ROOT = new Uint8Array(32).fill(0x77)

function receipt (model: Uint8Array, n: number): SignedReceipt {
  return {
    model,
    version: new Uint8Array(32).fill(2),
    governance: new Uint8Array(32).fill(3),
    session: new Uint8Array(16).fill(4),
    client: client.publicKey,
    stage: stage.publicKey,
    nonce: BigInt(n),
    layerStart: 0,
    layerEnd: 2,
    positions: 10,
    tokens: 5,
    time: 1n,
    clientSig: new Uint8Array(64),
    stageSig: new Uint8Array(64)
  }
}

describe('ledger block header rules (Receipt, Transfer)', () => {
  let dir: string
  let store: ChainStore
  let model: Uint8Array
  let batch: Uint8Array

  beforeEach(async () => {
    dir = await tempDir()
    store = await openStore(dir)
    model = await addManifest(store, stage)
    batch = encodeReceiptBatch([receipt(model, 1), receipt(model, 2)])
  })

  afterEach(async () => {
    await store.stop()
    await removeDir(dir)
  })

  function receiptHeader (over: Fields = {}, payload: Uint8Array | null = batch, parents = [model], s: BlockSigner = stage): BlockHeader {
    return learningHeader(s, BlockType.Receipt, { model: bytes(model), receipts: uint(2), root: bytes(ROOT), ...over }, parents, payload ?? undefined)
  }

  function transferHeader (over: Fields = {}, parents = [model], s: BlockSigner = client): BlockHeader {
    return learningHeader(s, BlockType.Transfer, { model: bytes(model), to: bytes(stage.publicKey), amount: uint(5), nonce: uint(1), ...over }, parents)
  }

  describe('Receipt', () => {
    it('accepts a batch of the size its count implies (signatures and root are the fold\'s business)', async () => {
      await add(store, receiptHeader(), stage, batch)
    })

    it('ERR_BLOCK_TYPE: on chain B', async () => {
      await refused(store, { ...receiptHeader(), chain: ChainId.B }, stage, 'ERR_BLOCK_TYPE', /belongs on chain 1/, batch)
    })

    it('ERR_RECEIPT_BLOCK_FIELDS: each field missing or of the wrong kind, an extra field, a count of 0 or over 4096', async () => {
      for (const key of ['model', 'receipts', 'root']) {
        await refused(store, receiptHeader({ [key]: undefined }), stage, 'ERR_RECEIPT_BLOCK_FIELDS', new RegExp(`needs field '${key}'`), batch)
      }
      await refused(store, receiptHeader({ root: bytes(new Uint8Array(31)) }), stage, 'ERR_RECEIPT_BLOCK_FIELDS', /needs field 'root'/, batch)
      await refused(store, receiptHeader({ receipts: str('2') }), stage, 'ERR_RECEIPT_BLOCK_FIELDS', /needs field 'receipts'/, batch)
      await refused(store, receiptHeader({ extra: uint(1) }), stage, 'ERR_RECEIPT_BLOCK_FIELDS', /may not carry field 'extra'/, batch)
      await refused(store, receiptHeader({ receipts: uint(0) }, null), stage, 'ERR_RECEIPT_BLOCK_FIELDS', /1\.\.4096, not 0/)
      await refused(store, receiptHeader({ receipts: uint(4097) }), stage, 'ERR_RECEIPT_BLOCK_FIELDS', /1\.\.4096, not 4097/, batch)
    })

    it('ERR_RECEIPT_BLOCK_PAYLOAD: none, or not 5 + 337 x receipts bytes', async () => {
      await refused(store, receiptHeader({}, null), stage, 'ERR_RECEIPT_BLOCK_PAYLOAD', /carries a 679-byte batch, not 0 bytes/)
      await refused(store, receiptHeader({ receipts: uint(3) }), stage, 'ERR_RECEIPT_BLOCK_PAYLOAD', new RegExp(`${receiptBatchBytes(3)}-byte batch`), batch)
      const longer = Uint8Array.of(...batch, 0)
      await refused(store, receiptHeader({}, longer), stage, 'ERR_RECEIPT_BLOCK_PAYLOAD', /not 680 bytes/, longer)
    })

    it('ERR_RECEIPT_BLOCK_PARENT: the model not listed, or not a ModelManifest', async () => {
      const other = await add(store, learningHeader(stage, BlockType.Note, {}, []), stage)
      await refused(store, receiptHeader({}, batch, [other]), stage, 'ERR_RECEIPT_BLOCK_PARENT', /must list its model manifest/, batch)
      await refused(store, receiptHeader({ model: bytes(other) }, batch, [other]), stage, 'ERR_RECEIPT_BLOCK_PARENT', /is not a ModelManifest block/, batch)
    })
  })

  describe('Transfer', () => {
    it('accepts a transfer to another key with any nonce, listing other parents besides the model', async () => {
      const first = await add(store, transferHeader(), client)
      await add(store, transferHeader({ nonce: uint(0) }, [model, first]), client)
    })

    it('ERR_BLOCK_TYPE: on chain B', async () => {
      await refused(store, { ...transferHeader(), chain: ChainId.B }, client, 'ERR_BLOCK_TYPE', /belongs on chain 1/)
    })

    it('ERR_TRANSFER_BLOCK_FIELDS: each field missing or of the wrong kind, an extra field, an amount of 0, a negative amount', async () => {
      for (const key of ['model', 'to', 'amount', 'nonce']) {
        await refused(store, transferHeader({ [key]: undefined }), client, 'ERR_TRANSFER_BLOCK_FIELDS', new RegExp(`needs field '${key}'`))
      }
      await refused(store, transferHeader({ amount: uint(0) }), client, 'ERR_TRANSFER_BLOCK_FIELDS', /'amount' is at least 1/)
      await refused(store, transferHeader({ amount: { kind: 'int', value: -5n } }), client, 'ERR_TRANSFER_BLOCK_FIELDS', /needs field 'amount' \(uint\)/)
      await refused(store, transferHeader({ to: bytes(new Uint8Array(33)) }), client, 'ERR_TRANSFER_BLOCK_FIELDS', /needs field 'to'/)
      await refused(store, transferHeader({ memo: str('hi') }), client, 'ERR_TRANSFER_BLOCK_FIELDS', /may not carry field 'memo'/)
    })

    it('ERR_TRANSFER_BLOCK_RECIPIENT: to its own author', async () => {
      await refused(store, transferHeader({ to: bytes(client.publicKey) }), client, 'ERR_TRANSFER_BLOCK_RECIPIENT', /another key than its author/)
    })

    it('ERR_TRANSFER_BLOCK_PAYLOAD: a payload', async () => {
      const h = learningHeader(client, BlockType.Transfer, { model: bytes(model), to: bytes(stage.publicKey), amount: uint(5), nonce: uint(1) }, [model], new Uint8Array(10))
      await refused(store, h, client, 'ERR_TRANSFER_BLOCK_PAYLOAD', /carries no payload/, new Uint8Array(10))
    })

    it('ERR_TRANSFER_BLOCK_PARENT: the model not listed, or not a ModelManifest', async () => {
      const note = await add(store, learningHeader(client, BlockType.Note, {}, []), client)
      await refused(store, transferHeader({}, [note]), client, 'ERR_TRANSFER_BLOCK_PARENT', /must list its model manifest/)
      await refused(store, transferHeader({ model: bytes(note) }, [note]), client, 'ERR_TRANSFER_BLOCK_PARENT', /is not a ModelManifest block/)
    })
  })
})
