/**
 * Daemon configuration. Sources, weakest first: defaults (constants.ts),
 * `DIR/config.json`, `BLYD_*` environment variables, command-line flags.
 * The data dir itself comes from `--data-dir`, `BLYD_DATA_DIR` or `~/.blyd`.
 *
 * config.json keys (all optional):
 * - listen (string[]): libp2p listen multiaddrs
 * - bootstrap (string[]): bootstrap peer multiaddrs (with /p2p/<peerId>)
 * - announce (string[]): multiaddrs to announce instead of the listen addresses
 * - model (string | null): model manifest block id (hex) to serve
 * - layers (string): layer range "START-END" (0-based, END exclusive) or "auto"
 * - full (boolean): fetch every block's payload (default: manifests, notes,
 * every model's embedding and head, and the layers this node serves)
 * - recordTtlMs (number): lifetime of this node's signed span record in the DHT
 * - stepTimeoutMs (number): generate through the mesh: the ceiling of one
 * stage's step deadline (per 32 positions); the deadline itself is 6x what
 * the stage's recent steps took (its announced speed before its first),
 * at least stepDeadlineFloorMs; a stage past it is replaced (failover)
 * - stepDeadlineFloorMs (number): no step deadline below this (default 1 s;
 * as high as stepTimeoutMs = the fixed deadline of old)
 * - maxSessions (number 1..4096): generation sessions the served stage takes at
 * once; one more is answered BUSY at once (the client routes elsewhere or waits)
 * - maxCachePositions (number): KV-cache positions the served stage reserves over
 * all its sessions (each session reserves the length it asks for); the memory bound
 * - memoryBytes (number | null): bytes this node can devote to model layers;
 * `--layers auto` and `blyd plan` plan with it (null: os.freemem() at the time)
 * - replicas (number 1..64): holders wanted per layer when `--layers auto`
 * plans the swarm
 * - replanMs (number 0..86400000): `--layers auto` re-plans this often and moves
 * to another span when the swarm gains clearly and no layer loses its last
 * holder (default 30 s); 0 = plan once at join
 * - receiptFlushMs (number 1..86400000): the longest a receipt this node's stage
 * co-signed waits before it is published in a Receipt block (docs/ledger.md)
 * - directChannel ("on" | "off"): stage traffic to this node's served span over
 * a direct TLS 1.3-PSK channel offered over the libp2p connection (clients
 * fall back to the libp2p stream when it fails); off = libp2p streams only
 * - directChannelHost (string | null): interface the direct channel binds
 * (null: the host of the first ip4/ip6 listen address, else 0.0.0.0)
 * - directChannelPort (number 0..65535): its TCP port (0: ephemeral)
 * - backend (string): auto | tensorflow | tfjs-node-gpu | tfjs-node | wasm | cpu
 * - workers ("auto" | number 0..64): tensor-parallel worker threads per loaded
 * model (local logits/generate and the served span); auto = every core for
 * models with layers wide enough to pay, else 0 (the main thread)
 * - ipcSocket (string): IPC socket path (relative paths are inside the data dir)
 * - ipcMaxLineBytes (number): longest IPC request line accepted
 * - ipcMaxBufferedLineBytes (number | null): bytes of unfinished IPC request
 * lines held over all connections; a connection whose line would pass it is
 * answered with an error and closed (null: 2 x ipcMaxLineBytes; at least ipcMaxLineBytes)
 * - ipcMaxConnections (number 1..65536): IPC connections held at once; one
 * more is answered with an error line and closed
 * - ipcMaxBatch (number 1..100000): calls one JSON-RPC batch may hold
 * - logLevel (string): error | warn | info | debug | trace (daemon/logger.ts)
 * - httpListen (string | null): serve the OpenAI-compatible HTTP API and
 * /metrics on HOST:PORT, [IPV6]:PORT or PORT (127.0.0.1); null = off
 * - httpApiKey (string | null): bearer key the HTTP API asks for (null: none;
 * prefer config.json or BLYD_HTTP_API_KEY to the flag, which `ps` shows)
 * - httpMaxBodyBytes (number): longest HTTP request body read (413 past it)
 * - httpMaxConcurrent (number 1..4096): generations the HTTP API runs at
 * once; one more is answered 429
 */
import { readFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { isAbsolute, join, resolve } from 'node:path'
import { DEFAULT_RECEIPT_FLUSH_MS } from '../learning/constants.ts'
import { SPAN_SERVER_DEFAULTS } from '../mesh/constants.ts'
import { MAX_WORKERS, parseWorkersSetting } from '../model/workers.ts'
import { PIPELINE_CLIENT_DEFAULTS, STAGE_SERVER_DEFAULTS } from '../pipeline/constants.ts'
import {
  BACKENDS, CONFIG_FILE_NAME, DEFAULT_BACKEND, DEFAULT_BOOTSTRAP, DEFAULT_DATA_DIR_NAME,
  DEFAULT_DIRECT_CHANNEL, DEFAULT_DIRECT_CHANNEL_PORT, DEFAULT_IPC_MAX_BATCH, DEFAULT_IPC_MAX_CONNECTIONS, DEFAULT_IPC_MAX_LINE_BYTES, IPC_BUFFERED_LINES_PER_MAX_LINE, DIRECT_CHANNEL_MODES, DEFAULT_LISTEN, DEFAULT_LOG_LEVEL, DEFAULT_RECORD_TTL_MS, DEFAULT_STEP_TIMEOUT_MS, DEFAULT_WORKERS, LOG_LEVELS,
  MAX_RECORD_TTL_MS, MAX_SOCKET_PATH_BYTES, MAX_STAGE_CACHE_POSITIONS, MAX_STAGE_SESSIONS, MAX_STEP_TIMEOUT_MS, MIN_RECORD_TTL_MS, MIN_STEP_TIMEOUT_MS, SOCKET_FILE_NAME
} from './constants.ts'
import { ConfigError } from './errors.ts'
import { HTTP_API_DEFAULTS, MAX_HTTP_BODY_BYTES, MAX_HTTP_CONCURRENT, MIN_HTTP_BODY_BYTES } from './http/constants.ts'
import { parseHttpListen } from './http/listen-address.ts'
import type { WorkersSetting } from '../model/workers.ts'

export type Backend = typeof BACKENDS[number]
export type DirectChannelMode = typeof DIRECT_CHANNEL_MODES[number]
export type LogLevel = typeof LOG_LEVELS[number]

export interface BlydConfig {
  /** absolute path of the data dir */
  dataDir: string
  listen: string[]
  bootstrap: string[]
  announce: string[]
  model: string | null
  layers: string
  full: boolean
  recordTtlMs: number
  stepTimeoutMs: number
  /** the least step deadline (the deadline adapts to each stage, up to stepTimeoutMs) */
  stepDeadlineFloorMs: number
  /** sessions the served stage takes at once */
  maxSessions: number
  /** KV-cache positions the served stage reserves over all sessions */
  maxCachePositions: number
  /** bytes this node can devote to layers (null: os.freemem()) */
  memoryBytes: number | null
  /** holders wanted per layer (--layers auto, blyd plan) */
  replicas: number
  /** --layers auto: re-plan period in ms (0: never) */
  replanMs: number
  /** the longest a co-signed receipt waits to be published (ms) */
  receiptFlushMs: number
  /** stage traffic over a direct TLS channel ('on') or libp2p streams only ('off') */
  directChannel: DirectChannelMode
  /** interface the direct channel binds (null: the listen host, else 0.0.0.0) */
  directChannelHost: string | null
  /** the direct channel's TCP port (0: ephemeral) */
  directChannelPort: number
  backend: Backend
  /** tensor-parallel worker threads per loaded model: 'auto' or a count */
  workers: WorkersSetting
  /** absolute path of the IPC socket */
  ipcSocket: string
  ipcMaxLineBytes: number
  /** bytes of unfinished IPC request lines over all connections (resolved: never null) */
  ipcMaxBufferedLineBytes: number
  /** IPC connections held at once */
  ipcMaxConnections: number
  /** calls one JSON-RPC batch may hold */
  ipcMaxBatch: number
  logLevel: LogLevel
  /** HOST:PORT of the HTTP API (null: off) */
  httpListen: string | null
  /** bearer key of the HTTP API (null: none) */
  httpApiKey: string | null
  httpMaxBodyBytes: number
  httpMaxConcurrent: number
}

/** The keys config.json, env and flags may set (dataDir is resolved separately). */
export type ConfigKey = Exclude<keyof BlydConfig, 'dataDir'>

interface KeySpec {
  env: string
  flag: string
  describe: string
  /** 'list' values come from env/flags as comma-separated strings; 'boolean' ones as true/false/1/0 */
  kind: 'string' | 'list' | 'number' | 'boolean'
  parse(value: unknown, where: string): unknown
}

function fail (where: string, message: string): never {
  throw new ConfigError(`${where}: ${message}`)
}

function show (value: unknown): string {
  return JSON.stringify(value) ?? String(value)
}

function stringList (check: (s: string) => boolean, what: string) {
  return (value: unknown, where: string): string[] => {
    if (!Array.isArray(value)) {
      fail(where, `must be a list of ${what} (got ${show(value)})`)
    }
    for (const item of value) {
      if (typeof item !== 'string' || !check(item)) {
        fail(where, `must be a list of ${what} (bad entry ${show(item)})`)
      }
    }
    return value
  }
}

function oneOf<T extends string> (choices: readonly T[]) {
  return (value: unknown, where: string): T => {
    if (typeof value !== 'string' || !(choices as readonly string[]).includes(value)) {
      fail(where, `must be one of ${choices.join(', ')} (got ${show(value)})`)
    }
    return value as T
  }
}

/** A parser accepting integers from `min` to `max` inclusive. */
function integerIn (min: number, max: number) {
  return (value: unknown, where: string): number => {
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
      fail(where, `must be an integer from ${min} to ${max} (got ${show(value)})`)
    }
    return value
  }
}

/** integerIn(min, max), or null (the key's default is computed at start) */
function nullableIntegerIn (min: number, max: number) {
  const integer = integerIn(min, max)
  return (value: unknown, where: string): number | null => {
    if (value === null) {
      return null
    }
    try {
      return integer(value, where)
    } catch {
      fail(where, `must be an integer from ${min} to ${max}, or null (got ${show(value)})`)
    }
  }
}

const isMultiaddr = (s: string): boolean => /^\/[a-z0-9]+\/\S*$/.test(s)

/** The documented keys. Adding a key here adds its env var and its `blyd start` flag. */
export const CONFIG_SPEC: Record<ConfigKey, KeySpec> = {
  listen: {
    env: 'BLYD_LISTEN',
    flag: 'listen',
    describe: 'libp2p listen multiaddrs (comma-separated)',
    kind: 'list',
    parse: stringList(isMultiaddr, 'multiaddrs like /ip4/0.0.0.0/tcp/4801')
  },
  bootstrap: {
    env: 'BLYD_BOOTSTRAP',
    flag: 'bootstrap',
    describe: 'bootstrap peers, multiaddrs ending in /p2p/<peerId> (comma-separated)',
    kind: 'list',
    parse: stringList(s => isMultiaddr(s) && s.includes('/p2p/'), 'multiaddrs ending in /p2p/<peerId>')
  },
  announce: {
    env: 'BLYD_ANNOUNCE',
    flag: 'announce',
    describe: 'multiaddrs to announce instead of the listen addresses (comma-separated)',
    kind: 'list',
    parse: stringList(isMultiaddr, 'multiaddrs like /ip4/203.0.113.5/tcp/4801')
  },
  model: {
    env: 'BLYD_MODEL',
    flag: 'model',
    describe: 'model manifest block id (hex) to serve',
    kind: 'string',
    parse: (value, where) => {
      if (value === null) {
        return null
      }
      if (typeof value !== 'string' || !/^[0-9a-f]{64}$/.test(value)) {
        fail(where, `must be a 64-character lowercase hex block id (got ${show(value)})`)
      }
      return value
    }
  },
  layers: {
    env: 'BLYD_LAYERS',
    flag: 'layers',
    describe: 'decoder layers to serve: START-END (0-based, END exclusive: 0-2 = layers 0 and 1) or "auto"',
    kind: 'string',
    parse: (value, where) => {
      if (value === 'auto') {
        return value
      }
      const m = typeof value === 'string' ? /^(\d{1,6})-(\d{1,6})$/.exec(value) : null
      if (m == null || Number(m[1]) >= Number(m[2])) {
        fail(where, `must be "auto" or START-END with START < END (got ${show(value)})`)
      }
      return value
    }
  },
  full: {
    env: 'BLYD_FULL',
    flag: 'full',
    describe: 'fetch the payload of every block (default: manifests, notes, embeddings, heads and the served layers)',
    kind: 'boolean',
    parse: (value, where) => {
      if (typeof value !== 'boolean') {
        fail(where, `must be true or false (got ${show(value)})`)
      }
      return value
    }
  },
  recordTtlMs: {
    env: 'BLYD_RECORD_TTL_MS',
    flag: 'record-ttl-ms',
    describe: 'lifetime of this node\'s span record in the DHT, in ms (refreshed every third of it)',
    kind: 'number',
    parse: integerIn(MIN_RECORD_TTL_MS, MAX_RECORD_TTL_MS)
  },
  stepTimeoutMs: {
    env: 'BLYD_STEP_TIMEOUT_MS',
    flag: 'step-timeout-ms',
    describe: 'generate through the mesh: the most ms a stage may take to answer one step (per 32 positions) before it is replaced; the deadline adapts to the stage below it',
    kind: 'number',
    parse: integerIn(MIN_STEP_TIMEOUT_MS, MAX_STEP_TIMEOUT_MS)
  },
  stepDeadlineFloorMs: {
    env: 'BLYD_STEP_DEADLINE_FLOOR_MS',
    flag: 'step-deadline-floor-ms',
    describe: 'generate through the mesh: the least step deadline in ms (the deadline is 6x what the stage took so far, up to --step-timeout-ms)',
    kind: 'number',
    parse: integerIn(MIN_STEP_TIMEOUT_MS, MAX_STEP_TIMEOUT_MS)
  },
  maxSessions: {
    env: 'BLYD_MAX_SESSIONS',
    flag: 'max-sessions',
    describe: 'generation sessions the served stage takes at once; one more is answered BUSY',
    kind: 'number',
    parse: integerIn(1, MAX_STAGE_SESSIONS)
  },
  maxCachePositions: {
    env: 'BLYD_MAX_CACHE_POSITIONS',
    flag: 'max-cache-positions',
    describe: 'KV-cache positions the served stage reserves over all its sessions (the cache memory bound)',
    kind: 'number',
    parse: integerIn(1, MAX_STAGE_CACHE_POSITIONS)
  },
  memoryBytes: {
    env: 'BLYD_MEMORY_BYTES',
    flag: 'memory-bytes',
    describe: 'bytes this node can devote to model layers, for --layers auto and blyd plan (default: free memory)',
    kind: 'number',
    parse: nullableIntegerIn(1, Number.MAX_SAFE_INTEGER)
  },
  replicas: {
    env: 'BLYD_REPLICAS',
    flag: 'replicas',
    describe: 'holders wanted per layer when --layers auto plans the swarm',
    kind: 'number',
    parse: integerIn(1, 64)
  },
  replanMs: {
    env: 'BLYD_REPLAN_MS',
    flag: 'replan-ms',
    describe: '--layers auto: re-plan this often (ms) and move when the swarm gains clearly; 0 = never',
    kind: 'number',
    parse: integerIn(0, 86_400_000)
  },
  receiptFlushMs: {
    env: 'BLYD_RECEIPT_FLUSH_MS',
    flag: 'receipt-flush-ms',
    describe: 'the longest a receipt this node\'s stage co-signed waits before it is published in a Receipt block (ms)',
    kind: 'number',
    parse: integerIn(1, 86_400_000)
  },
  directChannel: {
    env: 'BLYD_DIRECT_CHANNEL',
    flag: 'direct-channel',
    describe: 'serve stage traffic over a direct TLS channel as well as libp2p streams: on | off',
    kind: 'string',
    parse: oneOf(DIRECT_CHANNEL_MODES)
  },
  directChannelHost: {
    env: 'BLYD_DIRECT_CHANNEL_HOST',
    flag: 'direct-channel-host',
    describe: 'interface the direct channel binds (default: the listen host, else 0.0.0.0)',
    kind: 'string',
    parse: (value, where) => {
      if (value !== null && (typeof value !== 'string' || !/^[0-9A-Za-z.:-]{1,253}$/.test(value))) {
        fail(where, `must be an IP address or host name, or null (got ${show(value)})`)
      }
      return value
    }
  },
  directChannelPort: {
    env: 'BLYD_DIRECT_CHANNEL_PORT',
    flag: 'direct-channel-port',
    describe: 'TCP port of the direct channel (0: an ephemeral port)',
    kind: 'number',
    parse: integerIn(0, 65535)
  },
  backend: {
    env: 'BLYD_BACKEND',
    flag: 'backend',
    describe: `compute backend: ${BACKENDS.join(' | ')}`,
    kind: 'string',
    parse: oneOf(BACKENDS)
  },
  workers: {
    env: 'BLYD_WORKERS',
    flag: 'workers',
    describe: `tensor-parallel worker threads per model: auto (every core when the layers are wide enough to pay, else 0) or 0..${MAX_WORKERS} (0 = main thread)`,
    kind: 'string',
    parse: (value, where) => parseWorkersSetting(value) ?? fail(where, `must be "auto" or an integer from 0 to ${MAX_WORKERS} (got ${show(value)})`)
  },
  ipcSocket: {
    env: 'BLYD_IPC_SOCKET',
    flag: 'ipc-socket',
    describe: 'IPC socket path (relative paths are inside the data dir)',
    kind: 'string',
    parse: (value, where) => {
      if (typeof value !== 'string' || value === '') {
        fail(where, `must be a path (got ${show(value)})`)
      }
      return value
    }
  },
  ipcMaxLineBytes: {
    env: 'BLYD_IPC_MAX_LINE_BYTES',
    flag: 'ipc-max-line-bytes',
    describe: 'longest IPC request line accepted, in bytes',
    kind: 'number',
    parse: integerIn(1024, 2 ** 30)
  },
  ipcMaxBufferedLineBytes: {
    env: 'BLYD_IPC_MAX_BUFFERED_LINE_BYTES',
    flag: 'ipc-max-buffered-line-bytes',
    describe: `bytes of unfinished IPC request lines held over all connections (default ${IPC_BUFFERED_LINES_PER_MAX_LINE} x ipcMaxLineBytes)`,
    kind: 'number',
    parse: nullableIntegerIn(1024, 2 ** 36)
  },
  ipcMaxConnections: {
    env: 'BLYD_IPC_MAX_CONNECTIONS',
    flag: 'ipc-max-connections',
    describe: 'IPC connections held at once; one more is answered with an error and closed',
    kind: 'number',
    parse: integerIn(1, 65_536)
  },
  ipcMaxBatch: {
    env: 'BLYD_IPC_MAX_BATCH',
    flag: 'ipc-max-batch',
    describe: 'calls one JSON-RPC batch may hold over IPC; a longer batch is answered with an error',
    kind: 'number',
    parse: integerIn(1, 100_000)
  },
  logLevel: {
    env: 'BLYD_LOG_LEVEL',
    flag: 'log-level',
    describe: `log level: ${LOG_LEVELS.join(' | ')}`,
    kind: 'string',
    parse: oneOf(LOG_LEVELS)
  },
  httpListen: {
    env: 'BLYD_HTTP_LISTEN',
    flag: 'http-listen',
    describe: `serve the OpenAI-compatible HTTP API and /metrics on HOST:PORT (a PORT alone: ${HTTP_API_DEFAULTS.host}); off by default`,
    kind: 'string',
    parse: (value, where) => {
      if (value !== null && (typeof value !== 'string' || parseHttpListen(value) == null)) {
        fail(where, `must be HOST:PORT, [IPV6]:PORT or PORT, or null (got ${show(value)})`)
      }
      return value
    }
  },
  httpApiKey: {
    env: 'BLYD_HTTP_API_KEY',
    flag: 'http-api-key',
    describe: 'bearer key the HTTP API asks for (Authorization: Bearer KEY); prefer BLYD_HTTP_API_KEY or config.json, a flag shows in ps',
    kind: 'string',
    parse: (value, where) => {
      if (value !== null && (typeof value !== 'string' || !/^[\x21-\x7e]{1,4096}$/.test(value))) {
        fail(where, 'must be 1 to 4096 printable ASCII characters without spaces, or null')
      }
      return value
    }
  },
  httpMaxBodyBytes: {
    env: 'BLYD_HTTP_MAX_BODY_BYTES',
    flag: 'http-max-body-bytes',
    describe: 'longest HTTP API request body read, in bytes; a longer one is answered 413',
    kind: 'number',
    parse: integerIn(MIN_HTTP_BODY_BYTES, MAX_HTTP_BODY_BYTES)
  },
  httpMaxConcurrent: {
    env: 'BLYD_HTTP_MAX_CONCURRENT',
    flag: 'http-max-concurrent',
    describe: 'generations the HTTP API runs at once; one more is answered 429',
    kind: 'number',
    parse: integerIn(1, MAX_HTTP_CONCURRENT)
  }
}

export const CONFIG_KEYS = Object.keys(CONFIG_SPEC) as ConfigKey[]

export interface ConfigSources {
  /** --data-dir */
  dataDir?: string
  /** flag values keyed by config key (undefined = not given) */
  flags?: Partial<Record<ConfigKey, unknown>>
  /** environment, default process.env */
  env?: Record<string, string | undefined>
  /** home dir, default os.homedir() */
  home?: string
  /** working dir for relative --data-dir, default process.cwd() */
  cwd?: string
}

/** The data dir: --data-dir, else BLYD_DATA_DIR, else ~/.blyd; always absolute. */
export function resolveDataDir (sources: ConfigSources = {}): string {
  const env = sources.env ?? process.env
  const cwd = sources.cwd ?? process.cwd()
  const given = sources.dataDir ?? env.BLYD_DATA_DIR
  if (given != null) {
    if (given === '') {
      throw new ConfigError(`${sources.dataDir != null ? '--data-dir' : 'BLYD_DATA_DIR'}: must not be empty`)
    }
    return resolve(cwd, given)
  }
  return join(sources.home ?? homedir(), DEFAULT_DATA_DIR_NAME)
}

function defaults (dataDir: string): Record<ConfigKey, unknown> {
  return {
    listen: [...DEFAULT_LISTEN],
    bootstrap: [...DEFAULT_BOOTSTRAP],
    announce: [],
    model: null,
    layers: 'auto',
    full: false,
    recordTtlMs: DEFAULT_RECORD_TTL_MS,
    stepTimeoutMs: DEFAULT_STEP_TIMEOUT_MS,
    stepDeadlineFloorMs: PIPELINE_CLIENT_DEFAULTS.deadlineFloorMs,
    maxSessions: STAGE_SERVER_DEFAULTS.maxSessions,
    maxCachePositions: STAGE_SERVER_DEFAULTS.maxCachePositions,
    memoryBytes: null,
    replicas: 1,
    replanMs: SPAN_SERVER_DEFAULTS.replanMs,
    receiptFlushMs: DEFAULT_RECEIPT_FLUSH_MS,
    directChannel: DEFAULT_DIRECT_CHANNEL,
    directChannelHost: null,
    directChannelPort: DEFAULT_DIRECT_CHANNEL_PORT,
    backend: DEFAULT_BACKEND,
    workers: DEFAULT_WORKERS,
    ipcSocket: join(dataDir, SOCKET_FILE_NAME),
    ipcMaxLineBytes: DEFAULT_IPC_MAX_LINE_BYTES,
    ipcMaxBufferedLineBytes: null,
    ipcMaxConnections: DEFAULT_IPC_MAX_CONNECTIONS,
    ipcMaxBatch: DEFAULT_IPC_MAX_BATCH,
    logLevel: DEFAULT_LOG_LEVEL,
    httpListen: null,
    httpApiKey: null,
    httpMaxBodyBytes: HTTP_API_DEFAULTS.maxBodyBytes,
    httpMaxConcurrent: HTTP_API_DEFAULTS.maxConcurrent
  }
}

/**
 * The stage's direct channel as configured: false when off, else the bind
 * host (directChannelHost, else the host of the first ip4/ip6 listen
 * address, else 0.0.0.0) and port.
 */
export function directChannelBind (config: Pick<BlydConfig, 'directChannel' | 'directChannelHost' | 'directChannelPort' | 'listen'>): false | { host: string, port: number } {
  if (config.directChannel === 'off') {
    return false
  }
  const listenHost = config.listen.map(a => /^\/ip[46]\/([^/]+)\//.exec(a)?.[1]).find(h => h != null)
  return { host: config.directChannelHost ?? listenHost ?? '0.0.0.0', port: config.directChannelPort }
}

/** Turn an env/flag string into the key's value type. */
function fromString (spec: KeySpec, raw: unknown, where: string): unknown {
  if (spec.kind === 'list') {
    if (Array.isArray(raw)) {
      return raw.flatMap(s => String(s).split(',')).map(s => s.trim()).filter(s => s !== '')
    }
    return String(raw).split(',').map(s => s.trim()).filter(s => s !== '')
  }
  if (spec.kind === 'boolean') {
    if (typeof raw === 'boolean') {
      return raw
    }
    const b = String(raw).trim().toLowerCase()
    if (!['true', 'false', '1', '0'].includes(b)) {
      fail(where, `must be true, false, 1 or 0 (got ${show(raw)})`)
    }
    return b === 'true' || b === '1'
  }
  if (spec.kind === 'number') {
    const s = String(raw).trim()
    if (!/^\d+$/.test(s)) {
      fail(where, `must be an integer (got ${show(raw)})`)
    }
    return Number(s)
  }
  if (Array.isArray(raw)) {
    fail(where, `given more than once (${raw.map(show).join(', ')})`)
  }
  return String(raw)
}

async function readConfigFile (file: string): Promise<Record<string, unknown> | undefined> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err: any) {
    if (err.code === 'ENOENT') {
      return undefined
    }
    throw new ConfigError(`${file}: cannot read (${err.code ?? err.message})`, { cause: err })
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (err: any) {
    throw new ConfigError(`${file}: invalid JSON (${err.message})`, { cause: err })
  }
  if (parsed == null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new ConfigError(`${file}: must hold a JSON object`)
  }
  return parsed as Record<string, unknown>
}

/** Load and validate the whole configuration; throws one ConfigError line on the first problem. */
export async function loadConfig (sources: ConfigSources = {}): Promise<BlydConfig> {
  const env = sources.env ?? process.env
  const dataDir = resolveDataDir(sources)
  const values = defaults(dataDir)

  const file = join(dataDir, CONFIG_FILE_NAME)
  const fromFile = await readConfigFile(file)
  if (fromFile != null) {
    for (const [key, value] of Object.entries(fromFile)) {
      if (!Object.hasOwn(CONFIG_SPEC, key)) {
        throw new ConfigError(`${file}: unknown key "${key}" (known keys: ${CONFIG_KEYS.join(', ')})`)
      }
      values[key as ConfigKey] = CONFIG_SPEC[key as ConfigKey].parse(value, `${file}: "${key}"`)
    }
  }

  for (const key of CONFIG_KEYS) {
    const spec = CONFIG_SPEC[key]
    const raw = env[spec.env]
    if (raw != null) {
      values[key] = spec.parse(fromString(spec, raw, spec.env), spec.env)
    }
  }

  for (const key of CONFIG_KEYS) {
    const spec = CONFIG_SPEC[key]
    const raw = sources.flags?.[key]
    if (raw != null) {
      const where = `--${spec.flag}`
      values[key] = spec.parse(fromString(spec, raw, where), where)
    }
  }

  const socket = values.ipcSocket as string
  const ipcSocket = isAbsolute(socket) ? socket : resolve(dataDir, socket)
  if (Buffer.byteLength(ipcSocket) > MAX_SOCKET_PATH_BYTES) {
    throw new ConfigError(`IPC socket path is too long for a Unix socket (${Buffer.byteLength(ipcSocket)} > ${MAX_SOCKET_PATH_BYTES} bytes): ${ipcSocket}; set ipcSocket to a shorter path`)
  }

  const ipcMaxLineBytes = values.ipcMaxLineBytes as number
  const bufferedLines = values.ipcMaxBufferedLineBytes as number | null
  if (bufferedLines != null && bufferedLines < ipcMaxLineBytes) {
    throw new ConfigError(`ipcMaxBufferedLineBytes (${bufferedLines}) must be at least ipcMaxLineBytes (${ipcMaxLineBytes}): one line of the longest size must fit`)
  }

  return {
    dataDir,
    listen: values.listen as string[],
    bootstrap: values.bootstrap as string[],
    announce: values.announce as string[],
    model: values.model as string | null,
    layers: values.layers as string,
    full: values.full as boolean,
    recordTtlMs: values.recordTtlMs as number,
    stepTimeoutMs: values.stepTimeoutMs as number,
    stepDeadlineFloorMs: values.stepDeadlineFloorMs as number,
    maxSessions: values.maxSessions as number,
    maxCachePositions: values.maxCachePositions as number,
    memoryBytes: values.memoryBytes as number | null,
    replicas: values.replicas as number,
    replanMs: values.replanMs as number,
    receiptFlushMs: values.receiptFlushMs as number,
    directChannel: values.directChannel as DirectChannelMode,
    directChannelHost: values.directChannelHost as string | null,
    directChannelPort: values.directChannelPort as number,
    backend: values.backend as Backend,
    workers: values.workers as WorkersSetting,
    ipcSocket,
    ipcMaxLineBytes,
    ipcMaxBufferedLineBytes: bufferedLines ?? IPC_BUFFERED_LINES_PER_MAX_LINE * ipcMaxLineBytes,
    ipcMaxConnections: values.ipcMaxConnections as number,
    ipcMaxBatch: values.ipcMaxBatch as number,
    logLevel: values.logLevel as LogLevel,
    httpListen: values.httpListen as string | null,
    httpApiKey: values.httpApiKey as string | null,
    httpMaxBodyBytes: values.httpMaxBodyBytes as number,
    httpMaxConcurrent: values.httpMaxConcurrent as number
  }
}
