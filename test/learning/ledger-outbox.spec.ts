/**
 * A stage's receipt outbox (src/learning/ledger/outbox.ts) on a real
 * chain store: it co-signs a client-signed receipt only when it describes
 * the session the stage served (and refuses, one case each, another stage,
 * another client, other layers, other positions, more tokens than
 * positions, a bad client signature, another version than the session
 * pinned, refused terms, a reused or spent nonce), publishes its receipts
 * as Receipt blocks by batch, on its timer and on stop, and the ledger fold
 * pays exactly what it co-signed.
 */
import { expect } from 'aegir/chai'
import { checkLedger } from '../../src/learning/ledger/check.ts'
import { ReceiptOutbox } from '../../src/learning/ledger/outbox.ts'
import { ledgerHead, receiptNonceSpent, receiptTermsRefusal } from '../../src/learning/ledger/query.ts'
import { signReceiptBody } from '../../src/learning/ledger/receipt-signing.ts'
import { encodeReceiptBody } from '../../src/protocols/receipt.ts'
import { removeDir, signer, tempDir } from '../chain/helpers.ts'
import { hexOf } from './fold-world.ts'
import { LedgerWorld, balance } from './ledger-world.ts'
import type { ChainStore } from '../../src/chain/index.ts'
import type { ServedSession } from '../../src/learning/ledger/outbox.ts'
import type { ReceiptBody } from '../../src/protocols/receipt.ts'

const alice = signer(1)
const client = signer(30)
const stage = signer(31)
const other = signer(32)

describe('learning/ledger: a stage\'s receipt outbox', function () {
  this.timeout(60_000)
  let dir: string
  let store: ChainStore
  let world: LedgerWorld
  let outbox: ReceiptOutbox | undefined

  beforeEach(async () => {
    dir = await tempDir('bly-outbox-')
    world = await new LedgerWorld(alice).init()
    await world.transfer(alice, client, 10_000n)
    store = await world.store(`${dir}/s`)
  })

  afterEach(async () => {
    await outbox?.stop().catch(() => {})
    outbox = undefined
    await store.stop()
    await removeDir(dir)
  })

  function make (options: { batchSize?: number, flushIntervalMs?: number } = {}): ReceiptOutbox {
    outbox = new ReceiptOutbox({
      store: () => store,
      signer: stage,
      terms: async body => receiptTermsRefusal(await world.ledger(store), body),
      spent: async body => receiptNonceSpent((await world.ledger(store)).ledger, hexOf(body.client), hexOf(body.stage), body.nonce),
      parents: async () => {
        const head = ledgerHead((await world.ledger(store)).ledger)
        return head != null ? [Uint8Array.from(Buffer.from(head.block, 'hex'))] : []
      },
      ...options
    })
    outbox.start()
    return outbox
  }

  function served (over: Partial<ServedSession> = {}): ServedSession {
    return { model: world.model, client: client.publicKey, layerStart: 0, layerEnd: 2, positions: 10, ...over }
  }

  let nonce = 0n
  function body (over: Partial<ReceiptBody> = {}): ReceiptBody {
    return {
      model: world.model,
      version: world.v0,
      governance: world.g0,
      session: new Uint8Array(16).fill(Number(++nonce)),
      client: client.publicKey,
      stage: stage.publicKey,
      nonce,
      layerStart: 0,
      layerEnd: 2,
      positions: 10,
      tokens: 3,
      time: 1_700_000_000_000n,
      ...over
    }
  }

  async function clientSigned (b: ReceiptBody, by = client): Promise<[Uint8Array, Uint8Array]> {
    const bytes = encodeReceiptBody(b)
    return [bytes, await signReceiptBody(bytes, by)]
  }

  it('co-signs a receipt of the session it served; flush publishes a Receipt block the fold pays', async () => {
    const box = make()
    const [bytes, sig] = await clientSigned(body())
    const signed = await box.cosign(bytes, sig, served())
    expect(hexOf(signed.stage)).to.equal(hexOf(stage.publicKey))
    expect(box.pending).to.equal(1)
    const ids = await box.flush()
    expect(ids).to.have.length(1)
    expect(box.pending).to.equal(0)
    const { ledger } = await world.ledger(store)
    expect(checkLedger(ledger)).to.deep.equal([])
    expect(balance(ledger, stage)).to.equal(20n)
    expect(balance(ledger, client)).to.equal(10_000n - 20n)
  })

  it('refuses, one case each, and keeps nothing: another stage, client, layers, positions; more tokens than positions; a bad signature; another version than the session pinned', async () => {
    const box = make()
    const cases: Array<[Partial<ReceiptBody>, Partial<ServedSession>, RegExp, typeof client?]> = [
      [{ stage: other.publicKey }, {}, /another stage/],
      [{}, { client: other.publicKey }, /another client/],
      [{ layerEnd: 3 }, {}, /another model or layers/],
      [{ model: new Uint8Array(32).fill(5) }, {}, /another model or layers/],
      [{ positions: 11 }, {}, /claims 11 positions, the stage ran 10/],
      [{ tokens: 11 }, {}, /11 tokens over 10 positions/],
      [{}, {}, /signature of the receipt does not verify/, other],
      // a session that pinned a weights version: the receipt must name it
      [{}, { version: new Uint8Array(32).fill(7) }, /names version [0-9a-f]{64}, the session ran 0707/]
    ]
    for (const [over, session, message, by] of cases) {
      const [bytes, sig] = await clientSigned(body(over), by)
      let err: any
      try {
        await box.cosign(bytes, sig, served(session))
      } catch (e) {
        err = e
      }
      expect(err?.code, String(message)).to.equal('ERR_LEDGER_RECEIPT')
      expect(err.message).to.match(message)
    }
    expect(box.pending).to.equal(0)
  })

  it('refuses terms the fold would skip (unknown version or governance state)', async () => {
    const box = make()
    for (const over of [{ version: new Uint8Array(32).fill(9) }, { governance: new Uint8Array(32).fill(9) }]) {
      const [bytes, sig] = await clientSigned(body(over))
      let err: any
      await box.cosign(bytes, sig, served()).catch(e => { err = e })
      expect(err?.message).to.match(/terms are refused/)
    }
  })

  it('never signs one nonce twice: not in this outbox, nor one the chain already judged', async () => {
    const box = make()
    const first = body()
    const [bytes, sig] = await clientSigned(first)
    await box.cosign(bytes, sig, served())
    const [again, againSig] = await clientSigned({ ...first, session: new Uint8Array(16).fill(99) })
    let err: any
    await box.cosign(again, againSig, served()).catch(e => { err = e })
    expect(err?.message).to.match(/nonce .* was used with this stage before/)
    await box.flush()
    // a fresh outbox (a restarted stage) learns it from the chain
    await box.stop()
    const fresh = make()
    err = undefined
    await fresh.cosign(again, againSig, served()).catch(e => { err = e })
    expect(err?.message).to.match(/nonce .* was used with this stage before/)
  })

  it('publishes by batch, on its timer, and on stop', async () => {
    const box = make({ batchSize: 2, flushIntervalMs: 100 })
    for (let i = 0; i < 2; i++) {
      const [bytes, sig] = await clientSigned(body())
      await box.cosign(bytes, sig, served())
    }
    await box.flush()
    const [bytes, sig] = await clientSigned(body())
    await box.cosign(bytes, sig, served())
    expect(box.pending).to.equal(1)
    const deadline = Date.now() + 10_000
    while (box.pending > 0 && Date.now() < deadline) {
      await new Promise(resolve => setTimeout(resolve, 20))
    }
    expect(box.pending).to.equal(0)
    const [b2, s2] = await clientSigned(body())
    await box.cosign(b2, s2, served())
    await box.stop()
    expect(box.pending).to.equal(0)
    const { ledger } = await world.ledger(store)
    expect(ledger.counts.receiptsPaid).to.equal(4)
    expect(ledger.counts.blocks).to.equal(1 + 3)
    expect(checkLedger(ledger)).to.deep.equal([])
  })
})
