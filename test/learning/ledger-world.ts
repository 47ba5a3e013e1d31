/**
 * Ledger blocks built in memory with real keys on top of the learning
 * World (fold-world.ts): co-signed receipts, Receipt blocks (canonical
 * batch, Merkle root) and Transfer blocks, each chained after the previous
 * ledger block by default (as a publisher lists the ledger head), so one
 * set of blocks can be added to several real stores in different orders and
 * folded.
 */
import { BlockType } from '../../src/chain/types.ts'
import { LedgerCache, foldLedger } from '../../src/learning/ledger/fold.ts'
import { batchRoot } from '../../src/learning/ledger/new-blocks.ts'
import { coSignReceipt } from '../../src/learning/ledger/receipt-signing.ts'
import { decodeBlockHeader, decodeSignedBlockHeader } from '../../src/protocols/block-header.ts'
import { encodeReceiptBatch } from '../../src/protocols/receipt.ts'
import { bytes, learningHeader, uint } from '../chain/learning-helpers.ts'
import { World, evalWindowsOf, hexOf } from './fold-world.ts'
import type { Lcg } from './fold-world.ts'
import type { ChainStore } from '../../src/chain/index.ts'
import type { BlockSigner } from '../../src/chain/types.ts'
import type { LedgerFold } from '../../src/learning/ledger/fold.ts'
import type { LedgerResult } from '../../src/learning/ledger/types.ts'
import type { ReceiptBody, SignedReceipt } from '../../src/protocols/receipt.ts'

export class LedgerWorld extends World {
  /** the last ledger block added (the next one lists it unless told otherwise) */
  head?: Uint8Array
  private readonly nonces = new Map<string, bigint>()
  private sessions = 0

  /** World.init; the genesis Params block (a ledger event: the allocation) is the first ledger head */
  override async init (options: Parameters<World['init']>[0] = {}): Promise<this> {
    await super.init(options)
    if (options.genesis !== null) {
      this.head = this.blocks[this.blocks.length - 1].id
    }
    return this
  }

  /** a receipt co-signed by `client` and `stage`: 10 positions on layers [0, 2), 4 tokens, V0, G0, a fresh nonce per pair */
  async receipt (client: BlockSigner, stage: BlockSigner, over: Partial<ReceiptBody> = {}): Promise<SignedReceipt> {
    const pair = `${hexOf(client.publicKey)}:${hexOf(stage.publicKey)}`
    const nonce = (this.nonces.get(pair) ?? 0n) + 1n
    this.nonces.set(pair, nonce)
    const session = new Uint8Array(16)
    new DataView(session.buffer).setUint32(0, ++this.sessions)
    return coSignReceipt({
      model: this.model,
      version: this.v0,
      governance: this.g0,
      session,
      client: client.publicKey,
      stage: stage.publicKey,
      nonce,
      layerStart: 0,
      layerEnd: 2,
      positions: 10,
      tokens: 4,
      time: 1_700_000_000_000n + BigInt(this.sessions),
      ...over
    }, client, stage)
  }

  private parentsOf (parents?: Uint8Array[]): Uint8Array[] {
    const list = parents ?? (this.head != null ? [this.head] : [])
    const seen = new Set<string>()
    return [this.model, ...list].filter(p => {
      const h = hexOf(p)
      const fresh = !seen.has(h)
      seen.add(h)
      return fresh
    })
  }

  /**
   * A Receipt block by `author` of `receipts` (a canonical batch; `payload`
   * overrides it as given, `root` the header's root). Keeps the payload
   * unless `withholdPayload`.
   */
  async receiptBlock (author: BlockSigner, receipts: SignedReceipt[], options: { parents?: Uint8Array[], payload?: Uint8Array, count?: number, root?: Uint8Array, withholdPayload?: boolean } = {}): Promise<Uint8Array> {
    const payload = options.payload ?? encodeReceiptBatch(receipts)
    const count = options.count ?? receipts.length
    const root = options.root ?? batchRoot(payload, count)
    const h = learningHeader(author, BlockType.Receipt, { model: bytes(this.model), receipts: uint(count), root: bytes(root) }, this.parentsOf(options.parents), payload)
    const id = await this.add(h, author, payload)
    if (options.withholdPayload === true) {
      const built = this.blocks[this.blocks.length - 1]
      delete built.payload
    }
    this.head = id
    return id
  }

  /** A Transfer of `amount` from `from` to `to` with `nonce` (default: one more than the last of `from`). */
  async transfer (from: BlockSigner, to: BlockSigner | Uint8Array, amount: bigint, options: { nonce?: bigint, parents?: Uint8Array[] } = {}): Promise<Uint8Array> {
    const key = `transfer:${hexOf(from.publicKey)}`
    const nonce = options.nonce ?? (this.nonces.get(key) ?? 0n) + 1n
    if (nonce > (this.nonces.get(key) ?? 0n)) {
      this.nonces.set(key, nonce)
    }
    const toKey = to instanceof Uint8Array ? to : to.publicKey
    const h = learningHeader(from, BlockType.Transfer, { model: bytes(this.model), to: bytes(toKey), amount: uint(amount), nonce: uint(nonce) }, this.parentsOf(options.parents))
    const id = await this.add(h, from)
    this.head = id
    return id
  }

  /**
   * A random arrival order in which every block comes after its parents
   * (as sync delivers them; a shuffle of thousands of blocks would overflow
   * the store's orphan pool): at each step a random block whose parents
   * arrived.
   */
  randomOrder (rng: Lcg): number[] {
    const index = new Map(this.blocks.map((b, i) => [hexOf(b.id), i]))
    const parents = this.blocks.map(b => decodeBlockHeader(decodeSignedBlockHeader(b.encoded).header).parents.map(p => index.get(hexOf(p))).filter((i): i is number => i != null))
    const waiting = parents.map(list => new Set(list).size)
    const children = this.blocks.map(() => [] as number[])
    parents.forEach((list, i) => { for (const p of new Set(list)) { children[p].push(i) } })
    const order: number[] = []
    const ready = this.blocks.map((_, i) => i).filter(i => waiting[i] === 0)
    while (ready.length > 0) {
      const k = rng.below(ready.length)
      const next = ready[k]
      ready[k] = ready[ready.length - 1]
      ready.pop()
      order.push(next)
      for (const c of children[next]) {
        if (--waiting[c] === 0) {
          ready.push(c)
        }
      }
    }
    return order
  }

  async ledger (store: ChainStore, cache?: LedgerCache): Promise<LedgerFold> {
    return foldLedger(store, this.model, { evalWindows: async (id) => evalWindowsOf(id), ...(cache != null ? { cache } : {}) })
  }
}

/** A key's balance in a result. */
export function balance (result: LedgerResult, s: BlockSigner): bigint {
  return result.balances.get(hexOf(s.publicKey)) ?? 0n
}

/** A result in plain JSON (bigints as strings), for deep equality across folds. */
export function ledgerJson (result: LedgerResult): unknown {
  return JSON.parse(JSON.stringify({ ...result, balances: [...result.balances].sort() }, (_k, v) => typeof v === 'bigint' ? v.toString() : v))
}

export { LedgerCache }
