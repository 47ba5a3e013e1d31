/**
 * Helpers of the HTTP API tests: a daemon with its HTTP listener on a free
 * port of 127.0.0.1 (its URL read from `status`), the official `openai`
 * client pointed at it, the demo checkpoint (random weights, the real Qwen3
 * tokenizer), and a strict reader of Prometheus' text format.
 */
import { join } from 'node:path'
import OpenAI from 'openai'
import { writeDemoCheckpoint } from '../../src/model/demo-checkpoint.ts'
import { ipcRequest, startDaemon } from '../daemon/helpers.ts'
import type { MeshNode } from '../mesh/helpers.ts'

export interface HttpNode extends MeshNode {
  /** http://127.0.0.1:PORT */
  url: string
}

/**
 * A daemon with `--http-listen 127.0.0.1:0`, and the URL it bound: as
 * startMeshNode (no worker threads), on the wasm backend (the demo model's
 * 151936-token head is several times faster there than on cpu).
 */
export async function startHttpNode (root: string, name: string, args: string[] = [], env: Record<string, string> = {}): Promise<HttpNode> {
  const dir = join(root, name)
  const daemon = await startDaemon(dir, ['--backend', 'wasm', '--workers', '0', '--http-listen', '127.0.0.1:0', ...args], env)
  const status = await ipcRequest(daemon.socketPath, 'status')
  const node = { name, dir, daemon, peerId: status.peerId, addr: status.addrs[0] }
  if (status.http?.url == null) {
    throw new Error(`the daemon reports no HTTP listener: ${JSON.stringify(status.http)}`)
  }
  return { ...node, url: status.http.url }
}

/** The official client on `url`/v1: no retries (a 429 or 5xx must reach the test), a bounded wait. */
export function openaiClient (url: string, apiKey: string): OpenAI {
  return new OpenAI({ baseURL: `${url}/v1`, apiKey, maxRetries: 0, timeout: 60_000 })
}

/** The demo checkpoint (what `blyd model init-demo DIR --seed 7` writes: 2 layers, random weights, the real Qwen3 tokenizer) in root/demo-ck. */
export async function writeDemo (root: string): Promise<string> {
  const dir = join(root, 'demo-ck')
  await writeDemoCheckpoint(dir, { seed: 7 })
  return dir
}

/** Import the checkpoint in `dir` through the daemon (IPC model.import); its model id. */
export async function importModel (node: HttpNode | MeshNode, dir: string, name?: string): Promise<string> {
  return (await ipcRequest(node.daemon.socketPath, 'model.import', { dir, ...(name != null ? { name } : {}) })).modelId
}

/** One sample of a scrape: the series' name, its labels, its value. */
export interface PromSample {
  name: string
  labels: Record<string, string>
  value: number
}

const METRIC_NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*'
const LABEL = '[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\\\\n]|\\\\[\\\\"n])*"'
const VALUE = '(?:[+-]?(?:\\d+(?:\\.\\d*)?|\\.\\d+)(?:[eE][+-]?\\d+)?|NaN|[+-]Inf)'
const SAMPLE = new RegExp(`^(${METRIC_NAME})(?:\\{((?:${LABEL})(?:,${LABEL})*,?)?\\})? (${VALUE})(?: -?\\d+)?$`)
const SPECIAL_VALUES: Record<string, number> = { '+Inf': Infinity, '-Inf': -Infinity, NaN }
const HELP = new RegExp(`^# HELP (${METRIC_NAME}) .*$`)
const TYPE = new RegExp(`^# TYPE (${METRIC_NAME}) (counter|gauge|histogram|summary|untyped)$`)

/**
 * Every sample of a Prometheus text exposition. Throws, naming the line, on
 * a line that is none of a HELP, a TYPE, a sample or blank, and on a sample
 * whose family (name, or name less _bucket/_sum/_count for a histogram) has
 * no TYPE line before it.
 */
export function parsePrometheus (text: string): { samples: PromSample[], types: Map<string, string> } {
  const types = new Map<string, string>()
  const samples: PromSample[] = []
  for (const [i, line] of text.split('\n').entries()) {
    if (line === '' || HELP.test(line)) {
      continue
    }
    const type = TYPE.exec(line)
    if (type != null) {
      types.set(type[1], type[2])
      continue
    }
    const m = SAMPLE.exec(line)
    if (m == null) {
      throw new Error(`line ${i + 1} is not Prometheus text: ${JSON.stringify(line)}`)
    }
    const name = m[1]
    const family = types.has(name) ? name : name.replace(/_(bucket|sum|count)$/, '')
    if (!types.has(family)) {
      throw new Error(`line ${i + 1}: sample ${name} has no # TYPE line before it`)
    }
    const labels: Record<string, string> = {}
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[l[1]] = l[2].replace(/\\n/g, '\n').replace(/\\(.)/g, '$1')
    }
    samples.push({ name, labels, value: SPECIAL_VALUES[m[3]] ?? Number(m[3]) })
  }
  return { samples, types }
}

/** The sum of the samples named `name` whose labels include `labels` (0 when none). */
export function sampleValue (samples: PromSample[], name: string, labels: Record<string, string> = {}): number {
  return samples
    .filter(s => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((sum, s) => sum + s.value, 0)
}

/** GET /metrics, checked as Prometheus text. */
export async function scrape (url: string, apiKey?: string): Promise<{ samples: PromSample[], types: Map<string, string>, contentType: string | null }> {
  const res = await fetch(`${url}/metrics`, { headers: apiKey != null ? { authorization: `Bearer ${apiKey}` } : {} })
  if (res.status !== 200) {
    throw new Error(`GET /metrics answered ${res.status}: ${await res.text()}`)
  }
  return { ...parsePrometheus(await res.text()), contentType: res.headers.get('content-type') }
}
