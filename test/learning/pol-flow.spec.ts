/**
 * Proof-of-Learning end to end in one process, on a real chain store with
 * real keys and the real code paths: `model import` with its genesis, a
 * second validator added by motion, `delta propose` of a checkpoint, two
 * validators measuring it (validator.ts) and the fold deciding.
 * - a checkpoint that truly lowers the loss (helpers-pol.ts): both accept,
 * the live version moves, and its weights are the checkpoint's;
 * - a checkpoint that does not (the fixture plus random noise): rejected,
 * the live version unchanged.
 */
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { proposeCheckpoint } from '../../src/learning/delta-propose.ts'
import { initialVersionId, nextVersionId } from '../../src/learning/fold/ids.ts'
import { versionWeights } from '../../src/learning/version-weights.ts'
import { weightsHash } from '../../src/learning/weights-hash.ts'
import { selectBackend } from '../../src/model/backend.ts'
import { toFloat32 } from '../../src/model/safetensors/dtypes.ts'
import { removeDir, signer, tempDir } from '../chain/helpers.ts'
import { addIdsDataset, addValidator, foldWorld, hexOf, noisy, polWorld, realisticDeltas, runValidator, sampleSequences, shifted, tinyModel, writeCheckpoint } from './helpers-pol.ts'
import type { PolWorld } from './helpers-pol.ts'
import type { Qwen3Config } from '../../src/model/qwen3/config.ts'
import type { RawTensor } from '../../src/model/safetensors/dtypes.ts'

describe('learning/Proof-of-Learning flow (in-process, two validators)', function () {
  this.timeout(300_000)
  const A = signer(1)
  const B = signer(2)
  const C = signer(3)
  const env = {} as { dir: string, config: Qwen3Config, base: Map<string, RawTensor>, target: Map<string, RawTensor>, seqs: number[][], good: string, bad: string, worlds: PolWorld[] }

  before(async () => {
    await selectBackend('wasm')
    env.dir = await tempDir('bly-pol-flow-')
    const { config, tensors } = await tinyModel()
    env.config = config
    env.base = tensors
    env.target = shifted(tensors, realisticDeltas(tensors, 1), 1)
    env.seqs = await sampleSequences(config, env.target, 160, 32, 7)
    env.good = await writeCheckpoint(join(env.dir, 'good'), env.target)
    env.bad = await writeCheckpoint(join(env.dir, 'noise'), noisy(tensors, 1, 5))
    env.worlds = []
  })

  after(async () => {
    for (const w of env.worlds) {
      await w.store.stop()
    }
    await removeDir(env.dir)
  })

  async function world (name: string): Promise<PolWorld> {
    const w = await polWorld(join(env.dir, name), A)
    env.worlds.push(w)
    await addIdsDataset(w, 'target-samples', env.seqs, { splitTokens: 32, evalPermille: 500 })
    await addValidator(w, [A], B.publicKey)
    const fold = await foldWorld(w)
    expect(fold.governance.current.validators).to.have.members([hexOf(A.publicKey), hexOf(B.publicKey)])
    expect(fold.governance.current.quorum).to.equal(2)
    return w
  }

  it('a checkpoint that lowers the eval loss: proposed, both validators accept, the live version moves to its weights', async () => {
    const w = await world('good')
    const v0 = hexOf(initialVersionId(w.modelId))
    const r = await proposeCheckpoint({ store: w.store, signer: C, checkpoint: env.good, dataset: 'target-samples' })
    expect(r).to.include.keys('proposalId', 'deltaIds', 'bytes', 'compressionRatio', 'maxAbsError')
    expect(r.base).to.equal(v0)
    expect(r.deltaIds).to.have.length(w.manifest.units.length)
    expect(r.maxAbsError).to.equal(0)
    expect(r.compressionRatio).to.be.greaterThan(0)
    expect(r.claimed.after).to.be.lessThan(r.claimed.base)

    let fold = await foldWorld(w)
    expect(fold.proposals.map(p => [p.id, p.status])).to.deep.equal([[r.proposalId, 'pending']])

    const [a] = await runValidator(w, A)
    expect(a.outcome.reason).to.equal('ok')
    expect(a.outcome.measurements[0].windows).to.have.length(64)
    expect(Number(a.outcome.rule?.gainPpm)).to.be.at.least(5000)
    fold = await foldWorld(w)
    expect(fold.proposals[0]).to.include({ status: 'pending', accepts: 1 })
    expect(fold.live.id).to.equal(v0)

    const [b] = await runValidator(w, B)
    expect(b.outcome.reason).to.equal('ok')
    // two validators, two seeds: two different samples of the eval windows
    expect(b.outcome.measurements[0].windows).to.not.deep.equal(a.outcome.measurements[0].windows)
    fold = await foldWorld(w)
    expect(fold.proposals[0]).to.include({ status: 'accepted', reason: 'ok', accepts: 2 })
    expect(fold.proposals[0].gain).to.be.greaterThan(0.005)
    expect(fold.live.id).to.equal(hexOf(nextVersionId(initialVersionId(w.modelId), Buffer.from(r.proposalId, 'hex'))))
    expect(fold.live.acceptedDeltas.map(d => d.delta)).to.deep.equal(r.deltaIds)

    // the live weights are the checkpoint's (up to the elements f32 cannot carry as a difference)
    const live = await versionWeights(w.store, w.manifest, fold.live)
    let differ = 0
    for (const u of live) {
      for (const [name, t] of u.tensors) {
        const want = toFloat32(env.target.get(name) as RawTensor)
        for (let i = 0; i < want.length; i++) {
          if (t.values[i] !== want[i]) {
            differ++
            expect(Math.abs(t.values[i] - want[i])).to.be.at.most(Math.abs(want[i]) * 2 ** -23 + 1e-30)
          }
        }
      }
    }
    expect(differ).to.equal(r.inexact)
    // and every node computes the same bits
    expect(hexOf(weightsHash(live))).to.equal(hexOf(weightsHash(await versionWeights(w.store, w.manifest, fold.live))))
    // the validators have nothing left to do
    expect(await runValidator(w, A)).to.deep.equal([])
  })

  it('a checkpoint that does not lower the loss: rejected with the rule\'s reason, the live version unchanged', async () => {
    const w = await world('bad')
    const v0 = hexOf(initialVersionId(w.modelId))
    const r = await proposeCheckpoint({ store: w.store, signer: C, checkpoint: env.bad, dataset: 'target-samples' })
    const [a] = await runValidator(w, A)
    expect(a.outcome.reason).to.equal('insufficient-gain')
    expect(a.outcome.measurements[0].windows).to.have.length(64)
    const fold = await foldWorld(w)
    // n = 2, quorum 2: one counted reject makes quorum unreachable
    expect(fold.proposals.find(p => p.id === r.proposalId)).to.include({ status: 'rejected', reason: 'insufficient-gain', rejects: 1 })
    expect(fold.live.id).to.equal(v0)
    expect(fold.versions).to.have.length(1)
    expect(await runValidator(w, B)).to.deep.equal([])
  })
})
