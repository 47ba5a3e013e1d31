import { LengthPrefixedDecoder } from '@libp2p/utils'
import { expect } from 'aegir/chai'
import { TrainProtocolErrorCode } from '../../src/protocols/train-errors.ts'
import { OpenJobFlags, TrainFrameType, TrainWireError, decodeTrainFrame, encodeTrainBody, encodeTrainFrame } from '../../src/protocols/train.ts'
import type { TrainFrame } from '../../src/protocols/train.ts'

function expectBad (bytes: Uint8Array, pattern: RegExp): void {
  expect(() => decodeTrainFrame(bytes)).to.throw(pattern).with.property('code', TrainProtocolErrorCode.BAD_FRAME)
}

describe('protocols/train codec (/bly/train/1.0.0)', () => {
  const x = { rows: 3, cols: 4, data: Float32Array.from({ length: 12 }, (_, i) => i * 0.25 - 1.5) }
  const frames: TrainFrame[] = [
    {
      type: TrainFrameType.OPEN_JOB,
      job: 'job-ü',
      model: 'qwen3',
      version: 'ab'.repeat(32),
      start: 2,
      end: 3,
      flags: OpenJobFlags.HEAD,
      rank: 8,
      alpha: 8,
      targets: 0x7f,
      seed: 11,
      batch: 2,
      lr: 5e-3,
      beta1: 0.9,
      beta2: 0.999,
      eps: 1e-8,
      weightDecay: 0.01,
      clip: Infinity,
      warmup: 2
    },
    { type: TrainFrameType.OPENED, job: 'j' },
    { type: TrainFrameType.FORWARD, job: 'j', step: 7, micro: 1, ids: Uint32Array.of(5, 17, 511), x },
    { type: TrainFrameType.EVAL, job: 'j', step: 0, micro: 0, ids: Uint32Array.of(5, 17, 511), x },
    { type: TrainFrameType.ACTIVATIONS, job: 'j', step: 7, micro: 1, x },
    { type: TrainFrameType.LOSS, job: 'j', step: 7, micro: 1, loss: 6.123456789012345 },
    { type: TrainFrameType.BACKWARD, job: 'j', step: 7, micro: 0, x: { rows: 0, cols: 0, data: new Float32Array(0) } },
    { type: TrainFrameType.GRADIENT, job: 'j', step: 7, micro: 0, x },
    { type: TrainFrameType.SUM_SQUARES, job: 'j', step: 7, value: 0.1 + 0.2 },
    { type: TrainFrameType.SQUARES, job: 'j', step: 7, value: 1.5 },
    { type: TrainFrameType.STEP, job: 'j', step: 7, value: 2.25 },
    { type: TrainFrameType.STEPPED, job: 'j', step: 7, value: 0.5 },
    { type: TrainFrameType.FETCH_PARAMS, job: 'j' },
    { type: TrainFrameType.PARAMS, job: 'j', tensors: [{ name: 'model.layers.0.self_attn.q_proj.weight', data: x.data }, { name: 'n', data: new Float32Array(0) }] },
    { type: TrainFrameType.CLOSE, job: 'j' },
    { type: TrainFrameType.CLOSED, job: 'j' },
    { type: TrainFrameType.ERROR, code: TrainWireError.NON_FINITE, job: 'j', message: 'the activations hold NaN' },
    { type: TrainFrameType.FETCH_STATE, job: 'j' },
    { type: TrainFrameType.STATE, job: 'j', step: 7, tensors: [{ name: 'a.lora_a', values: x.data, m: x.data.map(v => v / 2), v: x.data.map(v => v * v) }, { name: 'e', values: new Float32Array(0), m: new Float32Array(0), v: new Float32Array(0) }] },
    { type: TrainFrameType.LOAD_STATE, job: 'j', step: 0, tensors: [{ name: 'a.lora_b', values: Float32Array.of(-0, 1e-30, 3.5), m: Float32Array.of(1, 2, 3), v: Float32Array.of(4, 5, 6) }] },
    { type: TrainFrameType.LOADED, job: 'j', step: 7 }
  ]

  it('every frame type round-trips through the length-prefixed stream decoder, canonically', () => {
    for (const f of frames) {
      const { head } = encodeTrainFrame(f)
      const bodies = [...new LengthPrefixedDecoder().decode(head)]
      expect(bodies).to.have.length(1)
      const back = decodeTrainFrame(bodies[0].subarray())
      expect(back, `type ${f.type}`).to.deep.equal(f)
      // one encoding: re-encoding the decoded frame gives the same bytes
      expect(encodeTrainBody(back)).to.deep.equal(bodies[0].subarray())
    }
  })

  it('exact layout of LOAD_STATE: per tensor its name, length, then values, m and v', () => {
    const b = encodeTrainBody({ type: TrainFrameType.LOAD_STATE, job: 'j', step: 3, tensors: [{ name: 'w', values: Float32Array.of(1), m: Float32Array.of(2), v: Float32Array.of(-1) }] })
    expect([...b]).to.deep.equal([20, 1, 0, 0x6a, 3, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0x77, 1, 0, 0, 0, 0, 0, 0x80, 0x3f, 0, 0, 0, 0x40, 0, 0, 0x80, 0xbf])
    // moments of another length than the values do not encode
    expect(() => encodeTrainBody({ type: TrainFrameType.STATE, job: 'j', step: 3, tensors: [{ name: 'w', values: Float32Array.of(1), m: new Float32Array(0), v: Float32Array.of(1) }] })).to.throw(/moments/)
  })

  it('exact little-endian layout of SUM_SQUARES', () => {
    const b = encodeTrainBody({ type: TrainFrameType.SUM_SQUARES, job: 'ab', step: 258, value: 1 })
    expect([...b]).to.deep.equal([8, 2, 0, 0x61, 0x62, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f])
  })

  it('refuses malformed bodies with BAD_FRAME', () => {
    for (const f of frames) {
      const b = encodeTrainBody(f)
      expectBad(b.subarray(0, b.length - 1), /ends inside|longer than|left over/)
      const longer = new Uint8Array(b.length + 1)
      longer.set(b)
      expectBad(longer, /left over/)
    }
    expectBad(Uint8Array.of(99), /unknown frame type 99/)
    expectBad(new Uint8Array(0), /ends inside the type/)
    // a tensor whose shape claims more values than the frame holds
    const fwd = encodeTrainBody({ type: TrainFrameType.ACTIVATIONS, job: 'j', step: 1, micro: 0, x })
    const view = new DataView(fwd.buffer, fwd.byteOffset)
    view.setUint32(1 + 3 + 8, 0xffffffff, true)
    expectBad(fwd, /longer than the frame/)
    // unknown OPEN_JOB flag bits
    const open = encodeTrainBody(frames[0])
    const flagsAt = 1 + (2 + 'job-ü'.length + 1) + (2 + 5) + (2 + 64) + 8
    expect(open[flagsAt]).to.equal(OpenJobFlags.HEAD)
    open[flagsAt] = 0x80
    expectBad(open, /unknown flag/)
    // a text that is not UTF-8
    const err = encodeTrainBody({ type: TrainFrameType.CLOSE, job: 'ab' })
    err[3] = 0xff
    expectBad(err, /not UTF-8/)
  })
})
