/**
 * Issue 12's acceptance line "a job whose result does not lower the eval
 * loss is proposed and rejected by the validators like any other proposal
 * (no special path)": a job with a far too large learning rate on data
 * sampled from the model itself (the base is already as good as it gets
 * there) raises the eval loss; trainLocal({ propose: true }) writes its
 * Delta blocks (lowrank codec for the LoRA result) and the Proposal through
 * delta-propose.ts; the validator (the importer, a set of one) runs the real
 * validation path in-process and rejects it; the fold marks it rejected and
 * the live version and the hash of its weights do not move.
 */
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { trainLocal } from '../../../src/learning/train/local-train.ts'
import { selectBackend } from '../../../src/model/backend.ts'
import { removeDir, signer, tempDir } from '../../chain/helpers.ts'
import { addIdsDataset, foldWorld, liveState, polWorld, runValidator, sampleSequences, tinyModel } from '../helpers-pol.ts'
import type { PolWorld } from '../helpers-pol.ts'

const A = signer(1)
const P = signer(5)

describe('learning/train proposals through the validators', function () {
  this.timeout(300_000)
  let dir: string
  let w: PolWorld

  before(async () => {
    await selectBackend('wasm')
    dir = await tempDir('bly-train-propose-')
    w = await polWorld(join(dir, 'chain'), A)
    const { config, tensors } = await tinyModel()
    await addIdsDataset(w, 'own-samples', await sampleSequences(config, tensors, 40, 32, 3), { splitTokens: 32, evalPermille: 500 })
  })

  after(async () => {
    await w?.store.stop()
    await removeDir(dir)
  })

  it('a job that raises the eval loss is proposed and rejected like any other proposal', async () => {
    const live = await liveState(w)
    const r = await trainLocal({ store: w.store, signer: P, dataset: 'own-samples', steps: 3, lr: 0.5, batch: 2, seq: 32, loraRank: 2, evalWindows: 4, propose: true })
    expect(Object.keys(r).sort()).to.deep.equal(['evalLoss', 'losses', 'proposalId', 'steps', 'tokensPerSecond'])
    expect(r.evalLoss.after, JSON.stringify(r.evalLoss)).to.be.greaterThan(r.evalLoss.before)
    expect(r.proposalId).to.match(/^[0-9a-f]{64}$/)
    const pending = (await foldWorld(w)).proposals.find(p => p.id === r.proposalId)
    expect(pending).to.include({ status: 'pending' })

    const done = await runValidator(w, A)
    expect(done.map(d => d.proposal)).to.deep.equal([r.proposalId])
    expect(done[0].block.header.fields.get('verdict')?.value).to.equal('reject')
    expect(done[0].outcome.reason).to.be.oneOf(['insufficient-gain', 'not-significant'])
    const fold = await foldWorld(w)
    expect(fold.proposals.find(p => p.id === r.proposalId)).to.include({ status: 'rejected', reason: done[0].outcome.reason })
    expect(await liveState(w)).to.deep.equal(live)
  })
})
