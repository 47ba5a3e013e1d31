/**
 * A counting semaphore with AbortSignal support: `acquire()` resolves to a
 * release function once fewer than `limit` holders are active.
 */
export class Limiter {
  private readonly limit: number
  private active: number
  private readonly waiters: Array<() => void>

  constructor (limit: number) {
    if (!Number.isInteger(limit) || limit < 1) {
      throw new RangeError(`limit must be a positive integer, got ${limit}`)
    }
    this.limit = limit
    this.active = 0
    this.waiters = []
  }

  get size (): number {
    return this.active
  }

  async acquire (signal?: AbortSignal): Promise<() => void> {
    signal?.throwIfAborted()
    if (this.active < this.limit) {
      this.active++
      return this.releaser()
    }
    const { promise, resolve, reject } = Promise.withResolvers<void>()
    const wake = (): void => {
      signal?.removeEventListener('abort', onAbort)
      resolve()
    }
    const onAbort = (): void => {
      const i = this.waiters.indexOf(wake)
      if (i !== -1) {
        this.waiters.splice(i, 1)
      }
      reject(signal?.reason)
    }
    signal?.addEventListener('abort', onAbort, { once: true })
    this.waiters.push(wake)
    await promise
    // the slot was handed over by the releaser: `active` already counts it
    return this.releaser()
  }

  private releaser (): () => void {
    let released = false
    return () => {
      if (released) {
        return
      }
      released = true
      const next = this.waiters.shift()
      if (next != null) {
        next()
      } else {
        this.active--
      }
    }
  }
}
