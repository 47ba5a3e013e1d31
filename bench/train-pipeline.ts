// Pipeline-parallel training bench (issue 12 item 6, second figure; bench/train
// prints it too, in its JSON's `pipeline`): the same
// job (seed, data, hyper-parameters) in one process (TrainJob over a whole-model
// TrainStage) and through 4 stages over /bly/train/1.0.0, each a
// TrainStageService on its own libp2p node (TCP + Noise + Yamux on 127.0.0.1),
// all in this process: the same cores, so the ratio is what the protocol, the
// framing and the driver's relaying cost a job (no overlap of stages is
// possible on one thread). Random Qwen3 weights (bench/lib/random-layer.ts for
// every layer; embedding and head random too), LoRA on every projection.
// One untimed warm-up step first. Also checks that both runs give the same
// losses (within 1e-5 relative).
// Human lines, then one JSON object as the last line.
//
//   npm run bench -- train-pipeline [--layers 4] [--hidden 512] [--seq 64] [--steps 20] [--batch 2] [--rank 8]
import { loadavg } from 'node:os'
import { parseArgs } from 'node:util'
import { selectBackend } from '../src/model/backend.ts'
import { PIPELINE_FIGURES_DEFAULTS, pipelineFigures } from './lib/train-pipeline-figures.ts'

const { values: opts } = parseArgs({
  options: {
    layers: { type: 'string', default: String(PIPELINE_FIGURES_DEFAULTS.layers) },
    hidden: { type: 'string', default: String(PIPELINE_FIGURES_DEFAULTS.hidden) },
    seq: { type: 'string', default: String(PIPELINE_FIGURES_DEFAULTS.seq) },
    steps: { type: 'string', default: String(PIPELINE_FIGURES_DEFAULTS.steps) },
    batch: { type: 'string', default: String(PIPELINE_FIGURES_DEFAULTS.batch) },
    rank: { type: 'string', default: '8' }
  }
})
const say = (s: string): void => { process.stderr.write(s + '\n') }
const round = (x: number, d = 3): number => Number(x.toFixed(d))

const load0 = loadavg()[0]
await selectBackend('wasm', { threads: 1 })
const f = await pipelineFigures({ layers: Number(opts.layers), hidden: Number(opts.hidden), seq: Number(opts.seq), steps: Number(opts.steps), batch: Number(opts.batch), rank: Number(opts.rank), say })
say(`ratio ${f.ratio.toFixed(3)} (goal >= 0.7); load average now ${loadavg()[0].toFixed(2)} (was ${load0.toFixed(2)})`)
process.stdout.write(JSON.stringify({
  bench: 'train-pipeline',
  backend: 'wasm',
  ...f,
  loadAverage: { before: round(load0, 2), after: round(loadavg()[0], 2) }
}) + '\n')
