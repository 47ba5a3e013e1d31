/**
 * Checks a dataset's source bytes before anything is stored: UTF-8 text
 * (fatal decoder, non-empty, at most MAX_DATASET_BYTES), or JSONL token ids
 * (one `{"ids": [...]}` per non-empty line, integers in [0, vocab), at least
 * 2 per line). Every error is a DatasetError naming the line at fault.
 */
import { open } from 'node:fs/promises'
import { extname } from 'node:path'
import { DatasetFormat, MAX_DATASET_BYTES } from '../protocols/dataset.ts'
import { DatasetError, DatasetErrorCode } from './errors.ts'
import type { TokenStream } from '../protocols/dataset.ts'

const NEWLINE = 0x0a
const CARRIAGE_RETURN = 0x0d
const UTF8_BOM = [0xef, 0xbb, 0xbf]

/** The format a file is read as when none is given: `.jsonl` is ids, anything else text. */
export function formatForPath (path: string): DatasetFormat {
  return extname(path).toLowerCase() === '.jsonl' ? DatasetFormat.IDS : DatasetFormat.TEXT
}

/**
 * Reads a dataset source file whole, refusing one over `limit` bytes before
 * reading it (and one that grows past it while read).
 */
export async function readDatasetFile (path: string, limit = MAX_DATASET_BYTES): Promise<Uint8Array> {
  let handle
  try {
    handle = await open(path, 'r')
  } catch (err: any) {
    throw new DatasetError(DatasetErrorCode.FILE, `cannot open ${path} (${err.code ?? err.message})`, { cause: err })
  }
  try {
    const stat = await handle.stat()
    if (!stat.isFile()) {
      throw new DatasetError(DatasetErrorCode.FILE, `${path} is not a regular file`)
    }
    if (stat.size > limit) {
      throw new DatasetError(DatasetErrorCode.TOO_LARGE, `${path} is ${stat.size} bytes, over the dataset limit of ${limit}`)
    }
    // one byte more than the limit: a file that grew past it is caught
    const out = new Uint8Array(Math.min(stat.size, limit) + 1)
    let at = 0
    while (at < out.length) {
      const { bytesRead } = await handle.read(out, at, out.length - at, at)
      if (bytesRead === 0) {
        break
      }
      at += bytesRead
    }
    if (at > limit) {
      throw new DatasetError(DatasetErrorCode.TOO_LARGE, `${path} grew past the dataset limit of ${limit} bytes while it was read`)
    }
    return out.subarray(0, at)
  } finally {
    await handle.close()
  }
}

function checkSize (bytes: Uint8Array): void {
  if (bytes.length === 0) {
    throw new DatasetError(DatasetErrorCode.EMPTY, 'the dataset file is empty')
  }
  if (bytes.length > MAX_DATASET_BYTES) {
    throw new DatasetError(DatasetErrorCode.TOO_LARGE, `the dataset is ${bytes.length} bytes, over the limit of ${MAX_DATASET_BYTES}`)
  }
}

/** [start, end) of every line (split at '\n'; a trailing '\r' is left to the caller), numbered from 1. */
function * lines (bytes: Uint8Array): Generator<[number, number, number]> {
  let start = 0
  let line = 1
  while (start <= bytes.length) {
    let end = bytes.indexOf(NEWLINE, start)
    if (end === -1) {
      end = bytes.length
    }
    yield [line, start, end]
    start = end + 1
    line++
  }
}

/**
 * Decodes UTF-8 text, fatally (an invalid byte sequence is an error, never
 * U+FFFD). A byte-order mark is kept as U+FEFF: the bytes are the text.
 * On failure, the error names the first line that does not decode.
 */
export function decodeUtf8 (bytes: Uint8Array): string {
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes)
  } catch (err) {
    // '\n' never occurs inside a multi-byte sequence, so some line is invalid on its own
    const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })
    for (const [line, start, end] of lines(bytes)) {
      try {
        decoder.decode(bytes.subarray(start, end))
      } catch {
        throw new DatasetError(DatasetErrorCode.UTF8, `line ${line} is not valid UTF-8 (the line starts at byte ${start})`, { line, cause: err })
      }
    }
    throw new DatasetError(DatasetErrorCode.UTF8, 'the text is not valid UTF-8', { cause: err })
  }
}

/** Checks a text dataset: non-empty, at most MAX_DATASET_BYTES, valid UTF-8. Returns the text. */
export function parseTextDataset (bytes: Uint8Array): string {
  checkSize(bytes)
  return decodeUtf8(bytes)
}

/** A growing Uint32Array. */
class IdBuffer {
  ids = new Uint32Array(1024)
  length = 0

  push (id: number): void {
    if (this.length === this.ids.length) {
      const grown = new Uint32Array(this.ids.length * 2)
      grown.set(this.ids)
      this.ids = grown
    }
    this.ids[this.length++] = id
  }
}

function describe (value: unknown): string {
  const text = JSON.stringify(value) ?? String(value)
  return text.length > 40 ? `${text.slice(0, 37)}...` : text
}

/** Parses one JSONL line's `{"ids": [...]}` and appends its ids to `ids`. */
function pushLineIds (text: string, line: number, vocab: number, modelLabel: string, ids: IdBuffer): void {
  let value: any
  try {
    value = JSON.parse(text)
  } catch (err: any) {
    throw new DatasetError(DatasetErrorCode.JSON, `line ${line} is not valid JSON (${err.message})`, { line, cause: err })
  }
  if (value == null || typeof value !== 'object' || Array.isArray(value) || !Array.isArray(value.ids)) {
    throw new DatasetError(DatasetErrorCode.JSON, `line ${line} is not an object with an "ids" array (got ${describe(value)})`, { line })
  }
  const list: unknown[] = value.ids
  if (list.length < 2) {
    throw new DatasetError(DatasetErrorCode.SHORT_SEQUENCE, `line ${line} has ${list.length} id${list.length === 1 ? '' : 's'}; a sequence needs at least 2`, { line })
  }
  for (let i = 0; i < list.length; i++) {
    const id = list[i]
    if (typeof id !== 'number' || !Number.isInteger(id)) {
      throw new DatasetError(DatasetErrorCode.ID, `line ${line}: ids[${i}] = ${describe(id)} is not an integer`, { line })
    }
    if (id < 0 || id >= vocab) {
      throw new DatasetError(DatasetErrorCode.ID, `line ${line}: ids[${i}] = ${id} is out of range [0, ${vocab}) of ${modelLabel}`, { line })
    }
    ids.push(id)
  }
}

/**
 * Parses a JSONL ids dataset: each non-empty line (whitespace-only lines are
 * skipped; a leading BOM and '\r' line ends are allowed) is a JSON object
 * whose "ids" is an array of at least 2 integers in [0, vocab). Other keys
 * are ignored. `modelLabel` names the model in errors.
 */
export function parseIdsDataset (bytes: Uint8Array, vocab: number, modelLabel = 'the model'): TokenStream {
  checkSize(bytes)
  const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })
  const hasBom = UTF8_BOM.every((b, i) => bytes[i] === b)
  const ids = new IdBuffer()
  const offsets: number[] = [0]
  for (const [line, lineStart, lineEnd] of lines(bytes)) {
    const start = line === 1 && hasBom ? lineStart + UTF8_BOM.length : lineStart
    const end = lineEnd > start && bytes[lineEnd - 1] === CARRIAGE_RETURN ? lineEnd - 1 : lineEnd
    let text: string
    try {
      text = decoder.decode(bytes.subarray(start, end))
    } catch (err) {
      throw new DatasetError(DatasetErrorCode.UTF8, `line ${line} is not valid UTF-8`, { line, cause: err })
    }
    if (text.trim() === '') {
      continue
    }
    pushLineIds(text, line, vocab, modelLabel, ids)
    offsets.push(ids.length)
  }
  if (offsets.length === 1) {
    throw new DatasetError(DatasetErrorCode.EMPTY, 'the ids file has no sequence (every line is empty)')
  }
  return { tokens: ids.ids.slice(0, ids.length), offsets: Uint32Array.from(offsets) }
}
