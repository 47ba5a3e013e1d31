import type { BackendPreference } from '../backend.ts'
import type { Qwen3Config } from './config.ts'
import type { LayerShardData } from './layer-shard.ts'

/** Messages from ShardPool to a shard worker; every request gets one ShardReply with its id. */
export type ShardRequest =
  | { id: number, op: 'init', backend: BackendPreference, config: Qwen3Config }
  | { id: number, op: 'load', slot: number, data: LayerShardData }
  /** x [t, hidden] -> this shard's partial attention output [t, hidden]; appends to the session's cache */
  | { id: number, op: 'attention', session: number, slot: number, t: number, x: Float32Array }
  /** x2 [t, hidden] -> this shard's partial MLP output [t, hidden] */
  | { id: number, op: 'mlp', slot: number, t: number, x: Float32Array }
  | { id: number, op: 'truncate', session: number, length: number }
  | { id: number, op: 'close', session: number }
  | { id: number, op: 'dispose' }

export type ShardReply =
  | { id: number, ok: true, y?: Float32Array, backend?: string }
  | { id: number, ok: false, code?: string, message: string }
