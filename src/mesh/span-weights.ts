/**
 * What a span's weights cost and need, per weights version (span-server.ts
 * uses it to load a version, to switch to a new one and to report the
 * memory bound in its status). Pure reads of the manifest and the store.
 *
 * The bound (docs/pipeline.md, "Weights versions"): a span server holds
 * the float32 weights of its span once per copy it keeps: one copy while
 * it serves, two while a version switch (or a move) drains the old copy's
 * sessions, never more (transitions run one at a time and a transition
 * returns only once the old copy is freed, at most drainMs after the
 * switch), plus, while a copy loads, one unit's materialised tensors
 * (base tensors upcast to f32 and one decoded delta).
 */
import type { ChainStoreApi } from '../chain/types.ts'
import type { ModelManifest } from '../model/chain-loader.ts'
import type { WeightsVersion } from '../model/weights-version.ts'

/** Float32 bytes of one unit of the manifest (every tensor, 4 bytes per parameter). */
export function unitF32Bytes (unit: ModelManifest['units'][number]): number {
  let params = 0
  for (const t of unit.tensors) {
    params += t.shape.reduce((a, b) => a * b, 1)
  }
  return params * 4
}

/** The decoder-layer units of span [start, end) (decoder layer i is unit i + 1). */
export function spanUnits (manifest: ModelManifest, span: { start: number, end: number }): Array<ModelManifest['units'][number]> {
  return manifest.units.filter(u => u.unit >= span.start + 1 && u.unit < span.end + 1)
}

/** Float32 bytes of the weights of span [start, end) (one copy, as loaded). */
export function spanF32Bytes (manifest: ModelManifest, span: { start: number, end: number }): number {
  return spanUnits(manifest, span).reduce((n, u) => n + unitF32Bytes(u), 0)
}

/**
 * The most weight bytes a span server of `span` holds (see the file
 * comment): two copies of the span plus the largest unit being materialised.
 */
export function spanWeightsBound (manifest: ModelManifest, span: { start: number, end: number }): number {
  const units = spanUnits(manifest, span)
  const largest = units.reduce((m, u) => Math.max(m, unitF32Bytes(u)), 0)
  return 2 * spanF32Bytes(manifest, span) + largest
}

/**
 * The accepted deltas of `version` whose unit is in the span and whose
 * block or payload is not stored here yet (hex ids): what must arrive
 * before the span loads in that version.
 */
export async function missingSpanDeltas (store: ChainStoreApi, version: WeightsVersion, span: { start: number, end: number }): Promise<Array<{ id: string, stored: boolean }>> {
  const out: Array<{ id: string, stored: boolean }> = []
  for (const d of version.acceptedDeltas) {
    if (d.unit < span.start + 1 || d.unit >= span.end + 1) {
      continue
    }
    const block = await store.get(Uint8Array.from(Buffer.from(d.delta, 'hex')))
    if (block?.payloadComplete !== true) {
      out.push({ id: d.delta, stored: block != null })
    }
  }
  return out
}
