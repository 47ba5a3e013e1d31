// Ledger bench: folding a model's ledger of --receipts co-signed receipts
// (default 1,000,000) in Receipt blocks of --per-block, paid by --clients
// clients (funded by Transfer blocks from the importer's genesis
// allocation) to --stages stages, from a real chain store: the whole fold
// (read and decode every batch, check every Merkle root, verify both
// Ed25519 signatures of every receipt, apply, check the invariants after
// every block), cold (nothing cached) and warm (the daemon's case: which
// receipts verify is cached per block), then the independent checker.
// Time per 1,000 receipts and the peak RSS of the cold fold (VmHWM, reset
// before it). Baselines measured in the same run: raw Ed25519 verify
// (node:crypto, parsed keys) for the 2 signatures of 1,000 receipts, and a
// plain Map<string, bigint> debit/credit loop over 1,000 receipts. Human
// lines, then one JSON object as the last line.
//
//   npm run bench -- ledger [--receipts 1000000] [--per-block 1000] [--clients 1000] [--stages 100] [--dir /tmp/x]
import { createHash, verify } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { availableParallelism, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { createSignerFromSeed, ed25519PublicKey } from '../src/chain/block-crypto.ts'
import { createChainStore } from '../src/chain/chain-store.ts'
import { BlockType, ChainId } from '../src/chain/types.ts'
import { initialGovernanceId, initialVersionId } from '../src/learning/fold/ids.ts'
import { checkLedger } from '../src/learning/ledger/check.ts'
import { LedgerCache, foldLedger } from '../src/learning/ledger/fold.ts'
import { receiptBlock, transferBlock } from '../src/learning/ledger/new-blocks.ts'
import { coSignReceipt } from '../src/learning/ledger/receipt-signing.ts'
import { paramsBlock } from '../src/learning/new-blocks.ts'
import { encodeReceiptBody, receiptMessage } from '../src/protocols/receipt.ts'
import type { BlockSigner } from '../src/chain/types.ts'
import type { SignedReceipt } from '../src/protocols/receipt.ts'

const { values: opts } = parseArgs({
  options: {
    receipts: { type: 'string', default: '1000000' },
    'per-block': { type: 'string', default: '1000' },
    clients: { type: 'string', default: '1000' },
    stages: { type: 'string', default: '100' },
    dir: { type: 'string' }
  }
})

const RECEIPTS = Number(opts.receipts)
const PER_BLOCK = Number(opts['per-block'])
const CLIENTS = Number(opts.clients)
const STAGES = Number(opts.stages)
const out = (line: string): void => { process.stdout.write(line + '\n') }
const round = (n: number, d = 1): number => Math.round(n * 10 ** d) / 10 ** d
const MiB = 1024 * 1024

function seedSigner (n: number): BlockSigner {
  return createSignerFromSeed(new Uint8Array(createHash('sha256').update(`bench-ledger-${n}`).digest()))
}

/** peak RSS of this process since the last reset (Linux VmHWM), bytes; NaN elsewhere */
function peakRss (): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))
    return m == null ? NaN : Number(m[1]) * 1024
  } catch {
    return NaN
  }
}

/** reset VmHWM to the current RSS (Linux >= 4.0); false where it cannot */
function resetPeakRss (): boolean {
  try {
    writeFileSync('/proc/self/clear_refs', '5')
    return true
  } catch {
    return false
  }
}

/** ms for the 2 signature verifications of 1,000 receipts, node:crypto with parsed keys (best of 3) */
function verifyBaselinePer1000 (samples: SignedReceipt[]): number {
  const keys = new Map<string, ReturnType<typeof ed25519PublicKey>>()
  const keyOf = (raw: Uint8Array): ReturnType<typeof ed25519PublicKey> => {
    const hex = Buffer.from(raw).toString('hex')
    let k = keys.get(hex)
    if (k == null) {
      k = ed25519PublicKey(raw)
      keys.set(hex, k)
    }
    return k
  }
  const messages = samples.map(r => receiptMessage(encodeReceiptBody(r)))
  let best = Infinity
  for (let rep = 0; rep < 3; rep++) {
    const t0 = performance.now()
    for (let i = 0; i < samples.length; i++) {
      const r = samples[i]
      if (!verify(null, messages[i], keyOf(r.client), r.clientSig) || !verify(null, messages[i], keyOf(r.stage), r.stageSig)) {
        throw new Error('a bench receipt does not verify')
      }
    }
    best = Math.min(best, (performance.now() - t0) / samples.length * 1000)
  }
  return best
}

/** ms per 1,000 receipts of a plain Map<string, bigint> debit/credit loop with a spent set (best of 3) */
function mapBaselinePer1000 (n: number, clients: string[], stages: string[]): number {
  let best = Infinity
  for (let rep = 0; rep < 3; rep++) {
    const balances = new Map<string, bigint>(clients.map(c => [c, 1n << 40n]))
    const spent = new Set<string>()
    const t0 = performance.now()
    for (let i = 0; i < n; i++) {
      const c = clients[i % clients.length]
      const s = stages[i % stages.length]
      const id = `${c}:${s}:${i}`
      if (spent.has(id)) {
        continue
      }
      spent.add(id)
      const amount = BigInt(20 + (i % 7))
      balances.set(c, (balances.get(c) ?? 0n) - amount)
      balances.set(s, (balances.get(s) ?? 0n) + amount)
    }
    best = Math.min(best, (performance.now() - t0) / n * 1000)
  }
  return best
}

const dir = opts.dir ?? await mkdtemp(join(tmpdir(), 'bly-bench-ledger-'))
const store = createChainStore({ path: join(dir, 'chain'), fsync: false })
await store.start()
try {
  const importer = seedSigner(0)
  const clients = Array.from({ length: CLIENTS }, (_, i) => seedSigner(1 + i))
  const stages = Array.from({ length: STAGES }, (_, i) => seedSigner(1 + CLIENTS + i))
  const manifest = await store.createBlock({ chain: ChainId.A, type: BlockType.ModelManifest, fields: { units: { kind: 'uint', value: 38n } }, timestamp: 1n }, importer)
  const model = manifest.id
  let head = (await store.createBlock(paramsBlock(model, { genesisAllocation: Number.MAX_SAFE_INTEGER, priceLayerPosition: 1 }), importer)).id
  const funding = BigInt(Math.floor(Number.MAX_SAFE_INTEGER / CLIENTS))
  for (let i = 0; i < CLIENTS; i++) {
    head = (await store.createBlock(transferBlock(model, clients[i].publicKey, funding, BigInt(i + 1), [head]), importer)).id
  }
  const version = initialVersionId(model)
  const governance = initialGovernanceId(model)
  const tBuild = performance.now()
  const samples: SignedReceipt[] = []
  let built = 0
  let blocks = 0
  for (let b = 0; built < RECEIPTS; b++) {
    const stage = stages[b % STAGES]
    const batch: SignedReceipt[] = []
    for (let i = 0; i < PER_BLOCK && built < RECEIPTS; i++, built++) {
      const client = clients[built % CLIENTS]
      const session = new Uint8Array(16)
      new DataView(session.buffer).setUint32(0, built)
      batch.push(await coSignReceipt({
        model,
        version,
        governance,
        session,
        client: client.publicKey,
        stage: stage.publicKey,
        nonce: BigInt(built + 1),
        layerStart: 0,
        layerEnd: 4 + (built % 32),
        positions: 16 + (built % 1024),
        tokens: 8,
        time: 1_700_000_000_000n + BigInt(built)
      }, client, stage))
    }
    if (samples.length < 2000) {
      samples.push(...batch.slice(0, 2000 - samples.length))
    }
    head = (await store.createBlock(receiptBlock(model, batch, [head]), stage)).id
    blocks++
    if (blocks % 100 === 0) {
      out(`built ${built} receipts in ${blocks} blocks (${round((performance.now() - tBuild) / 1000)} s)`)
    }
  }
  const buildS = (performance.now() - tBuild) / 1000
  out(`built ${RECEIPTS} co-signed receipts in ${blocks} Receipt blocks of ${PER_BLOCK}, ${CLIENTS} clients, ${STAGES} stages: ${round(buildS)} s (2 Ed25519 signatures each, stored with fsync off)`)

  const evalWindows = async (): Promise<Uint32Array> => new Uint32Array(0)
  global.gc?.()
  const rssBefore = process.memoryUsage().rss
  const peakResettable = resetPeakRss()
  const cache = new LedgerCache()
  const t0 = performance.now()
  const cold = (await foldLedger(store, model, { evalWindows, cache })).ledger
  const coldMs = performance.now() - t0
  const peakCold = peakRss()
  if (cold.counts.receiptsPaid !== RECEIPTS || cold.violations.length > 0) {
    const reasons = new Map<string, number>()
    for (const e of cold.entries) { reasons.set(e.reason ?? 'applied', (reasons.get(e.reason ?? 'applied') ?? 0) + 1) }
    throw new Error(`the fold paid ${cold.counts.receiptsPaid} of ${RECEIPTS} receipts, ${cold.violations.length} violations: ${JSON.stringify([...reasons])} ${JSON.stringify(cold.problems.slice(0, 3))}`)
  }
  const t1 = performance.now()
  const warm = (await foldLedger(store, model, { evalWindows, cache })).ledger
  const warmMs = performance.now() - t1
  const t2 = performance.now()
  const violations = checkLedger(warm)
  const checkMs = performance.now() - t2
  if (violations.length > 0 || warm.paid !== cold.paid) {
    throw new Error(`the warm fold differs or breaks an invariant: ${violations.length} violations`)
  }
  const per1000 = (ms: number): number => ms / RECEIPTS * 1000
  out(`fold, cold (decode, Merkle roots, 2 signature checks per receipt, apply, invariants at each of ${cold.checks} positions): ${round(coldMs / 1000, 2)} s = ${round(per1000(coldMs), 2)} ms per 1,000 receipts; peak RSS ${peakResettable ? round(peakCold / MiB, 0) : '?'} MiB (${round(rssBefore / MiB, 0)} MiB before)`)
  out(`fold, warm (signature results cached per block): ${round(warmMs / 1000, 2)} s = ${round(per1000(warmMs), 2)} ms per 1,000; independent check of the result: ${round(checkMs / 1000, 2)} s`)
  const verifyPer1000 = verifyBaselinePer1000(samples)
  const mapPer1000 = mapBaselinePer1000(Math.min(RECEIPTS, 200_000), clients.map(c => Buffer.from(c.publicKey).toString('hex')), stages.map(s => Buffer.from(s.publicKey).toString('hex')))
  out(`baselines (same run): raw Ed25519 verify of 2 x 1,000 receipts ${round(verifyPer1000, 2)} ms; a plain Map<string, bigint> debit/credit loop with a spent set, 1,000 receipts ${round(mapPer1000, 3)} ms`)
  out(`cold fold / raw verify = ${round(per1000(coldMs) / verifyPer1000, 2)}, warm fold / plain map loop = ${round(per1000(warmMs) / mapPer1000, 1)} (${availableParallelism()} cpus, load ${round(loadavg()[0], 2)})`)
  out(JSON.stringify({
    bench: 'ledger',
    node: process.version,
    receipts: RECEIPTS,
    blocks,
    perBlock: PER_BLOCK,
    clients: CLIENTS,
    stages: STAGES,
    buildS: round(buildS),
    coldFoldS: round(coldMs / 1000, 2),
    coldMsPer1000: round(per1000(coldMs), 3),
    warmFoldS: round(warmMs / 1000, 2),
    warmMsPer1000: round(per1000(warmMs), 3),
    checkS: round(checkMs / 1000, 2),
    peakRssMiB: peakResettable ? round(peakCold / MiB, 0) : null,
    rssBeforeMiB: round(rssBefore / MiB, 0),
    invariantChecks: cold.checks,
    baselineVerifyMsPer1000: round(verifyPer1000, 3),
    baselineMapMsPer1000: round(mapPer1000, 4),
    coldVsVerify: round(per1000(coldMs) / verifyPer1000, 3),
    warmVsMap: round(per1000(warmMs) / mapPer1000, 2),
    cpus: availableParallelism(),
    loadAvg1m: round(loadavg()[0], 2)
  }))
} finally {
  await store.stop()
  if (opts.dir == null) {
    await rm(dir, { recursive: true, force: true })
  }
}
