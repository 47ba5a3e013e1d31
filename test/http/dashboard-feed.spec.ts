/**
 * The dashboard's feed on a real HTTP listener (127.0.0.1, a free port),
 * with sections the test controls: a section that throws or hangs leaves
 * the others; concurrent snapshot reads share one computation; a stream
 * gets the current snapshot at once, a changed one on kick() or at the
 * interval, a comment (not the same snapshot again) when nothing changed;
 * the stream bound answers 429; stop() ends the streams.
 */
import { expect } from 'aegir/chai'
import { createDashboardFeed, createHttpApi, registerDashboardRoutes } from '../../src/daemon/http/index.ts'
import { pollUntil } from '../daemon/helpers.ts'
import type { DashboardFeed, DashboardFeedInit, DashboardSection, HttpApi } from '../../src/daemon/http/index.ts'

/** Reads an event stream block by block (`event: ...` or `: comment`). */
class EventReader {
  private readonly reader: ReadableStreamDefaultReader<Uint8Array>
  private readonly decoder: TextDecoder
  private buffer: string

  constructor (body: ReadableStream<Uint8Array>) {
    this.reader = body.getReader()
    this.decoder = new TextDecoder()
    this.buffer = ''
  }

  /** the next block, or undefined at the end of the stream */
  async next (): Promise<string | undefined> {
    while (!this.buffer.includes('\n\n')) {
      const { value, done } = await this.reader.read()
      if (done) {
        return undefined
      }
      this.buffer += this.decoder.decode(value, { stream: true })
    }
    const at = this.buffer.indexOf('\n\n')
    const block = this.buffer.slice(0, at)
    this.buffer = this.buffer.slice(at + 2)
    return block
  }

  /** the next block as a snapshot event: its id and data */
  async snapshot (): Promise<{ id: number, data: any }> {
    const block = await this.next()
    const m = /^event: snapshot\nid: (\d+)\ndata: (.*)$/.exec(block ?? '')
    if (m == null) {
      throw new Error(`not a snapshot event: ${JSON.stringify(block)}`)
    }
    return { id: Number(m[1]), data: JSON.parse(m[2]) }
  }
}

describe('http: the dashboard feed', function () {
  this.timeout(30_000)
  let api: HttpApi
  let feed: DashboardFeed

  async function serve (sections: Record<string, DashboardSection>, init: DashboardFeedInit): Promise<string> {
    feed = createDashboardFeed({ sections }, init)
    api = createHttpApi({}, { port: 0 })
    registerDashboardRoutes(api, feed)
    await api.start()
    return api.url as string
  }

  async function open (url: string): Promise<{ res: Response, events: EventReader }> {
    const res = await fetch(`${url}/v1/dashboard/events`)
    expect(res.status).to.equal(200)
    expect(res.headers.get('content-type')).to.match(/^text\/event-stream/)
    return { res, events: new EventReader(res.body as ReadableStream<Uint8Array>) }
  }

  afterEach(async () => {
    feed?.stop()
    await api?.stop()
  })

  it('a section that throws or takes too long is absent and named in errors; the others come; undefined is absent', async () => {
    const url = await serve({
      node: () => ({ peerId: 'p' }),
      broken: () => { throw new Error('the store is closed') },
      slow: async signal => new Promise((_resolve, reject) => { signal.addEventListener('abort', () => { reject(new Error('aborted')) }) }),
      none: () => undefined,
      later: async () => [1, 2]
    }, { sectionTimeoutMs: 200 })
    const res = await fetch(`${url}/v1/dashboard/snapshot`)
    expect(res.status).to.equal(200)
    const snapshot = await res.json() as any
    expect(Object.keys(snapshot).sort()).to.deep.equal(['at', 'errors', 'later', 'node', 'seq'])
    expect(snapshot).to.deep.include({ seq: 1, node: { peerId: 'p' }, later: [1, 2] })
    expect(snapshot.errors).to.deep.equal({ broken: 'the store is closed', slow: 'no answer within 200 ms' })
  })

  it('concurrent reads share one computation; a recent snapshot is reused', async () => {
    let calls = 0
    const url = await serve({ n: async () => ++calls }, { maxAgeMs: 60_000 })
    const all = await Promise.all([feed.snapshot(), feed.snapshot(), fetch(`${url}/v1/dashboard/snapshot`).then(async r => r.json() as any)])
    expect(calls).to.equal(1)
    expect(all.map(s => s.seq)).to.deep.equal([1, 1, 1])
    expect((await feed.snapshot()).seq).to.equal(1)
  })

  it('a stream gets the current snapshot at once, a changed one on kick(), a comment when nothing changed', async () => {
    let value = 1
    let calls = 0
    const url = await serve({ v: () => { calls++; return value } }, { intervalMs: 60_000, minIntervalMs: 0, keepaliveMs: 0, maxAgeMs: 0 })
    const { events } = await open(url)
    const first = await events.snapshot()
    expect(first.data.v).to.equal(1)

    // nothing changed: computed again, but only a comment is sent
    const before = calls
    feed.kick()
    await pollUntil(async () => calls, c => c > before, 10_000, 10)
    expect(await events.next()).to.equal(': nothing new')
    value = 2
    feed.kick()
    const second = await events.snapshot()
    expect(second.data.v).to.equal(2)
    // the unchanged snapshot in between was computed and not sent
    expect(second.id).to.be.at.least(first.id + 2)
    expect(feed.streams).to.equal(1)
  })

  it('without kick(), a changed snapshot comes at the interval', async () => {
    let value = 'a'
    const url = await serve({ v: () => value }, { intervalMs: 50, keepaliveMs: 60_000, maxAgeMs: 0 })
    const { events } = await open(url)
    expect((await events.snapshot()).data.v).to.equal('a')
    value = 'b'
    expect((await events.snapshot()).data.v).to.equal('b')
  })

  it('one stream past maxClients is answered 429; stop() ends every stream', async () => {
    const url = await serve({ v: () => 1 }, { maxClients: 2, keepaliveMs: 60_000 })
    const a = await open(url)
    const b = await open(url)
    await a.events.snapshot()
    await b.events.snapshot()
    const over = await fetch(`${url}/v1/dashboard/events`)
    expect(over.status).to.equal(429)
    expect((await over.json() as any).error).to.include({ type: 'requests', code: 'rate_limit_exceeded' })
    expect(feed.streams).to.equal(2)

    feed.stop()
    expect(await a.events.next()).to.equal(undefined)
    expect(await b.events.next()).to.equal(undefined)
    expect(feed.streams).to.equal(0)
    // the snapshot still answers
    expect((await fetch(`${url}/v1/dashboard/snapshot`)).status).to.equal(200)
  })
})
