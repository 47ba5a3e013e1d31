/**
 * A server-sent event stream on one HTTP response (text/event-stream): the
 * OpenAI API's `stream: true` answers, and any live page's updates. Each
 * event is `data: ...` lines and a blank line; a string is sent as is (one
 * `data:` line per line of it), anything else as JSON. send() resolves once
 * the socket took the event (it waits for 'drain'), so a fast producer
 * follows a slow reader; after the client went away it resolves at once and
 * sends nothing (`closed` says so).
 */
import type { ServerResponse } from 'node:http'

export interface SseEventOptions {
  /** the `event:` field (a named event) */
  event?: string
  /** the `id:` field */
  id?: string
}

export class SseStream {
  private readonly res: ServerResponse
  private startedValue: boolean

  constructor (res: ServerResponse) {
    this.res = res
    this.startedValue = false
  }

  /** the headers went out */
  get started (): boolean {
    return this.startedValue
  }

  /** the client went away, or end() was called */
  get closed (): boolean {
    return this.res.destroyed || this.res.writableEnded
  }

  /** Send the status and headers (status 200); idempotent. */
  start (headers: Record<string, string> = {}): void {
    if (this.startedValue) {
      return
    }
    this.startedValue = true
    // set one by one (not as writeHead's object), so getHeader() still reads them: the listener's error path does
    for (const [name, value] of Object.entries({ 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', 'x-accel-buffering': 'no', ...headers })) {
      this.res.setHeader(name, value)
    }
    this.res.writeHead(200)
    this.res.flushHeaders()
  }

  /** One event; starts the stream if needed. */
  async send (data: unknown, options: SseEventOptions = {}): Promise<void> {
    const text = typeof data === 'string' ? data : JSON.stringify(data)
    let event = ''
    if (options.event != null) {
      event += `event: ${options.event.replace(/[\r\n]/g, '')}\n`
    }
    if (options.id != null) {
      event += `id: ${options.id.replace(/[\r\n]/g, '')}\n`
    }
    for (const line of text.split(/\r\n|\r|\n/)) {
      event += `data: ${line}\n`
    }
    await this.write(event + '\n')
  }

  /** A comment line (`: text`), ignored by clients: keeps idle proxies from closing the stream. */
  async comment (text: string): Promise<void> {
    await this.write(`: ${text.replace(/[\r\n]/g, ' ')}\n\n`)
  }

  /** End the response (after the last event). */
  end (): void {
    if (!this.closed) {
      this.start()
      this.res.end()
    }
  }

  private async write (text: string): Promise<void> {
    this.start()
    if (this.closed) {
      return
    }
    if (!this.res.write(text)) {
      await new Promise<void>(resolve => {
        const done = (): void => {
          this.res.off('drain', done)
          this.res.off('close', done)
          resolve()
        }
        this.res.on('drain', done)
        this.res.on('close', done)
      })
    }
  }
}
