import { ModelError, ModelErrorCode } from '../errors.ts'
import { ChatTokenizer } from '../tokenizer.ts'
import type { ManifestTokenizer } from './manifest.ts'

/** Builds the tokenizer a manifest carries (tokenizer_config.json defaults to {}; a separate chat template wins). */
export function tokenizerFromManifest (t: ManifestTokenizer): ChatTokenizer {
  let config: Record<string, unknown> = {}
  if (t.tokenizerConfig != null) {
    try {
      config = JSON.parse(t.tokenizerConfig)
    } catch (err: any) {
      throw new ModelError(ModelErrorCode.BAD_TOKENIZER, `tokenizer_config.json is not valid JSON: ${err.message}`, {}, { cause: err })
    }
    if (config == null || typeof config !== 'object' || Array.isArray(config)) {
      throw new ModelError(ModelErrorCode.BAD_TOKENIZER, 'tokenizer_config.json is not a JSON object')
    }
  }
  if (t.chatTemplate != null) {
    config = { ...config, chat_template: t.chatTemplate }
  }
  return ChatTokenizer.fromJson(t.tokenizerJson, config)
}
