/**
 * The genesis params of a model: the one Params block authored by the
 * manifest's author (protocols/params.md). Its keys over the defaults
 * (params-defaults.ts) are the params of G0. None, several, a payload not
 * stored, or one that does not decode or breaks a rule: a state that says
 * so, and the fold judges nothing until it is resolved.
 */
import { genesisParams } from '../params-defaults.ts'
import type { GenesisState, ModelRecords } from './types.ts'

export function genesisOf (records: Pick<ModelRecords, 'params' | 'authorHex'>): GenesisState {
  const own = records.params.filter(p => p.authorHex === records.authorHex)
  if (own.length === 0) {
    return { status: 'missing' }
  }
  if (own.length > 1) {
    return { status: 'ambiguous', blocks: own.map(p => p.idHex) }
  }
  const [block] = own
  if (block.error != null) {
    return { status: 'invalid', block: block.idHex, error: block.error }
  }
  if (block.body == null) {
    return { status: 'payload-missing', block: block.idHex }
  }
  try {
    return { status: 'ok', block: block.idHex, params: genesisParams(block.body) }
  } catch (err: any) {
    return { status: 'invalid', block: block.idHex, error: `${String(err?.code ?? 'ERR')}: ${String(err?.message ?? err)}` }
  }
}
