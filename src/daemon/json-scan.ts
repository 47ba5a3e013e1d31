/**
 * A linear pass over the bytes of one JSON text, before JSON.parse, for what
 * parsing would only reveal after spending time and memory on it: nesting
 * deeper than a cap (an 8-million-deep array takes seconds and hundreds of
 * MiB to parse) and a top-level array (a JSON-RPC batch) with more elements
 * than a cap. Brackets and commas inside strings do not count (escapes are
 * honoured). The pass stops at the first cap passed. It judges only what it
 * counts: a text it passes may still be invalid JSON, for JSON.parse to say.
 */
export interface JsonScan {
  /** the nesting of arrays and objects went past maxDepth */
  tooDeep: boolean
  /** a top-level array: its element count so far (exact when nothing was passed); else 0 */
  topLevelElements: number
  /** a top-level array with more than maxTopLevelElements elements */
  tooManyElements: boolean
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

export function scanJson (text: Uint8Array, maxDepth: number, maxTopLevelElements: number): JsonScan {
  let first = 0
  while (first < text.length && isSpace(text[first])) {
    first++
  }
  const topArray = text[first] === OPEN_ARRAY
  let depth = 0
  let elements = 0
  let inString = false
  for (let i = first; i < text.length; i++) {
    const b = text[i]
    if (inString) {
      if (b === BACKSLASH) {
        i++
      } else if (b === QUOTE) {
        inString = false
      }
      continue
    }
    if (topArray && depth === 1) {
      // inside the batch: a comma starts another element; the first non-space byte, the first one
      if (b === COMMA) {
        elements++
      } else if (elements === 0 && !isSpace(b) && b !== CLOSE_ARRAY) {
        elements = 1
      }
      if (elements > maxTopLevelElements) {
        return { tooDeep: false, topLevelElements: elements, tooManyElements: true }
      }
    }
    if (b === QUOTE) {
      inString = true
    } else if (b === OPEN_ARRAY || b === OPEN_OBJECT) {
      depth++
      if (depth > maxDepth) {
        return { tooDeep: true, topLevelElements: elements, tooManyElements: false }
      }
    } else if (b === CLOSE_ARRAY || b === CLOSE_OBJECT) {
      depth--
    }
  }
  return { tooDeep: false, topLevelElements: elements, tooManyElements: false }
}
