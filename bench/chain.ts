// Chain bench: raw sha-256 and Ed25519 rates, header validation rate, the
// gossip validator's per-header work (decoded once, against the former
// decode-twice sequence, in turns in the same run), and payload ingest into the store (hashing + chunk files + fsync + index batch),
// measured in the same run. Prints human lines, then one JSON object as the
// last line.
//
//   npm run bench -- chain [--mib 512] [--headers 2000] [--piece-kib 1024] [--no-fsync] [--dir /tmp/x] [--level]
//
// --level also stores the same payload as 4 MiB values in a LevelDB (the
// rejected alternative; see docs/store.md) to compare ingest rate and disk use.
import { createHash, generateKeyPairSync, randomFillSync, sign, verify } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { mkdir, mkdtemp, open, rename, rm } from 'node:fs/promises'
import { availableParallelism, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { ClassicLevel } from 'classic-level'
import { blockId, createSignerFromSeed, signingMessage } from '../src/chain/block-crypto.ts'
import { createChainStore } from '../src/chain/chain-store.ts'
import { DEFAULT_CHUNK_SIZE, DEFAULT_LIMITS } from '../src/chain/constants.ts'
import { BlockType, ChainId } from '../src/chain/types.ts'
import { decodeAndValidate, decodeBlock, validateDecoded } from '../src/chain/validate.ts'
import { decodeBlockHeader, decodeSignedBlockHeader, encodeBlockHeader, encodeSignedBlockHeader } from '../src/protocols/block-header.ts'
import type { BlockHeader } from '../src/chain/types.ts'
import type { KeyObject } from 'node:crypto'

const { values: opts } = parseArgs({
  options: {
    mib: { type: 'string', default: '512' },
    headers: { type: 'string', default: '2000' },
    'piece-kib': { type: 'string', default: '1024' },
    'no-fsync': { type: 'boolean', default: false },
    dir: { type: 'string' },
    level: { type: 'boolean', default: false }
  }
})

const MiB = 1024 * 1024

/** bytes this process caused to be written to storage so far (Linux /proc/self/io), or NaN */
function writtenBytes (): number {
  try {
    const m = /write_bytes: (\d+)/.exec(readFileSync('/proc/self/io', 'utf8'))
    return m == null ? NaN : Number(m[1])
  } catch {
    return NaN
  }
}
const out = (line: string): void => { process.stdout.write(line + '\n') }
const round = (n: number, d = 1): number => Math.round(n * 10 ** d) / 10 ** d

/** run `fn` repeatedly for at least `ms`; returns operations per second */
function rate (ms: number, fn: () => void, batch = 1): number {
  const start = performance.now()
  let n = 0
  while (performance.now() - start < ms) {
    for (let i = 0; i < batch; i++) {
      fn()
    }
    n += batch
  }
  return n / ((performance.now() - start) / 1000)
}

/**
 * run `fn` repeatedly for at least `ms`; returns operations per second of this
 * process's CPU time (user + system), which other processes on a shared
 * machine disturb far less than wall time (for synchronous work only)
 */
function cpuRate (ms: number, fn: () => void): number {
  const start = performance.now()
  const cpu = process.cpuUsage()
  let n = 0
  while (performance.now() - start < ms) {
    fn()
    n++
  }
  const used = process.cpuUsage(cpu)
  return n / ((used.user + used.system) / 1e6)
}

/** sha-256 of one 4 MiB buffer over and over: the primitive with its input hot in cache */
function sha256HotMiBs (): number {
  const buf = randomFillSync(new Uint8Array(4 * MiB))
  rate(200, () => createHash('sha256').update(buf).digest())
  return rate(1500, () => createHash('sha256').update(buf).digest()) * 4
}

/**
 * sha-256 over the very payload bytes the ingest reads, in 4 MiB chunks: the
 * primitive streaming from memory, which is what any ingest has to do
 */
function sha256StreamMiBs (data: Uint8Array): number {
  const start = performance.now()
  for (let off = 0; off < data.length; off += DEFAULT_CHUNK_SIZE) {
    createHash('sha256').update(data.subarray(off, off + DEFAULT_CHUNK_SIZE)).digest()
  }
  return data.length / MiB / ((performance.now() - start) / 1000)
}

function ed25519Rates (): { signPerSec: number, verifyPerSec: number } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519')
  const msg = signingMessage(new Uint8Array(32).fill(1))
  const sig = sign(null, msg, privateKey)
  const signPerSec = rate(1000, () => sign(null, msg, privateKey), 16)
  const verifyPerSec = rate(1000, () => verify(null, msg, publicKey, sig), 16)
  return { signPerSec, verifyPerSec }
}

/** realistic layer headers: ~100 chunk hashes (a 400 MB layer at 4 MiB chunks) */
function layerHeaders (count: number): Uint8Array[] {
  const s = createSignerFromSeed(new Uint8Array(32).fill(3))
  const model = new Uint8Array(32).fill(9)
  const encoded: Uint8Array[] = []
  for (let i = 0; i < count; i++) {
    const chunkHashes = Array.from({ length: 100 }, (_, j) => createHash('sha256').update(`${i}/${j}`).digest())
    const header: BlockHeader = {
      version: 1,
      chain: ChainId.B,
      type: BlockType.Layer,
      parents: [model],
      author: s.publicKey,
      timestamp: BigInt(1_700_000_000_000 + i),
      fields: new Map([
        ['model', { kind: 'bytes', value: model }],
        ['unit', { kind: 'uint', value: BigInt(i % 40) }],
        ['format', { kind: 'string', value: 'safetensors' }]
      ]),
      payloadSize: BigInt(100 * DEFAULT_CHUNK_SIZE - 1234),
      chunkSize: DEFAULT_CHUNK_SIZE,
      chunkHashes
    }
    const headerBytes = encodeBlockHeader(header)
    encoded.push(encodeSignedBlockHeader({ header: headerBytes, signature: s.sign(signingMessage(blockId(headerBytes))) as Uint8Array }))
  }
  return encoded
}

function validationRate (encoded: Uint8Array[]): number {
  const keyCache = new Map<string, KeyObject>()
  let i = 0
  return rate(1500, () => { decodeAndValidate(encoded[i++ % encoded.length], { limits: DEFAULT_LIMITS, keyCache }) })
}

/**
 * The gossip validator's work on one header up to the store's commit
 * (src/net/block-gossip.ts validate + ChainStore.decodeBlock / addDecoded):
 * `once` is what it does now (the store copies, decodes and hashes once, the
 * validator checks the chain, the store checks the rest); `twice` is the
 * sequence it ran before (the validator decoded envelope and header for the
 * chain check, the store copied, decoded and hashed again in addBlock, the
 * validator hashed the header a third time for its id). Per second of CPU
 * time, medians of 10 turns; `ratio` is the median of the per-turn ratios
 * once / twice.
 */
function gossipPathRates (encoded: Uint8Array[]): { once: number, twice: number, ratio: number } {
  const keyCache = new Map<string, KeyObject>()
  const limits = DEFAULT_LIMITS
  let i = 0
  const once = (): void => {
    const block = decodeBlock(new Uint8Array(encoded[i++ % encoded.length]), { limits })
    if (block.header.chain !== ChainId.B) {
      throw new Error('wrong chain')
    }
    validateDecoded(block, { limits, keyCache })
  }
  const twice = (): void => {
    const bytes = encoded[i++ % encoded.length]
    const { header } = decodeSignedBlockHeader(bytes)
    if (decodeBlockHeader(header).chain !== ChainId.B) {
      throw new Error('wrong chain')
    }
    decodeAndValidate(new Uint8Array(bytes), { limits, keyCache })
    blockId(header)
  }
  // short turns, the order swapped every turn, so a change in the machine's load falls on both alike
  const onceRates: number[] = []
  const twiceRates: number[] = []
  const ratios: number[] = []
  for (let turn = 0; turn < 10; turn++) {
    const [a, b] = turn % 2 === 0 ? [cpuRate(300, once), cpuRate(300, twice)] : [cpuRate(300, twice), cpuRate(300, once)].reverse()
    onceRates.push(a)
    twiceRates.push(b)
    ratios.push(a / b)
  }
  return { once: median(onceRates), twice: median(twiceRates), ratio: median(ratios) }
}

function median (xs: number[]): number {
  const sorted = [...xs].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

async function * source (data: Uint8Array, piece: number): AsyncGenerator<Uint8Array> {
  for (let off = 0; off < data.length; off += piece) {
    yield data.subarray(off, Math.min(off + piece, data.length))
  }
}

async function ingestMiBs (dir: string, data: Uint8Array, piece: number, fsync: boolean): Promise<number> {
  await rm(join(dir, 'store'), { recursive: true, force: true })
  const store = createChainStore({ path: join(dir, 'store'), fsync })
  await store.start()
  const s = createSignerFromSeed(new Uint8Array(32).fill(5))
  try {
    // warm up on a small block, then time the big one
    await store.createBlock({ chain: ChainId.A, type: BlockType.Note, payload: data.subarray(0, 8 * MiB), timestamp: 1n }, s)
    const start = performance.now()
    const w0 = writtenBytes()
    await store.createBlock({ chain: ChainId.A, type: BlockType.Note, payload: source(data, piece), timestamp: 2n }, s)
    const mibs = data.length / MiB / ((performance.now() - start) / 1000)
    lastIngestAmplification = (writtenBytes() - w0) / data.length
    return mibs
  } finally {
    await store.stop()
  }
}

let lastIngestAmplification = NaN

/**
 * The disk's own rate for the same bytes and durability, with no hashing and
 * no store: 4 MiB files written, fdatasync'ed (when fsync is on), renamed.
 * Ingest can never beat min(raw hashing, raw writing) on one machine.
 */
async function rawWriteMiBs (dir: string, data: Uint8Array, fsync: boolean): Promise<number> {
  const target = join(dir, 'raw-write')
  await rm(target, { recursive: true, force: true })
  await mkdir(target, { recursive: true })
  const start = performance.now()
  const inflight = new Set<Promise<void>>()
  for (let off = 0, i = 0; off < data.length; off += DEFAULT_CHUNK_SIZE, i++) {
    const chunk = data.subarray(off, off + DEFAULT_CHUNK_SIZE)
    const p = (async () => {
      const tmp = join(target, `tmp.${i}`)
      const fh = await open(tmp, 'w')
      try {
        await fh.write(chunk, 0, chunk.length, 0)
        if (fsync) {
          await fh.datasync()
        }
      } finally {
        await fh.close()
      }
      await rename(tmp, join(target, `chunk.${i}`))
    })()
    inflight.add(p)
    void p.finally(() => inflight.delete(p))
    if (inflight.size >= 4) {
      await Promise.race(inflight)
    }
  }
  await Promise.all(inflight)
  const mibs = data.length / MiB / ((performance.now() - start) / 1000)
  await rm(target, { recursive: true, force: true })
  return mibs
}

async function levelIngestMiBs (dir: string, data: Uint8Array, fsync: boolean): Promise<{ mibs: number, compactMs: number, amplification: number }> {
  const db = new ClassicLevel<Uint8Array, Uint8Array>(join(dir, 'level-values'), { keyEncoding: 'view', valueEncoding: 'view' })
  await db.open()
  try {
    const w0 = writtenBytes()
    const start = performance.now()
    for (let off = 0, i = 0; off < data.length; off += DEFAULT_CHUNK_SIZE, i++) {
      const chunk = data.subarray(off, off + DEFAULT_CHUNK_SIZE)
      const hash = createHash('sha256').update(chunk).digest()
      await db.batch([{ type: 'put', key: hash, value: chunk }], { sync: fsync })
    }
    const mibs = data.length / MiB / ((performance.now() - start) / 1000)
    const c0 = performance.now()
    await db.compactRange(new Uint8Array([0]), new Uint8Array([0xff]))
    const compactMs = performance.now() - c0
    await db.close()
    return { mibs, compactMs, amplification: (writtenBytes() - w0) / data.length }
  } finally {
    if (db.status === 'open') {
      await db.close()
    }
  }
}

const dir = opts.dir ?? await mkdtemp(join(tmpdir(), 'bly-bench-chain-'))
const fsync = opts['no-fsync'] !== true
const mib = Number(opts.mib)
const piece = Number(opts['piece-kib']) * 1024
try {
  const data = randomFillSync(new Uint8Array(mib * MiB))
  // raw hashing and ingest alternate, best of two each, so both see the same machine load
  let sha = 0
  let shaHot = 0
  let ingest = 0
  let rawWrite = 0
  for (let rep = 0; rep < 2; rep++) {
    shaHot = Math.max(shaHot, sha256HotMiBs())
    sha = Math.max(sha, sha256StreamMiBs(data))
    rawWrite = Math.max(rawWrite, await rawWriteMiBs(dir, data, fsync))
    ingest = Math.max(ingest, await ingestMiBs(dir, data, piece, fsync))
  }
  const limit = Math.min(sha, rawWrite)
  out(`sha-256 (node:crypto, one thread) over the ${mib} MiB payload in 4 MiB chunks: ${round(sha)} MiB/s (one hot 4 MiB buffer: ${round(shaHot)} MiB/s)`)
  out(`raw disk write (same bytes as 4 MiB files, fsync ${fsync ? 'on' : 'off'}, no hashing, no store): ${round(rawWrite)} MiB/s`)
  const ed = ed25519Rates()
  out(`Ed25519 (node:crypto): sign ${round(ed.signPerSec, 0)}/s, verify ${round(ed.verifyPerSec, 0)}/s`)
  const headers = layerHeaders(Number(opts.headers))
  const validate = validationRate(headers)
  out(`header validation (decode + canonical re-encode + sha-256 id + signature, 100-chunk layer headers): ${round(validate, 0)} blocks/s`)
  const gossip = gossipPathRates(headers)
  out(`gossip validator per header (same headers, in turns, per CPU second): decoded and hashed once ${round(gossip.once, 0)} blocks/s, the former decode-twice sequence ${round(gossip.twice, 0)} blocks/s (x${round(gossip.ratio, 2)} per turn)`)
  out(`payload ingest (${mib} MiB streamed in ${piece / 1024} KiB pieces, 4 MiB chunks, fsync ${fsync ? 'on' : 'off'}): ${round(ingest)} MiB/s, bytes written / payload bytes ${round(lastIngestAmplification, 2)}`)
  const result: Record<string, unknown> = {
    bench: 'chain',
    node: process.version,
    sha256MiBs: round(sha),
    sha256HotMiBs: round(shaHot),
    ed25519SignPerSec: round(ed.signPerSec, 0),
    ed25519VerifyPerSec: round(ed.verifyPerSec, 0),
    validateBlocksPerSec: round(validate, 0),
    gossipOncePerSec: round(gossip.once, 0),
    gossipTwicePerSec: round(gossip.twice, 0),
    gossipOnceVsTwice: round(gossip.ratio, 3),
    ingestMiBs: round(ingest),
    ingestMiB: mib,
    ingestWriteAmplification: round(lastIngestAmplification, 2),
    pieceKiB: piece / 1024,
    fsync,
    cpus: availableParallelism(),
    loadAvg1m: round(loadavg()[0], 2),
    rawWriteMiBs: round(rawWrite),
    ingestVsHash: round(ingest / sha, 3),
    ingestVsHotHash: round(ingest / shaHot, 3),
    ingestVsMachineLimit: round(ingest / limit, 3),
    validateVsVerify: round(validate / ed.verifyPerSec, 3)
  }
  if (opts.level === true) {
    const level = await levelIngestMiBs(dir, data, fsync)
    out(`alternative: 4 MiB values in LevelDB: ${round(level.mibs)} MiB/s, full compaction afterwards ${round(level.compactMs, 0)} ms, bytes written / payload bytes ${round(level.amplification, 2)}`)
    result.levelValuesMiBs = round(level.mibs)
    result.levelCompactMs = round(level.compactMs, 0)
    result.levelWriteAmplification = round(level.amplification, 2)
  }
  out(`ingest / raw sha-256 = ${result.ingestVsHash}, ingest / min(raw sha-256, raw disk write) = ${result.ingestVsMachineLimit}, validation / raw verify = ${result.validateVsVerify} (${availableParallelism()} cpus, load ${round(loadavg()[0], 2)})`)
  out(JSON.stringify(result))
} finally {
  if (opts.dir == null) {
    await rm(dir, { recursive: true, force: true })
  }
}
