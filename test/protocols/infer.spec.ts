import { LengthPrefixedDecoder } from '@libp2p/utils'
import { expect } from 'aegir/chai'
import {
  InferErrorCode, InferFrameType, OpenFlags, ResultKind, TENSOR_HEADER_BYTES, TensorDtype,
  decodeInferFrame, encodeInferFrame, encodeInferFrameBytes, encodeVarint, f32Tensor, tensorF32
} from '../../src/protocols/infer.ts'
import { PipelineErrorCode } from '../../src/protocols/pipeline-errors.ts'
import { RECEIPT_BODY_BYTES } from '../../src/protocols/receipt.ts'
import type { InferFrame } from '../../src/protocols/infer.ts'

/** Frame body without its varint prefix, through the decoder the streams use. */
function body (frame: InferFrame): Uint8Array {
  const bytes = encodeInferFrameBytes(frame)
  const out = [...new LengthPrefixedDecoder().decode(bytes)]
  expect(out).to.have.length(1)
  return out[0].subarray()
}

function expectBad (bytes: Uint8Array, pattern: RegExp): void {
  expect(() => decodeInferFrame(bytes)).to.throw(pattern).with.property('code', PipelineErrorCode.BAD_FRAME)
}

describe('protocols/infer codec', () => {
  const hidden = Float32Array.from({ length: 3 * 8 }, (_, i) => i * 0.5 - 3)
  const frames: InferFrame[] = [
    { type: 'open', version: 1, sessionId: 0xfffffffe, modelId: 'model-ü-1', start: 4, end: 9, maxLength: 2048, priority: 200, flags: OpenFlags.LOGITS | OpenFlags.ALL_ROWS },
    { type: 'open', version: 1, sessionId: 3, modelId: 'model-v', start: 0, end: 2, maxLength: 0, priority: 2, flags: OpenFlags.VERSION, weightsVersion: 'ab'.repeat(32) },
    { type: 'open-ok', sessionId: 7, maxLength: 4096, hiddenSize: 4096 },
    { type: 'busy', sessionId: 7, retryAfterMs: 250, message: '16 of 16 sessions in use' },
    { type: 'error', code: InferErrorCode.TOO_LONG, seq: 12, message: 'too long' },
    { type: 'forward', sessionId: 7, seq: 3, startPos: 17, tensor: f32Tensor(hidden, 3, 8) },
    { type: 'result', sessionId: 7, seq: 3, startPos: 17, kind: ResultKind.LOGITS, tensor: f32Tensor(hidden, 4, 6) },
    { type: 'truncate', sessionId: 7, seq: 4, length: 11 },
    { type: 'close', sessionId: 7 },
    { type: 'receipt', sessionId: 7, body: Uint8Array.from({ length: RECEIPT_BODY_BYTES }, (_, i) => i % 251), clientSig: new Uint8Array(64).fill(9) }
  ]

  for (const frame of frames) {
    it(`round-trips ${frame.type}`, () => {
      const decoded = decodeInferFrame(body(frame))
      if ('tensor' in frame && 'tensor' in decoded) {
        const { tensor, ...rest } = decoded
        const { tensor: want, ...wantRest } = frame
        expect(rest).to.deep.equal(wantRest)
        expect({ ...tensor, data: [...tensorF32(tensor)] }).to.deep.equal({ ...want, data: [...tensorF32(want)] })
      } else {
        expect(decoded).to.deep.equal(frame)
      }
    })
  }

  it('sends tensor bytes as they are: the payload is the caller\'s buffer, the header is small', () => {
    const tensor = f32Tensor(hidden, 3, 8)
    const enc = encodeInferFrame({ type: 'forward', sessionId: 1, seq: 1, startPos: 0, tensor })
    expect(enc.payload).to.equal(tensor.data)
    expect(enc.payload?.buffer).to.equal(hidden.buffer)
    expect(enc.head.length).to.equal(encodeVarint(TENSOR_HEADER_BYTES + hidden.byteLength).length + TENSOR_HEADER_BYTES)
    expect(enc.byteLength).to.equal(enc.head.length + hidden.byteLength)
  })

  it('decoded tensors are views when aligned and copies when not', () => {
    const bytes = body({ type: 'forward', sessionId: 1, seq: 1, startPos: 0, tensor: f32Tensor(hidden, 3, 8) })
    const aligned = new Uint8Array(bytes.length + 4)
    aligned.set(bytes, 0)
    const a = decodeInferFrame(aligned.subarray(0, bytes.length))
    expect(a.type).to.equal('forward')
    const t = (a as { tensor: Parameters<typeof tensorF32>[0] }).tensor
    expect(tensorF32(t).buffer).to.equal(aligned.buffer)
    const odd = new Uint8Array(bytes.length + 1)
    odd.set(bytes, 1)
    const b = decodeInferFrame(odd.subarray(1))
    const u = tensorF32((b as { tensor: Parameters<typeof tensorF32>[0] }).tensor)
    expect(u.buffer).to.not.equal(odd.buffer)
    expect([...u]).to.deep.equal([...hidden])
  })

  it('varint prefix matches what LengthPrefixedDecoder reads, for large frames too', () => {
    for (const n of [1, 127, 128, 300, 16384, 2 ** 21 + 5, 64 * 1024 * 1024]) {
      const v = encodeVarint(n)
      const buf = new Uint8Array(v.length + n)
      buf.set(v, 0)
      const out = [...new LengthPrefixedDecoder({ maxDataLength: n + 1, maxBufferSize: n + 16 }).decode(buf)]
      expect(out.map(x => x.byteLength)).to.deep.equal([n])
    }
  })

  describe('malformed frames', () => {
    const forward = body({ type: 'forward', sessionId: 1, seq: 1, startPos: 0, tensor: f32Tensor(hidden, 3, 8) })

    it('empty and unknown types', () => {
      expectBad(new Uint8Array(0), /empty frame/)
      expectBad(Uint8Array.of(0), /unknown frame type 0/)
      expectBad(Uint8Array.of(99, 1, 2, 3), /unknown frame type 99/)
    })

    it('short headers and wrong fixed lengths', () => {
      expectBad(forward.subarray(0, 10), /shorter than its 24-byte header/)
      expectBad(body({ type: 'close', sessionId: 1 }).subarray(0, 5), /CLOSE frame is 5 bytes/)
      const ok = body({ type: 'open-ok', sessionId: 1, maxLength: 1, hiddenSize: 1 })
      expectBad(Uint8Array.from([...ok, 0]), /OPEN_OK frame is 17 bytes/)
    })

    it('payload shorter or longer than the shape says', () => {
      expectBad(forward.subarray(0, forward.length - 4), /FORWARD \[3, 8\] frame/)
      expectBad(Uint8Array.from([...forward, 1, 2, 3, 4]), /FORWARD \[3, 8\] frame/)
    })

    it('unknown dtype, empty shape, unknown result kind, unknown error code', () => {
      const bad = forward.slice()
      bad[1] = 9
      expectBad(bad, /unknown dtype 9/)
      const empty = forward.slice(0, TENSOR_HEADER_BYTES)
      new DataView(empty.buffer).setUint32(16, 0, true)
      expectBad(empty, /shape \[0, 8\] is empty/)
      const result = body({ type: 'result', sessionId: 1, seq: 1, startPos: 0, kind: ResultKind.HIDDEN, tensor: f32Tensor(hidden, 3, 8) })
      result[2] = 7
      expectBad(result, /unknown RESULT kind 7/)
      const err = body({ type: 'error', code: InferErrorCode.INTERNAL, seq: 0, message: '' })
      err[2] = 250
      expectBad(err, /unknown error code 250/)
    })

    it('a shape whose byte size overflows the frame is refused, not allocated', () => {
      const huge = forward.slice(0, TENSOR_HEADER_BYTES)
      new DataView(huge.buffer).setUint32(16, 0xffffffff, true)
      new DataView(huge.buffer).setUint32(20, 0xffffffff, true)
      expectBad(huge, /FORWARD/)
    })

    it('OPEN with an empty range, an over-long or non-UTF-8 model id', () => {
      const open = body({ type: 'open', version: 1, sessionId: 1, modelId: 'm', start: 2, end: 4, maxLength: 0, priority: 0, flags: 0 })
      const empty = open.slice()
      new DataView(empty.buffer).setUint32(12, 2, true)
      expectBad(empty, /range \[2, 2\) is empty/)
      const long = open.slice()
      new DataView(long.buffer).setUint16(20, 300, true)
      expectBad(long, /model id of 300 bytes exceeds 256/)
      const notUtf8 = open.slice()
      notUtf8[notUtf8.length - 1] = 0xff
      expectBad(notUtf8, /not UTF-8/)
      expectBad(open.subarray(0, open.length - 1), /OPEN model id frame/)
    })

    it('OPEN pinning a weights version: the flag is set exactly when the version is given, 32 bytes follow the model id, nothing else', () => {
      const v = '0f'.repeat(32)
      const plain = body({ type: 'open', version: 1, sessionId: 1, modelId: 'm', start: 2, end: 4, maxLength: 0, priority: 0, flags: OpenFlags.VERSION })
      // the flag alone is dropped by the encoder: the frame pins nothing
      expect(plain[3] & OpenFlags.VERSION).to.equal(0)
      expect(decodeInferFrame(plain)).to.not.have.property('weightsVersion')
      const pinned = body({ type: 'open', version: 1, sessionId: 1, modelId: 'm', start: 2, end: 4, maxLength: 0, priority: 0, flags: 0, weightsVersion: v })
      expect(pinned.length).to.equal(plain.length + 32)
      expect(pinned[3] & OpenFlags.VERSION).to.equal(OpenFlags.VERSION)
      expect(decodeInferFrame(pinned)).to.include({ modelId: 'm', weightsVersion: v })
      // the flag without the 32 bytes, or with a byte more or less
      const flagOnly = plain.slice()
      flagOnly[3] |= OpenFlags.VERSION
      expectBad(flagOnly, /OPEN with a weights version frame/)
      expectBad(pinned.subarray(0, pinned.length - 1), /OPEN with a weights version frame/)
      expectBad(new Uint8Array([...pinned, 0]), /OPEN with a weights version frame/)
      // 32 trailing bytes without the flag are not a model id
      const noFlag = pinned.slice()
      noFlag[3] &= ~OpenFlags.VERSION
      expectBad(noFlag, /OPEN model id frame/)
      expect(() => encodeInferFrame({ type: 'open', version: 1, sessionId: 1, modelId: 'm', start: 0, end: 1, maxLength: 0, priority: 0, flags: 0, weightsVersion: 'AB'.repeat(32) }))
        .to.throw(/64 lowercase hex/).with.property('code', PipelineErrorCode.INVALID_ARGUMENT)
    })

    it('the encoder refuses values that do not fit the wire', () => {
      expect(() => encodeInferFrame({ type: 'open', version: 1, sessionId: -1, modelId: 'm', start: 0, end: 1, maxLength: 0, priority: 0, flags: 0 }))
        .to.throw(/sessionId must be a u32/).with.property('code', PipelineErrorCode.INVALID_ARGUMENT)
      expect(() => encodeInferFrame({ type: 'open', version: 1, sessionId: 1, modelId: 'x'.repeat(257), start: 0, end: 1, maxLength: 0, priority: 0, flags: 0 }))
        .to.throw(/model id longer than 256/)
      expect(() => f32Tensor(hidden, 5, 5)).to.throw(/do not make a \[5, 5\] tensor/)
      expect(() => encodeInferFrame({ type: 'forward', sessionId: 1, seq: 1, startPos: 0, tensor: { dtype: TensorDtype.F16, rows: 3, cols: 8, data: new Uint8Array(10) } }))
        .to.throw(/needs 48 bytes, has 10/)
    })

    it('long messages are cut on a character boundary', () => {
      const msg = 'é'.repeat(600)
      const decoded = decodeInferFrame(body({ type: 'error', code: InferErrorCode.INTERNAL, seq: 0, message: msg }))
      expect(decoded.type).to.equal('error')
      expect((decoded as { message: string }).message).to.equal('é'.repeat(512))
    })
  })

  it('frame type bytes are stable', () => {
    expect(InferFrameType).to.deep.equal({ OPEN: 1, OPEN_OK: 2, BUSY: 3, ERROR: 4, FORWARD: 5, RESULT: 6, TRUNCATE: 7, CLOSE: 8, RECEIPT: 9 })
  })

  it('a RECEIPT is exactly type, session id, the receipt body and the 64-byte signature', () => {
    const frame: InferFrame = { type: 'receipt', sessionId: 3, body: new Uint8Array(RECEIPT_BODY_BYTES).fill(1), clientSig: new Uint8Array(64).fill(2) }
    const bytes = body(frame)
    expect(bytes.length).to.equal(8 + RECEIPT_BODY_BYTES + 64)
    expectBad(bytes.subarray(0, bytes.length - 1), /RECEIPT frame is 280 bytes, expected 281/)
    expectBad(Uint8Array.of(...bytes, 0), /RECEIPT frame is 282 bytes, expected 281/)
    expect(() => encodeInferFrame({ ...frame, clientSig: new Uint8Array(63) } as InferFrame)).to.throw(/a RECEIPT carries/)
  })
})
