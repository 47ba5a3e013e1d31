/**
 * `blyd data add|list|show` through the real CLI, offline (no daemon: the
 * data dir is opened in the CLI process) and through a real daemon (the
 * daemon reads the file and writes the block). Ids datasets use the tiny
 * fixture (vocab 512, no tokenizer); text datasets the demo checkpoint
 * written by `blyd model init-demo` (the real Qwen3 tokenizer). Every bad
 * input gets one line on stderr, its exit code, and stores nothing.
 */
import { readFile, readdir, truncate, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { createChainStore } from '../../src/chain/index.ts'
import { ChatTokenizer, bundledQwen3TokenizerFiles } from '../../src/model/tokenizer.ts'
import { MAX_DATASET_BYTES, splitWindows } from '../../src/protocols/dataset.ts'
import { ipcRequest, makeTempDir, removeDir, runCli, runJson, startDaemon } from '../daemon/helpers.ts'
import { fixtureDir } from '../model/fixtures.ts'
import type { CliResult, DaemonProcess } from '../daemon/helpers.ts'

/** the JSON fields the issue names: an interface for scripts outside this repository */
const INTERFACE_FIELDS = ['id', 'name', 'format', 'bytes', 'sequences', 'tokens', 'evalPermille', 'splitTokens', 'trainWindows', 'evalWindows']

const TEXT = 'It was the best of times, it was the worst of times; café, naïve, 数据 ✓.\n'.repeat(30)

function sequences (count: number): number[][] {
  let x = 11
  const next = (): number => { x = (x * 1103515245 + 12345) >>> 0; return x >>> 8 }
  return Array.from({ length: count }, () => Array.from({ length: 2 + next() % 150 }, () => next() % 512))
}

function jsonl (seqs: number[][]): string {
  return seqs.map(ids => JSON.stringify({ ids })).join('\n') + '\n'
}

async function countFiles (dir: string): Promise<number> {
  try {
    return (await readdir(dir, { recursive: true, withFileTypes: true })).filter(e => e.isFile()).length
  } catch {
    return 0
  }
}

function expectOneLineError (r: CliResult, code: number, text: string | RegExp): void {
  expect(r.code, r.stderr).to.equal(code)
  expect(r.stdout).to.equal('')
  const lines = r.stderr.trim().split('\n')
  expect(lines, r.stderr).to.have.length(1)
  expect(lines[0]).to.match(/^blyd: /)
  if (typeof text === 'string') {
    expect(lines[0]).to.include(text)
  } else {
    expect(lines[0]).to.match(text)
  }
}

describe('blyd data (CLI)', function () {
  this.timeout(900_000)
  const env = {} as { dir: string, demo: string, tokens: number, daemon?: DaemonProcess }

  before(async () => {
    env.dir = await makeTempDir()
    env.demo = join(env.dir, 'demo')
    const r = await runCli(['model', 'init-demo', env.demo, '--layers', '1', '--hidden', '16', '--heads', '2', '--kv-heads', '1', '--head-dim', '8', '--intermediate', '32'])
    expect(r.code, r.stderr).to.equal(0)
    const files = bundledQwen3TokenizerFiles()
    const tokenizer = ChatTokenizer.fromJson(await readFile(files.tokenizerJson, 'utf8'), await readFile(files.tokenizerConfig, 'utf8'))
    env.tokens = tokenizer.encode(TEXT).length
    await writeFile(join(env.dir, 'good.jsonl'), jsonl(sequences(30)))
    await writeFile(join(env.dir, 'prose.txt'), TEXT)
    await writeFile(join(env.dir, 'bad-utf8.txt'), Buffer.concat([Buffer.from('fine\nstill fine\nbroken '), Buffer.from([0xe2, 0x28, 0xa1]), Buffer.from('\n')]))
    await writeFile(join(env.dir, 'out-of-range.jsonl'), '{"ids":[1,2,3]}\n{"ids":[4,512]}\n')
    await writeFile(join(env.dir, 'empty.txt'), '')
    await writeFile(join(env.dir, 'blank.jsonl'), '\n\n')
    await writeFile(join(env.dir, 'bad-json.jsonl'), '{"ids":[1,2]}\n\n{"ids":[1,2,}\n')
    await writeFile(join(env.dir, 'not-integer.jsonl'), '{"ids":[1,2.5]}\n')
    await writeFile(join(env.dir, 'short.jsonl'), '{"ids":[1,2]}\n{"ids":[3]}\n')
    await writeFile(join(env.dir, 'huge.txt'), '')
    await truncate(join(env.dir, 'huge.txt'), MAX_DATASET_BYTES + 1)
  })

  afterEach(async () => {
    await env.daemon?.kill()
    env.daemon = undefined
  })

  after(async () => {
    await removeDir(env.dir)
  })

  for (const mode of ['offline', 'daemon'] as const) {
    it(`${mode}: add, list and show ids and text datasets; every bad input refused, nothing stored`, async () => {
      const dataDir = join(env.dir, mode)
      const dd = ['--data-dir', dataDir]
      if (mode === 'daemon') {
        env.daemon = await startDaemon(dataDir, ['--backend', 'cpu'])
      }
      const tiny = (await runJson(['model', 'import', fixtureDir('untied-f32'), ...dd])).modelId
      const demo = (await runJson(['model', 'import', env.demo, ...dd])).modelId

      /** chain counts and chunk files: read over IPC from the daemon, or from the store when none runs */
      const snapshot = async (): Promise<unknown> => {
        const counts = mode === 'daemon'
          ? (await ipcRequest(env.daemon!.socketPath, 'chain.info')).counts
          : await (async () => {
            const store = createChainStore({ path: join(dataDir, 'chain') })
            await store.start()
            try {
              return await store.counts()
            } finally {
              await store.stop()
            }
          })()
        return { counts, chunkFiles: await countFiles(join(dataDir, 'chain', 'chunks')) }
      }

      // ids, checked against the tiny model's vocabulary (named by a prefix)
      const ids = await runJson(['data', 'add', join(env.dir, 'good.jsonl'), '--name', 'tiny-train', '--model', tiny.slice(0, 8), '--split-tokens', '32', ...dd])
      expect(Object.keys(ids)).to.include.members(INTERFACE_FIELDS)
      const seqs = sequences(30)
      const tokenCount = seqs.reduce((n, s) => n + s.length, 0)
      expect(ids).to.include({ name: 'tiny-train', format: 'ids', sequences: 30, tokens: tokenCount, bytes: 4 + 4 * 30 + 4 * tokenCount, evalPermille: 100, splitTokens: 32, model: tiny })
      const split = splitWindows({ datasetId: Buffer.from(ids.id, 'hex'), sequenceLengths: seqs.map(s => s.length), splitTokens: 32, evalPermille: 100 })
      expect([ids.trainWindows, ids.evalWindows]).to.deep.equal([split.trainWindows.length, split.evalWindows.length])
      const block = await runJson(['chain', 'get', ids.id, ...dd])
      expect(block).to.include({ chain: 'A', type: 'dataset' })
      expect(block.parents).to.deep.equal([tiny])

      // text, with the demo model's real tokenizer; --eval-permille given
      const text = await runJson(['data', 'add', join(env.dir, 'prose.txt'), '--name', 'prose', '--model', demo, '--eval-permille', '250', '--split-tokens', '16', ...dd])
      expect(text).to.include({ format: 'text', sequences: 1, bytes: Buffer.byteLength(TEXT), tokens: env.tokens, evalPermille: 250, splitTokens: 16, model: demo })
      const textSplit = splitWindows({ datasetId: Buffer.from(text.id, 'hex'), sequenceLengths: [env.tokens], splitTokens: 16, evalPermille: 250 })
      expect([text.trainWindows, text.evalWindows]).to.deep.equal([textSplit.trainWindows.length, textSplit.evalWindows.length])
      expect(text.evalWindows).to.be.above(0)
      // the plain form prints the id on stdout
      const plain = await runCli(['data', 'add', join(env.dir, 'prose.txt'), '--name', 'prose-2', '--format', 'text', ...dd])
      expect(plain.code, plain.stderr).to.equal(0)
      expect(plain.stdout.trim()).to.match(/^[0-9a-f]{64}$/)
      expect(plain.stderr).to.match(/^added dataset prose-2 \(text\)/)

      const list = await runJson(['data', 'list', ...dd])
      expect(list.datasets.map((d: { name: string }) => d.name)).to.deep.equal(['prose', 'prose-2', 'tiny-train'])
      expect(list.datasets[2]).to.deep.equal(ids)
      // without a model a text dataset has no windows; with one, the same as at add
      expect(list.datasets[0]).to.include({ id: text.id, tokens: null, trainWindows: null, evalWindows: null })
      expect(await runJson(['data', 'show', 'prose', '--model', demo.slice(0, 10), ...dd])).to.deep.equal(text)
      expect(await runJson(['data', 'show', ids.id.slice(0, 12), ...dd])).to.deep.equal(ids)
      const table = await runCli(['data', 'show', 'tiny-train', ...dd])
      expect(table.stdout).to.match(/^windows +\d+ train, \d+ eval \(32 tokens each, eval 10%\)$/m)

      // every bad input: one line, its exit code, and nothing stored
      const before = await snapshot()
      const bad: Array<[string[], number, string | RegExp]> = [
        [['data', 'add', join(env.dir, 'bad-utf8.txt'), '--name', 'x'], 1, `${join(env.dir, 'bad-utf8.txt')}: line 3 is not valid UTF-8`],
        [['data', 'add', join(env.dir, 'out-of-range.jsonl'), '--name', 'x', '--model', tiny], 1, /: line 2: ids\[1\] = 512 is out of range \[0, 512\) of model [0-9a-f]{12} \(vocab 512\)$/],
        [['data', 'add', join(env.dir, 'empty.txt'), '--name', 'x'], 1, 'the dataset file is empty'],
        [['data', 'add', join(env.dir, 'blank.jsonl'), '--name', 'x', '--model', tiny], 1, 'the ids file has no sequence'],
        [['data', 'add', join(env.dir, 'huge.txt'), '--name', 'x'], 1, 'is 268435457 bytes, over the dataset limit of 268435456'],
        [['data', 'add', join(env.dir, 'bad-json.jsonl'), '--name', 'x', '--model', tiny], 1, /: line 3 is not valid JSON/],
        [['data', 'add', join(env.dir, 'not-integer.jsonl'), '--name', 'x', '--model', tiny], 1, 'line 1: ids[1] = 2.5 is not an integer'],
        [['data', 'add', join(env.dir, 'short.jsonl'), '--name', 'x', '--model', tiny], 1, 'line 2 has 1 id; a sequence needs at least 2'],
        [['data', 'add', join(env.dir, 'good.jsonl'), '--name', 'tiny-train', '--model', tiny], 1, `a dataset named tiny-train is already on chain A (${ids.id})`],
        [['data', 'add', join(env.dir, 'good.jsonl'), '--name', 'x'], 1, '2 models are on chain A, name one with --model'],
        [['data', 'add', join(env.dir, 'prose.txt'), '--name', 'x', '--model', tiny], 1, 'has no tokenizer, so a text dataset cannot be tokenized for it'],
        [['data', 'add', join(env.dir, 'good.jsonl'), '--name', 'x', '--model', 'ffffffffff'], 1, 'no model on chain A has an id starting with ffffffffff'],
        [['data', 'add', join(env.dir, 'missing.txt'), '--name', 'x'], 1, 'ENOENT'],
        [['data', 'add', join(env.dir, 'prose.txt'), '--name', 'no spaces'], 1, 'dataset name "no spaces" is not allowed'],
        [['data', 'add', join(env.dir, 'prose.txt'), '--name', 'x', '--eval-permille', '1001'], 2, '--eval-permille must be an integer from 0 to 1000 (got "1001")'],
        [['data', 'add', join(env.dir, 'prose.txt'), '--name', 'x', '--split-tokens', '1'], 2, '--split-tokens must be an integer from 2 to 65536'],
        [['data', 'add', join(env.dir, 'prose.txt'), '--name', 'x', '--format', 'csv'], 2, 'Invalid values'],
        [['data', 'add', join(env.dir, 'prose.txt')], 2, 'Missing required argument: name'],
        [['data', 'add', join(env.dir, 'prose.txt'), '--name', 'x', '--model', 'xyz'], 2, '--model must be a model id']
      ]
      for (const [args, code, message] of bad) {
        expectOneLineError(await runCli([...args, ...dd]), code, message)
        expect(await snapshot(), args.join(' ')).to.deep.equal(before)
      }
      // lookups that find nothing
      expectOneLineError(await runCli(['data', 'show', 'nope', ...dd]), 1, 'no dataset named "nope"')
      expectOneLineError(await runCli(['data', 'show', 'prose', '--model', tiny, ...dd]), 1, 'has no tokenizer')
      expect((await runJson(['data', 'list', ...dd])).datasets).to.have.length(3)

      if (mode === 'daemon') {
        // the daemon did the work (the CLI could not have opened the locked data dir)
        const metrics = (await ipcRequest(env.daemon!.socketPath, 'metrics')).text as string
        expect(metrics).to.match(/blyd_ipc_requests_total\{method="data\.add"\} (\d+)/)
        expect(Number(/blyd_ipc_requests_total\{method="data\.add"\} (\d+)/.exec(metrics)?.[1])).to.be.at.least(3)
        // each refusal is counted by its code
        for (const code of ['ERR_DATASET_UTF8', 'ERR_DATASET_ID', 'ERR_DATASET_TOO_LARGE', 'ERR_DATASET_JSON', 'ERR_DATASET_NAME_TAKEN', 'ERR_DATASET_MODEL']) {
          expect(metrics, code).to.match(new RegExp(`blyd_ipc_errors_total\\{[^}]*code="${code}"[^}]*\\} [1-9]`))
        }
        expect((await ipcRequest(env.daemon!.socketPath, 'methods')).methods).to.include.members(['data.add', 'data.list', 'data.show'])
        // a relative path over IPC is refused (the daemon's working directory is not the caller's)
        const err = await ipcRequest(env.daemon!.socketPath, 'data.add', { path: 'good.jsonl', name: 'rel' }).catch(e => e)
        expect(err.code).to.equal('ERR_INVALID_PARAMS')
        expect(await snapshot()).to.deep.equal(before)
      }
    })
  }
})
