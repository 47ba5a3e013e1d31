/**
 * The receipt exchange at a session's close, end to end in one process:
 * a real greedy generation through two loopback stage servers (real
 * libp2p, the tiny fixture's layers), the pipeline client signing each
 * stage's receipt with the client's key and sending it before CLOSE, each
 * stage checking it against its own count and co-signing it into its
 * outbox, the outboxes publishing Receipt blocks into a real chain store,
 * and the ledger fold paying each stage exactly positions x layers x price
 * from the client's balance. Also: a stage refuses a receipt that claims
 * more than it ran, and the admission rule for a client without balance.
 */
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { expect } from 'aegir/chai'
import { createSignerFromSeed } from '../../src/chain/block-crypto.ts'
import { checkLedger } from '../../src/learning/ledger/check.ts'
import { ReceiptOutbox } from '../../src/learning/ledger/outbox.ts'
import { ledgerHead, receiptTermsRefusal } from '../../src/learning/ledger/query.ts'
import { ClientReceipts, priorityForBalance, stageReceipts } from '../../src/learning/ledger/receipt-exchange.ts'
import { selectBackend } from '../../src/model/backend.ts'
import { generate } from '../../src/model/generation/generate.ts'
import { LayerRange } from '../../src/model/qwen3/layer-range.ts'
import { createBlyLibp2p } from '../../src/net/libp2p-node.ts'
import { createPipelineClient } from '../../src/pipeline/pipeline-client.ts'
import { createStageServer } from '../../src/pipeline/stage-server.ts'
import { silentLogger } from '../../src/protocols/logger.ts'
import { removeDir, signer, tempDir } from '../chain/helpers.ts'
import { loadFixture, sourceOf } from '../model/fixtures.ts'
import { waitFor } from '../pipeline/helpers.ts'
import { hexOf } from './fold-world.ts'
import { LedgerWorld, balance } from './ledger-world.ts'
import type { ChainStore } from '../../src/chain/index.ts'
import type { BlockSigner } from '../../src/chain/types.ts'
import type { BlyLibp2p } from '../../src/net/libp2p-node.ts'
import type { StageServer } from '../../src/pipeline/stage-server.ts'
import type { Fixture } from '../model/fixtures.ts'

const alice = signer(1)

interface Node {
  libp2p: BlyLibp2p
  signer: BlockSigner
}

async function node (n: number): Promise<Node> {
  const seed = new Uint8Array(32).fill(n)
  const libp2p = await createBlyLibp2p({ privateKey: await generateKeyPairFromSeed('Ed25519', seed), listen: ['/ip4/127.0.0.1/tcp/0'] })
  return { libp2p, signer: createSignerFromSeed(seed) }
}

describe('learning/ledger: the receipt exchange at session close', function () {
  this.timeout(120_000)
  let fixture: Fixture
  let dir: string
  let store: ChainStore
  let world: LedgerWorld
  let local: LayerRange
  let client: Node
  const stages: Array<{ node: Node, layers: LayerRange, server: StageServer, outbox: ReceiptOutbox }> = []

  before(async () => {
    await selectBackend('wasm')
    fixture = await loadFixture('untied-f32')
    dir = await tempDir('bly-exchange-')
    client = await node(60)
    world = await new LedgerWorld(alice).init({ genesis: { priceLayerPosition: 3 }, manifestUnits: fixture.config.numLayers + 2 })
    await world.transfer(alice, client.signer, 5000n)
    store = await world.store(`${dir}/s`)
    local = await LayerRange.load(fixture.config, sourceOf(fixture), { start: 0, end: 0, embedding: true, head: true })
    const outboxOf = (n: Node): ReceiptOutbox => new ReceiptOutbox({
      store: () => store,
      signer: n.signer,
      terms: async body => receiptTermsRefusal(await world.ledger(store), body),
      // the ledger head: a Receipt block folds after the transfer that funded its client
      parents: async () => {
        const head = ledgerHead((await world.ledger(store)).ledger)
        return head != null ? [Uint8Array.from(Buffer.from(head.block, 'hex'))] : []
      }
    })
    for (const [i, [start, end]] of [[0, 3], [3, 4]].entries()) {
      const n = await node(61 + i)
      const outbox = outboxOf(n)
      outbox.start()
      const layers = await LayerRange.load(fixture.config, sourceOf(fixture), { start, end, head: end === fixture.config.numLayers })
      const server = createStageServer({ libp2p: n.libp2p, logger: silentLogger() }, { modelId: hexOf(world.model), layers, receipts: stageReceipts(outbox) })
      await server.start()
      stages.push({ node: n, layers, server, outbox })
    }
  })

  after(async () => {
    for (const s of stages) {
      await s.outbox.stop().catch(() => {})
      await s.server.stop()
      await s.node.libp2p.stop()
      s.layers.dispose()
    }
    await client?.libp2p.stop()
    local?.dispose()
    await store?.stop()
    await removeDir(dir)
  })

  it('a generation leaves one co-signed receipt per stage; published and folded, each stage is paid positions x layers x price by the client', async () => {
    const receipts = new ClientReceipts(client.signer, async () => ({ version: world.v0, governance: world.g0 }))
    const pipeline = createPipelineClient({
      libp2p: client.libp2p,
      modelId: hexOf(world.model),
      local,
      route: stages.map(s => ({ peerId: s.node.libp2p.peerId, multiaddrs: s.node.libp2p.getMultiaddrs(), start: s.layers.start, end: s.layers.end })),
      receipts: receipts.forModel(hexOf(world.model))
    })
    const { prompt, tokens } = fixture.expected.greedy
    const out: number[] = []
    for await (const t of generate(pipeline, prompt, { maxNewTokens: tokens.length })) {
      out.push(t.id)
    }
    expect(out).to.deep.equal(tokens)
    await waitFor('both receipts co-signed', () => stages.every(s => s.outbox.pending === 1))
    const positions = prompt.length + tokens.length - 1
    for (const s of stages) {
      expect(s.server.stats.positions).to.equal(positions)
      expect(s.server.stats).to.include({ receipts: 1, receiptsRefused: 0 })
      expect(await s.outbox.flush()).to.have.length(1)
    }
    const { ledger } = await world.ledger(store)
    expect(checkLedger(ledger)).to.deep.equal([])
    expect(ledger.entries.filter(e => e.kind === 'receipt').map(e => e.reason ?? 'paid')).to.deep.equal(['paid', 'paid'])
    const [first, second] = stages
    expect(balance(ledger, first.node.signer)).to.equal(BigInt(positions * 3 * 3))
    expect(balance(ledger, second.node.signer)).to.equal(BigInt(positions * 3))
    expect(balance(ledger, client.signer)).to.equal(5000n - BigInt(positions * 4 * 3))
  })

  it('a stage refuses a receipt claiming more positions than it ran (counted, nothing kept)', async () => {
    const receipts = new ClientReceipts(client.signer, async () => ({ version: world.v0, governance: world.g0 }))
    const honest = receipts.forModel(hexOf(world.model))
    const inflating = { sign: async (work: Parameters<typeof honest.sign>[0]) => honest.sign({ ...work, positions: work.positions + 5 }) }
    const [only] = stages
    const pipeline = createPipelineClient({
      libp2p: client.libp2p,
      modelId: hexOf(world.model),
      local,
      route: [
        { peerId: only.node.libp2p.peerId, multiaddrs: only.node.libp2p.getMultiaddrs(), start: 0, end: 3 },
        { peerId: stages[1].node.libp2p.peerId, multiaddrs: stages[1].node.libp2p.getMultiaddrs(), start: 3, end: 4 }
      ],
      receipts: inflating
    })
    const refusedBefore = only.server.stats.receiptsRefused
    const { prompt } = fixture.expected.greedy
    for await (const t of generate(pipeline, prompt, { maxNewTokens: 2 })) {
      expect(t.id).to.be.a('number')
    }
    await waitFor('the receipt refused', () => only.server.stats.receiptsRefused === refusedBefore + 1)
    expect(only.outbox.pending).to.equal(0)
  })

  it('admission: a client without balance is served at background priority, one with balance as it asks', () => {
    expect(priorityForBalance(undefined, 2)).to.equal(0)
    expect(priorityForBalance(0n, 2)).to.equal(0)
    expect(priorityForBalance(1n, 2)).to.equal(2)
    expect(priorityForBalance(10n, 1)).to.equal(1)
  })
})
