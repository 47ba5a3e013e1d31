import { ModelError, ModelErrorCode } from '../errors.ts'
import { toFloat32 } from '../safetensors/dtypes.ts'
import { runningWebGpuAdapter } from '../webgpu.ts'
import { requireTensor } from '../weight-source.ts'
import { tf } from './tf.ts'
import type { WeightSource } from '../weight-source.ts'
import type { Tensor1D, Tensor2D } from './tf.ts'

async function readChecked (source: WeightSource, name: string, shape: number[]): Promise<Float32Array> {
  const raw = await requireTensor(source, name)
  if (raw.shape.length !== shape.length || raw.shape.some((d, i) => d !== shape[i])) {
    throw new ModelError(ModelErrorCode.WRONG_SHAPE, `shape [${raw.shape.join(', ')}], config requires [${shape.join(', ')}]`, { file: source.label, tensor: name })
  }
  deviceFits(source, name, shape)
  return toFloat32(raw)
}

/**
 * On webgpu each tensor is one storage buffer: a whole matrix larger than the
 * device binds (e.g. an 8B model's embedding, 2.4 GiB f32) is refused here
 * with the limit, before any upload. Decoder layers' linear weights are in
 * column blocks that fit (decoder-layer.ts, linearBlockBytes()).
 */
function deviceFits (source: WeightSource, name: string, shape: number[]): void {
  const binding = tf.getBackend() === 'webgpu' ? runningWebGpuAdapter()?.limits.maxStorageBufferBindingSize : undefined
  const bytes = shape.reduce((a, b) => a * b, 4)
  if (binding != null && binding > 0 && bytes > binding) {
    throw new ModelError(ModelErrorCode.BAD_INPUT, `${name} takes ${bytes} bytes as float32, more than the webgpu device binds in one buffer (${binding}); run this span on wasm`, { file: source.label, tensor: name })
  }
}

/** A norm weight [n]. */
export async function loadVector (source: WeightSource, name: string, n: number): Promise<Tensor1D> {
  return tf.tensor1d(await readChecked(source, name, [n]))
}

/** A matrix as stored, [rows, cols] (e.g. embed_tokens [vocab, hidden] for gather). */
export async function loadMatrix (source: WeightSource, name: string, rows: number, cols: number): Promise<Tensor2D> {
  return tf.tensor2d(await readChecked(source, name, [rows, cols]), [rows, cols])
}

/**
 * A linear weight stored [out, in], transposed once to [in, out] so every
 * step is a plain x @ W (measured ~2x faster than transposeB on wasm).
 */
export async function loadLinear (source: WeightSource, name: string, out: number, inp: number): Promise<Tensor2D> {
  const data = await readChecked(source, name, [out, inp])
  return tf.tidy(() => tf.transpose(tf.tensor2d(data, [out, inp])))
}
