/**
 * A command in a real pseudo-terminal: a detached tmux session on its own
 * tmux server (a private socket name, so no user's or other test's tmux is
 * touched), driven by send-keys and read by capture-pane. The command
 * runs under `sh -c`, which prints its exit status on the pane when it exits
 * (tmux's own pane_dead_status is not always set when a process exits as it
 * closes the terminal), and the pane stays after (remain-on-exit) so its
 * last output can be read; kill() ends the server.
 */
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { promisify } from 'node:util'

const run = promisify(execFile)

export class TmuxPane {
  private readonly socket: string
  private readonly env: Record<string, string>
  private readonly target = 'pty'

  private constructor (env: Record<string, string>) {
    this.socket = `blyd-test-${randomBytes(6).toString('hex')}`
    this.env = env
  }

  /** `argv` (no shell) in a new detached session of `width` x `height`. */
  static async start (argv: string[], env: Record<string, string>, width = 160, height = 50): Promise<TmuxPane> {
    const pane = new TmuxPane(env)
    // one tmux invocation: the option is set before the command can exit; -f /dev/null: no user config
    await pane.tmux('-f', '/dev/null', 'start-server', ';', 'set-option', '-g', 'remain-on-exit', 'on', ';',
      'new-session', '-d', '-s', pane.target, '-x', String(width), '-y', String(height),
      'sh', '-c', '"$@"; echo "exit-status=$?"', 'sh', ...argv)
    return pane
  }

  private async tmux (...args: string[]): Promise<string> {
    const { stdout } = await run('tmux', ['-L', this.socket, ...args], { env: this.env })
    return stdout
  }

  /** Type `text` then Enter. */
  async line (text: string): Promise<void> {
    await this.tmux('send-keys', '-t', this.target, '-l', text)
    await this.tmux('send-keys', '-t', this.target, 'Enter')
  }

  /** Send tmux key names (e.g. C-d). */
  async keys (...names: string[]): Promise<void> {
    await this.tmux('send-keys', '-t', this.target, ...names)
  }

  /** The whole pane with its scrollback, wrapped lines joined. */
  async text (): Promise<string> {
    return this.tmux('capture-pane', '-p', '-J', '-S', '-', '-t', this.target)
  }

  /** Wait until the command exits; its exit status. */
  async exited (timeoutMs = 30_000): Promise<number> {
    const text = await this.waitFor('the exit', t => /exit-status=\d+/.test(t), timeoutMs)
    return Number(/exit-status=(\d+)/.exec(text)?.[1])
  }

  /** Poll the pane until `done(text)` holds; throws with the pane's text after `timeoutMs`. */
  async waitFor (what: string, done: (text: string) => boolean, timeoutMs = 30_000): Promise<string> {
    const deadline = Date.now() + timeoutMs
    while (true) {
      const text = await this.text()
      if (done(text)) {
        return text
      }
      if (Date.now() > deadline) {
        throw new Error(`pane never showed ${what} within ${timeoutMs} ms:\n${text}`)
      }
      await sleep(100)
    }
  }

  async kill (): Promise<void> {
    await this.tmux('kill-server').catch(() => {})
  }
}
