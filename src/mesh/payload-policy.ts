/**
 * Which payloads a node fetches after it learns a block's header. A full
 * node fetches all of them. Otherwise: every payload except decoder-layer
 * units (manifests and notes are small; the embedding and head units are
 * what a node needs to run generations as a pipeline client), plus the
 * decoder-layer units of the spans this node serves (`serve()`).
 */
import { BlockType } from '../chain/types.ts'
import { LayerField } from '../model/import/constants.ts'
import { UnitKind } from '../model/qwen3/plan.ts'
import type { StoredBlock } from '../chain/types.ts'

function hex (bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex')
}

export interface PayloadPolicyInit {
  /** fetch every payload */
  full?: boolean
}

export class PayloadPolicy {
  readonly full: boolean
  /** `${modelHex}/${unit}` of the decoder-layer units served */
  private readonly served: Set<string>

  constructor (init: PayloadPolicyInit = {}) {
    this.full = init.full === true
    this.served = new Set()
  }

  /** Also want units [startUnit, endUnit) of model `modelHex`. */
  serve (modelHex: string, startUnit: number, endUnit: number): void {
    for (let u = startUnit; u < endUnit; u++) {
      this.served.add(`${modelHex}/${u}`)
    }
  }

  /** No longer want units [startUnit, endUnit) of model `modelHex` (a span moved away; stored payloads stay). */
  unserve (modelHex: string, startUnit: number, endUnit: number): void {
    for (let u = startUnit; u < endUnit; u++) {
      this.served.delete(`${modelHex}/${u}`)
    }
  }

  /** BlockSyncInit.wantPayload */
  want (block: StoredBlock): boolean {
    if (this.full || block.header.type !== BlockType.Layer) {
      return true
    }
    const kind = block.header.fields.get(LayerField.KIND)
    if (kind?.kind === 'string' && kind.value !== UnitKind.LAYER) {
      return true
    }
    const model = block.header.fields.get(LayerField.MODEL)
    const unit = block.header.fields.get(LayerField.UNIT)
    if (model?.kind !== 'bytes' || unit?.kind !== 'uint') {
      return false
    }
    return this.served.has(`${hex(model.value)}/${unit.value}`)
  }
}
