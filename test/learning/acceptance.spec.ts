/**
 * Issue 11's acceptance, with three real `blyd` daemons on 127.0.0.1:
 *
 * - node 1 imports the tiny fixture (its key is the model's first
 * validator) and a dataset, and serves layers [0, 2); node 2 (`--full`)
 * serves [2, 4) and proposes; node 3 (`--full`, serving nothing) is added
 * to the validator set with `validators --add` (then the quorum is 2 of 2);
 * - the checkpoint that truly lowers the eval loss: T = the fixture + a
 * seeded realistic delta (helpers-pol.ts: low-rank dominated, relRms 2),
 * and the dataset = token ids sampled from T itself, so T's cross-entropy
 * on held-out windows is lower than the fixture's by KL(T || fixture)
 * (~4.5% of the loss); the checkpoint that does not: the fixture plus
 * random noise of its own RMS;
 * - a generation running across the acceptance: node 1 starts it (the live
 * version V0 then) through its own span and node 2's; once node 1 has
 * attested, node 3 is down and node 2 is paused (SIGSTOP) in the middle of
 * the generation; node 3 comes back, attests, the proposal is accepted and
 * node 1 switches its span to V1 (its V0 copy kept for the running
 * session: two copies, the bound in its status); node 2 resumes, the
 * generation finishes on V0: the fixture's reference tokens. So the
 * generation provably spans the acceptance, with no wall-clock race.
 *
 * - issue 13's ledger over the same run: node 1 (the importer) holds the
 * genesis allocation and pays node 2 for the generation across the
 * acceptance; it sends node 3 BLY (a Transfer), and node 3's generation
 * after the acceptance pays both stages; the accepted proposal mints for
 * node 2 (gain x rewardPerMicroNat, the gain read from the attestations'
 * per-window losses) and for the agreeing validators, the rejected one pays
 * its rejecting validators from node 2's balance. Every amount is computed
 * here from docs/ledger.md's formulas and the params' defaults; every node
 * folds the same balances and `blyd rewards verify` passes on each.
 *
 * The daemons are shared by the tests (one before()), and killed after.
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { IpcClient } from '../../src/daemon/ipc-client.ts'
import { initialVersionId, nextVersionId } from '../../src/learning/fold/ids.ts'
import { PARAMS_DEFAULTS } from '../../src/learning/params-defaults.ts'
import { decodeAttestationPayload } from '../../src/protocols/attestation.ts'
import { ipcRequest, makeTempDir, removeDir, runCliAll, runJson } from '../daemon/helpers.ts'
import { startMeshNode, waitFor } from '../mesh/helpers.ts'
import { TINY, hexOf, jsonl, noisy, realisticDeltas, sampleSequences, shifted, tinyModel, writeCheckpoint } from './helpers-pol.ts'
import type { MeshNode } from '../mesh/helpers.ts'
import type { Expected } from '../model/fixtures.ts'

const SPLIT = { splitTokens: 32, evalPermille: 500 }
/** stages publish co-signed receipts within half a second (--receipt-flush-ms) */
const FLUSH = ['--receipt-flush-ms', '500']
/** what node 1 sends node 3 to pay for its generation (base units) */
const FLOAT = 1_000_000n

/** floor(a / b) for bigints of any sign (b > 0) */
function floorDiv (a: bigint, b: bigint): bigint {
  const q = a / b
  return q * b > a ? q - 1n : q
}

/** A mesh generation's receipts as docs/ledger.md prices them: each remote stage earns positions x layers x price from the client. */
interface Paid { client: string, route: Array<{ peerId: string, start: number, end: number, self: boolean }>, positions: number }

describe('learning acceptance: three daemons on 127.0.0.1', function () {
  this.timeout(240_000)
  let root: string
  const nodes: MeshNode[] = []
  let n1: MeshNode
  let n2: MeshNode
  let n3: MeshNode
  let model: string
  let expected: Expected
  let good: string
  let bad: string
  /** greedy tokens of the improved checkpoint, imported fresh and run --local */
  let improvedTokens: number[]
  let v0: string
  let v1: string
  /** the mesh generations whose receipts the ledger must pay, and the two proposals */
  const paid: Paid[] = []
  let acceptedId: string
  let rejectedId: string

  const request = async <T = any>(n: MeshNode, method: string, params?: Record<string, unknown>): Promise<T> => ipcRequest<T>(n.daemon.socketPath, method, params)
  const show = async (n: MeshNode): Promise<any> => request(n, 'model.show', { model })
  const serving = async (n: MeshNode): Promise<any> => (await request(n, 'status')).serving
  const greedy = (tokens: number): Record<string, unknown> => ({ model, promptIds: expected.greedy.prompt, maxNewTokens: tokens, temperature: 0 })

  async function startN3 (): Promise<MeshNode> {
    return startMeshNode(root, 'n3', ['--bootstrap', n1.addr, '--full', ...FLUSH])
  }

  before(async () => {
    root = await makeTempDir()
    expected = JSON.parse(await readFile(join(TINY, 'expected.json'), 'utf8'))
    const { config, tensors } = await tinyModel()
    const target = shifted(tensors, realisticDeltas(tensors, 1), 1)
    good = await writeCheckpoint(join(root, 'good'), target)
    bad = await writeCheckpoint(join(root, 'noise'), noisy(tensors, 1, 5))
    const datasetFile = join(root, 'target-samples.jsonl')
    await writeFile(datasetFile, jsonl(await sampleSequences(config, target, 40, 32, 7)))

    // the improved checkpoint's own tokens: imported fresh into a data dir of its own, run --local (no daemon there)
    const fresh = join(root, 'fresh')
    await mkdir(fresh, { recursive: true })
    const improved = (async () => {
      const { modelId } = await runJson(['model', 'import', good, '--data-dir', fresh])
      const gen = await runJson(['generate', '--model', modelId, '--prompt-ids', expected.greedy.prompt.join(','), '--temperature', '0', '--max-new-tokens', String(expected.greedy.tokens.length), '--local', '--backend', 'cpu', '--workers', '0', '--data-dir', fresh])
      return gen.tokens as number[]
    })()

    // node 1 imports the model (offline, so it starts serving it at once); its key is the first validator
    const imported = await runJson(['model', 'import', TINY, '--data-dir', join(root, 'n1')])
    model = imported.modelId
    v0 = hexOf(initialVersionId(Buffer.from(model, 'hex')))
    // node 1 generates across the acceptance: a paused stage must not be given up on (step deadline floor 60 s)
    n1 = await startMeshNode(root, 'n1', ['--model', model, '--layers', '0-2', '--step-timeout-ms', '120000', '--step-deadline-floor-ms', '60000', ...FLUSH])
    nodes.push(n1)
    // node 2's stage is slowed (100 ms a step) so a generation through it can be paused halfway
    ;[n2, n3] = await Promise.all([
      startMeshNode(root, 'n2', ['--bootstrap', n1.addr, '--full', '--model', model, '--layers', '2-4', ...FLUSH], { BLYD_TEST_STEP_DELAY_MS: '100' }),
      startN3()
    ])
    nodes.push(n2, n3)

    await request(n1, 'data.add', { path: datasetFile, name: 'target-samples', model, format: 'ids', ...SPLIT })
    // node 3 joins the validator set: a 1-member set's motion applies at once
    const added = await request(n1, 'validators', { model, add: n3.peerId })
    expect(added.validators.map((v: any) => v.peerId)).to.have.members([n1.peerId, n3.peerId])
    await waitFor('every node to hold the model, the dataset and the 2-validator set', async () => {
      const sets = await Promise.all(nodes.map(async n => request(n, 'validators', { model })))
      return sets.every(s => s.validators.length === 2 && s.quorum === 2)
    }, 30_000)
    await waitFor('both spans served in V0', async () => {
      const spans = (await request(n1, 'peers', { model })).spans
      return spans.length === 2 && spans.every((s: any) => s.version === v0)
    }, 30_000)
    improvedTokens = await improved
  })

  after(async () => {
    for (const n of nodes) {
      if (n.daemon.running) {
        process.kill(n.daemon.pid, 'SIGCONT')
      }
    }
    await Promise.allSettled(nodes.map(async n => n.daemon.kill()))
    await removeDir(root)
  })

  it('a checkpoint that lowers the loss is accepted; every node moves to one version with bit-identical weights; the mesh generates the checkpoint\'s tokens; a generation across the acceptance finishes on the old version', async () => {
    for (const n of nodes) {
      expect(await show(n)).to.include({ version: v0, liveVersion: v0, versionIndex: 0 })
    }
    // node 3 is down while node 1 attests: the proposal waits for the second of two validators
    await n3.daemon.kill('SIGTERM')
    const proposed = await request(n2, 'delta.propose', { model, checkpoint: good, dataset: 'target-samples' })
    expect(proposed.base).to.equal(v0)
    acceptedId = proposed.proposalId
    v1 = hexOf(nextVersionId(Buffer.from(v0, 'hex'), Buffer.from(proposed.proposalId, 'hex')))
    const first = await waitFor('node 1 to attest', async () => {
      const p = await request(n1, 'proposal.show', { id: proposed.proposalId, model })
      return p.attestations.length === 1 ? p : undefined
    }, 60_000)
    expect(first).to.include({ status: 'pending' })
    expect(first.attestations[0]).to.include({ verdict: 'accept', reason: 'ok' })

    // node 1 generates through [0, 2) (its own) and node 2's [2, 4), on V0; node 2 is paused after the first token
    const client = await IpcClient.connect({ socketPath: n1.daemon.socketPath })
    const streamed: number[] = []
    const firstToken = Promise.withResolvers<void>()
    let settled = false
    const running = client.request('generate', greedy(expected.greedy.tokens.length) as any, {
      onStream: (t: any) => {
        streamed.push(t.token)
        if (streamed.length === 1) {
          process.kill(n2.daemon.pid, 'SIGSTOP')
          firstToken.resolve()
        }
      }
    }).finally(() => { settled = true })
    running.catch(() => {})
    await firstToken.promise

    try {
      // node 3 comes back, attests; the proposal is accepted and node 1 moves its span to V1
      nodes[2] = n3 = await startN3()
      await waitFor('node 1 to serve V1', async () => (await serving(n1)).version === v1 ? true : undefined, 60_000)
      const during = await serving(n1)
      // the generation is still running: it started before the acceptance and waits on node 2
      expect(settled, 'the generation outlasted the acceptance').to.equal(false)
      expect(streamed.length).to.be.below(expected.greedy.tokens.length)
      // the V0 copy stays for the running session: two copies of the span, within the bound
      expect(during.draining).to.deep.equal([{ version: v0, start: 0, end: 2, sessions: 1 }])
      expect(during.weights.copies).to.equal(2)
      expect(during.weights.bytes).to.equal(2 * during.weights.spanBytes)
      expect(during.weights.bytes).to.be.at.most(during.weights.boundBytes)
      expect(during.lastSwitch).to.include({ from: v0, to: v1 })
    } finally {
      process.kill(n2.daemon.pid, 'SIGCONT')
    }
    const across = await running
    client.close()
    expect(across.version).to.equal(v0)
    expect(across.via).to.equal('mesh')
    expect(across.tokens).to.deep.equal(expected.greedy.tokens)
    expect(across.recoveries).to.deep.equal([])
    // node 1 pays the remote stage (node 2) for the prompt and every token but the last
    paid.push({ client: n1.peerId, route: across.route ?? [], positions: expected.greedy.prompt.length + across.tokens.length - 1 })

    // every node: the same version, the same accepted deltas, bit-identical weights
    const shown = await waitFor('all three nodes to report V1', async () => {
      const all = await Promise.all(nodes.map(show))
      return all.every(d => d.version === v1 && d.weightsHash != null) ? all : undefined
    }, 60_000)
    for (const d of shown) {
      expect(d).to.include({ version: v1, liveVersion: v1, versionIndex: 1, weightsHash: shown[0].weightsHash })
      expect(d.acceptedDeltas.map((a: any) => a.delta)).to.deep.equal(proposed.deltaIds)
    }
    expect(shown[0].weightsHash).to.match(/^[0-9a-f]{64}$/)
    const proposal = await request(n3, 'proposal.show', { id: proposed.proposalId, model })
    expect(proposal).to.include({ status: 'accepted', accepts: 2 })

    // both spans serve V1 alone (old copies freed), and the mesh generates the improved checkpoint's tokens
    await waitFor('both spans on V1 with one copy each', async () => {
      const [a, b] = await Promise.all([serving(n1), serving(n2)])
      const spans = (await request(n3, 'peers', { model })).spans
      return [a, b].every(s => s.version === v1 && s.weights.copies === 1 && s.draining == null) && spans.length === 2 && spans.every((s: any) => s.version === v1)
    }, 60_000)
    // node 3 gets BLY from node 1 (a Transfer) before it generates: it pays both stages
    const sent = await request(n1, 'rewards.send', { model, to: n3.peerId, amount: String(FLOAT) })
    expect(sent).to.include({ to: (await request(n3, 'rewards.balance', { model })).key, amount: String(FLOAT) })
    await waitFor('every node to fold the transfer to node 3', async () => {
      const all = await Promise.all(nodes.map(async n => request(n, 'rewards.history', { model, peer: n3.peerId })))
      return all.every(h => h.entries.some((e: any) => e.id === `transfer:${sent.transfer}` && e.applied === true)) ? true : undefined
    }, 30_000)
    const after = await request(n3, 'generate', greedy(expected.greedy.tokens.length))
    expect(after).to.include({ via: 'mesh', version: v1 })
    paid.push({ client: n3.peerId, route: after.route, positions: expected.greedy.prompt.length + after.tokens.length - 1 })
    expect(after.route.map((h: any) => [h.peerId, h.start, h.end])).to.deep.equal([[n1.peerId, 0, 2], [n2.peerId, 2, 4]])
    expect(after.tokens).to.deep.equal(improvedTokens)
    expect(improvedTokens).to.not.deep.equal(expected.greedy.tokens)

    // --version pins V0: no span serves it any more, node 1 holds every unit, so it runs there, on V0
    const pinned = await request(n1, 'generate', { ...greedy(expected.greedy.tokens.length), version: v0.slice(0, 12) })
    expect(pinned).to.include({ via: 'local', version: v0 })
    expect(pinned.tokens).to.deep.equal(expected.greedy.tokens)
  })

  it('a checkpoint that does not lower the loss is rejected; the version stays the same everywhere', async () => {
    const before = await Promise.all(nodes.map(show))
    const proposed = await request(n2, 'delta.propose', { model, checkpoint: bad, dataset: 'target-samples' })
    expect(proposed.base).to.equal(v1)
    rejectedId = proposed.proposalId
    const judged = await waitFor('every node to see the proposal rejected', async () => {
      const all = await Promise.all(nodes.map(async n => request(n, 'proposal.show', { id: proposed.proposalId, model })))
      return all.every(p => p.status === 'rejected') ? all : undefined
    }, 60_000)
    for (const p of judged) {
      expect(p.reason).to.equal(judged[0].reason)
      expect(p.reason).to.not.equal('ok')
    }
    const after = await Promise.all(nodes.map(show))
    for (let i = 0; i < nodes.length; i++) {
      expect(after[i]).to.include({ version: v1, weightsHash: before[i].weightsHash })
      expect(after[i].acceptedDeltas).to.deep.equal(before[i].acceptedDeltas)
    }
    for (const s of await Promise.all([serving(n1), serving(n2)])) {
      expect(s).to.include({ version: v1 })
    }
  })

  it('the ledger: the mesh\'s receipts pay the remote stages from the client, the accepted proposal mints for its proposer and agreeing validators, the rejected one pays its rejecting validators; equal balances and `blyd rewards verify` on every node', async () => {
    const price = BigInt(PARAMS_DEFAULTS.priceLayerPosition.value)
    const perMicroNat = BigInt(PARAMS_DEFAULTS.rewardPerMicroNat.value)
    const validatorReward = BigInt(PARAMS_DEFAULTS.validatorReward.value)
    const keyOf = new Map<string, string>()
    for (const n of nodes) {
      keyOf.set(n.peerId, (await request(n, 'rewards.balance', { model })).key)
    }
    const want = new Map<string, bigint>(nodes.map(n => [n.peerId, 0n]))
    const add = (peer: string, amount: bigint): void => { want.set(peer, (want.get(peer) ?? 0n) + amount) }

    // genesis: the importer (node 1) holds the allocation; node 1 sent node 3 its float
    let minted = BigInt(PARAMS_DEFAULTS.genesisAllocation.value)
    add(n1.peerId, minted)
    add(n1.peerId, -FLOAT)
    add(n3.peerId, FLOAT)
    // receipts: positions x layers x price to each remote stage, from the client (this node's own span runs in-process: no receipt)
    let receipts = 0
    for (const g of paid) {
      for (const hop of g.route.filter(h => !h.self)) {
        const amount = BigInt(g.positions * (hop.end - hop.start)) * price
        add(hop.peerId, amount)
        add(g.client, -amount)
        receipts++
      }
    }
    expect(receipts).to.equal(3)
    const peerOfKey = (key: string): string => [...keyOf].find(([, k]) => k === key)?.[0] ?? key

    // the accepted proposal: gain = lower median over the counted accepting attestations of floor(sum(base_i - cand_i) / m) on its dataset
    const accepted = await request(n1, 'proposal.show', { id: acceptedId, model })
    expect(accepted).to.include({ status: 'accepted', accepts: 2 })
    const gains: bigint[] = []
    for (const a of accepted.attestations.filter((a: any) => a.counted === true && a.effectiveVerdict === 'accept')) {
      const pieces: Buffer[] = []
      const client = await IpcClient.connect({ socketPath: n1.daemon.socketPath })
      await client.request('chain.payload', { id: a.id } as any, { onStream: (p: any) => { pieces.push(Buffer.from(p.data, 'base64')) } })
      client.close()
      const m = decodeAttestationPayload(Buffer.concat(pieces)).find(d => hexOf(d.datasetId) === accepted.dataset)
      expect(m, 'the attestation measured the proposal\'s dataset').to.not.equal(undefined)
      let sum = 0n
      for (let i = 0; i < m!.base.length; i++) {
        sum += m!.base[i] - m!.cand[i]
      }
      gains.push(floorDiv(sum, BigInt(m!.base.length)))
      add(peerOfKey(a.validator), validatorReward)
      minted += validatorReward
    }
    gains.sort((a, b) => Number(a > b) - Number(a < b))
    const gain = gains[Math.floor((gains.length - 1) / 2)]
    expect(gain > 0n, 'the accepted checkpoint measured a gain').to.equal(true)
    add(n2.peerId, gain * perMicroNat)
    minted += gain * perMicroNat

    // every node, once the stages' Receipt blocks reached it
    const folded = await waitFor('every node to fold the three receipts', async () => {
      const all = await Promise.all(nodes.map(async n => request(n, 'rewards.verify')))
      return all.every(v => v.models.length === 1 && v.models[0].receiptsPaid + v.models[0].receiptsSkipped >= receipts) ? all : undefined
    }, 30_000)

    // the rejected proposal: its proposer (node 2) pays each counted rejecting validator, in key order, while its balance covers it
    // at the fee's position in the fold (docs/ledger.md's order: depth, then block id; both proposals sit at the same depth,
    // so whether the accepted one's reward comes first depends on the ids): node 2's history gives that order
    const rejected = await request(n1, 'proposal.show', { id: rejectedId, model })
    expect(rejected.status).to.equal('rejected')
    const rejecters = rejected.attestations.filter((a: any) => a.counted === true && a.effectiveVerdict === 'reject').map((a: any) => a.validator as string).sort()
    expect(rejecters).to.have.length(rejected.rejects)
    expect(rejecters.length).to.be.above(0)
    const history: any[] = (await request(n1, 'rewards.history', { model, peer: n2.peerId })).entries
    const fees = history.filter(e => e.kind === 'fee' && String(e.id).startsWith(`fee:${rejectedId}:`))
    expect(fees.map(e => e.to)).to.deep.equal(rejecters)
    for (const fee of fees) {
      const at = history.indexOf(fee)
      const before = at > 0 ? BigInt(history[at - 1].balanceAfter) : 0n
      expect(fee.amount).to.equal(String(validatorReward))
      if (before >= validatorReward) {
        expect(fee).to.include({ applied: true, from: keyOf.get(n2.peerId), change: String(-validatorReward) })
        add(n2.peerId, -validatorReward)
        add(peerOfKey(fee.to), validatorReward)
      } else {
        expect(fee).to.include({ applied: false, reason: 'proposer-balance', change: '0' })
      }
    }

    // exactly these balances on every node, the same total minted
    const wanted = nodes.map(n => ({ peer: n.peerId, balance: String(want.get(n.peerId)) }))
    for (const v of folded) {
      expect(v.ok).to.equal(true)
      expect(v.models[0]).to.include({ model, receiptsPaid: receipts, receiptsSkipped: 0, transfersApplied: 1, minted: String(minted), accounts: 3 })
      expect(v.models[0].violations).to.deep.equal([])
    }
    const balancesOn = await Promise.all(nodes.map(async n => Promise.all(nodes.map(async p => request(n, 'rewards.balance', { model, peer: p.peerId })))))
    for (const [i, balances] of balancesOn.entries()) {
      expect(balances.map(b => ({ peer: b.peer, balance: b.balance })), `the balances on ${nodes[i].name}`).to.deep.equal(wanted)
      expect(balances.every(b => b.minted === String(minted))).to.equal(true)
    }
    expect(wanted.reduce((sum, w) => sum + BigInt(w.balance), 0n)).to.equal(minted)

    // `blyd rewards verify` through each daemon: folds again, checks every invariant, exits 0
    const verified = await runCliAll(nodes.map(n => ({ args: ['rewards', 'verify', '--data-dir', n.dir, '--json'] })))
    for (const r of verified) {
      expect(r.code, r.stderr).to.equal(0)
      expect(JSON.parse(r.stdout)).to.include({ ok: true })
    }
  })
})
