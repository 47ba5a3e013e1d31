/**
 * A prefix of the bundled Qwen3 tokenizer: the same byte-level BPE (its
 * normalizer, pre-tokenizer, decoder and chat template) cut to its first
 * `merges` merges. Qwen3's vocabulary is the 256 byte tokens then one token
 * per merge in merge order (merge i makes id 256 + i), so the prefix keeps
 * every id below 256 + merges as it is and only renumbers the special tokens
 * (<|endoftext|>, <|im_start|>, ...) to follow, in their order. Text encodes
 * to Qwen3's own ids for whatever the first merges cover, in more pieces
 * where a word needs a later merge.
 *
 * Why: a model's output head and softmax are [hidden, vocab]; at Qwen3's
 * 151,936 ids they are most of a small model's work, so a training demo on a
 * CPU uses a prefix (8,000 merges: a head ~18x smaller) and trains that head.
 */
import { readFile } from 'node:fs/promises'
import { ModelError, ModelErrorCode } from './errors.ts'
import { bundledQwen3TokenizerFiles } from './tokenizer.ts'

/** Byte tokens before the first merge in a byte-level BPE vocabulary. */
const BYTE_TOKENS = 256

export interface TokenizerPrefix {
  /** tokenizer.json and tokenizer_config.json, ready to write */
  tokenizerJson: Record<string, any>
  tokenizerConfig: Record<string, any>
  /** ids the prefix can emit: 256 + merges + the special tokens */
  idCount: number
  /** the renumbered ids of Qwen3's bos (<|endoftext|>) and eos (<|im_end|>) */
  bosTokenId: number
  eosTokenId: number
}

/** The merges of the bundled Qwen3 tokenizer (the largest `merges` a prefix may have). */
export async function qwen3MergeCount (): Promise<number> {
  const tj = JSON.parse(await readFile(bundledQwen3TokenizerFiles().tokenizerJson, 'utf8'))
  return tj.model.merges.length
}

/**
 * The bundled Qwen3 tokenizer cut to its first `merges` merges (0 ..
 * qwen3MergeCount()). Throws ModelError BAD_OPTIONS for a count out of range,
 * BAD_TOKENIZER when the bundled file is not laid out as the file comment
 * says (then no prefix keeps Qwen3's ids).
 */
export async function qwen3TokenizerPrefix (merges: number): Promise<TokenizerPrefix> {
  const files = bundledQwen3TokenizerFiles()
  const tj = JSON.parse(await readFile(files.tokenizerJson, 'utf8'))
  const tc = JSON.parse(await readFile(files.tokenizerConfig, 'utf8'))
  const all: unknown[] = tj.model.merges
  if (!Number.isSafeInteger(merges) || merges < 0 || merges > all.length) {
    throw new ModelError(ModelErrorCode.BAD_OPTIONS, `merges must be an integer from 0 to ${all.length} (got ${merges})`)
  }
  const vocab: Record<string, number> = tj.model.vocab
  const kept = BYTE_TOKENS + merges
  const prefixVocab: Record<string, number> = {}
  for (const [token, id] of Object.entries(vocab)) {
    if (id < kept) {
      prefixVocab[token] = id
    }
  }
  // every kept merge must make the id of its position: then the prefix is Qwen3's BPE with Qwen3's ids
  const keptMerges = all.slice(0, merges)
  for (let i = 0; i < keptMerges.length; i++) {
    const m = keptMerges[i]
    const [a, b] = Array.isArray(m) ? m : String(m).split(' ')
    if (prefixVocab[`${a}${b}`] !== BYTE_TOKENS + i) {
      throw new ModelError(ModelErrorCode.BAD_TOKENIZER, `the bundled Qwen3 tokenizer's merge ${i} does not make id ${BYTE_TOKENS + i}: no prefix of it keeps its ids`)
    }
  }
  if (Object.keys(prefixVocab).length !== kept) {
    throw new ModelError(ModelErrorCode.BAD_TOKENIZER, `the bundled Qwen3 tokenizer has ${Object.keys(prefixVocab).length} ids below ${kept}, not ${kept}`)
  }
  const renumber = new Map<number, number>()
  const added = (tj.added_tokens as Array<{ id: number, content: string }>).map((t, i) => {
    renumber.set(t.id, kept + i)
    return { ...t, id: kept + i }
  })
  const decoder: Record<string, unknown> = {}
  for (const [id, entry] of Object.entries(tc.added_tokens_decoder ?? {})) {
    const to = renumber.get(Number(id))
    if (to == null) {
      throw new ModelError(ModelErrorCode.BAD_TOKENIZER, `tokenizer_config.json names added token ${id}, which tokenizer.json does not add`)
    }
    decoder[String(to)] = entry
  }
  const idOf = (content: string): number => {
    const t = added.find(a => a.content === content)
    if (t == null) {
      throw new ModelError(ModelErrorCode.BAD_TOKENIZER, `the bundled Qwen3 tokenizer has no ${content}`)
    }
    return t.id
  }
  return {
    tokenizerJson: { ...tj, added_tokens: added, model: { ...tj.model, vocab: prefixVocab, merges: keptMerges } },
    tokenizerConfig: { ...tc, added_tokens_decoder: decoder },
    idCount: kept + added.length,
    bosTokenId: idOf('<|endoftext|>'),
    eosTokenId: idOf('<|im_end|>')
  }
}
