import { ModelError, ModelErrorCode } from './errors.ts'
import type { RawTensor } from './safetensors/dtypes.ts'

/**
 * Where the model math gets its weights: tensor name -> stored tensor.
 * The chain loader implements this over verified layer blocks; nothing else
 * in production does ("no fallback to local models").
 */
export interface WeightSource {
  /** resolves the tensor, or undefined when this source does not hold it */
  get(name: string): Promise<RawTensor | undefined>
  /** a label for error messages (e.g. the chain block id) */
  readonly label?: string
}

/** A WeightSource over tensors already in memory (decoded block payloads, tests). */
export class MapWeightSource implements WeightSource {
  readonly label?: string
  private readonly tensors: Map<string, RawTensor>

  constructor (tensors: Map<string, RawTensor> | Iterable<[string, RawTensor]>, label?: string) {
    this.tensors = tensors instanceof Map ? tensors : new Map(tensors)
    this.label = label
  }

  async get (name: string): Promise<RawTensor | undefined> {
    return this.tensors.get(name)
  }
}

/** Reads `name` or fails with ERR_MISSING_TENSOR naming the source. */
export async function requireTensor (source: WeightSource, name: string): Promise<RawTensor> {
  const t = await source.get(name)
  if (t == null) {
    throw new ModelError(ModelErrorCode.MISSING_TENSOR, 'weight source does not hold a tensor the config requires', { file: source.label, tensor: name })
  }
  return t
}
