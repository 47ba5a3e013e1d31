import { mkdtemp, readFile, rm, writeFile, copyFile, truncate } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { ModelErrorCode } from '../../src/model/errors.ts'
import { parseQwen3Config } from '../../src/model/qwen3/config.ts'
import { LayerRange } from '../../src/model/qwen3/layer-range.ts'
import { SafetensorsCheckpoint } from '../../src/model/safetensors/checkpoint.ts'
import { bf16ToF32, f16ToF32, f32ToBf16, fromFloat32, toFloat32 } from '../../src/model/safetensors/dtypes.ts'
import { SafetensorsFile, decodeSafetensors } from '../../src/model/safetensors/reader.ts'
import { encodeSafetensors } from '../../src/model/safetensors/writer.ts'
import { MapWeightSource } from '../../src/model/weight-source.ts'
import { isErrorCode } from '../../src/protocols/errors.ts'
import { fixtureDir, loadFixture } from './fixtures.ts'
import type { RawTensor } from '../../src/model/safetensors/dtypes.ts'

async function expectCode (p: Promise<unknown> | (() => unknown), code: string): Promise<Error> {
  let err: any
  try {
    await (typeof p === 'function' ? p() : p)
  } catch (e) {
    err = e
  }
  expect(err, `expected an error with code ${code}`).to.be.an('error')
  expect(isErrorCode(err, code), `got ${err?.code}: ${err?.message}`).to.equal(true)
  return err
}

/** A file with the given header object and data bytes. */
function rawFile (header: unknown, data: Uint8Array, headerText?: string): Uint8Array {
  const json = new TextEncoder().encode(headerText ?? JSON.stringify(header))
  const out = new Uint8Array(8 + json.byteLength + data.byteLength)
  new DataView(out.buffer).setBigUint64(0, BigInt(json.byteLength), true)
  out.set(json, 8)
  out.set(data, 8 + json.byteLength)
  return out
}

describe('model/safetensors', () => {
  let dir: string

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'blyd-safetensors-'))
  })

  after(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  async function fileWith (name: string, bytes: Uint8Array): Promise<string> {
    const p = join(dir, name)
    await writeFile(p, bytes)
    return p
  }

  it('converts bf16 and f16 to f32 exactly', () => {
    const values = new Float32Array([0, -0, 1, -2.5, 3.140625, 65504, 1e-3, -Infinity])
    const bf = f32ToBf16(values)
    const back = bf16ToF32(bf)
    expect(Array.from(back.slice(0, 6))).to.deep.equal([0, -0, 1, -2.5, 3.140625, 65536])
    expect(back[7]).to.equal(-Infinity)
    // misaligned input takes the byte path and agrees
    const shifted = new Uint8Array(bf.byteLength + 1)
    shifted.set(bf, 1)
    expect(Array.from(bf16ToF32(shifted.subarray(1)))).to.deep.equal(Array.from(back))
    // f16: 1.0, -2.0, 65504 (max), smallest subnormal 2^-24, +inf, NaN
    const f16 = new Uint8Array([0x00, 0x3c, 0x00, 0xc0, 0xff, 0x7b, 0x01, 0x00, 0x00, 0x7c, 0x00, 0x7e])
    const f = f16ToF32(f16)
    expect(Array.from(f.slice(0, 5))).to.deep.equal([1, -2, 65504, 2 ** -24, Infinity])
    expect(Number.isNaN(f[5])).to.equal(true)
  })

  it('round-trips tensors through the writer and the in-memory reader', () => {
    const a: RawTensor = { dtype: 'F32', shape: [2, 3], data: fromFloat32(new Float32Array([1, 2, 3, 4, 5, 6]), 'F32') }
    const b: RawTensor = { dtype: 'BF16', shape: [4], data: fromFloat32(new Float32Array([1, -1, 0.5, 8]), 'BF16') }
    const bytes = encodeSafetensors([['a', a], ['b', b]], { format: 'pt' })
    const headerLen = Number(new DataView(bytes.buffer).getBigUint64(0, true))
    expect(headerLen % 8).to.equal(0)
    const decoded = decodeSafetensors(bytes)
    expect(decoded.metadata).to.deep.equal({ format: 'pt' })
    expect([...decoded.tensors.keys()]).to.deep.equal(['a', 'b'])
    expect(Array.from(toFloat32(decoded.tensors.get('a') as RawTensor))).to.deep.equal([1, 2, 3, 4, 5, 6])
    expect(Array.from(toFloat32(decoded.tensors.get('b') as RawTensor))).to.deep.equal([1, -1, 0.5, 8])
    // deterministic: the same tensors encode to the same bytes
    expect(encodeSafetensors([['a', a], ['b', b]], { format: 'pt' })).to.deep.equal(bytes)
  })

  it('reads a file by offset and a sharded checkpoint through its index', async () => {
    const single = await SafetensorsFile.open(join(fixtureDir('untied-f32'), 'model.safetensors'))
    try {
      const t = await single.read('model.norm.weight')
      expect(t.dtype).to.equal('F32')
      expect(t.shape).to.deep.equal([64])
    } finally {
      await single.close()
    }
    const sharded = await SafetensorsCheckpoint.open(fixtureDir('untied-bf16-sharded'))
    try {
      expect(sharded.files).to.have.length(2)
      const index = JSON.parse(await readFile(join(fixtureDir('untied-bf16-sharded'), 'model.safetensors.index.json'), 'utf8'))
      expect(sharded.names().sort()).to.deep.equal(Object.keys(index.weight_map).sort())
      const t = await sharded.read('lm_head.weight')
      expect(t.dtype).to.equal('BF16')
      expect(t.shape).to.deep.equal([512, 64])
      await expectCode(sharded.read('no.such.tensor'), ModelErrorCode.MISSING_TENSOR)
    } finally {
      await sharded.close()
    }
  })

  it('matches the bf16 fixture to the f32 values up to bf16 rounding', async () => {
    const f32 = await loadFixture('untied-f32')
    const bf16 = await loadFixture('untied-bf16-sharded')
    const a = toFloat32(f32.tensors.get('model.layers.0.mlp.up_proj.weight') as RawTensor)
    const b = toFloat32(bf16.tensors.get('model.layers.0.mlp.up_proj.weight') as RawTensor)
    expect(a.length).to.equal(b.length)
    let max = 0
    for (let i = 0; i < a.length; i++) {
      max = Math.max(max, Math.abs(a[i] - b[i]) / Math.max(Math.abs(a[i]), 1e-30))
    }
    expect(max).to.be.below(2 ** -7)
  })

  describe('errors', () => {
    const good = (): Uint8Array => encodeSafetensors([['w', { dtype: 'F32', shape: [2, 2], data: new Uint8Array(16) }]])

    it('cut file: header length past EOF, or data past EOF', async () => {
      const bytes = good()
      const p1 = await fileWith('short.safetensors', bytes.subarray(0, 5))
      const e1 = await expectCode(SafetensorsFile.open(p1), ModelErrorCode.HEADER_PAST_EOF)
      expect(e1.message).to.include(p1)
      const p2 = await fileWith('cut-header.safetensors', bytes.subarray(0, 20))
      await expectCode(SafetensorsFile.open(p2), ModelErrorCode.HEADER_PAST_EOF)
      const p3 = await fileWith('cut-data.safetensors', bytes.subarray(0, bytes.byteLength - 4))
      const e3 = await expectCode(SafetensorsFile.open(p3), ModelErrorCode.OFFSETS_PAST_EOF)
      expect(e3.message).to.include('tensor w')
      // a real checkpoint cut in the middle
      const p4 = join(dir, 'cut-fixture.safetensors')
      await copyFile(join(fixtureDir('untied-f32'), 'model.safetensors'), p4)
      await truncate(p4, 600_000)
      await expectCode(SafetensorsFile.open(p4), ModelErrorCode.OFFSETS_PAST_EOF)
    })

    it('bad header JSON', async () => {
      const p = await fileWith('bad-json.safetensors', rawFile(null, new Uint8Array(0), '{"w": {"dtype": "F32",'))
      await expectCode(SafetensorsFile.open(p), ModelErrorCode.BAD_HEADER_JSON)
      expect(() => decodeSafetensors(rawFile(null, new Uint8Array(0), '[1, 2]'))).to.throw().with.property('code', ModelErrorCode.BAD_HEADER_JSON)
    })

    it('shape x dtype size differs from the byte length', async () => {
      const p = await fileWith('size.safetensors', rawFile({ w: { dtype: 'BF16', shape: [2, 2], data_offsets: [0, 16] } }, new Uint8Array(16)))
      const err = await expectCode(SafetensorsFile.open(p), ModelErrorCode.SIZE_MISMATCH)
      expect(err.message).to.include('tensor w')
      expect(() => encodeSafetensors([['w', { dtype: 'F32', shape: [3], data: new Uint8Array(8) }]])).to.throw().with.property('code', ModelErrorCode.SIZE_MISMATCH)
    })

    it('offsets past the end of the file', async () => {
      const p = await fileWith('past.safetensors', rawFile({ w: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, new Uint8Array(8)))
      await expectCode(SafetensorsFile.open(p), ModelErrorCode.OFFSETS_PAST_EOF)
    })

    it('overlapping or gapped offsets', async () => {
      const overlap = rawFile({
        a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
        b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] }
      }, new Uint8Array(12))
      expect(() => decodeSafetensors(overlap)).to.throw().with.property('code', ModelErrorCode.BAD_OFFSETS)
      const gap = rawFile({ a: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, new Uint8Array(8))
      expect(() => decodeSafetensors(gap)).to.throw().with.property('code', ModelErrorCode.BAD_OFFSETS)
    })

    it('unknown dtype', async () => {
      const p = await fileWith('dtype.safetensors', rawFile({ w: { dtype: 'Q4_K', shape: [2], data_offsets: [0, 8] } }, new Uint8Array(8)))
      const err = await expectCode(SafetensorsFile.open(p), ModelErrorCode.UNKNOWN_DTYPE)
      expect(err.message).to.include('Q4_K')
    })

    it('a shard named by the index is missing', async () => {
      const d = await mkdtemp(join(dir, 'sharded-'))
      const src = fixtureDir('untied-bf16-sharded')
      await copyFile(join(src, 'model.safetensors.index.json'), join(d, 'model.safetensors.index.json'))
      await copyFile(join(src, 'model-00001-of-00002.safetensors'), join(d, 'model-00001-of-00002.safetensors'))
      await expectCode(SafetensorsCheckpoint.open(d), ModelErrorCode.BAD_SHARD_INDEX)
      await writeFile(join(d, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { x: '../escape.safetensors' } }))
      await expectCode(SafetensorsCheckpoint.open(d), ModelErrorCode.BAD_SHARD_INDEX)
    })

    it('missing tensor required by the config, and wrong shapes', async () => {
      const fixture = await loadFixture('untied-f32')
      const without = new Map(fixture.tensors)
      without.delete('model.layers.1.self_attn.k_norm.weight')
      const err = await expectCode(LayerRange.load(fixture.config, new MapWeightSource(without, 'test-source'), { start: 0, end: 2 }), ModelErrorCode.MISSING_TENSOR)
      expect(err.message).to.include('model.layers.1.self_attn.k_norm.weight')
      // a head shard of an untied model needs lm_head
      const noHead = new Map(fixture.tensors)
      noHead.delete('lm_head.weight')
      await expectCode(LayerRange.load(fixture.config, new MapWeightSource(noHead), { start: 4, end: 4, head: true }), ModelErrorCode.MISSING_TENSOR)
      const wrong = new Map(fixture.tensors)
      wrong.set('model.norm.weight', { dtype: 'F32', shape: [32], data: new Uint8Array(128) })
      await expectCode(LayerRange.load(fixture.config, new MapWeightSource(wrong), { start: 4, end: 4, head: true }), ModelErrorCode.WRONG_SHAPE)
    })

    it('unknown architecture and bad configs', async () => {
      const raw = JSON.parse(await readFile(join(fixtureDir('untied-f32'), 'config.json'), 'utf8'))
      await expectCode(() => parseQwen3Config({ ...raw, model_type: 'llama' }), ModelErrorCode.UNSUPPORTED_ARCHITECTURE)
      await expectCode(() => parseQwen3Config({ ...raw, model_type: undefined }), ModelErrorCode.UNSUPPORTED_ARCHITECTURE)
      await expectCode(() => parseQwen3Config('{not json'), ModelErrorCode.BAD_CONFIG)
      await expectCode(() => parseQwen3Config({ ...raw, hidden_size: 0 }), ModelErrorCode.BAD_CONFIG)
      await expectCode(() => parseQwen3Config({ ...raw, num_key_value_heads: 3 }), ModelErrorCode.BAD_CONFIG)
      await expectCode(() => parseQwen3Config({ ...raw, rope_scaling: { type: 'yarn' } }), ModelErrorCode.BAD_CONFIG)
      const c = parseQwen3Config(raw)
      expect(c.headDim).to.equal(32)
      expect(c.hiddenSize / c.numHeads).to.equal(16)
    })
  })
})
