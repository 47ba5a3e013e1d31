/**
 * Acceptance tests of the model commands through the real `blyd` CLI:
 * fixtures imported with `blyd model import`, then logits and greedy tokens
 * checked against the reference on wasm and cpu, through a daemon and --local.
 */
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { ChatTokenizer, bundledQwen3TokenizerFiles } from '../../src/model/tokenizer.ts'
import { makeTempDir, removeDir, runCli, runCliAll, runJson, startDaemon } from '../daemon/helpers.ts'
import { DAMAGES, damagedCopy } from '../model/checkpoint-damage.ts'
import { FIXTURE_VARIANTS, fixtureDir, maxAbsDiff } from '../model/fixtures.ts'
import type { CliResult, DaemonProcess } from '../daemon/helpers.ts'
import type { Expected } from '../model/fixtures.ts'

const TOL = 1e-4

async function expected (variant: string): Promise<Expected> {
  return JSON.parse(await readFile(join(fixtureDir(variant as any), 'expected.json'), 'utf8'))
}

function expectOneLineError (r: CliResult, text: string): void {
  expect(r.code, r.stderr).to.not.equal(0)
  expect(r.stdout).to.equal('')
  const lines = r.stderr.trim().split('\n')
  expect(lines, r.stderr).to.have.length(1)
  expect(lines[0]).to.match(/^blyd: /)
  expect(lines[0]).to.include(text)
}

/** logits and greedy generation of every fixture match the reference */
async function checkFixtures (dataDir: string, ids: Record<string, string>, extra: string[]): Promise<void> {
  for (const variant of FIXTURE_VARIANTS) {
    const exp = await expected(variant)
    const { logits } = await runJson(['model', 'logits', '--model', ids[variant], '--ids', exp.sequence.join(','), '--data-dir', dataDir, ...extra])
    expect(logits).to.have.length(exp.sequence.length)
    logits.forEach((row: number[], i: number) => { expect(maxAbsDiff(row, exp.full_logits[i]), `${variant} position ${i}`).to.be.below(TOL) })
    const gen = await runJson(['generate', '--model', ids[variant], '--prompt-ids', exp.greedy.prompt.join(','), '--temperature', '0', '--max-new-tokens', String(exp.greedy.tokens.length), '--data-dir', dataDir, ...extra])
    expect(gen.tokens, variant).to.deep.equal(exp.greedy.tokens)
    expect(gen.finishReason).to.equal('length')
    expect(gen.tokensPerSecond).to.be.a('number')
  }
}

describe('blyd model (CLI)', function () {
  this.timeout(240_000)
  // fields, not loop-captured variables: some cases are made in a loop
  const env: { dir: string, daemon?: DaemonProcess } = { dir: '' }

  before(async () => {
    env.dir = await makeTempDir()
  })

  afterEach(async () => {
    await env.daemon?.kill()
    env.daemon = undefined
  })

  after(async () => {
    await removeDir(env.dir)
  })

  for (const backend of ['wasm', 'cpu']) {
    it(`fixtures match the reference on ${backend}, through a daemon and --local`, async () => {
      const dataDir = join(env.dir, backend)
      env.daemon = await startDaemon(dataDir, ['--backend', backend])
      const status = await runJson(['status', '--data-dir', dataDir])
      expect(status.backend).to.equal(backend)
      expect(status.inference).to.include({ name: backend, preference: backend })
      const ids: Record<string, string> = {}
      for (const variant of FIXTURE_VARIANTS) {
        const imported = await runJson(['model', 'import', fixtureDir(variant), '--data-dir', dataDir])
        // the manifest, its genesis Params and six layer units
        expect(imported).to.include({ blocks: 8, existing: 0, units: 6, tokenizer: false })
        ids[variant] = imported.modelId
      }
      await checkFixtures(dataDir, ids, ['--backend', backend])
      // a daemon does not switch backends for one caller
      const other = backend === 'wasm' ? 'cpu' : 'wasm'
      expectOneLineError(await runCli(['model', 'logits', '--model', ids['untied-f32'], '--ids', '1,2', '--backend', other, '--data-dir', dataDir]), `the ${backend} backend runs here`)
      // text mode streams the ids of a token-id-only model
      const exp = await expected('untied-f32')
      const text = await runCli(['generate', '--model', ids['untied-f32'].slice(0, 10), '--prompt-ids', exp.greedy.prompt.join(','), '--max-new-tokens', '4', '--data-dir', dataDir])
      expect(text.code, text.stderr).to.equal(0)
      expect(text.stdout.trim()).to.equal(exp.greedy.tokens.slice(0, 4).join(' '))

      expect((await runCli(['stop', '--data-dir', dataDir])).code).to.equal(0)
      await env.daemon.exited
      env.daemon = undefined
      await checkFixtures(dataDir, ids, ['--local', '--backend', backend])
    })
  }

  it('--workers 2: fixtures match the reference through a daemon and --local, and status reports the workers', async () => {
    const dataDir = join(env.dir, 'workers')
    env.daemon = await startDaemon(dataDir, ['--backend', 'wasm', '--workers', '2'])
    const ids: Record<string, string> = {}
    for (const variant of FIXTURE_VARIANTS) {
      ids[variant] = (await runJson(['model', 'import', fixtureDir(variant), '--data-dir', dataDir])).modelId
    }
    await checkFixtures(dataDir, ids, ['--backend', 'wasm'])
    const status = await runJson(['status', '--data-dir', dataDir])
    expect(status.workers).to.include({ setting: 2 })
    expect(status.workers.loaded.map((m: { model: string, workers: number }) => m.workers)).to.deep.equal([2, 2])
    expect(status.workers.loaded.map((m: { model: string }) => m.model)).to.have.members(Object.values(ids))
    const text = await runCli(['status', '--data-dir', dataDir])
    expect(text.stdout).to.match(/^workers +2 \(\d+ cores\); in use: [0-9a-f]{12} 2, [0-9a-f]{12} 2$/m)
    // a daemon keeps the workers it was started with
    expectOneLineError(await runCli(['model', 'logits', '--model', ids['untied-f32'], '--ids', '1,2', '--workers', '1', '--data-dir', dataDir]), '--workers applies to in-process runs')
    expect((await runCli(['stop', '--data-dir', dataDir])).code).to.equal(0)
    await env.daemon.exited
    env.daemon = undefined
    await checkFixtures(dataDir, ids, ['--local', '--workers', '2'])
    const local = await runJson(['model', 'logits', '--model', ids['untied-f32'], '--ids', '1,2', '--local', '--workers', '2', '--data-dir', dataDir])
    expect(local.workers).to.equal(2)
    const main = await runJson(['model', 'logits', '--model', ids['untied-f32'], '--ids', '1,2', '--local', '--data-dir', dataDir])
    // auto keeps a model this small on the main thread
    expect(main.workers).to.equal(0)
  })

  it('rejects bad --workers values with one line', async () => {
    const dataDir = join(env.dir, 'bad-workers')
    const cases: Array<{ args: string[], env?: Record<string, string>, says: string }> = []
    for (const bad of ['-1', '65', 'many', '1.5']) {
      cases.push({ args: ['model', 'logits', '--model', 'abcdef01', '--ids', '1', '--local', '--workers', bad, '--data-dir', dataDir], says: `--workers: must be "auto" or an integer from 0 to 64 (got "${bad}")` })
      cases.push({ args: ['generate', '--model', 'abcdef01', '--prompt-ids', '1', '--local', '--workers', bad, '--data-dir', dataDir], says: '--workers: must be "auto"' })
    }
    cases.push({ args: ['start', '--workers', 'many', '--data-dir', dataDir], says: '--workers: must be "auto"' })
    cases.push({ args: ['model', 'logits', '--model', 'abcdef01', '--ids', '1', '--local', '--data-dir', dataDir], env: { BLYD_WORKERS: 'x' }, says: 'BLYD_WORKERS: must be "auto"' })
    // each is refused by the option check, before the data dir is touched: independent, so run side by side
    const results = await runCliAll(cases)
    results.forEach((r, i) => { expectOneLineError(r, cases[i].says) })
  })

  it('imports the same checkpoint twice with the same id and no new blocks', async () => {
    const dataDir = join(env.dir, 'twice')
    const first = await runJson(['model', 'import', fixtureDir('untied-bf16-sharded'), '--data-dir', dataDir])
    const info = await runJson(['chain', 'info', '--data-dir', dataDir])
    expect(info.counts).to.include({ A: 2, B: 6 }) // the manifest and its genesis Params; six units
    const again = await runCli(['model', 'import', fixtureDir('untied-bf16-sharded'), '--data-dir', dataDir])
    expect(again.code, again.stderr).to.equal(0)
    expect(again.stdout.trim()).to.equal(first.modelId)
    expect(again.stderr).to.include('already on chain')
    expect(await runJson(['chain', 'info', '--data-dir', dataDir])).to.deep.equal(info)
    const list = await runJson(['model', 'list', '--data-dir', dataDir])
    expect(list.models).to.have.length(1)
    expect(list.models[0]).to.include({ id: first.modelId, units: 6, unitsStored: 6, complete: true })
  })

  it('a corrupt layer chunk makes loading fail naming the block, --local and through a daemon', async () => {
    const dataDir = join(env.dir, 'corrupt')
    const { modelId } = await runJson(['model', 'import', fixtureDir('untied-f32'), '--data-dir', dataDir])
    const show = await runJson(['model', 'show', modelId, '--data-dir', dataDir])
    const unit = show.unitBlocks[3]
    expect(unit.stored).to.equal(true)
    // a unit this small is one chunk, so its chunk hash is the payload's sha-256
    const file = join(dataDir, 'chain', 'chunks', unit.sha256.slice(0, 2), unit.sha256)
    const bytes = await readFile(file)
    bytes[100] ^= 0x80
    await writeFile(file, bytes)
    expectOneLineError(await runCli(['model', 'logits', '--model', modelId, '--ids', '1,2,3', '--local', '--data-dir', dataDir]), unit.block)
    env.daemon = await startDaemon(dataDir)
    const r = await runCli(['generate', '--model', modelId, '--prompt-ids', '1,2', '--data-dir', dataDir])
    expectOneLineError(r, unit.block)
    expect(r.stderr).to.include('unit 3')
  })

  it('refuses every damaged checkpoint with one line and a non-zero exit, leaving the chain unchanged', async () => {
    const dataDir = join(env.dir, 'damage')
    await runJson(['model', 'import', fixtureDir('untied-f32'), '--data-dir', dataDir])
    const before = await runJson(['chain', 'info', '--data-dir', dataDir])
    for (const [i, damage] of DAMAGES.entries()) {
      const bad = join(env.dir, `bad-${i}`)
      await damagedCopy(damage, bad)
      const r = await runCli(['model', 'import', bad, '--data-dir', dataDir])
      expectOneLineError(r, damage.says)
      expect(r.code, damage.name).to.equal(1)
    }
    // (test/model/chain-import.spec.ts checks the chain after each variant in-process)
    expect(await runJson(['chain', 'info', '--data-dir', dataDir])).to.deep.equal(before)
    // the same through a daemon
    env.daemon = await startDaemon(dataDir)
    const r = await runCli(['model', 'import', join(env.dir, 'bad-0'), '--data-dir', dataDir])
    expectOneLineError(r, DAMAGES[0].says)
    expect(await runJson(['chain', 'info', '--data-dir', dataDir])).to.deep.equal(before)
  })

  it('init-demo, import, then generate text with the real Qwen3 tokenizer and the chat template', async () => {
    const dataDir = join(env.dir, 'demo')
    const ck = join(env.dir, 'demo-ck')
    const init = await runCli(['model', 'init-demo', ck, '--seed', '7'])
    expect(init.code, init.stderr).to.equal(0)
    expect(init.stdout).to.include('RANDOM weights')
    const { modelId, tokenizer } = await runJson(['model', 'import', ck, '--data-dir', dataDir])
    expect(tokenizer).to.equal(true)

    const text = await runCli(['generate', '--model', modelId, '--prompt', 'The weather today is', '--max-new-tokens', '6', '--data-dir', dataDir])
    expect(text.code, text.stderr).to.equal(0)
    expect(text.stderr).to.equal('')
    expect(text.stdout.trim().length).to.be.greaterThan(0)
    const asJson = await runJson(['generate', '--model', modelId, '--prompt', 'The weather today is', '--max-new-tokens', '6', '--data-dir', dataDir])
    expect(text.stdout).to.equal(asJson.text + '\n')
    expect(asJson.tokens).to.have.length.of.at.most(6)

    // --chat is the chat template rendered and encoded: the same as feeding those ids
    const files = bundledQwen3TokenizerFiles()
    const tok = ChatTokenizer.fromJson(await readFile(files.tokenizerJson, 'utf8'), await readFile(files.tokenizerConfig, 'utf8'))
    const chatIds = tok.encodeChat([{ role: 'user', content: 'Hello, who are you?' }])
    expect(tok.decode(chatIds, { skipSpecialTokens: false })).to.include('<|im_start|>user\nHello, who are you?<|im_end|>\n<|im_start|>assistant\n')
    const chat = await runJson(['generate', '--model', modelId, '--chat', 'Hello, who are you?', '--max-new-tokens', '5', '--data-dir', dataDir])
    const byIds = await runJson(['generate', '--model', modelId, '--prompt-ids', chatIds.join(','), '--max-new-tokens', '5', '--data-dir', dataDir])
    expect(chat.promptTokens).to.equal(chatIds.length)
    expect(chat.tokens).to.deep.equal(byIds.tokens)
    expect(chat.text).to.equal(byIds.text)

    const show = await runCli(['model', 'show', modelId.slice(0, 8), '--data-dir', dataDir])
    expect(show.stdout).to.include('chat template').and.include('tied embeddings')
  })

  it('rejects bad model arguments with one line', async () => {
    const dataDir = join(env.dir, 'args')
    // refused by the argument checks before the data dir is touched: independent, so run side by side
    const [prefix, neither, ids, topP] = await runCliAll([
      { args: ['generate', '--model', 'abc', '--prompt', 'x', '--data-dir', dataDir] },
      { args: ['generate', '--model', 'abcdef01', '--data-dir', dataDir] },
      { args: ['model', 'logits', '--model', 'abcdef01', '--ids', '1,x', '--data-dir', dataDir] },
      { args: ['generate', '--model', 'abcdef01', '--prompt', 'x', '--top-p', '2', '--data-dir', dataDir] }
    ])
    expectOneLineError(prefix, 'unique prefix of at least 8')
    expectOneLineError(neither, 'exactly one of')
    expectOneLineError(ids, '--ids must be')
    expectOneLineError(topP, '--top-p')
    await runJson(['model', 'import', fixtureDir('untied-f32'), '--data-dir', dataDir])
    expectOneLineError(await runCli(['generate', '--model', 'abcdef01', '--prompt-ids', '1', '--data-dir', dataDir]), 'no model on chain A')
  })
})
