import { expect } from 'aegir/chai'
import { generateParamsFromArgv } from '../../src/cli/commands/generate.ts'
import { UsageError } from '../../src/daemon/errors.ts'

describe('blyd generate --priority', () => {
  const model = 'ab'.repeat(32)

  it('is carried in the params, absent when not given (the mesh then uses interactive)', () => {
    for (const priority of ['interactive', 'batch', 'background']) {
      expect(generateParamsFromArgv({ model, promptIds: '1,2', priority })).to.include({ priority })
    }
    expect(generateParamsFromArgv({ model, promptIds: '1,2' })).to.not.have.property('priority')
  })

  it('an unknown priority is a usage error naming the choices', () => {
    expect(() => generateParamsFromArgv({ model, promptIds: '1,2', priority: 'urgent' }))
      .to.throw(UsageError, /--priority must be one of interactive, batch, background/)
  })
})
