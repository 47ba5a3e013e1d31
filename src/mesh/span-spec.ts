/** The `--layers START-END` setting: a fixed span of decoder layers. */
import { MeshError, MeshErrorCode } from './errors.ts'

/** Parses "START-END" (0-based, END exclusive); throws ERR_MESH_BAD_SPAN when it does not fit `numLayers`. */
export function parseSpan (text: string, numLayers: number): { start: number, end: number } {
  const m = /^(\d+)-(\d+)$/.exec(text)
  const start = m == null ? NaN : Number(m[1])
  const end = m == null ? NaN : Number(m[2])
  if (!(start < end) || end > numLayers) {
    throw new MeshError(MeshErrorCode.BAD_SPAN, `--layers ${text} does not fit a model of ${numLayers} layers (give START-END with 0 <= START < END <= ${numLayers})`)
  }
  return { start, end }
}
