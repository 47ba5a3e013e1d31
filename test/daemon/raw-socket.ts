/** A raw line-oriented socket for sending malformed JSON-RPC to a server. */
import { createConnection } from 'node:net'
import type { Socket } from 'node:net'

export class RawSocket {
  readonly socket: Socket
  private buffer: string
  private readonly messages: any[]
  private waiters: Array<() => void>

  private constructor (socket: Socket) {
    this.socket = socket
    this.buffer = ''
    this.messages = []
    this.waiters = []
    socket.setEncoding('utf8')
    socket.on('data', (s: string) => {
      this.buffer += s
      let nl
      while ((nl = this.buffer.indexOf('\n')) !== -1) {
        this.messages.push(JSON.parse(this.buffer.slice(0, nl)))
        this.buffer = this.buffer.slice(nl + 1)
      }
      this.wake()
    })
    socket.on('close', () => { this.wake() })
  }

  static async connect (path: string): Promise<RawSocket> {
    const socket = createConnection(path)
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve)
      socket.once('error', reject)
    })
    return new RawSocket(socket)
  }

  private wake (): void {
    const waiters = this.waiters
    this.waiters = []
    for (const w of waiters) {
      w()
    }
  }

  /** write, waiting for drain */
  async write (data: string | Buffer): Promise<void> {
    if (!this.socket.write(data)) {
      await new Promise<void>(resolve => this.socket.once('drain', () => { resolve() }))
    }
  }

  /** the next message the server sent */
  async next (timeoutMs = 20_000): Promise<any> {
    const deadline = Date.now() + timeoutMs
    while (this.messages.length === 0) {
      if (this.socket.destroyed || this.socket.readableEnded) {
        throw new Error('socket closed before a message arrived')
      }
      if (Date.now() > deadline) {
        throw new Error('no message from the server')
      }
      await new Promise<void>(resolve => {
        const t = setTimeout(resolve, 100)
        this.waiters.push(() => { clearTimeout(t); resolve() })
      })
    }
    return this.messages.shift()
  }

  /** send one line, return the next message */
  async call (line: string): Promise<any> {
    await this.write(line + '\n')
    return this.next()
  }

  close (): void {
    this.socket.destroy()
  }
}
