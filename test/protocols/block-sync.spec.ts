import { expect } from 'aegir/chai'
import { HaveStatus, MAX_IDS_PER_MESSAGE, SyncErrorCode, decodeSyncFrame, encodeSyncFrame, isSyncRequest } from '../../src/protocols/block-sync.ts'
import { NetErrorCode } from '../../src/protocols/net-errors.ts'
import type { SyncFrame } from '../../src/protocols/block-sync.ts'

const id = (n: number): Uint8Array => new Uint8Array(32).fill(n)

describe('protocols/block-sync codec', () => {
  const frames: SyncFrame[] = [
    { id: 1, body: { type: 'get-tips' } },
    { id: 2, body: { type: 'get-headers', ids: [id(1), id(2)] } },
    { id: 3, body: { type: 'get-have', ids: [id(3)] } },
    { id: 0xffffffff, body: { type: 'get-chunk', id: id(4), index: 7 } },
    { id: 5, body: { type: 'tips', ids: [] } },
    { id: 6, body: { type: 'headers', headers: [new Uint8Array([1, 2, 3]), undefined] } },
    { id: 7, body: { type: 'have', status: [HaveStatus.Complete, HaveStatus.Unknown, HaveStatus.Partial] } },
    { id: 8, body: { type: 'chunk', data: new Uint8Array(70_000).fill(9) } },
    { id: 9, body: { type: 'error', code: SyncErrorCode.BUSY, message: 'busy ✓' } }
  ]

  for (const frame of frames) {
    it(`round-trips ${frame.body.type}`, () => {
      expect(decodeSyncFrame(encodeSyncFrame(frame))).to.deep.equal(frame)
    })
  }

  it('rejects malformed frames with ERR_SYNC_BAD_MESSAGE', () => {
    const bad = [
      new Uint8Array([0x08]), // truncated varint
      new Uint8Array([0x08, 0x01]), // id but no body
      new Uint8Array([0x08, 0x01, 0x12, 0x00, 0x12, 0x00]), // two bodies
      new Uint8Array([0x08, 0x01, 0x1a, 0x03, 0x0a, 0x01, 0x00]), // a 1-byte block id
      new Uint8Array([0x08, 0x01, 0x7a, 0x02, 0x08, 0x09]), // unknown error code
      new Uint8Array([0x08, 0x01, 0x32, 0x00]) // unknown body field 6
    ]
    for (const bytes of bad) {
      expect(() => decodeSyncFrame(bytes)).to.throw().with.property('code', NetErrorCode.BAD_MESSAGE)
    }
    const tooMany = Array.from({ length: MAX_IDS_PER_MESSAGE + 1 }, () => id(1))
    expect(() => encodeSyncFrame({ id: 1, body: { type: 'get-headers', ids: tooMany } })).to.throw().with.property('code', NetErrorCode.BAD_MESSAGE)
  })

  it('tells requests from responses', () => {
    for (const frame of frames) {
      expect(isSyncRequest(frame.body), frame.body.type).to.equal(frame.body.type.startsWith('get-'))
    }
  })

  it('encodes the same frame to the same bytes, and refuses ids and statuses the wire cannot carry', () => {
    const frame: SyncFrame = { id: 42, body: { type: 'get-headers', ids: [id(5), id(6)] } }
    expect(encodeSyncFrame(frame)).to.deep.equal(encodeSyncFrame(structuredClone(frame)))
    for (const bad of [-1, 1.5, 0x1_0000_0000]) {
      expect(() => encodeSyncFrame({ id: bad, body: { type: 'get-tips' } })).to.throw().with.property('code', NetErrorCode.BAD_MESSAGE)
    }
    expect(() => encodeSyncFrame({ id: 1, body: { type: 'get-have', ids: [new Uint8Array(31)] } })).to.throw().with.property('code', NetErrorCode.BAD_MESSAGE)
  })
})
