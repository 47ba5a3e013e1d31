/**
 * Canonical JSON: object keys sorted by UTF-16 code units, no whitespace,
 * numbers in ECMAScript's shortest round-trip form. The same value always
 * gives the same bytes, so a manifest's block id depends only on its content.
 */
export function canonicalJson (value: unknown): string {
  if (value === null || typeof value === 'boolean' || typeof value === 'string') {
    return JSON.stringify(value)
  }
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) {
      throw new TypeError(`canonical JSON has no form for ${value}`)
    }
    return JSON.stringify(value)
  }
  if (Array.isArray(value)) {
    return `[${value.map(canonicalJson).join(',')}]`
  }
  if (typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => compareKeys(a, b))
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`
  }
  throw new TypeError(`canonical JSON has no form for a ${typeof value}`)
}

export function canonicalJsonBytes (value: unknown): Uint8Array {
  return new TextEncoder().encode(canonicalJson(value))
}

function compareKeys (a: string, b: string): number {
  if (a === b) {
    return 0
  }
  return a < b ? -1 : 1
}
