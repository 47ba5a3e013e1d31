/**
 * `npm run demo:train` (scripts/demo-train.ts) as a user runs it, shortened
 * to a few steps: three real daemons on 127.0.0.1, Moby-Dick as a text
 * dataset, `train --via mesh --propose` through nodes 2 and 3, both
 * validators' attestations, the proposal accepted and the spans serving the
 * new version, text generated before and after. Its --json summary is
 * checked against the chain's rule, not against a time. Then Ctrl-C during
 * start-up: the daemons stop and the temp dir is removed.
 */
import { spawn } from 'node:child_process'
import { access, readFile, readdir } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { expect } from 'aegir/chai'
import { PARAMS_DEFAULTS } from '../../src/learning/params-defaults.ts'
import type { ChildProcess } from 'node:child_process'

const SCRIPT = fileURLToPath(new URL('../../scripts/demo-train.ts', import.meta.url))
/** the bound on one run of the script (it kills the run, it asserts nothing about speed) */
const RUN_BOUND_MS = 240_000

interface Run { child: ChildProcess, stdout: string, stderr: string, code: Promise<number | null> }

function run (args: string[]): Run {
  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (v != null && !k.startsWith('BLYD_')) {
      env[k] = v
    }
  }
  const child = spawn(process.execPath, [SCRIPT, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  const r: Run = { child, stdout: '', stderr: '', code: Promise.resolve(null) }
  child.stdout?.setEncoding('utf8').on('data', (s: string) => { r.stdout += s })
  child.stderr?.setEncoding('utf8').on('data', (s: string) => { r.stderr += s })
  const timer = setTimeout(() => { child.kill('SIGKILL') }, RUN_BOUND_MS)
  r.code = new Promise(resolve => {
    child.on('close', code => {
      clearTimeout(timer)
      resolve(code)
    })
  })
  return r
}

/** The temp dir the script announced (its checkpoint's folder). */
function tempDirOf (stdout: string): string {
  const m = stdout.match(/ to (\/\S+)\/checkpoint\n/)
  expect(m, stdout).to.not.equal(null)
  return m![1]
}

async function gone (path: string): Promise<boolean> {
  return access(path).then(() => false, () => true)
}

/** Processes whose command line names `path` (Linux /proc): a daemon or a `blyd` command left running. */
async function processesNaming (path: string): Promise<string[]> {
  const found: string[] = []
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) {
      continue
    }
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')
    if (cmdline.includes(path)) {
      found.push(`${pid}: ${cmdline.replace(/\0/g, ' ')}`)
    }
  }
  return found
}

describe('npm run demo:train (scripts/demo-train.ts)', function () {
  this.timeout(RUN_BOUND_MS + 30_000)

  it('a short run: the eval loss falls, both validators accept, the proposal is accepted, the mesh generates with the new version, the temp dir is removed', async () => {
    const steps = 12
    const r = run(['--steps', String(steps), '--json'])
    const code = await r.code
    expect(code, `${r.stderr}\n${r.stdout}`).to.equal(0)
    const summary = JSON.parse(r.stdout.trim().split('\n').pop() as string)
    expect(summary).to.include({ steps, tokens: steps * 8 * 64, status: 'accepted', reason: 'ok' })
    expect(summary.evalLoss.after).to.be.below(summary.evalLoss.before)
    expect(summary.tokensPerSecond).to.be.above(0)
    // two validators (node1, the importer, and node3, added), each measured 64 windows and found the rule's gain
    expect(summary.attestations.map((a: any) => a.validator).sort()).to.deep.equal(['node1', 'node3'])
    for (const a of summary.attestations) {
      expect(a).to.include({ verdict: 'accept', reason: 'ok', windows: PARAMS_DEFAULTS.sampleWindows.value })
      expect(a.gain).to.be.at.least(PARAMS_DEFAULTS.minGainPpm.value / 1e6)
      expect(a.candidateLoss).to.be.below(a.baseLoss)
    }
    expect(summary.versionAfter).to.match(/^[0-9a-f]{64}$/)
    expect(summary.versionAfter).to.not.equal(summary.versionBefore)
    expect(summary.textAfter).to.not.equal(summary.textBefore)
    expect(r.stdout).to.include('before training (version ')
    expect(r.stdout).to.include('after training (version ')
    expect(await gone(tempDirOf(r.stdout)), 'the temp dir is removed').to.equal(true)
    expect(await processesNaming(tempDirOf(r.stdout))).to.deep.equal([])
  })

  it('Ctrl-C while the daemons start: exit 130, no daemon or blyd command of it left running, the temp dir removed', async () => {
    const r = run(['--steps', '1'])
    const started = await new Promise<boolean>(resolve => {
      const check = (): void => {
        if (r.stdout.includes('node1 started')) {
          r.child.stdout?.off('data', check)
          resolve(true)
        }
      }
      r.child.stdout?.on('data', check)
      void r.code.then(() => { resolve(false) })
    })
    expect(started, r.stderr).to.equal(true)
    r.child.kill('SIGINT')
    expect(await r.code).to.equal(130)
    expect(r.stdout).to.include('SIGINT: stopping the daemons')
    // nothing it started is left: no daemon, no `blyd` command that could write into the removed dir
    expect(await processesNaming(tempDirOf(r.stdout))).to.deep.equal([])
    expect(await gone(tempDirOf(r.stdout)), 'the temp dir is removed').to.equal(true)
  })
})
