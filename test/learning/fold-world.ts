/**
 * A model's learning blocks built in memory with real keys (signed,
 * encoded, with their payloads), so one set of blocks can be added to
 * several real chain stores in different orders. Datasets are text blocks;
 * their eval windows come from the real split function over a synthetic
 * stream (EVAL_STREAM_TOKENS tokens), injected into the fold as the
 * tokenizer-free window provider.
 */
import { expect } from 'aegir/chai'
import { BlockType } from '../../src/chain/types.ts'
import { foldModel } from '../../src/learning/fold/fold.ts'
import { initialGovernanceId, initialVersionId, nextGovernanceId, nextVersionId } from '../../src/learning/fold/ids.ts'
import { defaultParams } from '../../src/learning/params-defaults.ts'
import { sampleFor, signSeed } from '../../src/learning/pol/seed.ts'
import { encodeAttestationPayload } from '../../src/protocols/attestation.ts'
import { splitWindows } from '../../src/protocols/dataset.ts'
import { encodeMotionPayload } from '../../src/protocols/motion.ts'
import { encodeParams } from '../../src/protocols/params.ts'
import { header, openStore, signHeader, withPayload } from '../chain/helpers.ts'
import { DELTA_PAYLOAD, attestationFields, bytes, deltaFields, fieldMap, layerHeader, learningHeader, proposalFields, str, textDatasetHeader, uint } from '../chain/learning-helpers.ts'
import type { ChainStore } from '../../src/chain/index.ts'
import type { BlockHeader, BlockSigner } from '../../src/chain/types.ts'
import type { ModelFold } from '../../src/learning/fold/types.ts'
import type { DatasetMeasurement } from '../../src/protocols/attestation.ts'
import type { MotionBody } from '../../src/protocols/motion.ts'
import type { Params, ParamsBody } from '../../src/protocols/params.ts'

export const EVAL_STREAM_TOKENS = 128 * 2000

export interface BuiltBlock {
  id: Uint8Array
  encoded: Uint8Array
  payload?: Uint8Array
}

export function hexOf (bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex')
}

export function fromHex (hex: string): Uint8Array {
  return Uint8Array.from(Buffer.from(hex, 'hex'))
}

/** a seeded LCG (deterministic shuffles and noise) */
export class Lcg {
  private x: number
  constructor (seed: number) { this.x = seed >>> 0 }
  next (): number {
    this.x = (Math.imul(this.x, 1664525) + 1013904223) >>> 0
    return this.x
  }

  below (n: number): number { return this.next() % n }

  shuffle<T> (items: T[]): T[] {
    const a = [...items]
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.below(i + 1)
      const t = a[i]
      a[i] = a[j]
      a[j] = t
    }
    return a
  }
}

/** How an attestation's numbers look. */
export type Quality = 'gain' | 'no-gain' | 'noisy' | 'regress'

export class World {
  readonly importer: BlockSigner
  readonly blocks: BuiltBlock[] = []
  model!: Uint8Array
  layers: Uint8Array[] = []
  dataset!: Uint8Array
  datasets: Uint8Array[] = []
  params: Params = defaultParams()
  private nonce = 0n

  constructor (importer: BlockSigner) {
    this.importer = importer
  }

  /** manifest, `units` layers, a dataset, and the genesis Params (unless `genesis` is null); `manifestUnits`: the manifest declares its units (as an import does) */
  async init (options: { units?: number, genesis?: ParamsBody | null, manifestUnits?: number } = {}): Promise<this> {
    const fields = options.manifestUnits != null ? fieldMap({ units: uint(options.manifestUnits) }) : new Map()
    this.model = await this.add(header({ author: this.importer.publicKey, type: BlockType.ModelManifest, fields }), this.importer)
    for (let unit = 0; unit < (options.units ?? 3); unit++) {
      this.layers.push(await this.add(layerHeader(this.importer, this.model, unit), this.importer))
    }
    this.dataset = await this.addDataset('corpus')
    if (options.genesis !== null) {
      const body = options.genesis ?? this.params
      const payload = encodeParams(body)
      await this.add(learningHeader(this.importer, BlockType.Params, { model: bytes(this.model) }, [this.model], payload), this.importer, payload)
      this.params = { ...defaultParams(), ...body }
    }
    return this
  }

  get v0 (): Uint8Array { return initialVersionId(this.model) }
  get g0 (): Uint8Array { return initialGovernanceId(this.model) }

  /** sign `h` as `s` (a fresh timestamp so equal contents stay distinct blocks) and keep it */
  async add (h: BlockHeader, s: BlockSigner, payload?: Uint8Array): Promise<Uint8Array> {
    this.nonce++
    const { id, encoded } = await signHeader({ ...h, timestamp: 1_700_000_000_000n + this.nonce }, s)
    this.blocks.push({ id, encoded, ...(payload != null && payload.length > 0 ? { payload } : {}) })
    return id
  }

  async addDataset (name: string): Promise<Uint8Array> {
    const h = textDatasetHeader(this.importer, name)
    const text = new TextEncoder().encode('a small corpus for the learning block tests\n')
    const id = await this.add(withPayload(h, text, 1024), this.importer, text)
    this.datasets.push(id)
    return id
  }

  async motion (s: BlockSigner, body: MotionBody, base: Uint8Array): Promise<Uint8Array> {
    const payload = encodeMotionPayload(body)
    return this.add(learningHeader(s, BlockType.Motion, { model: bytes(this.model), kind: str(body.kind), base: bytes(base) }, [this.model], payload), s, payload)
  }

  async vote (s: BlockSigner, motion: Uint8Array): Promise<Uint8Array> {
    return this.add(learningHeader(s, BlockType.Vote, { model: bytes(this.model), motion: bytes(motion) }, [motion]), s)
  }

  /** a motion by `by[0]` and votes by the others; returns the motion id and the state it produces if applied */
  async govern (by: BlockSigner[], body: MotionBody, base: Uint8Array): Promise<{ motion: Uint8Array, next: Uint8Array }> {
    const motion = await this.motion(by[0], body, base)
    for (const s of by.slice(1)) {
      await this.vote(s, motion)
    }
    return { motion, next: nextGovernanceId(base, motion) }
  }

  /** Delta blocks for `units` and a Proposal of them by `s` */
  async proposal (s: BlockSigner, base: Uint8Array, governance: Uint8Array, units = [0, 1], dataset = this.dataset): Promise<{ id: Uint8Array, deltas: Uint8Array[], next: Uint8Array }> {
    const deltas: Uint8Array[] = []
    for (const unit of units) {
      deltas.push(await this.add(learningHeader(s, BlockType.Delta, deltaFields(this.model, unit, base), [this.model, this.layers[unit]], DELTA_PAYLOAD), s, DELTA_PAYLOAD))
    }
    const id = await this.add(learningHeader(s, BlockType.Proposal, proposalFields(this.model, base, governance, dataset), [this.model, dataset, ...deltas]), s)
    return { id, deltas, next: nextVersionId(base, id) }
  }

  /** the measurements an honest validator with `seedSig` would publish, with numbers of `quality` */
  measure (seedSig: Uint8Array, quality: Quality, params: Params = this.params, dataset = this.dataset, noise = 1): DatasetMeasurement[] {
    const rng = new Lcg(seedSig[0] * 256 + seedSig[1] + noise)
    return [dataset, ...params.regressionDatasets].map((datasetId, k) => {
      const windows = sampleFor(seedSig, evalWindowsOf(datasetId), params.sampleWindows)
      const base = windows.map(() => BigInt(2_000_000 + rng.below(400_000)))
      const cand = base.map((b, i) => {
        const jitter = BigInt(rng.below(2001)) - 1000n
        if (k > 0) {
          // regression datasets: unchanged, or 5% worse for 'regress'
          return quality === 'regress' ? b + b / 20n + jitter : b + jitter
        }
        switch (quality) {
          case 'gain': return b - b / 50n + jitter // 2% better
          case 'no-gain': return b + jitter
          case 'regress': return b - b / 50n + jitter
          // ~1% better on average, but +-0.4 nats per window: not significant
          default: return b - 20_000n + (i % 2 === 0 ? -400_000n : 400_000n) + jitter
        }
      })
      return { datasetId, windows, base, cand }
    })
  }

  /** an attestation by `s`: its real seedSig, and measurements of `quality` (or given ones) */
  async attest (s: BlockSigner, proposal: Uint8Array, options: { verdict?: string, reason?: string, quality?: Quality, measurements?: DatasetMeasurement[], params?: Params, dataset?: Uint8Array } = {}): Promise<Uint8Array> {
    const seedSig = await signSeed(s, proposal)
    const verdict = options.verdict ?? 'accept'
    const measurements = options.measurements ?? this.measure(seedSig, options.quality ?? 'gain', options.params, options.dataset)
    const payload = encodeAttestationPayload(measurements)
    return this.add(learningHeader(s, BlockType.Attestation, attestationFields(this.model, proposal, seedSig, verdict, options.reason), [proposal], payload), s, payload)
  }

  /** a fresh store holding every block, added in `order` (indexes into blocks; default: as built) */
  async store (dir: string, order?: number[]): Promise<ChainStore> {
    const store = await openStore(dir)
    for (const i of order ?? this.blocks.map((_, k) => k)) {
      const b = this.blocks[i]
      expect(await store.addBlock(b.encoded, b.payload)).to.be.oneOf(['added', 'orphaned'])
    }
    expect((await store.counts()).orphans).to.equal(0)
    expect((await store.counts()).total).to.equal(this.blocks.length)
    return store
  }

  async fold (store: ChainStore): Promise<ModelFold> {
    return foldModel(store, this.model, { evalWindows: async (id) => evalWindowsOf(id) })
  }
}

/** the eval windows of a test dataset: the real split of a synthetic stream */
export function evalWindowsOf (datasetId: Uint8Array): Uint32Array {
  return splitWindows({ datasetId, sequenceLengths: [EVAL_STREAM_TOKENS], splitTokens: 128, evalPermille: 100 }).evalWindows
}

export { fieldMap, uint }
