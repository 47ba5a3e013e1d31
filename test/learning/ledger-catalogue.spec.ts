/**
 * The ledger fold through real chain stores (protocols/ledger.md): the
 * bad-input catalogue of issue 13 item 5, one test per case (replayed,
 * forged, one-signature, misfiled and re-nonced receipts; receipts for an
 * unknown model, version or governance state; double-spent, overdrawn,
 * negative and overflowing transfers; reordered blocks), and the amounts
 * that move for receipts, transfers and proposals. Every fold is also
 * checked by the independent checker (check.ts): no test ends with a
 * violated invariant.
 */
import { expect } from 'aegir/chai'
import { BlockType } from '../../src/chain/types.ts'
import { checkLedger } from '../../src/learning/ledger/check.ts'
import { coSignReceipt } from '../../src/learning/ledger/receipt-signing.ts'
import { encodeBlockHeader } from '../../src/protocols/block-header.ts'
import { encodeReceiptBatch } from '../../src/protocols/receipt.ts'
import { expectCode, removeDir, signHeader, signer, tempDir } from '../chain/helpers.ts'
import { bytes, learningHeader, uint } from '../chain/learning-helpers.ts'
import { Lcg, hexOf } from './fold-world.ts'
import { LedgerWorld, balance, ledgerJson } from './ledger-world.ts'
import type { ChainStore } from '../../src/chain/index.ts'
import type { LedgerEntry, LedgerResult } from '../../src/learning/ledger/types.ts'
import type { ParamsBody } from '../../src/protocols/params.ts'

const [alice, bob, carol] = [1, 2, 3].map(n => signer(n))
const client = signer(20)
const stage = signer(21)
const stage2 = signer(22)
const GENESIS = 1_000_000_000_000n

describe('learning/ledger: the bad-input catalogue and the amounts', function () {
  this.timeout(120_000)
  let dir: string
  let stores: ChainStore[]

  beforeEach(async () => {
    dir = await tempDir('bly-ledger-')
    stores = []
  })

  afterEach(async () => {
    await Promise.all(stores.map(async s => s.stop()))
    await removeDir(dir)
  })

  async function storeOf (world: LedgerWorld, order?: number[]): Promise<ChainStore> {
    const store = await world.store(`${dir}/s${stores.length}`, order)
    stores.push(store)
    return store
  }

  /** fold `world` in a fresh store (blocks in `order`), check every invariant independently */
  async function fold (world: LedgerWorld, order?: number[]): Promise<LedgerResult> {
    const { ledger } = await world.ledger(await storeOf(world, order))
    expect(checkLedger(ledger)).to.deep.equal([])
    // one invariant check per block position that moved (or tried to move) BLY
    expect(ledger.checks).to.be.at.least(new Set(ledger.entries.map(e => e.at.block)).size)
    return ledger
  }

  /** a model by alice whose client holds `funds` (sent by alice) */
  async function funded (funds = 1000n, genesis?: ParamsBody, manifestUnits?: number): Promise<LedgerWorld> {
    const world = await new LedgerWorld(alice).init({ ...(genesis != null ? { genesis: { ...genesis } } : {}), ...(manifestUnits != null ? { manifestUnits } : {}) })
    if (funds > 0n) {
      await world.transfer(alice, client, funds)
    }
    return world
  }

  function receiptEntries (ledger: LedgerResult): LedgerEntry[] {
    return ledger.entries.filter(e => e.kind === 'receipt')
  }

  it('genesis: the importer holds genesisAllocation; the sum of balances is what was minted', async () => {
    const world = await new LedgerWorld(alice).init({ genesis: { genesisAllocation: 12345 } })
    const ledger = await fold(world)
    expect(balance(ledger, alice)).to.equal(12345n)
    expect(ledger.minted).to.equal(12345n)
    expect(ledger.entries.map(e => [e.kind, e.applied])).to.deep.equal([['genesis', true]])
    const none = await fold(await new LedgerWorld(alice).init({ genesis: null }))
    expect(none.minted).to.equal(0n)
    expect(none.entries).to.deep.equal([])
  })

  it('a receipt: the client pays the stage positions x layers x priceLayerPosition, nothing is minted', async () => {
    const world = await funded(1000n, { priceLayerPosition: 3 })
    await world.receiptBlock(stage, [await world.receipt(client, stage, { positions: 7, layerStart: 1, layerEnd: 5, tokens: 3 })])
    const ledger = await fold(world)
    expect(balance(ledger, stage)).to.equal(7n * 4n * 3n)
    expect(balance(ledger, client)).to.equal(1000n - 84n)
    expect(balance(ledger, alice)).to.equal(GENESIS - 1000n)
    expect(ledger.minted).to.equal(GENESIS)
    expect(ledger.paid).to.equal(84n)
    expect(ledger.counts).to.include({ receiptsPaid: 1, receiptsSkipped: 0 })
  })

  it('replayed receipt: the same receipt in a later block of its stage is skipped (replay), paid once', async () => {
    const world = await funded()
    const r = await world.receipt(client, stage)
    await world.receiptBlock(stage, [r])
    await world.receiptBlock(stage, [r, await world.receipt(client, stage)])
    const ledger = await fold(world)
    expect(ledger.counts).to.include({ receiptsPaid: 2, receiptsSkipped: 1 })
    const ofR = receiptEntries(ledger).filter(e => e.receipt === receiptEntries(ledger)[0].receipt)
    expect(ofR.map(e => e.reason ?? 'paid')).to.deep.equal(['paid', 'replay'])
    expect(balance(ledger, stage)).to.equal(40n)
    expect(balance(ledger, client)).to.equal(960n)
  })

  it('replayed receipt across blocks in any arrival order: paid once, the same balances on every store', async () => {
    const world = await funded()
    const r = await world.receipt(client, stage)
    const head = world.head as Uint8Array
    // two sibling blocks (same parents) both holding r
    await world.receiptBlock(stage, [r], { parents: [head] })
    await world.receiptBlock(stage, [r, await world.receipt(client, stage)], { parents: [head] })
    const n = world.blocks.length
    const forward = await fold(world)
    const backward = await fold(world, [...Array(n).keys()].slice(0, n - 2).concat([n - 1, n - 2]))
    expect(ledgerJson(backward)).to.deep.equal(ledgerJson(forward))
    expect(forward.counts).to.include({ receiptsPaid: 2, receiptsSkipped: 1 })
    expect(balance(forward, stage)).to.equal(40n)
  })

  it('reordered blocks: 6 random arrival orders give deep-equal ledgers', async () => {
    const world = await funded(500n)
    await world.transfer(alice, bob, 77n)
    await world.receiptBlock(stage, [await world.receipt(client, stage), await world.receipt(client, stage, { positions: 3, tokens: 2 })])
    await world.transfer(bob, carol, 50n)
    await world.receiptBlock(stage2, [await world.receipt(client, stage2)])
    await world.transfer(carol, client, 60n, { parents: [] })
    await world.transfer(client, bob, 10_000n)
    const first = await fold(world)
    const rng = new Lcg(99)
    for (let k = 0; k < 6; k++) {
      expect(ledgerJson(await fold(world, world.randomOrder(rng)))).to.deep.equal(ledgerJson(first))
    }
    // carol's transfer lists no ledger block, so it folds before bob paid her: skipped, as is the overdraft
    expect(first.counts).to.include({ receiptsPaid: 3, transfersApplied: 3, transfersSkipped: 2 })
  })

  it('forged receipt: a client signature by another key is skipped (client-signature) and spends nothing', async () => {
    const world = await funded()
    const genuine = await world.receipt(client, stage)
    const forged = { ...genuine, clientSig: (await coSignReceipt(genuine, carol, stage)).clientSig }
    await world.receiptBlock(stage, [forged])
    await world.receiptBlock(stage, [genuine])
    const ledger = await fold(world)
    expect(receiptEntries(ledger).map(e => e.reason ?? 'paid')).to.deep.equal(['client-signature', 'paid'])
    expect(receiptEntries(ledger)[0].signatures).to.deep.equal({ client: false, stage: true })
    expect(balance(ledger, stage)).to.equal(20n)
  })

  it('one-signature receipt: a missing (zero) or altered stage signature is skipped (stage-signature)', async () => {
    const world = await funded()
    const a = await world.receipt(client, stage)
    const b = await world.receipt(client, stage)
    const altered = Uint8Array.from(b.stageSig)
    altered[10] ^= 1
    await world.receiptBlock(stage, [{ ...a, stageSig: new Uint8Array(64) }, { ...b, stageSig: altered }])
    const ledger = await fold(world)
    expect(receiptEntries(ledger).map(e => e.reason)).to.deep.equal(['stage-signature', 'stage-signature'])
    expect(ledger.paid).to.equal(0n)
    expect(balance(ledger, client)).to.equal(1000n)
  })

  it('a receipt body changed after signing is skipped (both signatures fail)', async () => {
    const world = await funded()
    const r = await world.receipt(client, stage)
    await world.receiptBlock(stage, [{ ...r, positions: r.positions * 100 }])
    const ledger = await fold(world)
    expect(receiptEntries(ledger).map(e => e.reason)).to.deep.equal(['client-signature'])
    expect(receiptEntries(ledger)[0].signatures).to.deep.equal({ client: false, stage: false })
  })

  it('a receipt published by another node than its stage is skipped (not-stage)', async () => {
    const world = await funded()
    await world.receiptBlock(stage2, [await world.receipt(client, stage)])
    const ledger = await fold(world)
    expect(receiptEntries(ledger).map(e => e.reason)).to.deep.equal(['not-stage'])
    expect(ledger.paid).to.equal(0n)
  })

  it('a second receipt with a spent (client, stage, nonce) is skipped (nonce-spent); the same nonce with another stage is paid', async () => {
    const world = await funded()
    const first = await world.receipt(client, stage, { nonce: 7n })
    const again = await world.receipt(client, stage, { nonce: 7n, positions: 11 })
    const other = await world.receipt(client, stage2, { nonce: 7n })
    await world.receiptBlock(stage, [first])
    await world.receiptBlock(stage, [again])
    await world.receiptBlock(stage2, [other])
    const ledger = await fold(world)
    expect(receiptEntries(ledger).map(e => e.reason ?? 'paid')).to.deep.equal(['paid', 'nonce-spent', 'paid'])
  })

  it('a client without balance is served free: its receipt is skipped (client-balance) and no coin appears', async () => {
    const world = await funded(0n)
    await world.receiptBlock(stage, [await world.receipt(client, stage)])
    const ledger = await fold(world)
    expect(receiptEntries(ledger).map(e => e.reason)).to.deep.equal(['client-balance'])
    expect(balance(ledger, stage)).to.equal(0n)
    expect(balance(ledger, client)).to.equal(0n)
    expect(ledger.minted).to.equal(GENESIS)
  })

  it('self-dealing: a client paying its own stage key moves nothing (self); two keys of one person only move their own coins', async () => {
    const world = await funded()
    await world.receiptBlock(client, [await world.receipt(client, client)])
    await world.receiptBlock(stage, [await world.receipt(client, stage, { positions: 100 })])
    const ledger = await fold(world)
    expect(receiptEntries(ledger).map(e => e.reason ?? 'paid')).to.deep.equal(['self', 'paid'])
    expect(balance(ledger, client) + balance(ledger, stage)).to.equal(1000n)
    expect(ledger.minted).to.equal(GENESIS)
  })

  it('receipt for an unknown model, version or governance state: skipped (model, unknown-version, unknown-governance)', async () => {
    const world = await funded()
    await world.receiptBlock(stage, [
      await world.receipt(client, stage, { model: new Uint8Array(32).fill(9) }),
      await world.receipt(client, stage, { version: new Uint8Array(32).fill(8) }),
      await world.receipt(client, stage, { governance: new Uint8Array(32).fill(7) })
    ])
    const ledger = await fold(world)
    expect(receiptEntries(ledger).map(e => e.reason).sort()).to.deep.equal(['model', 'unknown-governance', 'unknown-version'])
    expect(ledger.paid).to.equal(0n)
  })

  it('a bad layer range or position count: skipped (range, positions); the manifest bounds the layers', async () => {
    const world = await funded(1000n, undefined, 6)
    await world.receiptBlock(stage, [
      await world.receipt(client, stage, { layerStart: 2, layerEnd: 2 }),
      await world.receipt(client, stage, { layerStart: 3, layerEnd: 5 }),
      await world.receipt(client, stage, { layerStart: 0, layerEnd: 4 }),
      await world.receipt(client, stage, { positions: 0, tokens: 0 }),
      await world.receipt(client, stage, { positions: 3, tokens: 4 })
    ])
    const ledger = await fold(world)
    const byReason = receiptEntries(ledger).map(e => e.reason ?? `paid ${e.amount}`).sort()
    expect(byReason).to.deep.equal(['paid 40', 'positions', 'positions', 'range', 'range'])
  })

  it('overflow: a receipt whose amount passes a u64 is skipped (overflow); a mint past the supply bound is skipped (supply)', async () => {
    const world = await funded(1000n, { priceLayerPosition: Number.MAX_SAFE_INTEGER })
    await world.receiptBlock(stage, [await world.receipt(client, stage, { positions: 0xffff_ffff, tokens: 1, layerStart: 0, layerEnd: 0xffff_ffff })])
    const ledger = await fold(world)
    expect(receiptEntries(ledger).map(e => e.reason)).to.deep.equal(['overflow'])
    expect(balance(ledger, client)).to.equal(1000n)
  })

  it('a batch whose root is not the header\'s, or that does not decode, judges nothing (root, malformed)', async () => {
    const world = await funded()
    const r = await world.receipt(client, stage)
    await world.receiptBlock(stage, [r], { root: new Uint8Array(32).fill(1) })
    const bad = encodeReceiptBatch([await world.receipt(client, stage)])
    bad[0] = 2
    await world.receiptBlock(stage, [], { payload: bad, count: 1, root: new Uint8Array(32) })
    await world.receiptBlock(stage, [r])
    const ledger = await fold(world)
    expect(ledger.problems.map(p => p.reason)).to.deep.equal(['root', 'malformed'])
    expect(receiptEntries(ledger).map(e => e.reason ?? 'paid')).to.deep.equal(['paid'])
  })

  it('a Receipt block whose payload is not stored yet waits (payload-missing) and spends nothing; once stored it pays', async () => {
    const world = await funded()
    const r = await world.receipt(client, stage)
    const payload = encodeReceiptBatch([r])
    const id = await world.receiptBlock(stage, [r], { withholdPayload: true })
    const store = await storeOf(world)
    const before = (await world.ledger(store)).ledger
    expect(before.problems.map(p => p.reason)).to.deep.equal(['payload-missing'])
    expect(before.paid).to.equal(0n)
    await store.putChunk(id, 0, payload)
    const after = (await world.ledger(store)).ledger
    expect(after.problems).to.deep.equal([])
    expect(after.paid).to.equal(20n)
    expect(checkLedger(after)).to.deep.equal([])
  })

  it('double-spend transfer: two transfers with one (sender, nonce): the first in fold order counts, the other is skipped (nonce-spent)', async () => {
    const world = await funded(100n)
    const head = world.head as Uint8Array
    await world.transfer(client, bob, 100n, { nonce: 5n, parents: [head] })
    await world.transfer(client, carol, 100n, { nonce: 5n, parents: [head] })
    const ledger = await fold(world)
    const transfers = ledger.entries.filter(e => e.kind === 'transfer' && e.from === hexOf(client.publicKey))
    expect(transfers.map(e => e.reason ?? 'applied')).to.deep.equal(['applied', 'nonce-spent'])
    expect(balance(ledger, bob) + balance(ledger, carol)).to.equal(100n)
    expect(balance(ledger, client)).to.equal(0n)
    const n = world.blocks.length
    expect(ledgerJson(await fold(world, [...Array(n - 2).keys(), n - 1, n - 2]))).to.deep.equal(ledgerJson(ledger))
  })

  it('overdraft: a transfer larger than the balance at its position is skipped (balance); no balance goes negative', async () => {
    const world = await funded(100n)
    await world.transfer(client, bob, 60n)
    await world.transfer(client, carol, 60n)
    await world.transfer(client, carol, 40n)
    const ledger = await fold(world)
    expect(ledger.entries.filter(e => e.from === hexOf(client.publicKey)).map(e => e.reason ?? 'applied')).to.deep.equal(['applied', 'balance', 'applied'])
    expect(balance(ledger, client)).to.equal(0n)
    expect([...ledger.balances.values()].every(v => v >= 0n)).to.equal(true)
  })

  it('negative, zero and oversized amounts never reach the fold: the store refuses them (ERR_TRANSFER_BLOCK_FIELDS, ERR_BLOCK_ENCODING); a u64-max amount is an overdraft', async () => {
    const world = await funded(100n)
    const store = await storeOf(world)
    const transfer = (amount: any): any => learningHeader(client, BlockType.Transfer, { model: bytes(world.model), to: bytes(bob.publicKey), amount, nonce: uint(9) }, [world.model])
    await expectCode(store.addBlock((await signHeader(transfer({ kind: 'int', value: -5n }), client)).encoded), 'ERR_TRANSFER_BLOCK_FIELDS')
    await expectCode(store.addBlock((await signHeader(transfer(uint(0)), client)).encoded), 'ERR_TRANSFER_BLOCK_FIELDS')
    expect(() => encodeBlockHeader(transfer(uint(1n << 64n)))).to.throw().with.property('code', 'ERR_BLOCK_ENCODING')
    expect(await store.addBlock((await signHeader(transfer(uint((1n << 64n) - 1n)), client)).encoded)).to.equal('added')
    const { ledger } = await world.ledger(store)
    expect(ledger.entries.filter(e => e.kind === 'transfer' && e.from === hexOf(client.publicKey)).map(e => e.reason)).to.deep.equal(['balance'])
    expect(checkLedger(ledger)).to.deep.equal([])
  })

  it('a transfer retried with its nonce pays once; a transfer before the block that funds it (fold order) is skipped', async () => {
    const world = await funded(0n)
    await world.transfer(client, bob, 10n, { parents: [] })
    await world.transfer(alice, client, 10n)
    await world.transfer(client, bob, 10n, { nonce: 1n })
    await world.transfer(client, bob, 10n, { nonce: 2n })
    const ledger = await fold(world)
    expect(ledger.entries.filter(e => e.from === hexOf(client.publicKey)).map(e => e.reason ?? 'applied')).to.deep.equal(['balance', 'nonce-spent', 'applied'])
  })

  it('an accepted proposal mints gain x rewardPerMicroNat to its proposer and validatorReward to each agreeing validator', async () => {
    const world = await new LedgerWorld(alice).init({ genesis: { rewardPerMicroNat: 3, validatorReward: 1000 } })
    const g1 = (await world.govern([alice], { kind: 'validators.add', key: bob.publicKey }, world.g0)).next
    const g = (await world.govern([alice, bob], { kind: 'validators.add', key: carol.publicKey }, g1)).next
    const p = await world.proposal(client, world.v0, g)
    await world.attest(alice, p.id, { quality: 'gain' })
    await world.attest(bob, p.id, { quality: 'gain' })
    await world.attest(carol, p.id, { verdict: 'reject', reason: 'insufficient-gain', quality: 'no-gain' })
    const { ledger, learning } = await world.ledger(await storeOf(world))
    expect(checkLedger(ledger)).to.deep.equal([])
    expect(learning.proposals[0].status).to.equal('accepted')
    const mint = ledger.entries.find(e => e.kind === 'proposal')
    expect(mint?.applied).to.equal(true)
    expect(mint?.gainMicroNats).to.be.a('bigint')
    expect((mint?.gainMicroNats ?? 0n) > 30_000n).to.equal(true) // ~2% of ~2.2 nats
    expect(balance(ledger, client)).to.equal((mint?.gainMicroNats ?? 0n) * 3n)
    expect(balance(ledger, bob)).to.equal(1000n)
    expect(balance(ledger, carol)).to.equal(0n)
    expect(balance(ledger, alice)).to.equal(GENESIS + 1000n)
    expect(ledger.minted).to.equal(GENESIS + 2000n + (mint?.gainMicroNats ?? 0n) * 3n)
    expect(mint?.blocks).to.include(hexOf(p.id))
  })

  it('a proposal rejected by its validators pays them validatorReward from the proposer as far as its balance goes; superseded costs nothing', async () => {
    const world = await new LedgerWorld(alice).init({ genesis: { validatorReward: 600 } })
    const g1 = (await world.govern([alice], { kind: 'validators.add', key: bob.publicKey }, world.g0)).next
    const g = (await world.govern([alice, bob], { kind: 'validators.add', key: carol.publicKey }, g1)).next
    await world.transfer(alice, client, 1000n)
    const p = await world.proposal(client, world.v0, g)
    for (const v of [alice, bob, carol]) {
      await world.attest(v, p.id, { verdict: 'reject', reason: 'insufficient-gain', quality: 'no-gain' })
    }
    const ledger = await fold(world)
    const fees = ledger.entries.filter(e => e.kind === 'fee')
    // in key order: the first is paid, then 400 left is short of 600 twice
    expect(fees.map(e => e.reason ?? 'applied')).to.deep.equal(['applied', 'proposer-balance', 'proposer-balance'])
    expect(fees.map(e => e.to)).to.deep.equal([alice, bob, carol].map(v => hexOf(v.publicKey)).sort())
    expect(balance(ledger, client)).to.equal(400n)
    expect(ledger.fees).to.equal(600n)
    expect(ledger.minted).to.equal(GENESIS)
  })

  it('the independent checker finds a tampered result: a double credit, a balance changed, a receipt credited unsigned', async () => {
    const world = await funded()
    await world.receiptBlock(stage, [await world.receipt(client, stage)])
    const ledger = await fold(world)
    const paid = ledger.entries.find(e => e.kind === 'receipt') as LedgerEntry
    const twice = { ...ledger, entries: [...ledger.entries, { ...paid, id: `${paid.id}x` }] }
    expect(checkLedger(twice).map(v => v.invariant)).to.include('double-credit')
    const changed = { ...ledger, balances: new Map([...ledger.balances, [hexOf(stage.publicKey), 21n]]) }
    expect(checkLedger(changed).map(v => v.invariant)).to.include('supply')
    const unsigned = { ...ledger, entries: ledger.entries.map(e => e === paid ? { ...e, signatures: { client: true, stage: false } } : e) }
    expect(checkLedger(unsigned).map(v => v.invariant)).to.deep.equal(['unsigned-credit'])
    const overdrawn = { ...ledger, entries: ledger.entries.map(e => e === paid ? { ...e, amount: 5000n } : e) }
    expect(checkLedger(overdrawn).map(v => v.invariant)).to.include('negative')
  })
})
