/**
 * The model manifest: the payload of a ModelManifest block on chain A.
 * Canonical JSON holding the config, the tokenizer files, and the unit plan
 * with each unit's tensors (name, dtype, shape) and its payload's size and
 * sha-256, so a layer block can be checked against the manifest that names it.
 */
import { ModelError, ModelErrorCode } from '../errors.ts'
import { parseQwen3Config } from '../qwen3/config.ts'
import { planUnits } from '../qwen3/plan.ts'
import { dtypeSize, elementCount, isDtype } from '../safetensors/dtypes.ts'
import { encodeHeaderFromSpecs } from '../safetensors/writer.ts'
import { canonicalJsonBytes } from './canonical-json.ts'
import { MANIFEST_FORMAT, QWEN3_ARCH } from './constants.ts'
import type { Qwen3Config } from '../qwen3/config.ts'
import type { UnitKindValue } from '../qwen3/plan.ts'
import type { TensorSpec } from '../safetensors/writer.ts'

/** The tokenizer files as imported (raw text), or null for a token-id-only model. */
export interface ManifestTokenizer {
  /** tokenizer.json */
  tokenizerJson: string
  /** tokenizer_config.json, null when the checkpoint had none */
  tokenizerConfig: string | null
  /** chat_template.jinja when the checkpoint keeps the template in its own file */
  chatTemplate: string | null
}

export interface ManifestUnit {
  unit: number
  kind: UnitKindValue
  /** decoder layer index, for kind 'layer' */
  layer?: number
  /** the payload's size: the safetensors encoding of `tensors` in this order */
  bytes: number
  /** sha-256 of the payload, lowercase hex */
  sha256: string
  tensors: TensorSpec[]
}

/** What the manifest payload holds. */
export interface ManifestDocument {
  format: typeof MANIFEST_FORMAT
  name: string
  arch: typeof QWEN3_ARCH
  /** config.json as given */
  config: Record<string, unknown>
  tokenizer: ManifestTokenizer | null
  units: ManifestUnit[]
}

/** A parsed manifest with the config decoded. */
export interface ParsedManifest extends ManifestDocument {
  qwen3: Qwen3Config
}

export function encodeManifest (doc: ManifestDocument): Uint8Array {
  return canonicalJsonBytes(doc)
}

/** Size of the safetensors payload holding `specs` (header + data). */
export function unitPayloadSize (specs: TensorSpec[]): number {
  let size = encodeHeaderFromSpecs(specs).byteLength
  for (const s of specs) {
    size += elementCount(s.shape) * dtypeSize(s.dtype, { tensor: s.name })
  }
  return size
}

/** Parses and checks a manifest payload; `label` names the block in errors. */
export function parseManifest (bytes: Uint8Array, label: string): ParsedManifest {
  const bad = (message: string, cause?: unknown): never => {
    throw new ModelError(ModelErrorCode.BAD_MANIFEST, message, { file: label }, cause != null ? { cause } : undefined)
  }
  let doc: any
  try {
    doc = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes))
  } catch (err: any) {
    bad(`manifest payload is not JSON: ${err.message}`, err)
  }
  if (doc == null || typeof doc !== 'object' || Array.isArray(doc)) {
    bad('manifest payload is not a JSON object')
  }
  if (doc.format !== MANIFEST_FORMAT) {
    bad(`manifest format ${JSON.stringify(doc.format)} is not ${MANIFEST_FORMAT}`)
  }
  if (typeof doc.name !== 'string') {
    bad('manifest has no name')
  }
  if (doc.arch !== QWEN3_ARCH) {
    bad(`manifest arch ${JSON.stringify(doc.arch)} is not ${QWEN3_ARCH}`)
  }
  let qwen3: Qwen3Config
  try {
    qwen3 = parseQwen3Config(doc.config, label)
  } catch (err: any) {
    return bad(`manifest config: ${err.message}`, err)
  }
  const tokenizer = parseTokenizer(doc.tokenizer, bad)
  const plan = planUnits(qwen3)
  if (!Array.isArray(doc.units) || doc.units.length !== plan.length) {
    bad(`manifest lists ${Array.isArray(doc.units) ? doc.units.length : 'no'} units, the config plans ${plan.length}`)
  }
  const units: ManifestUnit[] = plan.map((p, i) => {
    const u = doc.units[i]
    if (u == null || u.unit !== p.unit || u.kind !== p.kind || (p.layer != null && u.layer !== p.layer)) {
      bad(`manifest unit ${i} does not match the plan (expected unit ${p.unit}, ${p.kind})`)
    }
    if (typeof u.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(u.sha256)) {
      bad(`manifest unit ${i} has no sha256`)
    }
    if (!Array.isArray(u.tensors) || u.tensors.length !== p.tensors.length) {
      bad(`manifest unit ${i} lists ${Array.isArray(u.tensors) ? u.tensors.length : 'no'} tensors, the plan has ${p.tensors.length}`)
    }
    const tensors: TensorSpec[] = p.tensors.map((t, j) => {
      const got = u.tensors[j]
      if (got?.name !== t.name || !isDtype(got.dtype) || !Array.isArray(got.shape) || got.shape.length !== t.shape.length || got.shape.some((d: unknown, k: number) => d !== t.shape[k])) {
        bad(`manifest unit ${i} tensor ${j} is not ${t.name} [${t.shape.join(', ')}]`)
      }
      return { name: t.name, dtype: got.dtype, shape: t.shape.slice() }
    })
    const bytes = unitPayloadSize(tensors)
    if (u.bytes !== bytes) {
      bad(`manifest unit ${i} says ${String(u.bytes)} bytes, its tensors encode to ${bytes}`)
    }
    return { unit: p.unit, kind: p.kind, ...(p.layer != null ? { layer: p.layer } : {}), bytes, sha256: u.sha256, tensors }
  })
  return { format: MANIFEST_FORMAT, name: doc.name, arch: QWEN3_ARCH, config: doc.config, tokenizer, units, qwen3 }
}

function parseTokenizer (value: any, bad: (message: string) => never): ManifestTokenizer | null {
  if (value === null) {
    return null
  }
  const optional = (v: unknown): string | null => {
    if (v === null || typeof v === 'string') {
      return v
    }
    return bad('manifest tokenizer entry is neither text nor null')
  }
  if (value == null || typeof value !== 'object' || typeof value.tokenizerJson !== 'string') {
    bad('manifest tokenizer is neither null nor { tokenizerJson, tokenizerConfig, chatTemplate }')
  }
  return {
    tokenizerJson: value.tokenizerJson,
    tokenizerConfig: optional(value.tokenizerConfig),
    chatTemplate: optional(value.chatTemplate)
  }
}
