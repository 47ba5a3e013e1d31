/**
 * The one tfjs import of the model part. tfjs keeps its engine (backend,
 * tensor registry) as process-wide state; everything goes through this module
 * so the backend chosen by selectBackend() is the one the math uses.
 */
import * as tf from '@tensorflow/tfjs'

export { tf }
export type Tensor = tf.Tensor
export type Tensor1D = tf.Tensor1D
export type Tensor2D = tf.Tensor2D
export type Tensor3D = tf.Tensor3D
