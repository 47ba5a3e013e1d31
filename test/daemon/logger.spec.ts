/**
 * The daemon's logger (daemon/logger.ts, daemon/log-format.ts) and the view
 * of it libp2p is handed (net/libp2p-logger.ts): one line per call in
 * `<time> <LEVEL> <component> <message> key=value ...`, printf directives
 * and event fields alike, the level threshold, scopes.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { expect } from 'aegir/chai'
import { LOG_LEVELS } from '../../src/daemon/constants.ts'
import { formatMessage } from '../../src/daemon/log-format.ts'
import { createLogger } from '../../src/daemon/logger.ts'
import { libp2pLogger } from '../../src/net/libp2p-logger.ts'
import { ChainError, ChainErrorCode } from '../../src/protocols/chain-errors.ts'
import { silentLogger } from '../../src/protocols/logger.ts'
import type { LogLevel } from '../../src/daemon/config.ts'
import type { BlyComponentLogger } from '../../src/protocols/logger.ts'
import type { ComponentLogger } from '@libp2p/interface'

const T0 = Date.UTC(2025, 0, 2, 3, 4, 5, 6)
const TIME = '2025-01-02T03:04:05.006Z'

function capture (level: LogLevel): { logger: BlyComponentLogger, lines: string[] } {
  const lines: string[] = []
  const logger = createLogger({ level, now: () => T0, write: line => { lines.push(line) } })
  return { logger, lines }
}

describe('daemon logger', () => {
  it('writes the event form as `<time> <LEVEL> <component> <event> key=value ...`', () => {
    const { logger, lines } = capture('info')
    const log = logger.forComponent('bly:mesh:generate')
    log.warn('generate.recovered', { session: 3, reason: 'timeout', replacement: 'a[0,2) b[2,4)', ms: 12.5, big: 2n ** 70n, ok: false, none: null, unset: undefined, empty: '' })
    expect(lines).to.deep.equal([
      `${TIME} WARN bly:mesh:generate generate.recovered session=3 reason=timeout replacement="a[0,2) b[2,4)" ms=12.5 big=1180591620717411303424 ok=false none=null empty=""\n`
    ])
  })

  it('writes libp2p\'s printf form: %s %d %j %o %p %b %t %e %%, and a trailing object as fields', async () => {
    const peer = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    const err = new ChainError(ChainErrorCode.BLOCK_NOT_FOUND, 'no such block', { cause: new Error('disk') })
    const cases: Array<[unknown[], string, Record<string, unknown>]> = [
      [['synced with %p: %o', peer, { fetched: 2 }], `synced with ${peer.toString()}: { fetched: 2 }`, {}],
      [['%s has %d of %d (%j) 100%%', 'x', 3.9, 4n, { a: [1] }], 'x has 3 of 4 ({"a":[1]}) 100%', {}],
      [['b58 %b b32 %t', Uint8Array.of(0, 1, 2), Uint8Array.of(255)], 'b58 15T b32 74', {}],
      [['sync failed - %e', err], `sync failed - no such block (${ChainErrorCode.BLOCK_NOT_FOUND}); cause: disk`, {}],
      [['round %d', 7, { peers: 2 }], 'round 7', { peers: 2 }],
      [['more args than directives %s', 'a', 'b', Uint8Array.of(0xab)], 'more args than directives a b ab', {}],
      [['a directive without its argument %s'], 'a directive without its argument %s', {}],
      [[new Error('thrown at the logger')], 'thrown at the logger', {}],
      [[{ only: 'fields' }], '', { only: 'fields' }]
    ]
    for (const [args, message, fields] of cases) {
      expect(formatMessage(args[0], args.slice(1)), String(args[0])).to.deep.equal({ message, fields })
    }
  })

  it('keeps every record on one line', () => {
    const { logger, lines } = capture('debug')
    const log = logger.forComponent('bly:x')
    log.error('failed - %e', new Error('first\nsecond'))
    log.info('event', { stack: 'Error: x\n    at y' })
    expect(lines).to.deep.equal([
      `${TIME} ERROR bly:x failed - first\\nsecond\n`,
      `${TIME} INFO bly:x event stack="Error: x\\n    at y"\n`
    ])
  })

  it('writes a call at or above the configured level only; enabled is true when debug is written', () => {
    const calls = ['error', 'warn', 'info', 'debug', 'trace'] as const
    for (const level of LOG_LEVELS) {
      const { logger, lines } = capture(level)
      const log = logger.forComponent('bly:t')
      for (const call of calls) {
        if (call === 'debug') {
          log('at %s', call)
        } else {
          log[call]('at %s', call)
        }
      }
      const written = lines.map(l => l.split(' ')[1].toLowerCase())
      expect(written, level).to.deep.equal(LOG_LEVELS.slice(0, LOG_LEVELS.indexOf(level) + 1))
      expect(log.enabled, level).to.equal(level === 'debug' || level === 'trace')
    }
  })

  it('names a scope `<component>:<scope>`', () => {
    const { logger, lines } = capture('debug')
    logger.forComponent('bly:net:block-sync').newScope('orphans').newScope('walk')('giving up')
    expect(lines).to.deep.equal([`${TIME} DEBUG bly:net:block-sync:orphans:walk giving up\n`])
  })

  it('the silent logger is disabled at every level and every scope', () => {
    const log = silentLogger().forComponent('bly:x')
    expect(log.enabled).to.equal(false)
    expect(log.newScope('y').enabled).to.equal(false)
  })

  describe('the view libp2p is handed', () => {
    it('writes libp2p\'s lines, its errors included, at debug, and its trace at trace', () => {
      const { logger, lines } = capture('trace')
      const view: ComponentLogger = libp2pLogger(logger)
      const log = view.forComponent('libp2p:tcp')
      log('listening on %s', '/ip4/127.0.0.1/tcp/1')
      log.error('dial to %s errored - %e', '/ip4/127.0.0.1/tcp/2', new Error('connect ECONNREFUSED'))
      log.newScope('conn').trace('frame %d', 9)
      expect(lines).to.deep.equal([
        `${TIME} DEBUG libp2p:tcp listening on /ip4/127.0.0.1/tcp/1\n`,
        `${TIME} DEBUG libp2p:tcp dial to /ip4/127.0.0.1/tcp/2 errored - connect ECONNREFUSED\n`,
        `${TIME} TRACE libp2p:tcp:conn frame 9\n`
      ])
    })

    it('writes nothing of libp2p\'s above debug: at info its errors are filtered out', () => {
      const { logger, lines } = capture('info')
      const log = libp2pLogger(logger).forComponent('libp2p:dial-queue')
      log.error('dial failed - %e', new Error('refused'))
      log('dialing')
      expect(lines).to.deep.equal([])
      expect(log.enabled).to.equal(false)
    })
  })
})
