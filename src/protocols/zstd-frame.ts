/**
 * Walks the structure of one Zstandard frame (RFC 8878, section 3.1.1)
 * without decompressing it: where it ends, whether it names a dictionary,
 * the content size it declares. node:zlib's zstd decoder stops after the
 * first frame and ignores whatever follows, so a canonical payload check
 * needs the frame's exact length from here.
 */

const ZSTD_MAGIC = 0xfd2fb528
const BLOCK_RAW = 0
const BLOCK_RLE = 1
const BLOCK_COMPRESSED = 2

export interface ZstdFrameInfo {
  /** bytes from the magic number to the end of the frame (checksum included) */
  length: number
  /** Frame_Content_Size when the header declares it */
  contentSize?: number
  /** a Dictionary_ID field is present */
  hasDictionaryId: boolean
  /** Single_Segment_flag: the window is the whole content */
  singleSegment: boolean
  /** Window_Descriptor's window size (bytes), when the frame has one */
  windowSize?: number
}

/** Thrown when the bytes are not a well-formed zstd frame structure; the caller wraps it in its own error. */
export class ZstdFrameError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'ZstdFrameError'
  }
}

/** The structure of the zstd frame at the start of `bytes` (the frame may be followed by other bytes). */
export function readZstdFrame (bytes: Uint8Array): ZstdFrameInfo {
  const need = (pos: number, n: number, what: string): void => {
    if (pos + n > bytes.length) {
      throw new ZstdFrameError(`zstd frame ends inside its ${what}`)
    }
  }
  need(0, 5, 'header')
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  if (view.getUint32(0, true) !== ZSTD_MAGIC) {
    throw new ZstdFrameError('not a zstd frame (magic number)')
  }
  const fhd = bytes[4]
  const fcsFlag = fhd >>> 6
  const singleSegment = (fhd & 0x20) !== 0
  if ((fhd & 0x08) !== 0) {
    throw new ZstdFrameError('zstd frame header sets its reserved bit')
  }
  const checksum = (fhd & 0x04) !== 0
  const didSize = [0, 1, 2, 4][fhd & 0x03]
  // Frame_Content_Size field: flag 0 means 1 byte in a single-segment frame, else none
  const fcsSize = [singleSegment ? 1 : 0, 2, 4, 8][fcsFlag]
  let pos = 5
  let windowSize: number | undefined
  if (!singleSegment) {
    need(pos, 1, 'window descriptor')
    const wd = bytes[pos++]
    const windowLog = 10 + (wd >>> 3)
    const base = 2 ** windowLog
    windowSize = base + (base / 8) * (wd & 0x07)
  }
  need(pos, didSize + fcsSize, 'header')
  pos += didSize
  let contentSize: number | undefined
  if (fcsSize === 1) {
    contentSize = bytes[pos]
  } else if (fcsSize === 2) {
    contentSize = view.getUint16(pos, true) + 256
  } else if (fcsSize === 4) {
    contentSize = view.getUint32(pos, true)
  } else if (fcsSize === 8) {
    contentSize = Number(view.getBigUint64(pos, true))
  }
  pos += fcsSize
  for (;;) {
    need(pos, 3, 'block header')
    const header = bytes[pos] | (bytes[pos + 1] << 8) | (bytes[pos + 2] << 16)
    pos += 3
    const last = (header & 1) !== 0
    const type = (header >>> 1) & 0x03
    const size = header >>> 3
    if (type === BLOCK_RAW || type === BLOCK_COMPRESSED) {
      need(pos, size, 'block')
      pos += size
    } else if (type === BLOCK_RLE) {
      need(pos, 1, 'block')
      pos += 1
    } else {
      throw new ZstdFrameError('zstd block of the reserved type')
    }
    if (last) {
      break
    }
  }
  if (checksum) {
    need(pos, 4, 'checksum')
    pos += 4
  }
  return { length: pos, contentSize, hasDictionaryId: didSize !== 0, singleSegment, windowSize }
}
