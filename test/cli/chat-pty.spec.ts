/**
 * `blyd chat` in a real pseudo-terminal (tmux): a demo model with the real
 * Qwen3 tokenizer on one daemon, lines typed with send-keys, the screen read
 * with capture-pane. History is checked by each turn's prompt size (its
 * figures line): the whole conversation rendered by the chat template, so
 * the second turn holds the first turn's reply (as `generate --chat` gives
 * it), and /reset starts again from one message.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { ChatTokenizer, bundledQwen3TokenizerFiles } from '../../src/model/tokenizer.ts'
import { BIN, cleanEnv, makeTempDir, removeDir, runCli, runJson, startDaemon } from '../daemon/helpers.ts'
import { TmuxPane } from './tmux.ts'
import type { ChatMessage } from '../../src/model/tokenizer.ts'
import type { DaemonProcess } from '../daemon/helpers.ts'

const FIGURES = /\[(\d+) tokens, prompt (\d+) tokens, [\d.]+ tokens\/s[^\]]*\]/g

/** the prompt sizes of the turns shown so far */
function promptSizes (text: string): number[] {
  return [...text.matchAll(FIGURES)].map(m => Number(m[2]))
}

describe('blyd chat (pseudo-terminal) and the first hour', function () {
  this.timeout(120_000)
  const env: { dir: string, dataDir: string, daemon?: DaemonProcess, pane?: TmuxPane, tok?: ChatTokenizer } = { dir: '', dataDir: '' }

  before(async () => {
    env.dir = await makeTempDir()
    env.dataDir = join(env.dir, 'data')
    const ck = join(env.dir, 'ck')
    const init = await runCli(['model', 'init-demo', ck, '--seed', '7', '--data-dir', env.dataDir])
    expect(init.code, init.stderr).to.equal(0)
    // the next steps keep --data-dir
    expect(init.stdout).to.include(`blyd model import ${ck} --data-dir ${env.dataDir}\n`).and.include(`blyd chat --data-dir ${env.dataDir}\n`)
    await runJson(['model', 'import', ck, '--data-dir', env.dataDir])
    env.daemon = await startDaemon(env.dataDir)
    const files = bundledQwen3TokenizerFiles()
    env.tok = ChatTokenizer.fromJson(await readFile(files.tokenizerJson, 'utf8'), await readFile(files.tokenizerConfig, 'utf8'))
  })

  afterEach(async () => {
    await env.pane?.kill()
    env.pane = undefined
  })

  after(async () => {
    await env.daemon?.kill()
    await removeDir(env.dir)
  })

  async function chat (...args: string[]): Promise<TmuxPane> {
    env.pane = await TmuxPane.start([process.execPath, BIN, 'chat', '--data-dir', env.dataDir, '--max-new-tokens', '4', ...args], cleanEnv())
    await env.pane.waitFor('the greeting', t => t.includes('/exit or Ctrl-D ends') && t.includes('> '))
    return env.pane
  }

  function size (messages: ChatMessage[], enableThinking?: boolean): number {
    return env.tok?.encodeChat(messages, enableThinking != null ? { enableThinking } : {}).length ?? -1
  }

  it('keeps the history across turns, /reset clears it, /exit ends with status 0', async () => {
    const first = await runJson(['generate', '--chat', 'Hello there', '--max-new-tokens', '4', '--data-dir', env.dataDir])
    const pane = await chat()
    const greeting = await pane.text()
    expect(greeting).to.include('RANDOM weights') // the demo model is explained where its output is shown

    await pane.line('Hello there')
    let text = await pane.waitFor('turn 1', t => promptSizes(t).length === 1)
    const user1: ChatMessage = { role: 'user', content: 'Hello there' }
    expect(promptSizes(text)).to.deep.equal([size([user1])])
    expect(text).to.include(`[${first.tokens.length as number} tokens,`)
    if (first.text.trim() !== '') {
      // the reply streamed on the terminal is the one `generate --chat` gives (same template, greedy)
      expect(text).to.include(first.text.trim())
    }

    await pane.line('What is 2+2?')
    text = await pane.waitFor('turn 2', t => promptSizes(t).length === 2)
    const user2: ChatMessage = { role: 'user', content: 'What is 2+2?' }
    expect(promptSizes(text)[1]).to.equal(size([user1, { role: 'assistant', content: first.text }, user2]))

    await pane.line('/reset')
    await pane.waitFor('the reset', t => t.includes('[history cleared]'))
    await pane.line('Hi again')
    text = await pane.waitFor('turn 3', t => promptSizes(t).length === 3)
    expect(promptSizes(text)[2]).to.equal(size([{ role: 'user', content: 'Hi again' }]))

    await pane.line('/exit')
    expect(await pane.exited()).to.equal(0)
  })

  it('a daemon with no bootstrap peers says it is alone and how to join (log line and status)', async () => {
    expect(env.daemon?.stderr).to.match(/net\.alone .*no bootstrap peers.*--bootstrap/)
    const status = await runCli(['status', '--data-dir', env.dataDir])
    expect(status.code, status.stderr).to.equal(0)
    const alone = status.stdout.split('\n').find(l => l.startsWith('alone'))
    expect(alone).to.include('no bootstrap peers').and.include('--bootstrap /ip4/127.0.0.1/tcp/')
    const json = await runJson(['status', '--data-dir', env.dataDir])
    expect(json.bootstrapPeers).to.equal(0)
  })

  it('--no-thinking renders the empty think block; Ctrl-D ends with status 0', async () => {
    const pane = await chat('--no-thinking')
    await pane.line('Hello there')
    const text = await pane.waitFor('turn 1', t => promptSizes(t).length === 1)
    const messages: ChatMessage[] = [{ role: 'user', content: 'Hello there' }]
    expect(size(messages, false)).to.be.greaterThan(size(messages))
    expect(promptSizes(text)).to.deep.equal([size(messages, false)])
    await pane.keys('C-d')
    expect(await pane.exited()).to.equal(0)
  })
})
