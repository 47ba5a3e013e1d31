import { readFile } from 'node:fs/promises'
import { expect } from 'aegir/chai'
import { ModelErrorCode } from '../../src/model/errors.ts'
import { ChatTokenizer, bundledQwen3TokenizerFiles } from '../../src/model/tokenizer.ts'

describe('model/tokenizer (real Qwen3 files)', () => {
  let tok: ChatTokenizer

  before(async () => {
    const files = bundledQwen3TokenizerFiles()
    tok = ChatTokenizer.fromJson(await readFile(files.tokenizerJson, 'utf8'), await readFile(files.tokenizerConfig, 'utf8'))
  })

  it('encodes known ids and round-trips text', () => {
    expect(tok.encode('Hello, world!')).to.deep.equal([9707, 11, 1879, 0])
    for (const text of ['Hello, world!', '  leading spaces\nand lines\t tabs', 'Привет, 你好, 🙂 café', 'x = f(y) ** 2 // 3']) {
      expect(tok.decode(tok.encode(text))).to.equal(text)
    }
    expect(tok.idCount).to.equal(151669)
    expect(tok.eosTokenIds).to.deep.equal([151645])
  })

  it('renders the chat template and encodes its special tokens', () => {
    const messages = [{ role: 'system' as const, content: 'Be brief.' }, { role: 'user' as const, content: 'Hi there' }]
    const text = tok.applyChatTemplate(messages, { enableThinking: false })
    expect(text).to.equal('<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n')
    expect(tok.applyChatTemplate(messages)).to.match(/<\|im_start\|>assistant\n$/)
    const ids = tok.encodeChat([{ role: 'user', content: 'Hi' }])
    expect(ids).to.deep.equal([151644, 872, 198, 13048, 151645, 198, 151644, 77091, 198])
    expect(tok.decode(ids)).to.equal('user\nHi\nassistant\n')
    expect(tok.decode(ids, { skipSpecialTokens: false })).to.equal('<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n')
  })

  it('fails with a code on bad tokenizer files', () => {
    expect(() => ChatTokenizer.fromJson('{nope', '{}')).to.throw().with.property('code', ModelErrorCode.BAD_TOKENIZER)
    expect(() => ChatTokenizer.fromJson('{"model": {"type": "Mystery"}}', '{}')).to.throw().with.property('code', ModelErrorCode.BAD_TOKENIZER)
  })
})
