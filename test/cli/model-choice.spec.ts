/**
 * `--model` may be omitted when exactly one model is on chain (generate,
 * model logits): chosenModel picks it, and says why not when there are none
 * or several. The commands themselves run without --model in
 * test/http/openai-mesh.spec.ts (one model) and openai-api.spec.ts (two).
 */
import { expect } from 'aegir/chai'
import { chosenModel } from '../../src/cli/model-choice.ts'
import { DaemonErrorCode } from '../../src/daemon/errors.ts'
import { rejection } from '../daemon/helpers.ts'
import type { ModelSummaryJson } from '../../src/protocols/ipc.ts'

function summary (id: string, name: string): ModelSummaryJson {
  return { id, name, arch: 'qwen3', units: 6, unitsStored: 6, complete: true, missingUnits: [], manifestStored: true, author: '00'.repeat(32), loaded: false }
}

describe('cli/model-choice: --model or the only model on chain', () => {
  const a = summary('aa'.repeat(32), 'alpha')
  const b = summary('bb'.repeat(32), '')
  let listed: number

  const list = (models: ModelSummaryJson[]) => async () => {
    listed++
    return models
  }

  beforeEach(() => { listed = 0 })

  it('takes the model given, lowercased, without listing', async () => {
    expect(await chosenModel('AABBCCDD', list([a, b]))).to.equal('aabbccdd')
    expect(listed).to.equal(0)
    const err = await rejection(chosenModel('xyz', list([a])))
    expect(err).to.have.property('code', DaemonErrorCode.USAGE)
    expect(err.message).to.include('unique prefix of at least 8')
  })

  it('takes the only model on chain when none is given', async () => {
    expect(await chosenModel(undefined, list([a]))).to.equal(a.id)
    expect(listed).to.equal(1)
  })

  it('refuses with none or several on chain, naming them', async () => {
    const none = await rejection(chosenModel(undefined, list([])))
    expect(none).to.have.property('code', DaemonErrorCode.USAGE)
    expect(none.message).to.include('no model on chain A')
    const several = await rejection(chosenModel(undefined, list([a, b])))
    expect(several).to.have.property('code', DaemonErrorCode.USAGE)
    expect(several.message).to.include('--model is needed: 2 models').and.include(`${a.id} (alpha)`).and.include(b.id)
  })
})
