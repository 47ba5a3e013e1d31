/**
 * `blyd train` through stages on the chain's live weights (mesh/train/
 * stages-train.ts): two train stage services on real libp2p nodes on
 * 127.0.0.1 read their layers' weights from a chain store (chainTrainWeights),
 * the driver reads the dataset and the embedding from it; the result is the
 * one-process job's (trainLocal) and its proposal goes through the
 * Proof-of-Learning path like any other.
 */
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { trainLocal } from '../../src/learning/train/local-train.ts'
import { chainTrainWeights } from '../../src/mesh/train/chain-train-weights.ts'
import { trainThroughStages } from '../../src/mesh/train/stages-train.ts'
import { createTrainStageService } from '../../src/mesh/train/train-stage-service.ts'
import { selectBackend } from '../../src/model/backend.ts'
import { silentLogger } from '../../src/protocols/logger.ts'
import { TRAIN_PROTOCOL } from '../../src/protocols/train.ts'
import { removeDir, signer, tempDir } from '../chain/helpers.ts'
import { addIdsDataset, foldWorld, polWorld, sampleSequences, tinyModel } from '../learning/helpers-pol.ts'
import { startNode } from '../pipeline/helpers.ts'
import type { TrainHop } from '../../src/mesh/train/pipeline-train.ts'
import type { BlyLibp2p } from '../../src/net/libp2p-node.ts'
import type { PolWorld } from '../learning/helpers-pol.ts'

const A = signer(1)
const P = signer(5)

describe('mesh/train blyd train through stages on the chain\'s live weights', function () {
  this.timeout(120_000)
  let dir: string
  let w: PolWorld
  const nodes: BlyLibp2p[] = []
  const stop: Array<() => Promise<void>> = []

  before(async () => {
    await selectBackend('wasm')
    dir = await tempDir('bly-stages-train-')
    w = await polWorld(join(dir, 'chain'), A)
    const { config, tensors } = await tinyModel()
    await addIdsDataset(w, 'own-samples', await sampleSequences(config, tensors, 24, 32, 3), { splitTokens: 32, evalPermille: 500 })
    for (let i = 0; i < 3; i++) {
      const node = await startNode()
      nodes.push(node)
      if (i > 0) {
        const service = createTrainStageService({ libp2p: node, logger: silentLogger() }, { weights: chainTrainWeights(w.store) })
        await service.start()
        stop.push(async () => { await service.stop() })
      }
      stop.push(async () => { await node.stop() })
    }
  })

  after(async () => {
    for (const s of stop) {
      await s()
    }
    await w?.store.stop()
    await removeDir(dir)
  })

  it('gives the one-process job\'s losses and eval loss, and proposes its tensors', async () => {
    const opts = { dataset: 'own-samples', steps: 4, lr: 1e-2, batch: 2, seq: 16, loraRank: 2, evalWindows: 3, seed: 3 }
    const local = await trainLocal({ store: w.store, signer: P, ...opts })
    const [driver, s1, s2] = nodes
    const hop = (node: BlyLibp2p, start: number, end: number): TrainHop => ({ start, end, connect: async () => driver.dialProtocol(node.getMultiaddrs(), TRAIN_PROTOCOL) })
    const steps: number[] = []
    const evals: number[] = []
    const r = await trainThroughStages({ store: w.store, signer: P, ...opts, evalEvery: 2, propose: true, route: [hop(s1, 0, 3), hop(s2, 3, 4)], onStep: s => { steps.push(s.step) }, onEval: step => { evals.push(step) } })
    expect(Object.keys(r).sort()).to.deep.equal(['evalLoss', 'losses', 'proposalId', 'steps', 'tokensPerSecond'])
    expect(steps).to.deep.equal([1, 2, 3, 4])
    expect(evals).to.deep.equal([0, 2, 4])
    expect(r.losses).to.have.length(4)
    for (let i = 0; i < 4; i++) {
      expect(Math.abs(r.losses[i] - local.losses[i]) / local.losses[i], `step ${i + 1}`).to.be.at.most(1e-5)
    }
    expect(Math.abs(r.evalLoss.before - local.evalLoss.before) / local.evalLoss.before).to.be.at.most(1e-5)
    expect(Math.abs(r.evalLoss.after - local.evalLoss.after) / local.evalLoss.after).to.be.at.most(1e-5)
    expect(r.proposalId).to.match(/^[0-9a-f]{64}$/)
    expect((await foldWorld(w)).proposals.find(p => p.id === r.proposalId)).to.include({ status: 'pending' })
  })
})
