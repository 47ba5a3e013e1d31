import { expect } from 'aegir/chai'
import { selectBackend } from '../../src/model/backend.ts'
import { ModelErrorCode } from '../../src/model/errors.ts'
import { tf } from '../../src/model/qwen3/tf.ts'

describe('model/backend', () => {
  after(async () => {
    await selectBackend('wasm')
  })

  it('auto tries tfjs-node-gpu, tfjs-node, wasm, cpu in order and records why each failed', async () => {
    const sel = await selectBackend('auto')
    const names = sel.tried.map(t => t.name)
    expect(names.slice(0, 2)).to.deep.equal(['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'].slice(0, names.length))
    const chosen = sel.tried[sel.tried.length - 1]
    expect(chosen.ok).to.equal(true)
    for (const failed of sel.tried.slice(0, -1)) {
      expect(failed.ok).to.equal(false)
      expect(failed.reason).to.be.a('string').and.not.equal('')
    }
    expect(tf.getBackend()).to.equal(sel.name)
    if (sel.name === 'wasm') {
      expect(sel.features?.simd).to.be.a('boolean')
      expect(sel.features?.threadCount).to.be.at.least(1)
    }
  })

  it('cpu and wasm can be chosen explicitly and compute', async () => {
    for (const name of ['cpu', 'wasm'] as const) {
      const sel = await selectBackend(name)
      expect(sel).to.deep.include({ name })
      expect(tf.getBackend()).to.equal(name)
      const y = tf.tidy(() => tf.matMul(tf.tensor2d([[1, 2]]), tf.tensor2d([[3], [4]])))
      expect(Array.from(await y.data())).to.deep.equal([11])
      y.dispose()
    }
  })

  it('an unavailable or unknown backend fails with a code and the reasons', async () => {
    let native = true
    try {
      await selectBackend('tensorflow')
    } catch (err: any) {
      native = false
      expect(err.code).to.equal(ModelErrorCode.BACKEND_UNAVAILABLE)
      expect(err.tried).to.have.length(2)
      expect(err.message).to.include('@tensorflow/tfjs-node')
    }
    if (native) {
      expect(tf.getBackend()).to.equal('tensorflow')
    }
    await selectBackend('gpu' as any).then(() => { throw new Error('selected') }, err => { expect(err).to.have.property('code', ModelErrorCode.BACKEND_UNAVAILABLE) })
  })
})
