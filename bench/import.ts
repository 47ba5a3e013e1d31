// Import bench: writes a multi-GB bf16 checkpoint with Qwen3-8B layer shapes
// (hidden 4096, intermediate 12288, 32/8 heads, head_dim 128; few layers and
// a smaller vocab so it stays at ~2.4 GB), then measures in the same run:
//   - baseline: reading the checkpoint's bytes and sha-256 over them,
//   - `blyd model import` into a fresh store (validate, hash pass, write pass),
//   - a second import of the same checkpoint (every block already present),
// and the process's peak RSS. Prints human lines, then one JSON object as the
// last line. Temp files are removed at the end.
//
//   npm run bench -- import [--layers 5] [--vocab 32768] [--no-fsync] [--dir /tmp/x] [--keep]
import { createHash, randomFillSync } from 'node:crypto'
import { mkdir, mkdtemp, open, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { createChainStore, createSignerFromSeed } from '../src/chain/index.ts'
import { importModel } from '../src/model/import/importer.ts'
import { parseQwen3Config } from '../src/model/qwen3/config.ts'
import { planUnits } from '../src/model/qwen3/plan.ts'
import { elementCount } from '../src/model/safetensors/dtypes.ts'
import { encodeHeaderFromSpecs } from '../src/model/safetensors/writer.ts'
import type { TensorSpec } from '../src/model/safetensors/writer.ts'

const { values: opts } = parseArgs({
  options: {
    layers: { type: 'string', default: '5' },
    vocab: { type: 'string', default: '32768' },
    'no-fsync': { type: 'boolean', default: false },
    dir: { type: 'string' },
    keep: { type: 'boolean', default: false }
  }
})

const MiB = 1024 * 1024
const PIECE = 4 * MiB
const out = (line: string): void => { process.stdout.write(line + '\n') }
const round = (n: number, d = 1): number => Math.round(n * 10 ** d) / 10 ** d
const rssMiB = (): number => round(process.resourceUsage().maxRSS / 1024)

/** Qwen3-8B's layer shapes; few layers and a smaller vocab keep the file at a few GB */
function benchConfig (layers: number, vocab: number): Record<string, unknown> {
  return {
    architectures: ['Qwen3ForCausalLM'],
    model_type: 'qwen3',
    hidden_size: 4096,
    intermediate_size: 12288,
    num_attention_heads: 32,
    num_key_value_heads: 8,
    head_dim: 128,
    num_hidden_layers: layers,
    vocab_size: vocab,
    max_position_embeddings: 40960,
    rms_norm_eps: 1e-6,
    rope_theta: 1000000,
    tie_word_embeddings: false,
    hidden_act: 'silu',
    torch_dtype: 'bfloat16',
    bos_token_id: 151643,
    eos_token_id: 151645
  }
}

/**
 * Streams a bf16 checkpoint to `dir/model.safetensors` in 4 MiB pieces:
 * random bits with each value's top exponent bit cleared (finite, |x| < 2),
 * all distinct so no chunk deduplicates. Never holds more than one piece.
 */
async function writeCheckpoint (dir: string, raw: Record<string, unknown>): Promise<number> {
  const config = parseQwen3Config(raw)
  await mkdir(dir, { recursive: true })
  await writeFile(join(dir, 'config.json'), JSON.stringify(raw, null, 2))
  const specs: TensorSpec[] = planUnits(config).flatMap(u => u.tensors).map(t => ({ name: t.name, dtype: 'BF16', shape: t.shape }))
  const handle = await open(join(dir, 'model.safetensors'), 'w')
  let size = 0
  try {
    const header = encodeHeaderFromSpecs(specs, { format: 'pt' })
    await handle.write(header)
    size += header.byteLength
    for (const spec of specs) {
      const bytes = elementCount(spec.shape) * 2
      for (let done = 0; done < bytes;) {
        const n = Math.min(PIECE, bytes - done)
        const piece = new Uint8Array(n)
        randomFillSync(piece)
        const words = new Uint32Array(piece.buffer, 0, n >>> 2)
        for (let i = 0; i < words.length; i++) {
          words[i] &= 0xbfffbfff
        }
        await handle.write(piece)
        done += n
        size += n
      }
    }
  } finally {
    await handle.close()
  }
  return size
}

/** read the file in 4 MiB pieces and sha-256 them: the floor an import's hashing pass is compared against */
async function readAndHash (file: string): Promise<{ bytes: number, seconds: number }> {
  const handle = await open(file, 'r')
  const hash = createHash('sha256')
  const t0 = performance.now()
  let bytes = 0
  try {
    for (;;) {
      const piece = new Uint8Array(PIECE)
      const { bytesRead } = await handle.read(piece, 0, PIECE, bytes)
      if (bytesRead === 0) {
        break
      }
      hash.update(piece.subarray(0, bytesRead))
      bytes += bytesRead
    }
  } finally {
    await handle.close()
  }
  hash.digest()
  return { bytes, seconds: (performance.now() - t0) / 1000 }
}

const root = opts.dir ?? await mkdtemp(join(tmpdir(), 'blyd-bench-import-'))
const ckDir = join(root, 'checkpoint')
const storeDir = join(root, 'store')
try {
  const layers = Number(opts.layers)
  const vocab = Number(opts.vocab)
  const raw = benchConfig(layers, vocab)

  let t = performance.now()
  const fileBytes = await writeCheckpoint(ckDir, raw)
  const genSeconds = (performance.now() - t) / 1000
  out(`checkpoint: ${layers} layers of Qwen3-8B shape, vocab ${vocab}, bf16, ${round(fileBytes / MiB)} MiB written in ${round(genSeconds)} s (${rssMiB()} MiB peak RSS so far)`)

  const base = await readAndHash(join(ckDir, 'model.safetensors'))
  const baseRate = base.bytes / MiB / base.seconds
  out(`baseline: read + sha-256 ${round(base.bytes / MiB)} MiB in ${round(base.seconds, 2)} s = ${round(baseRate)} MiB/s`)

  const fsync = opts['no-fsync'] !== true
  const store = createChainStore({ path: storeDir, fsync })
  await store.start()
  const signer = createSignerFromSeed(new Uint8Array(32).fill(9))
  const phases: Record<string, number> = {}
  let phase = ''
  let phaseStart = performance.now()
  const rssBefore = rssMiB()
  t = performance.now()
  const result = await importModel({
    store,
    signer,
    dir: ckDir,
    onProgress: p => {
      if (p.phase !== phase) {
        const now = performance.now()
        if (phase !== '') {
          phases[phase] = (now - phaseStart) / 1000
        }
        phase = p.phase
        phaseStart = now
      }
    }
  })
  const importSeconds = (performance.now() - t) / 1000
  phases[phase] = (performance.now() - phaseStart) / 1000
  const importRate = result.bytes / MiB / importSeconds
  const rssAfter = rssMiB()
  out(`import: ${result.blocks} blocks, ${round(result.bytes / MiB)} MiB in ${round(importSeconds, 2)} s = ${round(importRate)} MiB/s ` +
    `(hash pass ${round(phases.hash ?? 0, 2)} s, write pass ${round(phases.write ?? 0, 2)} s, fsync ${fsync ? 'on' : 'off'}); ` +
    `${round(importRate / baseRate * 100)}% of the read+sha-256 baseline`)

  t = performance.now()
  const again = await importModel({ store, signer, dir: ckDir })
  const againSeconds = (performance.now() - t) / 1000
  out(`re-import: ${again.existing}/${again.blocks} blocks already present, ${round(againSeconds, 2)} s (hash pass only)`)
  await store.stop()
  out(`peak RSS ${rssAfter} MiB (${rssBefore} MiB before the import; the largest unit payload is ${round(Math.max(...planUnits(parseQwen3Config(raw)).map(u => u.tensors.reduce((n, s) => n + elementCount(s.shape) * 2, 0))) / MiB)} MiB)`)

  out(JSON.stringify({
    bench: 'import',
    checkpointMiB: round(fileBytes / MiB),
    layers,
    vocab,
    blocks: result.blocks,
    fsync,
    baselineReadSha256MiBps: round(baseRate),
    importMiBps: round(importRate),
    importSeconds: round(importSeconds, 2),
    hashPassSeconds: round(phases.hash ?? 0, 2),
    writePassSeconds: round(phases.write ?? 0, 2),
    reimportSeconds: round(againSeconds, 2),
    importVsBaseline: round(importRate / baseRate, 3),
    maxRssMiB: rssAfter,
    maxRssBeforeImportMiB: rssBefore
  }))
} finally {
  if (opts.keep !== true) {
    await rm(root, { recursive: true, force: true })
  }
}
