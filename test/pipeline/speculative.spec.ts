import { expect } from 'aegir/chai'
import { selectBackend } from '../../src/model/backend.ts'
import { ModelErrorCode } from '../../src/model/errors.ts'
import { createLocalTokenSession } from '../../src/model/generation/local-session.ts'
import { drawFrom, samplingDistribution, verifyDraftToken } from '../../src/model/generation/speculative-rule.ts'
import { speculativeGenerate } from '../../src/model/generation/speculative.ts'
import { Prng } from '../../src/model/prng.ts'
import { LayerRange } from '../../src/model/qwen3/layer-range.ts'
import { validateSampling } from '../../src/model/sampling.ts'
import { perturbedSource } from '../../src/model/weight-delta.ts'
import { createPipelineClient } from '../../src/pipeline/pipeline-client.ts'
import { loadFixture, maxAbsDiff, sourceOf } from '../model/fixtures.ts'
import { MODEL_ID, startNode, startStage } from './helpers.ts'
import type { TestStage } from './helpers.ts'
import type { SpeculativeOptions, SpeculativeResult } from '../../src/model/generation/speculative.ts'
import type { SpeculativeSession } from '../../src/model/generation/token-model.ts'
import type { BlyLibp2p } from '../../src/net/libp2p-node.ts'
import type { PipelineSession } from '../../src/pipeline/pipeline-client.ts'
import type { Fixture } from '../model/fixtures.ts'

async function run (target: SpeculativeSession, draft: SpeculativeSession, prompt: number[], options: SpeculativeOptions): Promise<{ ids: number[], result: SpeculativeResult }> {
  const ids: number[] = []
  const it = speculativeGenerate(target, draft, prompt, options)
  for (;;) {
    const next = await it.next()
    if (next.done === true) {
      return { ids, result: next.value }
    }
    ids.push(next.value.id)
  }
}

/** Pearson chi-square of `counts` against probabilities `p` (cells with p > 0). */
function chiSquare (counts: number[], p: ArrayLike<number>, n: number): { chi2: number, dof: number, outside: number } {
  let chi2 = 0
  let dof = -1
  let outside = 0
  for (let i = 0; i < counts.length; i++) {
    if (p[i] > 0) {
      const e = n * p[i]
      chi2 += (counts[i] - e) ** 2 / e
      dof++
    } else {
      outside += counts[i]
    }
  }
  return { chi2, dof, outside }
}

describe('speculative decoding: accept/reject rule', () => {
  it('draft from q, verify against p: the kept tokens are distributed as p', () => {
    const p = Float64Array.from([0.5, 0.05, 0.25, 0.2, 0])
    const q = Float64Array.from([0.1, 0.4, 0.1, 0.1, 0.3])
    const rng = new Prng(42)
    const n = 100_000
    const counts = [0, 0, 0, 0, 0]
    let accepted = 0
    for (let i = 0; i < n; i++) {
      const d = drawFrom(q, rng)
      const v = verifyDraftToken(d, p, q, rng)
      accepted += v.accepted ? 1 : 0
      counts[v.accepted ? d : v.replacement as number]++
    }
    const { chi2, dof, outside } = chiSquare(counts, p, n)
    expect(outside).to.equal(0)
    // dof 3: p(chi2 > 25) ~ 1.6e-5
    expect(dof).to.equal(3)
    expect(chi2).to.be.below(25)
    // acceptance probability is sum(min(p, q)) = 0.1 + 0.05 + 0.1 + 0.1 = 0.35
    expect(Math.abs(accepted / n - 0.35)).to.be.below(0.01)
  })

  it('greedy: accepted iff the draft token is the target argmax, else the argmax replaces it', () => {
    const greedy = validateSampling({})
    const p = samplingDistribution(Float32Array.from([0.1, 3, -1, 2]), greedy)
    const q = samplingDistribution(Float32Array.from([0.1, 2, -1, 3]), greedy)
    const rng = new Prng(1)
    expect(verifyDraftToken(1, p, p, rng)).to.deep.equal({ accepted: true })
    expect(verifyDraftToken(3, p, q, rng)).to.deep.equal({ accepted: false, replacement: 1 })
  })

  it('samplingDistribution follows the Sampler: temperature, topK and topP', () => {
    const logits = Float32Array.from([2, 1, 0, -1, 3])
    const p = samplingDistribution(logits, validateSampling({ temperature: 1, topK: 3 }))
    const z = Math.exp(0) + Math.exp(-1) + Math.exp(-2)
    expect(Array.from(p).map(x => Number(x.toFixed(6)))).to.deep.equal([Math.exp(-1) / z, Math.exp(-2) / z, 0, 0, 1 / z].map(x => Number(x.toFixed(6))))
    const top = samplingDistribution(logits, validateSampling({ temperature: 1, topP: 0.5 }))
    expect(Array.from(top)).to.deep.equal([0, 0, 0, 0, 1])
  })
})

describe('speculative decoding through loopback stages', function () {
  this.timeout(120_000)
  let fixture: Fixture
  let full: LayerRange
  let near: LayerRange
  let far: LayerRange
  let local: LayerRange
  let client: BlyLibp2p
  const stages: TestStage[] = []
  const sessions: Array<{ close(): Promise<void> } | { dispose(): void }> = []

  before(async () => {
    await selectBackend('wasm')
    fixture = await loadFixture('untied-f32')
    const all = { start: 0, end: 4, embedding: true, head: true }
    full = await LayerRange.load(fixture.config, sourceOf(fixture), all)
    near = await LayerRange.load(fixture.config, perturbedSource(fixture.tensors, { scale: 0.05, seed: 3 }), all)
    far = await LayerRange.load(fixture.config, perturbedSource(fixture.tensors, { scale: 0.5, seed: 5 }), all)
    local = await LayerRange.load(fixture.config, sourceOf(fixture), { start: 0, end: 0, embedding: true, head: true })
    client = await startNode()
    stages.push(await startStage(fixture, 0, 2), await startStage(fixture, 2, 3), await startStage(fixture, 3, 4))
  })

  afterEach(async () => {
    for (const s of sessions.splice(0)) {
      if ('close' in s) {
        await s.close()
      } else {
        s.dispose()
      }
    }
  })

  after(async () => {
    await client?.stop()
    await Promise.allSettled(stages.map(async s => s.stop()))
    for (const m of [full, near, far, local]) {
      m?.dispose()
    }
  })

  function pipelineSession (): PipelineSession {
    const route = stages.map(s => ({ peerId: s.node.peerId, multiaddrs: s.node.getMultiaddrs(), start: s.layers.start, end: s.layers.end }))
    const session = createPipelineClient({ libp2p: client, modelId: MODEL_ID, local, route }).createSession()
    sessions.push(session)
    return session
  }

  function localSession (model: LayerRange): SpeculativeSession {
    const s = createLocalTokenSession(model)
    sessions.push(s)
    return s
  }

  /** The target's cache holds prompt + tokens but the last: feeding the last token gives the full-sequence logits. */
  async function expectCacheConsistent (target: PipelineSession, sequence: number[]): Promise<void> {
    expect(target.length).to.equal(sequence.length - 1)
    expect(target.inputs(0).reduce((n, x) => n + x.rows, 0)).to.equal(sequence.length - 1)
    const got = await target.nextLogits(sequence.slice(-1))
    const ref = full.createSession()
    try {
      expect(maxAbsDiff(got, await full.nextLogits(ref, sequence))).to.be.below(1e-4)
    } finally {
      ref.dispose()
    }
  }

  it('greedy with the target itself as the draft: the reference tokens, every draft kept', async () => {
    const { prompt, tokens } = fixture.expected.greedy
    const target = pipelineSession()
    const { ids, result } = await run(target, localSession(full), prompt, { k: 4, maxNewTokens: tokens.length })
    expect(ids).to.deep.equal(tokens)
    expect(result.tokens).to.deep.equal(tokens)
    expect(result.finishReason).to.equal('length')
    expect(result.stats.acceptanceRate).to.equal(1)
    // 16 tokens with k growing 4, 5, 6 (+1 each): far fewer target steps than tokens
    expect(result.stats.targetSteps).to.be.below(tokens.length / 2)
    expect(result.stats.targetSteps).to.equal(target.stats.steps)
    await expectCacheConsistent(target, [...prompt, ...tokens])
  })

  const perturbedCases = [['adaptive k from 4', 4, true], ['fixed k = 2', 2, false]] as const
  perturbedCases.forEach(([name, k, adaptive]) => {
    it(`greedy with a perturbed draft (${name}): still the reference tokens, some drafts rejected, caches rolled back`, async () => {
      const { prompt, tokens } = fixture.expected.greedy
      const target = pipelineSession()
      const rounds: Array<{ k: number, accepted: number }> = []
      const { ids, result } = await run(target, localSession(near), prompt, { k, adaptive, maxNewTokens: tokens.length, onRound: r => rounds.push(r) })
      expect(ids).to.deep.equal(tokens)
      expect(result.stats.accepted).to.be.above(0)
      expect(result.stats.accepted).to.be.below(result.stats.proposed)
      expect(rounds.length).to.equal(result.stats.rounds)
      if (!adaptive) {
        expect(rounds.every(r => r.k <= 2)).to.equal(true)
        expect(rounds.some(r => r.k === 2)).to.equal(true)
      }
      await expectCacheConsistent(target, [...prompt, ...tokens])
    })
  })

  it('a draft that disagrees a lot: greedy output unchanged, k shrinks', async () => {
    const { prompt, tokens } = fixture.expected.greedy
    const target = pipelineSession()
    const { ids, result } = await run(target, localSession(far), prompt, { k: 6, maxNewTokens: tokens.length })
    expect(ids).to.deep.equal(tokens)
    expect(result.stats.acceptanceRate).to.be.below(0.5)
    expect(result.stats.k).to.be.below(6)
    await expectCacheConsistent(target, [...prompt, ...tokens])
  })

  it('eos ends the generation and is not yielded', async () => {
    const { prompt, tokens } = fixture.expected.greedy
    const target = pipelineSession()
    const { ids, result } = await run(target, localSession(near), prompt, { k: 3, maxNewTokens: 32, eosTokenIds: [tokens[5]] })
    expect(ids).to.deep.equal(tokens.slice(0, 5))
    expect(result.finishReason).to.equal('eos')
  })

  it('seeded sampling: the first token follows the target distribution, whatever the draft', async () => {
    const prompt = [5, 9, 14]
    const sampling = { temperature: 1, topK: 6 }
    const ref = full.createSession()
    let p: Float64Array
    try {
      p = samplingDistribution(await full.nextLogits(ref, prompt), validateSampling(sampling))
    } finally {
      ref.dispose()
    }
    const n = 240
    const counts = new Array(fixture.config.vocabSize).fill(0)
    let proposed = 0
    let accepted = 0
    for (let seed = 1; seed <= n; seed++) {
      const target = createLocalTokenSession(full)
      const draft = createLocalTokenSession(far)
      try {
        const { ids, result } = await run(target, draft, prompt, { k: 2, adaptive: false, maxNewTokens: 3, sampling: { ...sampling, seed } })
        counts[ids[0]]++
        proposed += result.stats.proposed
        accepted += result.stats.accepted
      } finally {
        target.dispose()
        draft.dispose()
      }
    }
    const { chi2, dof, outside } = chiSquare(counts, p, n)
    expect(outside).to.equal(0)
    expect(dof).to.equal(5)
    // dof 5: p(chi2 > 30) ~ 1.5e-5; the seeds are fixed, so this is deterministic
    expect(chi2).to.be.below(30)
    // the far draft is rejected sometimes: the residual path was exercised
    expect(accepted).to.be.below(proposed)
  })

  it('seeded sampling through the stages: the same seed gives the same tokens, and the caches stay consistent', async () => {
    const prompt = [7, 3, 11, 40]
    const options = { k: 3, maxNewTokens: 12, sampling: { temperature: 0.9, topK: 8, seed: 9 } }
    const a = pipelineSession()
    const first = await run(a, localSession(near), prompt, options)
    const b = pipelineSession()
    const second = await run(b, localSession(near), prompt, options)
    expect(first.ids).to.have.length(12)
    expect(second.ids).to.deep.equal(first.ids)
    await expectCacheConsistent(a, [...prompt, ...first.ids])
  })

  it('bad options fail with ERR_BAD_OPTIONS', async () => {
    const target = createLocalTokenSession(full)
    const draft = createLocalTokenSession(near)
    sessions.push(target, draft)
    for (const options of [{ k: 9 }, { k: -1 }, { minK: 0 }, { maxNewTokens: 1.5 }, { sampling: { temperature: -1 } }]) {
      await run(target, draft, [1, 2], options).then(() => expect.fail('should fail'), (err) => {
        expect(err).to.have.property('code').that.equals(ModelErrorCode.BAD_OPTIONS)
      })
    }
    await run(target, draft, [], {}).then(() => expect.fail('should fail'), (err) => {
      expect(err).to.have.property('code').that.equals(ModelErrorCode.BAD_OPTIONS)
    })
    expect(target.length).to.equal(0)
  })
})
