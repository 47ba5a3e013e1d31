import { setTimeout as sleep } from 'node:timers/promises'

/**
 * Poll `check` until it returns something other than undefined/false, and
 * return that. A check that throws counts as not yet; on timeout the last
 * error is part of the message.
 */
export async function waitFor<T> (what: string, check: () => Promise<T | undefined | false>, timeoutMs = 30_000, pollMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  while (true) {
    try {
      const value = await check()
      if (value !== undefined && value !== false) {
        return value
      }
    } catch (err) {
      last = err
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last != null ? ` (last error: ${(last as Error).message})` : ''}`)
    }
    await sleep(pollMs)
  }
}
