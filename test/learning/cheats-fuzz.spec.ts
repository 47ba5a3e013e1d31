/**
 * Fuzz of the Proof-of-Learning path (issue 11 item 6): mutated delta
 * payloads and mutated Proposal blocks through the real validation code,
 * none accepted, nothing but typed refusals and reject reasons.
 *
 * 1. 10,000 Delta blocks mutated from 4 seeds (one per codec, random noise
 * on a few tensors): the canonical body truncated, extended, with bytes
 * inserted, deleted or overwritten (its header, a tensor's name, ndim and
 * dims) or a bit flipped anywhere, then compressed; the zstd payload
 * truncated, with bytes inserted or a bit flipped; header fields changed
 * (codec, tensor count, unit with or without its Layer parent, base,
 * model); the payload of another seed. Each goes where a Delta block goes:
 * the chain's Delta header rules (validateLearningHeader, then
 * validateLearningParents with the real parent blocks), then the
 * validator's per-delta checks (checkDeltaPayload); a delta that passes
 * them is a valid delta, and the validator measures it as it measures any
 * (judgeCandidate: candidate weights, losses, the rule). The base's
 * losses are measured once (they do not depend on the delta). The model is
 * T (the fixture + a realistic delta: sharper than the near-uniform
 * fixture) and the dataset 4 windows sampled from T itself, so no change
 * to the weights lowers its expected loss, and mutants of the seeds are far
 * worse: an accepted mutant would be a bug. (On 2 windows of 8 tokens of
 * the fixture's own samples, a mutant did pass the rule by chance: gain
 * 0.51%, m = 2: see the limits in protocols/attestation.md.)
 * (A mutant is checked with its seed's header fields, or the mutated ones:
 * the validator reads no other header field; the store's chunk hashes bind
 * a payload to its header, test/chain covers them.)
 * 2. 1,000 Proposal blocks mutated from a valid one (fields dropped,
 * retyped, re-valued, added; parents dropped, added, swapped for other
 * Delta blocks, stored mutants among them; another author), offered to the
 * chain store; then validator A (the only one: quorum 1) attests every
 * one the store took, with the full validator path, and the fold decides:
 * none accepted, the live version and its weights unchanged.
 * (test/protocols/delta-fuzz.spec.ts fuzzes the codec alone, and
 * test/chain/proposal-fuzz.spec.ts 10,000 Proposal headers against the
 * chain rules.)
 */
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { BlockType } from '../../src/chain/types.ts'
import { validateLearningHeader, validateLearningParents } from '../../src/chain/validate-learning.ts'
import { loadDatasetWindows } from '../../src/learning/dataset-store.ts'
import { encodeDelta } from '../../src/learning/delta-encode.ts'
import { readSmallPayload } from '../../src/learning/fold/blocks.ts'
import { deltaBlock } from '../../src/learning/new-blocks.ts'
import { checkDeltaPayload } from '../../src/learning/validator-checks.ts'
import { attestProposal, judgeCandidate } from '../../src/learning/validator.ts'
import { versionWeights } from '../../src/learning/version-weights.ts'
import { selectBackend } from '../../src/model/backend.ts'
import { Prng } from '../../src/model/prng.ts'
import { toFloat32 } from '../../src/model/safetensors/dtypes.ts'
import { DELTA_CODECS, compressDeltaBody, decompressDeltaPayload, encodeDeltaPayload } from '../../src/protocols/delta.ts'
import { Reason } from '../../src/protocols/learning-blocks.ts'
import { removeDir, signHeader, signer, tempDir } from '../chain/helpers.ts'
import { bytes, learningHeader, proposalFields, str, uint } from '../chain/learning-helpers.ts'
import { Mutator } from '../protocols/mutate.ts'
import { addIdsDataset, foldWorld, fromHex, hexOf, liveState, polWorld, realisticDeltas, sampleSequences, shifted, tinyModel, writeCheckpoint } from './helpers-pol.ts'
import type { PolWorld } from './helpers-pol.ts'
import type { BlockHeader, BlockSigner, FieldValue, SignedHeader, StoredBlock } from '../../src/chain/types.ts'
import type { F32Tensors } from '../../src/learning/f32-tensors.ts'
import type { ParamsJson } from '../../src/learning/fold/types.ts'
import type { Judged } from '../../src/learning/validator.ts'
import type { LoadedDelta } from '../../src/learning/version-weights.ts'
import type { Qwen3Config } from '../../src/model/qwen3/config.ts'
import type { RawTensor } from '../../src/model/safetensors/dtypes.ts'
import type { Delta, DeltaCodec } from '../../src/protocols/delta.ts'

/** mutated Delta blocks (the issue asks for at least 10,000 mutants in all) */
const DELTA_MUTANTS = 10_000
/** mutated Proposal blocks */
const PROPOSAL_MUTANTS = 1_000

const A = signer(1)
const M = signer(4)
const C = signer(3)

/** The tensors each seed changes (units 1-4: decoder layers 0-3), small enough that mutations often hit structure. */
const SEED_TENSORS: Record<DeltaCodec, { unit: number, tensors: string[] }> = {
  f32: { unit: 1, tensors: ['model.layers.0.input_layernorm.weight', 'model.layers.0.self_attn.q_norm.weight'] },
  int8: { unit: 2, tensors: ['model.layers.1.self_attn.k_norm.weight', 'model.layers.1.post_attention_layernorm.weight'] },
  sparse: { unit: 3, tensors: ['model.layers.2.self_attn.q_proj.weight'] },
  lowrank: { unit: 4, tensors: ['model.layers.3.self_attn.k_proj.weight', 'model.layers.3.input_layernorm.weight'] }
}

const REASONS = new Set<string>(Object.values(Reason))

type Kind = 'truncate' | 'extend' | 'insert' | 'delete' | 'head' | 'tensor-head' | 'bit' | 'zstd-truncate' | 'zstd-insert' | 'zstd-bit' | 'other-seed' | 'header'

/** Mutation kinds, each as often as it is listed: mostly structure; a bit flip (often of a value: a valid delta, measured) is rare. */
const KINDS: Kind[] = [
  ...Array<Kind>(10).fill('truncate'), ...Array<Kind>(6).fill('extend'), ...Array<Kind>(10).fill('insert'), ...Array<Kind>(10).fill('delete'),
  ...Array<Kind>(8).fill('head'), ...Array<Kind>(10).fill('tensor-head'), 'bit',
  ...Array<Kind>(6).fill('zstd-truncate'), ...Array<Kind>(6).fill('zstd-insert'), 'zstd-bit',
  ...Array<Kind>(4).fill('other-seed'), ...Array<Kind>(12).fill('header')
]

/** Overwrites: a counter's edges and a few others. */
const INTERESTING_BYTES = [0, 1, 2, 0x7f, 0x80, 0xfe, 0xff, 0x41, 0x10]

interface Seed {
  codec: DeltaCodec
  unit: number
  /** bytes of the first tensor's name, ndim and dims (after the 10-byte body header) */
  tensorHead: number
  block: StoredBlock
  body: Uint8Array
  payload: Uint8Array
}

/** Seeded choices over a Mutator (the same mutants on every run). */
class Rand {
  readonly m: Mutator

  constructor (seed: number) {
    this.m = new Mutator(seed)
  }

  below (n: number): number {
    return this.m.below(n)
  }

  pick<T> (items: readonly T[]): T {
    return items[this.m.below(items.length)]
  }

  bytes (n: number): Uint8Array {
    return Uint8Array.from({ length: n }, () => this.m.below(256))
  }
}

/** What the mutants mutate: the world, its version, dataset, Layer blocks and the seeds. */
interface Ctx {
  w: PolWorld
  v0: string
  dataset: string
  layers: Map<number, StoredBlock>
  seeds: Seed[]
}

function spliced (bytes: Uint8Array, at: number, remove: number, insert: Uint8Array = new Uint8Array(0)): Uint8Array {
  return Uint8Array.from([...bytes.subarray(0, at), ...insert, ...bytes.subarray(at + remove)])
}

/** A header field of `seed` changed (and, for a unit, maybe the Layer parent to match). */
function mutateField (ctx: Ctx, r: Rand, seed: Seed): { fields: Map<string, FieldValue>, parents: Uint8Array[] } {
  const fields = new Map(seed.block.header.fields)
  let parents = [...seed.block.header.parents]
  const key = r.pick(['codec', 'tensors', 'unit', 'base', 'model'])
  switch (key) {
    case 'codec': fields.set(key, str(r.pick([...DELTA_CODECS, 'f16', '']))); break
    case 'tensors': fields.set(key, uint(r.below(4))); break
    case 'unit': {
      const unit = r.below(8)
      fields.set(key, uint(unit))
      const layer = ctx.layers.get(unit)
      if (layer != null && r.below(2) === 0) {
        parents = [ctx.w.modelId, layer.id]
      }
      break
    }
    case 'base': fields.set(key, bytes(r.pick([r.bytes(32), fromHex(ctx.v0), ctx.w.modelId]))); break
    default: fields.set(key, bytes(r.pick([r.bytes(32), fromHex(ctx.dataset)])))
  }
  return { fields, parents }
}

/** One mutant of `seed`: its header (the seed's, or with a field changed) and its payload. */
function mutateDelta (ctx: Ctx, r: Rand, seed: Seed, kind: Kind): { block: SignedHeader, payload: Uint8Array } {
  const body = Uint8Array.from(seed.body)
  let fields = seed.block.header.fields
  let parents = seed.block.header.parents
  let payload: Uint8Array
  switch (kind) {
    case 'truncate': payload = compressDeltaBody(body.subarray(0, r.below(body.length))); break
    case 'extend': payload = compressDeltaBody(spliced(body, body.length, 0, r.bytes(1 + r.below(4)))); break
    case 'insert': payload = compressDeltaBody(spliced(body, r.below(body.length + 1), 0, r.bytes(1 + r.below(8)))); break
    case 'delete': payload = compressDeltaBody(spliced(body, r.below(body.length), 1 + r.below(8))); break
    case 'head': body[r.below(10)] = r.pick(INTERESTING_BYTES); payload = compressDeltaBody(body); break
    case 'tensor-head': body[10 + r.below(seed.tensorHead)] = r.pick(INTERESTING_BYTES); payload = compressDeltaBody(body); break
    case 'bit': body[r.below(body.length)] ^= 1 << r.below(8); payload = compressDeltaBody(body); break
    case 'zstd-truncate': payload = seed.payload.subarray(0, r.below(seed.payload.length)); break
    case 'zstd-insert': payload = spliced(seed.payload, r.below(seed.payload.length + 1), 0, r.bytes(1 + r.below(4))); break
    case 'zstd-bit': payload = Uint8Array.from(seed.payload); payload[r.below(payload.length)] ^= 1 << r.below(8); break
    case 'other-seed': payload = r.pick(ctx.seeds.filter(s => s !== seed)).payload; break
    default: {
      ({ fields, parents } = mutateField(ctx, r, seed))
      payload = r.below(2) === 0 ? seed.payload : compressDeltaBody(body.subarray(0, r.below(body.length)))
    }
  }
  return { block: { ...seed.block, header: { ...seed.block.header, fields, parents, payloadSize: BigInt(payload.length) } }, payload }
}

/** Noise of 0.5 x each tensor's RMS on SEED_TENSORS, one seed per codec, stored as M's Delta blocks on `v0`. */
async function makeSeeds (w: PolWorld, tensors: Map<string, RawTensor>, layers: Map<number, StoredBlock>, v0: string): Promise<Seed[]> {
  const rng = new Prng(0xf022)
  const seeds: Seed[] = []
  for (const codec of DELTA_CODECS) {
    const { unit, tensors: names } = SEED_TENSORS[codec]
    const diffs: F32Tensors = new Map()
    for (const name of names) {
      const t = tensors.get(name) as RawTensor
      const values = toFloat32(t)
      const std = 0.5 * Math.sqrt(values.reduce((s, x) => s + x * x, 0) / values.length)
      diffs.set(name, { shape: [...t.shape], values: Float32Array.from(values, () => std * rng.normal()) })
    }
    const delta = encodeDelta(diffs, { codec, density: 0.005, rank: 2 }).delta as Delta
    const payload = encodeDeltaPayload(delta)
    const block = await w.store.createBlock(deltaBlock({ model: w.modelId, layer: (layers.get(unit) as StoredBlock).id, unit, base: fromHex(v0), codec, tensors: delta.tensors.length, payload }), M)
    const first = [...delta.tensors].sort((a, b) => a.name < b.name ? -1 : 1)[0]
    seeds.push({ codec, unit, tensorHead: 2 + first.name.length + 1 + 4 * first.dims.length, block, body: decompressDeltaPayload(payload), payload })
  }
  return seeds
}

/** 1 to 3 changes to proposal header `valid`: fields dropped, re-valued (ids it knows, versions, random bytes, other kinds), added; parents dropped, added, replaced by stored Delta blocks; the author. */
function mutateProposal (r: Rand, valid: BlockHeader, ids: { known: Uint8Array[], stored: StoredBlock[], versions: Uint8Array[], lists: Uint8Array[] }): { header: BlockHeader, author: BlockSigner } {
  const keys = ['model', 'base', 'governance', 'dataset', 'claimedBase', 'claimedAfter']
  const value = (): FieldValue => {
    switch (r.below(5)) {
      case 0: return bytes(r.pick(ids.known))
      case 1: return bytes(r.pick([...ids.versions, r.bytes(32)]))
      case 2: return uint(r.m.next())
      case 3: return str(r.pick(['', 'x']))
      default: return bytes(r.bytes(r.below(40)))
    }
  }
  const fields = new Map(valid.fields)
  let parents = [...valid.parents]
  let author = M
  for (let n = 1 + r.below(3); n > 0; n--) {
    switch (r.below(8)) {
      case 0: fields.delete(r.pick(keys)); break
      case 1:
      case 2: fields.set(r.pick(keys), value()); break
      case 3: fields.set(r.pick(['note', 'z']), value()); break
      case 4: parents.splice(r.below(parents.length), 1); break
      case 5: parents.push(r.pick(ids.known)); break
      case 6: parents = [...ids.lists, ...Array.from({ length: 1 + r.below(4) }, () => r.pick(ids.stored).id)]; break
      default: author = r.pick([M, C])
    }
  }
  return { header: { ...valid, author: author.publicKey, fields, parents: [...new Map(parents.map(p => [hexOf(p), p])).values()] }, author }
}

function tally (map: Map<string, number>, key: string): void {
  map.set(key, (map.get(key) ?? 0) + 1)
}

describe('learning/cheats fuzz: mutated deltas and proposals through the validator', function () {
  this.timeout(300_000)
  const env = {} as Ctx & { dir: string, config: Qwen3Config, before: Awaited<ReturnType<typeof liveState>> }

  before(async () => {
    await selectBackend('wasm')
    env.dir = await tempDir('bly-cheats-fuzz-')
    const { config, tensors: fixture } = await tinyModel()
    env.config = config
    const tensors = shifted(fixture, realisticDeltas(fixture, 1), 1)
    env.w = await polWorld(join(env.dir, 'w'), A, { model: await writeCheckpoint(join(env.dir, 't'), tensors) })
    const { w } = env
    env.dataset = (await addIdsDataset(w, 'samples', await sampleSequences(config, tensors, 4, 16, 17), { splitTokens: 16, evalPermille: 1000 })).id
    const fold = await foldWorld(w)
    expect(fold.governance.current.quorum).to.equal(1)
    env.v0 = fold.live.id
    env.layers = new Map()
    for (const u of w.manifest.units) {
      env.layers.set(u.unit, (await w.store.byModelUnit(w.modelId, u.unit))[0])
    }
    env.seeds = await makeSeeds(w, tensors, env.layers, env.v0)
    env.before = await liveState(w)
  })

  after(async () => {
    await env.w?.store.stop()
    await removeDir(env.dir)
  })

  it(`${DELTA_MUTANTS} mutated Delta blocks through the chain's Delta rules, the validator's checks and its measurement: none accepted`, async () => {
    const { w, seeds, v0 } = env
    const fold = await foldWorld(w)
    const params = fold.governance.current.params as ParamsJson
    const parents = new Map<string, SignedHeader>([[w.model, await w.store.get(w.modelId) as StoredBlock]])
    for (const l of env.layers.values()) {
      parents.set(hexOf(l.id), l)
    }
    const data = await loadDatasetWindows(w.store, await w.store.get(fromHex(env.dataset)) as StoredBlock, w.manifest)
    const sample = [...data.split.evalWindows]
    expect(sample).to.have.length(4)
    const live = await versionWeights(w.store, w.manifest, fold.live)
    const judge = async (delta: LoadedDelta, baseLosses?: bigint[][]): Promise<Judged> => judgeCandidate({ config: env.config, params, live, deltas: [delta], datasets: [data], samples: [sample], ...(baseLosses != null ? { baseLosses } : {}) })
    // every seed is a valid delta, rejected on its merits; the base's losses are measured once
    const seedJudged: Judged[] = []
    for (const seed of seeds) {
      const checked = checkDeltaPayload(w.manifest, v0, seed.block, seed.payload)
      if (!checked.ok) {
        throw new Error(checked.detail)
      }
      seedJudged.push(await judge(checked.delta))
    }
    expect(seedJudged.map(j => j.reason)).to.deep.equal(['insufficient-gain', 'insufficient-gain', 'insufficient-gain', 'insufficient-gain'])
    const baseLosses = seedJudged[0].measurements.map(m => m.base)

    const r = new Rand(0xc4ea7)
    const outcomes = new Map<string, number>()
    /** the same delta (unit, canonical body) gets the same numbers: measured once */
    const judged = new Map<string, Judged>()
    for (let i = 0; i < DELTA_MUTANTS; i++) {
      const kind = r.pick(KINDS)
      const { block, payload } = mutateDelta(env, r, seeds[i % seeds.length], kind)
      try {
        validateLearningHeader(block.header)
        validateLearningParents(block, parents)
      } catch (err: any) {
        expect(err?.code, String(err?.stack ?? err)).to.match(/^ERR_DELTA_BLOCK_[A-Z_]+$/)
        tally(outcomes, `chain:${String(err.code)}`)
        continue
      }
      const checked = checkDeltaPayload(w.manifest, v0, block, payload)
      if (!checked.ok) {
        expect(REASONS.has(checked.reason), checked.reason).to.equal(true)
        tally(outcomes, checked.reason)
        continue
      }
      const key = `${checked.delta.unit}:${createHash('sha256').update(checked.delta.body).digest('hex')}`
      const result = judged.get(key) ?? await judge(checked.delta, baseLosses)
      judged.set(key, result)
      expect(result.reason, `mutant ${i} (${kind}): ${result.detail}`).to.not.equal('ok')
      expect(REASONS.has(result.reason), result.reason).to.equal(true)
      tally(outcomes, `measured:${result.reason}`)
    }
    // the mutants reached every stage: chain refusals, each structural reason, and the measurement
    for (const key of ['chain:ERR_DELTA_BLOCK_CODEC', 'chain:ERR_DELTA_BLOCK_FIELDS', 'chain:ERR_DELTA_BLOCK_PARENT', 'malformed', 'non-finite', 'shape', 'stale', 'measured:insufficient-gain']) {
      expect(outcomes.get(key) ?? 0, `${key} in ${JSON.stringify([...outcomes])}`).to.be.above(0)
    }
    expect(judged.size, 'distinct valid mutants measured').to.be.above(100)
    expect(await liveState(w)).to.deep.equal(env.before)
  })

  it(`${PROPOSAL_MUTANTS} mutated Proposal blocks through the chain store, validator A (quorum 1) and the fold: none accepted`, async () => {
    const { w, seeds, v0, layers } = env
    const r = new Rand(0x9e0)
    let fold = await foldWorld(w)
    // more Delta blocks to list: stored mutants (valid ones, measured; others the validator rejects), and one by another author
    const stored: StoredBlock[] = seeds.map(s => s.block)
    for (let k = 0; k < 12; k++) {
      const seed = seeds[k % seeds.length]
      const payload = k < 4 ? compressDeltaBody(r.m.mutate(seed.body)) : r.m.mutate(seed.payload)
      if (payload.length > 0) {
        stored.push(await w.store.createBlock(deltaBlock({ model: w.modelId, layer: (layers.get(seed.unit) as StoredBlock).id, unit: seed.unit, base: fromHex(r.pick([v0, v0, hexOf(r.bytes(32))])), codec: seed.codec, tensors: Number(seed.block.header.fields.get('tensors')?.value), payload }), M))
      }
    }
    const foreign = await w.store.createBlock(deltaBlock({ model: w.modelId, layer: (layers.get(1) as StoredBlock).id, unit: 1, base: fromHex(v0), codec: 'f32', tensors: 2, payload: seeds[0].payload }), C)
    const known = [w.modelId, fromHex(env.dataset), ...stored.map(b => b.id), foreign.id, (layers.get(0) as StoredBlock).id]
    const gov = fromHex(fold.governance.current.id)
    const valid = learningHeader(M, BlockType.Proposal, proposalFields(w.modelId, fromHex(v0), gov, fromHex(env.dataset)), [w.modelId, fromHex(env.dataset), ...seeds.map(s => s.block.id)])
    const offered = new Map<string, number>()
    for (let i = 0; i < PROPOSAL_MUTANTS; i++) {
      const { header: h, author } = mutateProposal(r, valid, { known, stored, versions: [fromHex(v0), gov], lists: [w.modelId, fromHex(env.dataset)] })
      h.timestamp = valid.timestamp + BigInt(i)
      const { encoded } = await signHeader(h, author)
      try {
        tally(offered, await w.store.addBlock(encoded))
      } catch (err: any) {
        expect(err?.code, String(err?.stack ?? err)).to.match(/^ERR_[A-Z_]+$/)
        tally(offered, err.code)
      }
    }
    expect(offered.get('added') ?? 0, JSON.stringify([...offered])).to.be.above(50)
    expect(offered.get('ERR_PROPOSAL_BLOCK_FIELDS') ?? 0).to.be.above(100)
    fold = await foldWorld(w)
    const pending = fold.proposals.filter(p => p.status === 'pending')
    expect(pending.length).to.be.above(50)
    const reasons = new Map<string, number>()
    for (const proposal of pending) {
      const { outcome } = await attestProposal({ store: w.store, signer: A, manifest: w.manifest, fold, proposal, bodies: w.bodies, evalWindows: w.evalWindows })
      expect(outcome.reason, outcome.detail).to.not.equal('ok')
      tally(reasons, outcome.reason)
    }
    for (const reason of ['duplicate', 'insufficient-gain']) {
      expect(reasons.get(reason) ?? 0, `${reason} in ${JSON.stringify([...reasons])}`).to.be.above(0)
    }
    fold = await foldWorld(w)
    expect(fold.proposals.filter(p => p.status === 'accepted')).to.deep.equal([])
    expect(fold.proposals.every(p => p.status === 'rejected')).to.equal(true)
    expect(fold.versions).to.have.length(1)
    expect(await liveState(w)).to.deep.equal(env.before)
    // the stored mutant payloads read back as stored (nothing lost)
    for (const b of stored) {
      expect(await readSmallPayload(w.store, b)).to.have.length(Number(b.header.payloadSize))
    }
  })
})
