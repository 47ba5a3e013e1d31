/**
 * The cheat catalogue of issue 11 (item 6), one test per entry, on a real
 * chain store with real keys, in one process: the importer A and B are the
 * validators (quorum 2 of 2, so one counted reject decides), C proposes
 * honestly, M cheats, E and F are keys outside the set. Every proposal goes
 * through the real validator path (validator.ts: the structural checks, the
 * seeded sample, the measured losses, the rule, the Attestation) and the
 * fold decides; each test shows the reason code, and that the live version
 * and the hash of its weights did not move.
 *
 * The data (helpers-pol.ts): T = the fixture + a realistic delta `delta`,
 * the dataset = sequences sampled from T, so `delta` truly lowers the eval
 * loss (~5%); random-token sequences are data on which T is worse than the
 * fixture (~4%).
 *
 * Entries elsewhere: grinding proposal variants to choose the sample
 * (test/learning/pol-seed.spec.ts), the header rules of every learning block
 * (test/chain/*-block.spec.ts), the fuzz runs (test/learning/cheats-fuzz.spec.ts,
 * test/protocols/delta-fuzz.spec.ts, test/chain/proposal-fuzz.spec.ts).
 */
import { join } from 'node:path'
import { zstdCompressSync } from 'node:zlib'
import { expect } from 'aegir/chai'
import { importModelWithGenesis } from '../../src/learning/model-genesis.ts'
import { deltaBlock, proposalBlock } from '../../src/learning/new-blocks.ts'
import { checkDeltaPayload, maxUnitDeltaBody, maxUnitDeltaPayload } from '../../src/learning/validator-checks.ts'
import { selectBackend } from '../../src/model/backend.ts'
import { Prng } from '../../src/model/prng.ts'
import { compressDeltaBody, encodeDeltaBody } from '../../src/protocols/delta.ts'
import { expectCode, removeDir, signer, tempDir } from '../chain/helpers.ts'
import { fixtureDir } from '../model/fixtures.ts'
import { BodyBuilder } from '../protocols/delta-helpers.ts'
import { addIdsDataset, addValidator, foldWorld, fromHex, liveState, noiseDiffs, polWorld, proposeRaw, realisticDeltas, runValidator, sampleSequences, shifted, tinyModel, unitDeltas } from './helpers-pol.ts'
import type { Attested, PolWorld, RawDelta } from './helpers-pol.ts'
import type { Qwen3Config } from '../../src/model/qwen3/config.ts'
import type { RawTensor } from '../../src/model/safetensors/dtypes.ts'
import type { Delta } from '../../src/protocols/delta.ts'

type Live = Awaited<ReturnType<typeof liveState>>

const A = signer(1)
const B = signer(2)
const M = signer(4)

/** The tensors of unit 1 (decoder layer 0) these tests write by hand. */
const NORM = 'model.layers.0.input_layernorm.weight'
const Q_NORM = 'model.layers.0.self_attn.q_norm.weight'
const Q_PROJ = 'model.layers.0.self_attn.q_proj.weight'

/** A one-tensor f32 body of unit 1's input norm: 64 values, 0.01 but where `special` says. */
function normBody (special: Record<number, number> = {}): Uint8Array {
  return new BodyBuilder().header(1, 1).tensor(NORM, [64]).f32s(Array.from({ length: 64 }, (_, i) => special[i] ?? 0.01)).bytes()
}

function f32Delta (name: string, dims: number[], fill: (i: number) => number): Delta {
  const n = dims.reduce((a, b) => a * b, 1)
  return { codec: 'f32', tensors: [{ kind: 'dense', name, dims, values: Float32Array.from({ length: n }, (_, i) => fill(i)) }] }
}

function raw (unit: number, payload: Uint8Array, over: Partial<RawDelta> = {}): RawDelta {
  return { unit, codec: 'f32', tensors: 1, payload, ...over }
}

describe('learning/cheat catalogue (issue 11 item 6)', function () {
  this.timeout(300_000)
  const env = {} as {
    dir: string
    config: Qwen3Config
    base: Map<string, RawTensor>
    /** the truly improving delta (fixture -> T) */
    delta: Map<string, Float32Array>
    seqs: number[][]
    worlds: PolWorld[]
    w: PolWorld
    dataset: string
    v0: Live
  }

  before(async () => {
    await selectBackend('wasm')
    env.dir = await tempDir('bly-cheats-')
    const { config, tensors } = await tinyModel()
    env.config = config
    env.base = tensors
    env.delta = realisticDeltas(tensors, 1)
    env.seqs = await sampleSequences(config, shifted(tensors, env.delta, 1), 72, 32, 7)
    env.worlds = []
    env.w = await world('main')
    env.dataset = (await addIdsDataset(env.w, 'target-samples', env.seqs, { splitTokens: 32, evalPermille: 500 })).id
    env.v0 = await liveState(env.w)
  })

  after(async () => {
    for (const w of env.worlds) {
      await w.store.stop()
    }
    await removeDir(env.dir)
  })

  /** A store with the tiny model imported by A and B added to the set. */
  async function world (name: string): Promise<PolWorld> {
    const w = await polWorld(join(env.dir, name), A)
    env.worlds.push(w)
    await addValidator(w, [A], B.publicKey)
    return w
  }

  /**
   * Validator A attests every pending proposal; each of `proposals` gets
   * `reason`, the fold rejects it with that reason (n = 2, quorum 2: one
   * counted reject decides), and the live version and its weights are `live`.
   */
  async function rejected (w: PolWorld, proposals: string[], reason: string, live: Live): Promise<Attested[]> {
    const done = await runValidator(w, A)
    expect(done.map(d => d.proposal).sort()).to.deep.equal([...proposals].sort())
    for (const d of done) {
      expect(d.outcome.reason, d.outcome.detail).to.equal(reason)
      expect(d.block.header.fields.get('verdict')?.value).to.equal('reject')
      expect(d.block.header.fields.get('reason')?.value).to.equal(reason)
    }
    const fold = await foldWorld(w)
    for (const id of proposals) {
      expect(fold.proposals.find(p => p.id === id)).to.include({ status: 'rejected', reason, accepts: 0, rejects: 1 })
    }
    expect(await liveState(w)).to.deep.equal(live)
    return done
  }

  describe('on the initial version', () => {
    it('a random-noise delta: measured, insufficient-gain', async () => {
      const { w } = env
      const p = await proposeRaw(w, M, unitDeltas(w, noiseDiffs(env.base, 1, 5)), { dataset: env.dataset })
      const [a] = await rejected(w, [p.proposal], 'insufficient-gain', env.v0)
      expect(a.outcome.measurements[0].windows.length).to.be.greaterThan(20)
      expect(Number(a.outcome.rule?.gainPpm)).to.be.below(5000)
    })

    it('a sign-flipped delta (of one that truly lowers the loss): the loss rises, insufficient-gain', async () => {
      const { w } = env
      const p = await proposeRaw(w, M, unitDeltas(w, env.delta, -1), { dataset: env.dataset })
      const [a] = await rejected(w, [p.proposal], 'insufficient-gain', env.v0)
      expect(Number(a.outcome.rule?.gainPpm)).to.be.below(0)
    })

    it('a scaled-up delta (4 x one that truly lowers the loss): the loss rises, insufficient-gain', async () => {
      const { w } = env
      const p = await proposeRaw(w, M, unitDeltas(w, env.delta, 4), { dataset: env.dataset })
      const [a] = await rejected(w, [p.proposal], 'insufficient-gain', env.v0)
      expect(Number(a.outcome.rule?.gainPpm)).to.be.below(0)
    })

    it('NaN or Inf values: in the payload, or from finite values that overflow when applied: non-finite', async () => {
      const { w } = env
      const nan = normBody({ 3: NaN })
      const inf = normBody({ 63: -Infinity })
      // int8: a scale of Infinity
      const infScale = new BodyBuilder().header(2, 1).tensor(Q_NORM, [32]).f32(Infinity).raw(...Array.from({ length: 32 }, (_, i) => i === 0 ? 127 : 1)).bytes()
      // int8: finite scale 3e38 x q 127 overflows float32 when applied
      const overflow = encodeDeltaBody({ codec: 'int8', tensors: [{ kind: 'int8', name: Q_NORM, dims: [32], scales: Float32Array.of(3e38), q: Int8Array.from({ length: 32 }, (_, i) => i === 0 ? 127 : 0) }] })
      // lowrank: finite factors whose product overflows
      const product = encodeDeltaBody({ codec: 'lowrank', tensors: [{ kind: 'lowrank', name: Q_PROJ, dims: [128, 64], rank: 1, us: new Float32Array(128).fill(1e20), vt: new Float32Array(64).fill(1e20) }] })
      const ps = [
        await proposeRaw(w, M, [raw(1, compressDeltaBody(nan))], { dataset: env.dataset }),
        await proposeRaw(w, M, [raw(1, compressDeltaBody(inf))], { dataset: env.dataset }),
        await proposeRaw(w, M, [raw(1, compressDeltaBody(infScale), { codec: 'int8' })], { dataset: env.dataset }),
        await proposeRaw(w, M, [raw(1, compressDeltaBody(overflow), { codec: 'int8' })], { dataset: env.dataset }),
        await proposeRaw(w, M, [raw(1, compressDeltaBody(product), { codec: 'lowrank' })], { dataset: env.dataset })
      ]
      const done = await rejected(w, ps.map(p => p.proposal), 'non-finite', env.v0)
      const detail = (p: { proposal: string }): string => done.find(d => d.proposal === p.proposal)?.outcome.detail ?? ''
      expect(detail(ps[0])).to.match(/ERR_DELTA_NON_FINITE/)
      expect(detail(ps[2])).to.match(/ERR_DELTA_NON_FINITE/)
      expect(detail(ps[3])).to.match(/ERR_DELTA_NON_FINITE_RESULT/)
      expect(detail(ps[4])).to.match(/ERR_DELTA_NON_FINITE_RESULT/)
      for (const d of done) {
        expect(d.outcome.measurements).to.deep.equal([])
      }
    })

    it('a delta for another model: the chain refuses the proposal (ERR_PROPOSAL_BLOCK_DELTAS); a validator would say `model`', async () => {
      const { w } = env
      // M imports a second model of the same architecture into the same store, and makes a delta for it
      const other = await importModelWithGenesis({ store: w.store, signer: M, dir: fixtureDir('untied-bf16-sharded') })
      expect(other.modelId).to.not.equal(w.model)
      const otherLayer = (await w.store.byModelUnit(fromHex(other.modelId), 1))[0]
      const otherBase = (await foldWorld({ ...w, modelId: fromHex(other.modelId) })).live.id
      const { payload, tensors } = unitDeltas(w, env.delta)[1]
      const delta = await w.store.createBlock(deltaBlock({ model: fromHex(other.modelId), layer: otherLayer.id, unit: 1, base: fromHex(otherBase), codec: 'f32', tensors, payload }), M)
      const fold = await foldWorld(w)
      const err = await expectCode(w.store.createBlock(proposalBlock({
        model: w.modelId,
        base: fromHex(fold.live.id),
        governance: fromHex(fold.governance.current.id),
        dataset: fromHex(env.dataset),
        deltas: [delta.id],
        claimedBase: 0n,
        claimedAfter: 0n
      }), M), 'ERR_PROPOSAL_BLOCK_DELTAS')
      expect(err.message).to.match(/model/)
      expect((await foldWorld(w)).proposals.filter(p => p.status === 'pending')).to.deep.equal([])
      // the validator's own check, should such a proposal reach it (defence in depth)
      const checked = checkDeltaPayload(w.manifest, fold.live.id, delta, payload)
      expect(checked).to.include({ ok: false, reason: 'model' })
      expect(await liveState(w)).to.deep.equal(env.v0)
    })

    it('a shape mismatch: transposed dims, a tensor of another unit, a tensor the model does not have: shape', async () => {
      const { w } = env
      const ps = [
        await proposeRaw(w, M, [raw(1, compressDeltaBody(encodeDeltaBody(f32Delta(Q_PROJ, [64, 128], i => (i % 7) * 1e-3))))], { dataset: env.dataset }),
        await proposeRaw(w, M, [raw(1, compressDeltaBody(encodeDeltaBody(f32Delta('model.embed_tokens.weight', [512, 64], i => (i % 5) * 1e-3))))], { dataset: env.dataset }),
        await proposeRaw(w, M, [raw(2, compressDeltaBody(encodeDeltaBody(f32Delta('model.layers.1.mlp.extra.weight', [8], () => 1e-3))))], { dataset: env.dataset }),
        await proposeRaw(w, M, [raw(2, compressDeltaBody(encodeDeltaBody(f32Delta('model.layers.1.input_layernorm.weight', [65], () => 1e-3))))], { dataset: env.dataset })
      ]
      const done = await rejected(w, ps.map(p => p.proposal), 'shape', env.v0)
      expect(done.map(d => d.outcome.detail).join('\n')).to.match(/dims \[64, 128\], the model \[128, 64\]/).and.match(/embed_tokens.*unit 1 does not hold/)
    })

    it('an oversize payload: longer than its unit can need (refused before decoding), or a zstd frame that inflates past that: oversize', async () => {
      const { w } = env
      const unit = w.manifest.units[1]
      const rng = new Prng(3)
      const long = Uint8Array.from({ length: maxUnitDeltaPayload(unit) + 1 }, () => Math.floor(rng.next() * 256))
      const bomb = zstdCompressSync(new Uint8Array(maxUnitDeltaBody(unit) + 1))
      expect(bomb.length).to.be.below(4096)
      const ps = [
        await proposeRaw(w, M, [raw(1, long)], { dataset: env.dataset }),
        await proposeRaw(w, M, [raw(1, bomb)], { dataset: env.dataset })
      ]
      const done = await rejected(w, ps.map(p => p.proposal), 'oversize', env.v0)
      expect(done.find(d => d.proposal === ps[1].proposal)?.outcome.detail).to.match(/ERR_DELTA_TOO_LARGE/)
    })

    it('a malformed payload: not zstd, not a delta body, another codec than the header, a wrong tensor count, names out of order, trailing bytes: malformed', async () => {
      const { w } = env
      const rng = new Prng(4)
      const good = normBody()
      const unsorted = new BodyBuilder().header(1, 2).tensor(Q_NORM, [32]).f32s(new Array(32).fill(0.01)).tensor(NORM, [64]).f32s(new Array(64).fill(0.01)).bytes()
      const ps = [
        await proposeRaw(w, M, [raw(1, Uint8Array.from({ length: 300 }, () => Math.floor(rng.next() * 256)))], { dataset: env.dataset }),
        await proposeRaw(w, M, [raw(1, zstdCompressSync(Uint8Array.from({ length: 300 }, () => Math.floor(rng.next() * 256))))], { dataset: env.dataset }),
        await proposeRaw(w, M, [raw(1, compressDeltaBody(good), { codec: 'int8' })], { dataset: env.dataset }),
        await proposeRaw(w, M, [raw(1, compressDeltaBody(good), { tensors: 2 })], { dataset: env.dataset }),
        await proposeRaw(w, M, [raw(1, compressDeltaBody(unsorted), { tensors: 2 })], { dataset: env.dataset }),
        await proposeRaw(w, M, [raw(1, compressDeltaBody(Uint8Array.from([...good, 0])))], { dataset: env.dataset })
      ]
      const done = await rejected(w, ps.map(p => p.proposal), 'malformed', env.v0)
      const details = ps.map(p => done.find(d => d.proposal === p.proposal)?.outcome.detail)
      expect(details[0]).to.match(/ERR_DELTA_ZSTD/)
      expect(details[1]).to.match(/ERR_DELTA_BAD_MAGIC/)
      expect(details[3]).to.match(/header says 2 tensors/)
      expect(details[4]).to.match(/ERR_DELTA_NAME_ORDER/)
      expect(details[5]).to.match(/ERR_DELTA_TRAILING_BYTES/)
    })
  })
})
