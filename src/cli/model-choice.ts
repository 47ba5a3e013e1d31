/**
 * The model a command runs on when `--model` may be omitted (generate,
 * model logits): the one named, else the only model on chain A. With none
 * or several on chain, a UsageError says so and names them.
 */
import { UsageError } from '../daemon/errors.ts'
import type { ModelSummaryJson } from '../protocols/ipc.ts'

/** the model id argument: hex, at least 8 characters (a unique prefix) */
export function modelArg (value: unknown): string {
  const text = String(value ?? '')
  if (!/^[0-9a-fA-F]{8,64}$/.test(text)) {
    throw new UsageError(`--model must be a model id: 64 hex characters or a unique prefix of at least 8 (got ${JSON.stringify(text)})`)
  }
  return text.toLowerCase()
}

/** `given` checked by modelArg, else the id of the only model `list()` returns. */
export async function chosenModel (given: unknown, list: () => Promise<ModelSummaryJson[]>): Promise<string> {
  if (given !== undefined) {
    return modelArg(given)
  }
  const models = await list()
  if (models.length === 1) {
    return models[0].id
  }
  if (models.length === 0) {
    throw new UsageError('no model on chain A: import one (blyd model import DIR) or join a swarm that has one (--bootstrap)')
  }
  const named = models.map(m => m.name !== '' ? `${m.id} (${m.name})` : m.id)
  throw new UsageError(`--model is needed: ${models.length} models are on chain A: ${named.join(', ')}`)
}
