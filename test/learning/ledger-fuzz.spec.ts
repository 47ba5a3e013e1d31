/**
 * Ledger fuzz (issue 13 item 5): over 10,000 receipts and transfers, most
 * of them bad on purpose (replayed, forged, one-signature, altered after
 * signing, re-nonced, misfiled, nonsense fields; double-spent, overdrawn,
 * u64-max and self-funded transfers, blocks with random parents), added to
 * two real chain stores in different orders and folded. Checked without
 * trusting the fold: 0 double credits (per receipt id, per receipt nonce,
 * per transfer nonce), 0 negative balances, 0 receipts credited whose two
 * signatures do not verify (re-verified here with node:crypto from the
 * test's own copy of each block), the sum of balances equal to the total
 * minted, the independent checker clean, and both folds deep-equal.
 */
import { verify } from 'node:crypto'
import { expect } from 'aegir/chai'
import { ed25519PublicKey } from '../../src/chain/block-crypto.ts'
import { checkLedger } from '../../src/learning/ledger/check.ts'
import { encodeReceiptBody, receiptId, receiptMessage } from '../../src/protocols/receipt.ts'
import { removeDir, signer, tempDir } from '../chain/helpers.ts'
import { Lcg, hexOf } from './fold-world.ts'
import { LedgerWorld, ledgerJson } from './ledger-world.ts'
import type { ChainStore } from '../../src/chain/index.ts'
import type { BlockSigner } from '../../src/chain/types.ts'
import type { LedgerResult } from '../../src/learning/ledger/types.ts'
import type { SignedReceipt } from '../../src/protocols/receipt.ts'
import type { KeyObject } from 'node:crypto'

const alice = signer(1)
const clients = [40, 41, 42, 43, 44, 45].map(n => signer(n))
const stages = [50, 51, 52, 53].map(n => signer(n))
const everyone = [alice, ...clients, ...stages]
const RECEIPTS = 9000
const TRANSFERS = 1000

describe('learning/ledger: fuzz', function () {
  this.timeout(300_000)
  let dir: string
  const stores: ChainStore[] = []

  before(async () => {
    dir = await tempDir('bly-ledger-fuzz-')
  })

  after(async () => {
    await Promise.all(stores.map(async s => s.stop()))
    await removeDir(dir)
  })

  it(`${RECEIPTS} receipts and ${TRANSFERS} transfers, mutated, replayed, reordered, forged: no double credit, no negative balance, no credit without both signatures, equal folds`, async () => {
    const rng = new Lcg(2024)
    const pick = <T>(list: T[]): T => list[rng.below(list.length)]
    const world = await new LedgerWorld(alice).init({ genesis: { genesisAllocation: 1_000_000, priceLayerPosition: 2 } })
    const ledgerBlocks: Uint8Array[] = [world.head as Uint8Array]
    const parents = (): Uint8Array[] => {
      // mostly the head, sometimes an older ledger block or none: depths collide and interleave
      const r = rng.below(10)
      if (r < 6) {
        return [world.head as Uint8Array]
      }
      if (r < 9) {
        return [pick(ledgerBlocks)]
      }
      return []
    }
    for (const c of clients) {
      world.head = await world.transfer(alice, c, BigInt(rng.below(3) === 0 ? 0 : 1 + rng.below(5000)) || 1n, { parents: parents() })
      ledgerBlocks.push(world.head)
    }

    // receipts: what each variant is, and which (block, receipt id) pairs carry two valid signatures
    const genuine = new Map<BlockSigner, SignedReceipt[]>(stages.map(s => [s, []]))
    const filed = new Map<string, SignedReceipt>()
    let made = 0
    const sessions = new Map<string, bigint>()
    const fresh = async (client: BlockSigner, stage: BlockSigner, over: Partial<SignedReceipt> = {}): Promise<SignedReceipt> => {
      made++
      return world.receipt(client, stage, over)
    }
    /** one receipt for a Receipt block by `stage`: genuine, or bad in one of many ways */
    const variant = async (stage: BlockSigner): Promise<SignedReceipt> => {
      const client = pick([...clients, ...stages])
      const own = genuine.get(stage) as SignedReceipt[]
      const kind = rng.below(20)
      if (kind < 8 || own.length === 0) {
        const r = await fresh(client, stage, { positions: 1 + rng.below(40), tokens: 1, layerEnd: 1 + rng.below(4) })
        own.push(r)
        return r
      }
      if (kind < 10) {
        // a replay of one of its genuine receipts
        return pick(own)
      }
      if (kind < 12) {
        // forged client signature: the body signed by another key
        const r = await fresh(client, stage)
        const forger = pick(everyone.filter(k => k !== client))
        return { ...r, clientSig: (await world.receipt(forger, stage, { ...r })).clientSig }
      }
      if (kind < 13) {
        const r = await fresh(client, stage)
        const sig = Uint8Array.from(r.stageSig)
        sig[rng.below(64)] ^= 1 << rng.below(8)
        return { ...r, stageSig: rng.below(2) === 0 ? sig : new Uint8Array(64) }
      }
      if (kind < 14) {
        // altered after signing
        const r = await fresh(client, stage)
        return { ...r, positions: r.positions + 1 + rng.below(1000) }
      }
      if (kind < 16) {
        // a genuine receipt's (client, stage, nonce) with another body, properly co-signed
        const base = pick(own)
        const c = everyone.find(k => hexOf(k.publicKey) === hexOf(base.client)) as BlockSigner
        const key = hexOf(base.client) + hexOf(base.stage)
        const positions = base.positions + 1 + Number(sessions.get(key) ?? 0n)
        sessions.set(key, (sessions.get(key) ?? 0n) + 1n)
        return fresh(c, stage, { nonce: base.nonce, positions, tokens: 1 })
      }
      if (kind < 18) {
        // nonsense fields, properly signed
        const over = pick<Partial<SignedReceipt>>([
          { layerStart: 3, layerEnd: 3 }, { positions: 0, tokens: 0 }, { tokens: 99, positions: 5 },
          { version: new Uint8Array(32).fill(rng.below(256)) }, { governance: new Uint8Array(32).fill(7) },
          { model: new Uint8Array(32).fill(3) }, { positions: 0xffff_ffff, layerEnd: 0xffff_ffff, tokens: 1 }
        ])
        return fresh(client, stage, over)
      }
      if (kind < 19) {
        // a client paying itself
        return fresh(stage, stage)
      }
      // another stage's receipt filed in this stage's block
      return fresh(client, pick(stages.filter(s => s !== stage)))
    }

    let receipts = 0
    let transfers = 0
    while (receipts < RECEIPTS || transfers < TRANSFERS) {
      if (receipts < RECEIPTS && (transfers >= TRANSFERS || rng.below(6) !== 0)) {
        // one Receipt block by one stage: up to 48 receipts, unique ids within the block
        const size = 1 + rng.below(48)
        const items: SignedReceipt[] = []
        const ids = new Set<string>()
        const author = pick(stages)
        for (let i = 0; i < size; i++) {
          const r = await variant(author)
          const id = hexOf(receiptId(encodeReceiptBody(r)))
          if (ids.has(id)) {
            continue
          }
          ids.add(id)
          items.push(r)
        }
        const block = await world.receiptBlock(author, items, { parents: parents() })
        for (const r of items) {
          filed.set(`${hexOf(block)}:${hexOf(receiptId(encodeReceiptBody(r)))}`, r)
        }
        ledgerBlocks.push(block)
        receipts += items.length
      } else {
        const from = pick(everyone)
        const to = pick(everyone.filter(k => k !== from))
        const r = rng.below(10)
        let amount = (1n << 64n) - 1n
        if (r < 9) {
          amount = BigInt(1 + rng.below(r < 7 ? 800 : 100_000))
        }
        // mostly a fresh nonce, sometimes a spent one (double spend), sometimes a random one
        const nonce = rng.below(8) === 0 ? BigInt(1 + rng.below(4)) : undefined
        const block = await world.transfer(from, to, amount, { ...(nonce != null ? { nonce } : {}), parents: parents() })
        ledgerBlocks.push(block)
        transfers++
      }
    }
    expect(receipts + transfers).to.be.at.least(10_000)
    expect(made).to.be.greaterThan(RECEIPTS / 2)

    const order = world.randomOrder(rng)
    expect(order).to.have.length(world.blocks.length)
    const a = await world.store(`${dir}/a`)
    stores.push(a)
    const b = await world.store(`${dir}/b`, order)
    stores.push(b)
    const one = (await world.ledger(a)).ledger
    const two = (await world.ledger(b)).ledger

    expect(ledgerJson(two)).to.deep.equal(ledgerJson(one))
    expect(checkLedger(one)).to.deep.equal([])
    expectSound(one, filed)

    // the outcomes are varied, not one path taken 10,000 times
    const reasons = new Set(one.entries.map(e => e.reason ?? 'applied'))
    for (const reason of ['applied', 'replay', 'client-signature', 'stage-signature', 'nonce-spent', 'self', 'not-stage', 'range', 'positions', 'unknown-version', 'overflow', 'balance', 'client-balance']) {
      expect(reasons, reason).to.include(reason)
    }
    expect(one.counts.receiptsPaid).to.be.greaterThan(500)
    expect(one.counts.transfersApplied).to.be.greaterThan(200)
    expect(one.counts.receiptsPaid + one.counts.receiptsSkipped).to.equal(receipts)
    expect(one.counts.transfersApplied + one.counts.transfersSkipped).to.equal(transfers + clients.length)
  })
})

/** The invariants of the fuzz, checked from the test's own records (never from the fold's flags). */
function expectSound (ledger: LedgerResult, filed: Map<string, SignedReceipt>): void {
  const receiptIds = new Set<string>()
  const receiptNonces = new Set<string>()
  const transferNonces = new Set<string>()
  let doubleCredits = 0
  let unsigned = 0
  const keys = new Map<string, KeyObject>()
  const keyOf = (raw: Uint8Array): KeyObject => {
    const hex = hexOf(raw)
    let key = keys.get(hex)
    if (key == null) {
      key = ed25519PublicKey(raw)
      keys.set(hex, key)
    }
    return key
  }
  for (const e of ledger.entries.filter(e => e.applied)) {
    if (e.kind === 'receipt') {
      const r = filed.get(`${e.at.block}:${e.receipt}`) as SignedReceipt
      expect(r, e.id).to.not.equal(undefined)
      const message = receiptMessage(encodeReceiptBody(r))
      if (!verify(null, message, keyOf(r.client), r.clientSig) || !verify(null, message, keyOf(r.stage), r.stageSig)) {
        unsigned++
      }
      const nonce = `${hexOf(r.client)}:${hexOf(r.stage)}:${r.nonce}`
      if (receiptIds.has(e.receipt as string) || receiptNonces.has(nonce)) {
        doubleCredits++
      }
      receiptIds.add(e.receipt as string)
      receiptNonces.add(nonce)
    } else if (e.kind === 'transfer') {
      const nonce = `${e.from}:${e.nonce}`
      if (transferNonces.has(nonce)) {
        doubleCredits++
      }
      transferNonces.add(nonce)
    }
  }
  const negative = [...ledger.balances.values()].filter(v => v < 0n).length
  expect({ doubleCredits, negative, unsigned }).to.deep.equal({ doubleCredits: 0, negative: 0, unsigned: 0 })
  expect([...ledger.balances.values()].reduce((s, v) => s + v, 0n)).to.equal(ledger.minted)
}
