/**
 * `blyd train --model ID --dataset NAME --steps N [--lr X] [--batch B]
 * [--seq T] [--lora-rank R | --full] [--seed S] [--eval-every K]
 * [--propose] [--via mesh] [--json]` (issue 12): trains on the live weights
 * (learning/train/local-train.ts) in the running daemon over IPC (`train`:
 * the job's units wait for the daemon's inference), or in this process on
 * the data dir when no daemon runs. `--via mesh` (daemon only): the job goes
 * through the span holders of the model, pipeline-parallel over
 * /bly/train/1.0.0 (mesh/train/), with the same JSON.
 * Progress on a terminal (stderr): a bar with the step, the train loss and
 * tokens/s, and a line per eval loss; --json prints one object:
 * {"steps", "losses", "evalLoss": {"before", "after"}, "tokensPerSecond", "proposalId"}.
 */
import { UsageError } from '../../daemon/errors.ts'
import { clientConfig, printJson } from '../context.ts'
import { daemonOrOffline } from '../daemon-or-offline.ts'
import { modelArg } from '../model-choice.ts'
import { withLocalChain } from '../model-local.ts'
import type { TrainResultJson } from '../../protocols/ipc-learning.ts'
import type { CliContext } from '../context.ts'
import type { Argv, CommandModule } from 'yargs'

function num (value: unknown, flag: string, ok: (n: number) => boolean, what: string): number | undefined {
  if (value === undefined) {
    return undefined
  }
  const n = Number(value)
  if (String(value).trim() === '' || !ok(n)) {
    throw new UsageError(`${flag} must be ${what} (got ${JSON.stringify(String(value))})`)
  }
  return n
}

const int = (min: number) => (n: number): boolean => Number.isSafeInteger(n) && n >= min

export function trainCommand (ctx: CliContext): CommandModule<any, any> {
  return {
    command: 'train',
    describe: 'train the model on a dataset (LoRA adapters or --full weights) between inference steps; --propose submits the result to the validators',
    builder: (y: Argv<any>) => y
      .option('model', { type: 'string', requiresArg: true, describe: 'model id (hex or a unique prefix of >= 8); default: the only model on chain' })
      .option('dataset', { type: 'string', demandOption: true, requiresArg: true, describe: 'dataset name or id prefix (its train windows; eval loss on its first eval windows)' })
      .option('steps', { type: 'string', demandOption: true, requiresArg: true, describe: 'optimizer steps' })
      .option('lr', { type: 'string', requiresArg: true, describe: 'AdamW learning rate (default 1e-3, linear warm-up over 10 steps)' })
      .option('batch', { type: 'string', requiresArg: true, describe: 'sequences per step (default 4)' })
      .option('seq', { type: 'string', requiresArg: true, describe: 'tokens per sequence (default 128)' })
      .option('lora-rank', { type: 'string', requiresArg: true, describe: 'LoRA rank on q,k,v,o,gate,up,down (default 8)' })
      .option('full', { type: 'boolean', describe: 'train every weight but the embedding (small models)' })
      .option('seed', { type: 'string', requiresArg: true, describe: 'seed of the data order and the adapters\' initialisation (default 1)' })
      .option('eval-every', { type: 'string', requiresArg: true, describe: 'eval loss every K steps (default: before and after only)' })
      .option('propose', { type: 'boolean', describe: 'propose the result (Delta blocks + a Proposal) as `blyd delta propose` does' })
      .option('backend', { type: 'string', choices: ['auto', 'tensorflow', 'wasm', 'cpu'], describe: 'the tfjs backend the job runs on' })
      .option('via', { type: 'string', choices: ['local', 'mesh'], describe: 'mesh: pipeline-parallel through the span holders of the model (/bly/train/1.0.0; needs a running daemon); default local' })
      .option('json', { type: 'boolean', describe: 'print one JSON object' })
      .conflicts('full', 'lora-rank'),
    handler: async (argv: any) => {
      const params = {
        dataset: String(argv.dataset),
        steps: num(argv.steps, '--steps', int(1), 'a positive integer') as number,
        lr: num(argv.lr, '--lr', n => Number.isFinite(n) && n > 0, 'a positive number'),
        batch: num(argv.batch, '--batch', int(1), 'a positive integer'),
        seq: num(argv.seq, '--seq', int(2), 'an integer >= 2'),
        loraRank: num(argv.loraRank, '--lora-rank', n => int(1)(n) && n <= 0xffff, 'an integer from 1 to 65535'),
        seed: num(argv.seed, '--seed', int(0), 'a non-negative integer'),
        evalEvery: num(argv.evalEvery, '--eval-every', int(0), 'a non-negative integer'),
        full: argv.full === true,
        propose: argv.propose === true,
        ...(argv.via === 'mesh' ? { via: 'mesh' as const } : {}),
        ...(argv.model !== undefined ? { model: modelArg(argv.model) } : {})
      }
      const config = await clientConfig(ctx, argv, { backend: argv.backend })
      const tty = process.stderr.isTTY === true && argv.json !== true
      // the bar, tfjs and the trainer load only when used (CLI start-up: README, What is measured)
      const cliProgress = tty ? (await import('cli-progress')).default : null
      const bar = cliProgress != null
        ? new cliProgress.SingleBar({ stream: process.stderr, format: 'train [{bar}] {value}/{total} steps | loss {loss} | {tps} tok/s | eval {eval}', hideCursor: true, clearOnComplete: false }, cliProgress.Presets.shades_classic)
        : null
      let evalText = '-'
      let started = false
      const onEval = (step: number, loss: number): void => {
        evalText = loss.toFixed(4)
        if (bar == null && argv.json !== true) {
          ctx.stderr(`step ${step}: eval loss ${evalText}\n`)
        } else {
          bar?.update({ eval: evalText })
        }
      }
      const onStep = (s: { step: number, steps: number, loss: number, tokensPerSecond: number }): void => {
        if (bar != null) {
          if (!started) {
            bar.start(s.steps, 0, { loss: '-', tps: '-', eval: evalText })
            started = true
          }
          bar.update(s.step, { loss: s.loss.toFixed(4), tps: s.tokensPerSecond.toFixed(0), eval: evalText })
        } else if (argv.json !== true) {
          ctx.stderr(`step ${s.step}/${s.steps}: loss ${s.loss.toFixed(4)}, ${s.tokensPerSecond.toFixed(0)} tok/s\n`)
        }
      }
      let r: TrainResultJson
      try {
        r = await daemonOrOffline<TrainResultJson>(config, {
          // the daemon runs the job between its inference work and streams the progress
          online: async client => client.request('train', params, {
            onStream: p => {
              if (p.kind === 'eval') {
                onEval(p.step, p.loss)
              } else {
                onStep(p)
              }
            }
          }),
          offline: async dataDir => withLocalChain(dataDir, async (store, identity) => {
            if (params.via === 'mesh') {
              throw new UsageError('--via mesh needs a running daemon (blyd start): the job goes through its mesh')
            }
            const [{ createInferenceService }, { trainLocal }] = await Promise.all([import('../../model/inference-service.ts'), import('../../learning/train/local-train.ts')])
            // select the tfjs backend as `delta propose` does
            const service = createInferenceService({ store: () => store, backend: config.backend, maxLoadedModels: 1 })
            await service.start()
            try {
              return await trainLocal({ store, signer: identity.signer, ...params, onEval, onStep })
            } finally {
              await service.stop()
            }
          })
        })
      } finally {
        bar?.stop()
      }
      if (argv.json === true) {
        printJson(ctx, r)
        return
      }
      ctx.stderr(`trained ${r.steps} steps: train loss ${r.losses[0].toFixed(4)} -> ${r.losses[r.losses.length - 1].toFixed(4)}, eval loss ${r.evalLoss.before.toFixed(4)} -> ${r.evalLoss.after.toFixed(4)}, ${r.tokensPerSecond.toFixed(0)} tok/s\n`)
      if (r.proposalId != null) {
        ctx.stdout(`${r.proposalId}\n`)
      }
    }
  }
}
