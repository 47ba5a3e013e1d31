/**
 * The fixtures through the webgpu backend (Dawn). Without a GPU this runs on
 * a software Vulkan adapter (Mesa >= 25 lavapipe, which .ci/run installs).
 * No skip: when no adapter is found the suite fails with the reason and the
 * install hint, in CI and out of it.
 */
import { expect } from 'aegir/chai'
import { selectBackend } from '../../src/model/backend.ts'
import { ModelErrorCode } from '../../src/model/errors.ts'
import { InferenceService } from '../../src/model/inference-service.ts'
import { LayerRange } from '../../src/model/qwen3/layer-range.ts'
import { tf } from '../../src/model/qwen3/tf.ts'
import { argmax } from '../../src/model/sampling.ts'
import { hasGpuDeviceNode } from '../../src/model/webgpu-adapter.ts'
import { resolveWorkers } from '../../src/model/workers.ts'
import { FIXTURE_VARIANTS, loadFixture, maxAbsDiff, sourceOf } from './fixtures.ts'
import { requireWebGpu } from './require-webgpu.ts'
import type { Fixture } from './fixtures.ts'

/** Tolerance the issue asks for. */
const TOL = 1e-4

describe('model/webgpu backend', function () {
  this.timeout(120_000)

  after(async () => {
    await selectBackend('wasm')
  })

  it('starts on an adapter and names it, with the device limits', async () => {
    const sel = await requireWebGpu()
    expect(sel.name).to.equal('webgpu')
    expect(tf.getBackend()).to.equal('webgpu')
    expect(sel.adapter?.vendor).to.be.a('string').and.not.equal('')
    expect(sel.adapter?.limits.maxStorageBufferBindingSize).to.be.above(0)
    expect(sel.tried.at(-1)).to.deep.include({ name: 'webgpu', ok: true })
    const y = tf.tidy(() => tf.matMul(tf.tensor2d([[1, 2]]), tf.tensor2d([[3], [4]])))
    expect(Array.from(await y.data())).to.deep.equal([11])
    y.dispose()
  })

  it('auto uses a software adapter only when opted in, and says why not', async () => {
    const named = await requireWebGpu()
    // without a GPU device node, auto does not even open Dawn (its warnings would reach every command's stderr)
    const unprobed = await selectBackend('auto', { allowSoftwareAdapter: false, hasGpuDeviceNode: () => false })
    const skipped = unprobed.tried.find(t => t.name === 'webgpu')
    expect(skipped?.ok).to.equal(false)
    expect(skipped?.reason).to.include('no GPU device node').and.include('software adapter')
    expect(skipped?.adapter).to.equal(undefined)
    expect(unprobed.name).to.not.equal('webgpu')
    const sel = await selectBackend('auto', { allowSoftwareAdapter: false, hasGpuDeviceNode: () => true })
    const webgpu = sel.tried.find(t => t.name === 'webgpu')
    expect(webgpu, 'auto tries webgpu').to.not.equal(undefined)
    if (named.adapter?.fallback === true) {
      expect(webgpu?.ok).to.equal(false)
      expect(webgpu?.reason).to.include('software adapter')
      expect(webgpu?.adapter?.fallback).to.equal(true)
      expect(sel.name).to.not.equal('webgpu')
      const opted = await selectBackend('auto', { allowSoftwareAdapter: true, hasGpuDeviceNode: () => false })
      expect(opted.name).to.be.oneOf(['tensorflow', 'webgpu'])
    } else {
      expect(sel.name).to.be.oneOf(['tensorflow', 'webgpu'])
    }
  })

  it('a GPU device node is NVIDIA\'s control node or a DRM render node (Linux); elsewhere auto probes', () => {
    const none = (): string[] => []
    expect(hasGpuDeviceNode('linux', () => false, none)).to.equal(false)
    expect(hasGpuDeviceNode('linux', p => p === '/dev/nvidiactl', none)).to.equal(true)
    expect(hasGpuDeviceNode('linux', () => false, d => d === '/dev/dri' ? ['card0', 'renderD128'] : [])).to.equal(true)
    expect(hasGpuDeviceNode('linux', () => false, d => d === '/dev/dri' ? ['card0'] : [])).to.equal(false)
    expect(hasGpuDeviceNode('darwin', () => false, none)).to.equal(true)
  })

  it('refuses worker threads on webgpu in one line', () => {
    const config = { hiddenSize: 4096, numKvHeads: 8, intermediateSize: 12288 } as any
    expect(resolveWorkers('auto', config, { backend: 'webgpu', cores: 16 })).to.equal(0)
    expect(() => resolveWorkers(2, config, { backend: 'webgpu' })).to.throw(/cannot run on webgpu/).with.property('code', ModelErrorCode.BAD_INPUT)
    expect(resolveWorkers(0, config, { backend: 'webgpu' })).to.equal(0)
  })

  it('an inference service asked for webgpu with worker threads refuses to start, in one line', async () => {
    await requireWebGpu()
    const service = new InferenceService({ store: () => { throw new Error('no store needed') }, backend: 'webgpu', workers: 2 })
    const err = await service.start().then(() => undefined, (e: Error) => e)
    expect(err?.message).to.match(/^--workers 2 cannot run on webgpu .*use --workers 0 or auto$/)
    expect(err?.message).to.not.include('\n')
    expect(service.backendStatus()).to.include({ name: 'webgpu' })
  })
})

for (const variant of FIXTURE_VARIANTS) {
  describe(`model/qwen3 on webgpu: ${variant}`, function () {
    this.timeout(120_000)
    let fixture: Fixture
    let model: LayerRange

    before(async () => {
      await requireWebGpu()
      fixture = await loadFixture(variant)
      model = await LayerRange.load(fixture.config, sourceOf(fixture), { start: 0, end: fixture.config.numLayers, embedding: true, head: true })
    })

    after(async () => {
      model?.dispose()
      await selectBackend('wasm')
    })

    it('full-sequence logits match the reference within 1e-4', async () => {
      const session = model.createSession()
      try {
        const t = model.forwardTokens(session, fixture.expected.sequence)
        const got = await t.array()
        t.dispose()
        expect(got).to.have.length(fixture.expected.sequence.length)
        for (let i = 0; i < got.length; i++) {
          expect(maxAbsDiff(got[i], fixture.expected.full_logits[i]), `position ${i}`).to.be.below(TOL)
        }
      } finally {
        session.dispose()
      }
    })

    it('greedy decoding through the KV cache gives the reference tokens exactly', async () => {
      const session = model.createSession()
      const { prompt, tokens, step_logits: stepLogits } = fixture.expected.greedy
      try {
        const got: number[] = []
        let feed = prompt
        for (let i = 0; i < tokens.length; i++) {
          const logits = await model.nextLogits(session, feed)
          expect(maxAbsDiff(logits, stepLogits[i]), `step ${i}`).to.be.below(TOL)
          const id = argmax(logits)
          got.push(id)
          feed = [id]
        }
        expect(got).to.deep.equal(tokens)
      } finally {
        session.dispose()
      }
    })
  })
}
