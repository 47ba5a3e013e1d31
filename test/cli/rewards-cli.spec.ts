/**
 * `blyd rewards balance|history|explain|send|verify` through the real CLI,
 * offline (the data dir opened in the CLI process) and through a real
 * daemon (status shows the balance; the metrics carry the ledger series).
 * The chain is written in-process first: a model whose genesis Params
 * (authored by the node's own key) allocate 1000 base units, and a Receipt
 * block by a stage paying for a client the node funded. The JSON fields the
 * issue names are an interface: checked by name.
 */
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { createChainStore, createSignerFromSeed } from '../../src/chain/index.ts'
import { BlockType, ChainId } from '../../src/chain/types.ts'
import { CHAIN_DIR_NAME } from '../../src/daemon/constants.ts'
import { loadOrCreateIdentity } from '../../src/daemon/identity.ts'
import { initialGovernanceId, initialVersionId } from '../../src/learning/fold/ids.ts'
import { receiptBlock, transferBlock } from '../../src/learning/ledger/new-blocks.ts'
import { coSignReceipt } from '../../src/learning/ledger/receipt-signing.ts'
import { paramsBlock } from '../../src/learning/new-blocks.ts'
import { ipcRequest, makeTempDir, removeDir, runCli, runJson, startDaemon } from '../daemon/helpers.ts'
import type { DaemonProcess } from '../daemon/helpers.ts'

const client = createSignerFromSeed(new Uint8Array(32).fill(71))
const stage = createSignerFromSeed(new Uint8Array(32).fill(72))
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')

describe('blyd rewards (CLI)', function () {
  this.timeout(300_000)
  const env = {} as { dir: string, key: string, model: string, daemon?: DaemonProcess }

  before(async () => {
    env.dir = await makeTempDir()
    const identity = await loadOrCreateIdentity(env.dir)
    env.key = hex(identity.publicKey)
    const store = createChainStore({ path: join(env.dir, CHAIN_DIR_NAME), fsync: false })
    await store.start()
    try {
      const manifest = await store.createBlock({ chain: ChainId.A, type: BlockType.ModelManifest, fields: { units: { kind: 'uint', value: 6n } }, timestamp: 1n }, identity.signer)
      env.model = hex(manifest.id)
      const params = await store.createBlock(paramsBlock(manifest.id, { genesisAllocation: 1000, priceLayerPosition: 2 }), identity.signer)
      const funding = await store.createBlock(transferBlock(manifest.id, client.publicKey, 100n, 1n, [params.id]), identity.signer)
      const receipt = await coSignReceipt({
        model: manifest.id,
        version: initialVersionId(manifest.id),
        governance: initialGovernanceId(manifest.id),
        session: new Uint8Array(16).fill(1),
        client: client.publicKey,
        stage: stage.publicKey,
        nonce: 1n,
        layerStart: 0,
        layerEnd: 3,
        positions: 5,
        tokens: 2,
        time: 1_700_000_000_000n
      }, client, stage)
      await store.createBlock(receiptBlock(manifest.id, [receipt], [funding.id]), stage)
    } finally {
      await store.stop()
    }
  })

  after(async () => {
    await env.daemon?.kill()
    await removeDir(env.dir)
  })

  const dataDir = (): string[] => ['--data-dir', env.dir]

  it('offline: balance, history, explain with the interface fields; the receipt paid 5 x 3 x 2', async () => {
    const mine = await runJson(['rewards', 'balance', ...dataDir()])
    expect(mine).to.have.keys(['model', 'peer', 'key', 'balance', 'minted'])
    expect(mine).to.include({ model: env.model, key: env.key, balance: '900', minted: '1000' })
    expect(mine.peer).to.match(/^12D3KooW/)
    expect(await runJson(['rewards', 'balance', '--peer', hex(stage.publicKey), ...dataDir()])).to.include({ balance: '30' })
    const history = await runJson(['rewards', 'history', '--peer', hex(client.publicKey), '--model', env.model.slice(0, 10), ...dataDir()])
    expect(history.balance).to.equal('70')
    expect(history.entries.map((e: any) => [e.kind, e.change, e.balanceAfter])).to.deep.equal([['transfer', '100', '100'], ['receipt', '-30', '70']])
    const paid = history.entries[1]
    expect(paid).to.include.keys(['id', 'kind', 'applied', 'from', 'to', 'amount', 'block', 'blocks'])
    const explained = await runJson(['rewards', 'explain', paid.id.slice(0, 20), ...dataDir()])
    expect(explained.entry.id).to.equal(paid.id)
    expect(explained.receipt).to.include({ positions: 5, layerStart: 0, layerEnd: 3, priceLayerPosition: '2', client: hex(client.publicKey), stage: hex(stage.publicKey) })
    expect(explained.blocks.map((b: any) => b.type)).to.deep.equal(['receipt'])
    const text = await runCli(['rewards', 'history', ...dataDir()])
    expect(text.code, text.stderr).to.equal(0)
    expect(text.stdout).to.match(/balance 900/)
  })

  it('offline: send writes a Transfer block; refusals (overdraft, bad amount, bad peer, self) write nothing and say why', async () => {
    const sent = await runJson(['rewards', 'send', '--to', hex(stage.publicKey), '--amount', '250', ...dataDir()])
    expect(sent).to.include({ model: env.model, from: env.key, to: hex(stage.publicKey), amount: '250', nonce: '2', balanceBefore: '900', balanceAfter: '650' })
    expect(sent.transfer).to.match(/^[0-9a-f]{64}$/)
    expect(await runJson(['rewards', 'balance', '--peer', hex(stage.publicKey), ...dataDir()])).to.include({ balance: '280' })
    for (const [args, code] of [
      [['--amount', '651'], /holds 650 base units of model [0-9a-f]{64}, less than 651/],
      [['--amount=-5'], /whole number of base units/],
      [['--amount', '1.5'], /whole number of base units/],
      [['--amount', '18446744073709551616'], /whole number of base units from 1 to 18446744073709551615/]
    ] as Array<[string[], RegExp]>) {
      const r = await runCli(['rewards', 'send', '--to', hex(stage.publicKey), ...args, ...dataDir(), '--json'])
      expect(r.code, r.stderr).to.equal(1)
      expect(r.stdout).to.equal('')
      expect(r.stderr).to.match(code)
    }
    const badPeer = await runCli(['rewards', 'send', '--to', 'nobody', '--amount', '1', ...dataDir()])
    expect(badPeer.stderr).to.match(/a peer is an Ed25519 peer id/)
    const self = await runCli(['rewards', 'send', '--to', env.key, '--amount', '1', ...dataDir()])
    expect(self.stderr).to.match(/own key moves nothing/)
    expect(await runJson(['rewards', 'balance', ...dataDir()])).to.include({ balance: '650' })
  })

  it('offline: verify folds again and checks every invariant (exit 0)', async () => {
    const r = await runCli(['rewards', 'verify', ...dataDir(), '--json'])
    expect(r.code, r.stderr).to.equal(0)
    const result = JSON.parse(r.stdout)
    expect(result.ok).to.equal(true)
    expect(result.models).to.have.length(1)
    expect(result.models[0]).to.include({ model: env.model, ok: true, receiptsPaid: 1, transfersApplied: 2, minted: '1000', paid: '30' })
    expect(result.models[0].checks).to.be.at.least(4)
    expect(result.models[0].violations).to.deep.equal([])
  })

  it('through the daemon: the same answers, send gossips a block, status shows the balance, metrics the ledger series', async () => {
    env.daemon = await startDaemon(env.dir)
    expect(await runJson(['rewards', 'balance', ...dataDir()])).to.include({ balance: '650' })
    const sent = await runJson(['rewards', 'send', '--to', hex(client.publicKey), '--amount', '50', ...dataDir()])
    expect(sent).to.include({ nonce: '3', balanceAfter: '600' })
    expect(await runJson(['rewards', 'balance', '--peer', hex(client.publicKey), ...dataDir()])).to.include({ balance: '120' })
    const status = await runJson(['status', ...dataDir()])
    expect(status.ledger).to.deep.equal({ key: env.key, balances: [{ model: env.model, balance: '600' }], pendingReceipts: 0 })
    const verify = await runJson(['rewards', 'verify', ...dataDir()])
    expect(verify.ok).to.equal(true)
    const { text } = await ipcRequest<{ text: string }>(env.daemon.socketPath, 'metrics')
    expect(text).to.match(new RegExp(`blyd_ledger_minted\\{model="${env.model}"\\} 1000`))
    expect(text).to.match(new RegExp(`blyd_ledger_paid\\{model="${env.model}"\\} 30`))
    expect(text).to.match(new RegExp(`blyd_ledger_receipts\\{model="${env.model}",outcome="paid"\\} 1`))
    const bad = await runCli(['rewards', 'explain', 'transfer:00000000', ...dataDir()])
    expect(bad.code).to.not.equal(0)
    expect(bad.stderr).to.match(/no entry of model [0-9a-f]{64} has an id starting with transfer:00000000/)
  })
})
