/**
 * A linear pass over the bytes of one JSON text, before JSON.parse, for what
 * parsing would only reveal after spending time and memory on it: nesting
 * deeper than maxDepth (an 8-million-deep array takes seconds and hundreds of
 * MiB to parse), more than maxValues values (counted as commas plus arrays and
 * objects: 16 MiB of `{},` parse into 5 million objects, about 500 MiB), and a
 * top-level array (a JSON-RPC batch) with more than maxBatch elements.
 * Brackets and commas inside strings do not count (escapes are honoured);
 * strings are skipped at memchr speed. The pass stops at the first cap passed.
 * It also says whether every string, array and object opened was closed: a
 * text that is not balanced is not JSON, and needs no parse to say so. A text
 * it passes may still be invalid JSON, for JSON.parse to say.
 */
export interface JsonScanLimits {
  maxDepth: number
  maxValues: number
  maxBatch: number
}

export interface JsonScan {
  /** the first cap passed, if any */
  refused: 'depth' | 'values' | 'batch' | undefined
  /** a top-level array: its element count (so far, when a cap was passed); else 0 */
  topLevelElements: number
  /** every string, array and object opened was closed, none closed that was not open (false when a cap was passed) */
  balanced: boolean
}

const QUOTE = 0x22
const BACKSLASH = 0x5c
const OPEN_ARRAY = 0x5b
const CLOSE_ARRAY = 0x5d
const OPEN_OBJECT = 0x7b
const CLOSE_OBJECT = 0x7d
const COMMA = 0x2c

function isSpace (b: number): boolean {
  return b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d
}

/** inside the batch: a comma starts another element; the first non-space byte, the first one */
function batchElements (b: number, elements: number): number {
  if (b === COMMA) {
    return elements + 1
  }
  return elements === 0 && !isSpace(b) && b !== CLOSE_ARRAY ? 1 : elements
}

/** index of the quote closing the string opened at `open`, or -1 */
function stringEnd (text: Uint8Array, open: number): number {
  let at = open + 1
  while (true) {
    const quote = text.indexOf(QUOTE, at)
    if (quote === -1) {
      return -1
    }
    // escaped when an odd number of backslashes precede it
    let k = quote - 1
    while (k > open && text[k] === BACKSLASH) {
      k--
    }
    if ((quote - 1 - k) % 2 === 0) {
      return quote
    }
    at = quote + 1
  }
}

export function scanJson (text: Uint8Array, limits: JsonScanLimits): JsonScan {
  let first = 0
  while (first < text.length && isSpace(text[first])) {
    first++
  }
  const topArray = text[first] === OPEN_ARRAY
  let depth = 0
  let values = 0
  let elements = 0
  for (let i = first; i < text.length; i++) {
    const b = text[i]
    if (topArray && depth === 1) {
      elements = batchElements(b, elements)
      if (elements > limits.maxBatch) {
        return { refused: 'batch', topLevelElements: elements, balanced: false }
      }
    }
    if (b === QUOTE) {
      i = stringEnd(text, i)
      if (i === -1) {
        return { refused: undefined, topLevelElements: elements, balanced: false }
      }
    } else if (b === OPEN_ARRAY || b === OPEN_OBJECT) {
      depth++
      if (depth > limits.maxDepth) {
        return { refused: 'depth', topLevelElements: elements, balanced: false }
      }
      values++
    } else if (b === CLOSE_ARRAY || b === CLOSE_OBJECT) {
      depth--
      if (depth < 0) {
        return { refused: undefined, topLevelElements: elements, balanced: false }
      }
    } else if (b === COMMA) {
      values++
    }
    if (values > limits.maxValues) {
      return { refused: 'values', topLevelElements: elements, balanced: false }
    }
  }
  return { refused: undefined, topLevelElements: elements, balanced: depth === 0 }
}
