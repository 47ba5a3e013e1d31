import { expect } from 'aegir/chai'
import { parseQwen3Config } from '../../src/model/qwen3/config.ts'
import { AUTO_WORKERS_MIN_HIDDEN, MAX_WORKERS, parseWorkersSetting, resolveWorkers } from '../../src/model/workers.ts'
import type { Qwen3Config } from '../../src/model/qwen3/config.ts'

function config (hidden: number, kvHeads: number, intermediate: number): Qwen3Config {
  return parseQwen3Config({
    model_type: 'qwen3',
    vocab_size: 512,
    hidden_size: hidden,
    intermediate_size: intermediate,
    num_hidden_layers: 2,
    num_attention_heads: kvHeads * 2,
    num_key_value_heads: kvHeads,
    head_dim: 64,
    max_position_embeddings: 256
  })
}

describe('workers setting', () => {
  it('parses auto and integers 0..64 only', () => {
    expect(parseWorkersSetting('auto')).to.equal('auto')
    expect(parseWorkersSetting(0)).to.equal(0)
    expect(parseWorkersSetting('12')).to.equal(12)
    expect(parseWorkersSetting(MAX_WORKERS)).to.equal(MAX_WORKERS)
    for (const bad of [MAX_WORKERS + 1, -1, 1.5, '1.5', 'Auto', '', null, true, '1e1']) {
      expect(parseWorkersSetting(bad), String(bad)).to.equal(undefined)
    }
  })

  it('auto: every core that divides kv heads and intermediate size, for wide layers on wasm/cpu only', () => {
    const wide = config(AUTO_WORKERS_MIN_HIDDEN, 8, 12288)
    expect(resolveWorkers('auto', wide, { backend: 'wasm', cores: 2 })).to.equal(2)
    expect(resolveWorkers('auto', wide, { backend: 'cpu', cores: 16 })).to.equal(8)
    // 6 does not divide 8 kv heads: the largest count below that does
    expect(resolveWorkers('auto', wide, { backend: 'wasm', cores: 6 })).to.equal(4)
    expect(resolveWorkers('auto', wide, { backend: 'wasm', cores: 1 })).to.equal(0)
    // the native backend is multi-threaded already
    expect(resolveWorkers('auto', wide, { backend: 'tensorflow', cores: 16 })).to.equal(0)
    // narrow layers stay on the main thread
    expect(resolveWorkers('auto', config(AUTO_WORKERS_MIN_HIDDEN / 2, 8, 3072), { backend: 'wasm', cores: 16 })).to.equal(0)
    // 3 kv heads and 2 cores share no divisor >= 2
    expect(resolveWorkers('auto', config(AUTO_WORKERS_MIN_HIDDEN, 3, 12288), { backend: 'wasm', cores: 2 })).to.equal(0)
  })

  it('a count is used as given', () => {
    const narrow = config(64, 2, 160)
    expect(resolveWorkers(2, narrow, { backend: 'wasm', cores: 1 })).to.equal(2)
    expect(resolveWorkers(0, narrow, { backend: 'wasm' })).to.equal(0)
    expect(() => resolveWorkers(65, narrow, { backend: 'wasm' })).to.throw(/workers must be "auto" or an integer from 0 to 64/)
  })
})
