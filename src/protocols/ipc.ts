/**
 * Wire format of the local IPC socket: JSON-RPC 2.0, one JSON value per
 * line (newline-delimited) in both directions. A request may receive any
 * number of `stream` notifications carrying its id before its final response.
 *
 * `IpcMethods` (at the end) names every method with its params, result and
 * stream notifications: the daemon's registrations and the client's requests
 * are both typed by it, so a method's types are written once.
 */
import type { LearningStatusJson, ProposalJson, ProposalShowParams, ProposalsParams, ProposalsResult, ProposeParams, ProposeResultJson, TrainParams, TrainProgressJson, TrainResultJson, ValidatorsParams, ValidatorsResult } from './ipc-learning.ts'
import type { LedgerStatusJson, RewardsBalanceResult, RewardsExplainParams, RewardsExplainResult, RewardsHistoryResult, RewardsParams, RewardsSendParams, RewardsSendResult, RewardsVerifyResult } from './ipc-ledger.ts'
import type { GenerateRouteJson, NetStatusJson, PeersParams, PeersResult, PlanParams, PlanResult, ServingJson } from './ipc-mesh.ts'

export const JSONRPC_VERSION = '2.0'

/** The notification method the server uses to stream partial results of a request. */
export const IPC_STREAM_METHOD = 'stream'

/** JSON-RPC 2.0 error codes. */
export const RpcErrorCode = {
  PARSE_ERROR: -32700,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  INVALID_PARAMS: -32602,
  INTERNAL_ERROR: -32603,
  /** implementation-defined server error: a server limit refused the work (data.code says which) */
  SERVER_ERROR: -32000
} as const

export type RpcId = string | number | null

export interface RpcRequest {
  jsonrpc: typeof JSONRPC_VERSION
  method: string
  params?: unknown
  /** absent for notifications (no response) */
  id?: RpcId
}

export interface RpcErrorObject {
  code: number
  message: string
  /** for internal errors: `{ code: <BlydError code> }` */
  data?: { code?: string, [key: string]: unknown }
}

export interface RpcSuccess {
  jsonrpc: typeof JSONRPC_VERSION
  id: RpcId
  result: unknown
}

export interface RpcFailure {
  jsonrpc: typeof JSONRPC_VERSION
  id: RpcId
  error: RpcErrorObject
}

export type RpcResponse = RpcSuccess | RpcFailure

/** Params of a `stream` notification: the request's id plus the method's own fields. */
export interface StreamParams {
  id: RpcId
  [key: string]: unknown
}

export interface RpcNotification {
  jsonrpc: typeof JSONRPC_VERSION
  method: string
  params?: unknown
}

/** Result of `status`. */
export interface StatusResult {
  version: string
  peerId: string
  pid: number
  dataDir: string
  startedAt: number
  uptimeMs: number
  backend: string
  /** the inference backend: which one runs and why the others did not */
  inference?: BackendStatusJson
  /** tensor-parallel worker threads: the setting and those in use */
  workers?: WorkersStatusJson
  chain: {
    counts: { A: number, B: number, total: number, orphans: number }
    tips: { A: string[], B: string[] }
  }
  /** dialable libp2p multiaddrs, each ending in /p2p/<peerId> */
  addrs?: string[]
  /** open libp2p connections */
  connections?: number
  /** bootstrap peers configured (--bootstrap); 0: the node joins no swarm by itself, it waits to be dialed */
  bootstrapPeers?: number
  /** the span this node serves (--model, --layers), null when none */
  serving?: ServingJson | null
  /** this node's BLY balance per model and its receipts not yet published (docs/ledger.md) */
  ledger?: LedgerStatusJson
  /** the HTTP listener (--http-listen), null when off */
  http?: HttpStatusJson | null
  /** the validator service: what it measures now, what it attested, its last error */
  learning?: LearningStatusJson
  ipc: {
    requests: number
    errors: Record<string, number>
    /** the most bytes of one unfinished request line the daemon held at any time (at most ipcMaxLineBytes) */
    peakLineBytes: number
  } & IpcLoadJson
}

/** The HTTP listener as `status` reports it. */
export interface HttpStatusJson {
  /** the address bound, http://HOST:PORT */
  url: string
  /** whether routes ask for the bearer key (httpApiKey) */
  keyRequired: boolean
  /** every route, `METHOD path` */
  routes: string[]
  /** requests being handled now, and generations among them (at most httpMaxConcurrent) */
  requests: number
  generations: number
}

/** Refusals of the IPC server's limits, counted since start. */
export interface IpcRefusalsJson {
  /** connections over ipcMaxConnections: answered with ERR_IPC_TOO_MANY_CONNECTIONS and closed */
  connections: number
  /** batches over ipcMaxBatch calls: answered with ERR_IPC_BATCH_TOO_LARGE */
  batches: number
  /** lines nested deeper than maxDepth: answered with ERR_IPC_TOO_DEEP before parsing */
  depth: number
  /** lines with more than maxValues JSON values: answered with ERR_IPC_TOO_MANY_VALUES before parsing */
  values: number
  /** connections whose unfinished line did not fit ipcMaxBufferedLineBytes: answered with ERR_IPC_BUFFER_FULL and closed */
  lines: number
}

/** The IPC server's limits as configured. */
export interface IpcLimitsJson {
  maxConnections: number
  maxBatch: number
  batchConcurrency: number
  maxDepth: number
  maxValues: number
  maxLineBytes: number
  maxBufferedLineBytes: number
  maxInflightPerConnection: number
  writeHighWaterBytes: number
}

/** What the IPC server holds now and at most, against its limits (`status.ipc`). */
export interface IpcLoadJson {
  /** open connections */
  connections: number
  /** connections not read now: answers unread past writeHighWaterBytes, or maxInflightPerConnection calls in flight */
  pausedConnections: number
  /** times a connection was paused because its answers were not being read */
  backpressurePauses: number
  /** the most answer bytes queued to one connection at any time */
  peakWriteBytes: number
  /** bytes of request lines held now over all connections: unfinished, or long and waiting their turn to be parsed */
  bufferedLineBytes: number
  /** the most bytes of request lines held at once over all connections (at most limits.maxBufferedLineBytes) */
  peakBufferedLineBytes: number
  refused: IpcRefusalsJson
  limits: IpcLimitsJson
}

/** Result of `id`. */
export interface IdResult {
  peerId: string
  publicKey: string
}

/** A block as JSON: ids and keys as lowercase hex, bigints as decimal strings. */
export interface BlockJson {
  id: string
  chain: 'A' | 'B'
  type: string
  version: number
  parents: string[]
  author: string
  timestamp: string
  fields: Record<string, { kind: string, value: string }>
  payloadSize: string
  chunkSize: number
  chunks: number
  payloadComplete: boolean
  receivedAt: number
  signature: string
}

/** Result of `chain.tips`: the tips of each chain, hex, sorted. */
export interface ChainTipsJson {
  A: string[]
  B: string[]
}

/** Result of `chain.info`. */
export interface ChainInfoJson {
  counts: { A: number, B: number, total: number, orphans: number }
  tips: ChainTipsJson
}

/** Result of `chain.verify`: what the store's full check found. */
export interface ChainVerifyResult {
  blocks: number
  chunks: number
  bytes: number
  issues: Array<{ id?: string, code: string, message: string }>
  ok: boolean
}

/** Params of `chain.get` and `chain.payload`: a block id, hex. */
export interface BlockIdParams {
  id: string
}

/** Result of `chain.payload`, whose `stream` notifications carry `{ data }` (base64 pieces, in order). */
export interface ChainPayloadResult {
  id: string
  size: number
  /** sha-256 (hex) of the whole payload */
  sha256: string
}

/** Params of `chain.put`: the daemon reads the file at `payload` (an absolute path). */
export interface PutParams {
  payload: string
  /** the block type by its CLI name (default note) */
  type?: string
}

/** Result of `chain.put`. */
export interface PutResult {
  id: string
  payloadSize: string
  chunks: number
}

/** Backend selection as `status` reports it: the one that runs, and why the others did not. */
export interface BackendStatusJson {
  /** the tfjs backend in use ('tensorflow', 'webgpu', 'wasm', 'cpu'), or null when none could start */
  name: string | null
  /** the configured preference: auto | tensorflow | webgpu | wasm | cpu */
  preference: string
  /** each backend tried in order; webgpu's names the adapter found, also when it was refused */
  tried: Array<{ name: string, ok: boolean, reason?: string, adapter?: WebGpuAdapterJson }>
  /** webgpu: the adapter in use and the device limits that bound buffer sizes */
  adapter?: WebGpuAdapterJson
  /** wasm: whether the weights sit on transparent huge pages */
  hugePages?: HugePagesStatusJson
  /** why no backend runs, when name is null */
  error?: string
}

/** A WebGPU adapter as Dawn describes it (src/model/webgpu.ts). */
export interface WebGpuAdapterJson {
  vendor: string
  architecture: string
  device: string
  description: string
  /** a software (fallback) adapter such as lavapipe */
  fallback: boolean
  limits: { maxBufferSize: number, maxStorageBufferBindingSize: number }
}

/** the kernel's THP mode for anonymous memory, as /sys/kernel/mm/transparent_hugepage/enabled shows it */
export type ThpMode = 'always' | 'madvise' | 'never' | 'unknown'

/** Whether the wasm backend's memory (the weights) sits on transparent huge pages (src/model/huge-pages.ts). */
export interface HugePagesStatusJson {
  /** the kernel's THP mode */
  thp: ThpMode
  /** whether the native helper loaded */
  helper: boolean
  /** bytes of the wasm memory's reservation that took the advice */
  advisedBytes: number
  /** whether the weights get huge pages: THP `always`, or `madvise` with the advice taken */
  active: boolean
  /** why not, when not active */
  reason?: string
}

/** The `workers` part of `status`. */
export interface WorkersStatusJson {
  /** as configured: 'auto' or a count */
  setting: 'auto' | number
  /** os.availableParallelism() of the daemon's machine */
  cores: number
  /** worker threads of each model loaded for local logits / generate (0: the main thread) */
  loaded: Array<{ model: string, workers: number }>
  /** worker threads of the span served to the mesh, once loaded */
  serving?: number
}

/** Params of `model.import` (the daemon reads the folder). */
export interface ModelImportParams {
  dir: string
  tokenizer?: string
  name?: string
}

/** A `stream` notification of `model.import`: bytes done of the phase ('hash' reads the checkpoint, 'write' stores blocks). */
export interface ModelImportProgressJson {
  phase: string
  done: number
  total: number
}

/** Result of `model.import`; `stream` notifications carry `{ phase, done, total }` meanwhile. */
export interface ModelImportResult {
  modelId: string
  name: string
  /** the model's blocks: the manifest, one per unit, and the genesis Params block */
  blocks: number
  /** how many of those were already in the store */
  existing: number
  /** the genesis Params block id (hex): the importer's key is the model's first validator */
  params?: string
  bytes: number
  bytesWritten: number
  units: number
  tokenizer: boolean
  ignored: string[]
}

/** One model of `model.list`. */
export interface ModelSummaryJson {
  id: string
  name: string
  arch: string
  units: number
  /** units whose layer block and payload are stored locally */
  unitsStored: number
  /** the manifest's payload and every unit are stored locally (false e.g. after a crash mid-import) */
  complete: boolean
  /** the units (indexes, ascending) whose layer block or its payload is not stored locally */
  missingUnits: number[]
  /** the manifest block's own payload is stored locally */
  manifestStored: boolean
  author: string
  loaded: boolean
  /** present (true) for a `blyd model init-demo` checkpoint: random weights, its output is meaningless text */
  randomWeights?: true
  /** the live version's id (hex; protocols/versions.md), when the manifest is stored and the node reads versions */
  version?: string
}

/** Params of `model.show`. */
export interface ModelShowParams {
  model: string
  /** a version of the model's history (hex id or a unique prefix of >= 8) to describe instead of the live one */
  version?: string
}

/** One accepted delta of a version, in the order the deltas apply. */
export interface AcceptedDeltaJson {
  proposal: string
  delta: string
  unit: number
}

/** Result of `model.show`. */
export interface ModelDetailsJson extends ModelSummaryJson {
  config: {
    layers: number
    hidden: number
    intermediate: number
    heads: number
    kvHeads: number
    headDim: number
    vocab: number
    tieWordEmbeddings: boolean
    maxPositionEmbeddings: number
  }
  tokenizer: { present: boolean, chatTemplate: boolean }
  dtypes: string[]
  /** payload bytes of all layer blocks */
  bytes: number
  parameters: number
  unitBlocks: Array<{ unit: number, kind: string, layer?: number, bytes: number, sha256: string, block: string | null, stored: boolean }>
  /** the version described (the live one unless the request named one); with it: */
  version?: string
  /** that version's index in the model's history (0 = the imported weights) */
  versionIndex?: number
  /** the live version's id (differs from `version` when an earlier one was asked for) */
  liveVersion?: string
  /** the accepted deltas of that version, in the order they apply */
  acceptedDeltas?: AcceptedDeltaJson[]
  /** the weights hash of that version (hex, learning/weights-hash.ts over every unit); null when some unit or delta is not stored here */
  weightsHash?: string | null
}

/** Params of `generate`: exactly one of prompt, chat, promptIds. */
export interface GenerateParams {
  model: string
  prompt?: string
  /** a user message, or a whole conversation, rendered with the model's chat template */
  chat?: string | Array<{ role: string, content: string }>
  /** Qwen3's thinking switch for `chat` (the template's enable_thinking; false renders an empty think block); unset leaves the template's default (thinking on) */
  enableThinking?: boolean
  promptIds?: number[]
  maxNewTokens?: number
  temperature?: number
  topK?: number
  topP?: number
  repetitionPenalty?: number
  seed?: number
  stop?: string[]
  /** the backend the caller expects; the call fails when another one runs */
  backend?: string
  /** the stages' queue priority of the session (mesh generation): interactive (default), batch or background */
  priority?: 'interactive' | 'batch' | 'background'
  /** speculative decoding: a model on the chain with the target's vocabulary, run whole in this process, drafts tokens */
  draft?: string
  /** draft tokens per round to start with (adapts; needs draft) */
  speculate?: number
  /** pin a version of the model's history (hex id or a unique prefix of >= 8); default the live version when the generation starts */
  version?: string
}

/** How speculative decoding went (`generate` with draft). */
export interface SpeculativeJson {
  /** draft tokens per round asked for */
  k: number
  /** k after adapting */
  finalK: number
  /** accepted / proposed */
  acceptanceRate: number
  proposed: number
  accepted: number
  /** forwards through the target */
  targetSteps: number
}

/** A `stream` notification of `generate`: one generated token and the text it completes. */
export interface GenerateTokenJson {
  token: number
  /** null when the model has no tokenizer (token ids only) */
  text: string | null
}

/** Result of `generate` (`via` and `route`: where it ran, see ipc-mesh.ts). */
export interface GenerateResult extends Partial<GenerateRouteJson> {
  tokens: number[]
  text: string
  promptTokens: number
  tokensPerSecond: number
  finishReason: string
  backend: string
  /** tensor-parallel worker threads that ran the layers, when they ran in this daemon (0: its main thread) */
  workers?: number
  /** present when the request named a draft model */
  speculative?: SpeculativeJson
  /** the weights version every token was computed with (hex), when the node reads versions */
  version?: string
}

/** Params / result of `model.logits`: logits [ids.length][vocab] of a fresh session. */
export interface LogitsParams {
  model: string
  ids: number[]
  backend?: string
  /** a version of the model's history (hex id or a unique prefix of >= 8); default the live one */
  version?: string
}

export interface LogitsResult {
  logits: number[][]
  backend: string
  /** tensor-parallel worker threads that ran the layers (0: the main thread) */
  workers?: number
  /** the weights version the logits were computed with (hex), when the node reads versions */
  version?: string
}

/** Params of `data.add`: the daemon reads `path` (absolute: the socket is local, the daemon's cwd is not the caller's). */
export interface DataAddParams {
  path: string
  name: string
  /** model id (hex or a unique prefix of >= 8): required for ids unless exactly one model is on chain; counts text windows */
  model?: string
  /** default from the extension: `.jsonl` = ids, else text */
  format?: 'text' | 'ids'
  /** default 100 */
  evalPermille?: number
  /** default 128 */
  splitTokens?: number
}

/** Params of `data.show`. */
export interface DataShowParams {
  /** a dataset name, or its id (hex, a unique prefix of >= 8) */
  dataset: string
  /** the model whose tokenizer cuts a text dataset into windows */
  model?: string
}

/** One dataset, as `data.add`, `data.list` and `data.show` give it. */
export interface DatasetJson {
  id: string
  name: string
  format: 'text' | 'ids'
  /** payload bytes: the text's bytes, or the canonical ids payload's */
  bytes: number
  sequences: number
  /** ids: the ids in all sequences; text: the tokens with `model`'s tokenizer, null when no model is given */
  tokens: number | null
  evalPermille: number
  splitTokens: number
  /** window counts; null for text without a model, or when the payload is not stored locally */
  trainWindows: number | null
  evalWindows: number | null
  /** ids: the model the ids were checked against; text: the model whose tokenizer counted, or null */
  model: string | null
  author: string
  /** ms since the epoch (the block's timestamp) */
  timestamp: number
  /** the payload is stored locally */
  stored: boolean
  /** `data.list` only: why the windows of this dataset could not be counted (code: message) */
  error?: string
}

/** Result of `data.list`. */
export interface DataListResult {
  datasets: DatasetJson[]
}

/** Params of a method that takes none (params absent, or `{}`). */
export type NoParams = Record<string, never>

/**
 * One IPC method: its params, its result, and the fields of the `stream`
 * notifications it sends before the result (`never`: it sends none).
 */
export interface IpcMethod<P, R, S = never> {
  params: P
  result: R
  stream: S
}

/**
 * Every method of the daemon's IPC socket. The daemon registers exactly
 * these (IpcServer.register is typed by this map, and `methods` answers
 * IPC_METHOD_NAMES); IpcClient.request takes a name from it and returns its
 * result type.
 */
export interface IpcMethods {
  status: IpcMethod<NoParams, StatusResult>
  id: IpcMethod<NoParams, IdResult>
  'chain.info': IpcMethod<NoParams, ChainInfoJson>
  'chain.tips': IpcMethod<NoParams, ChainTipsJson>
  'chain.get': IpcMethod<BlockIdParams, BlockJson>
  'chain.verify': IpcMethod<NoParams, ChainVerifyResult>
  'chain.payload': IpcMethod<BlockIdParams, ChainPayloadResult, { data: string }>
  'chain.put': IpcMethod<PutParams, PutResult>
  'data.add': IpcMethod<DataAddParams, DatasetJson>
  'data.list': IpcMethod<NoParams, DataListResult>
  'data.show': IpcMethod<DataShowParams, DatasetJson>
  metrics: IpcMethod<NoParams, { text: string }>
  methods: IpcMethod<NoParams, { methods: string[] }>
  shutdown: IpcMethod<NoParams, { stopping: boolean, pid: number }>
  'model.import': IpcMethod<ModelImportParams, ModelImportResult, ModelImportProgressJson>
  'model.list': IpcMethod<NoParams, { models: ModelSummaryJson[] }>
  'model.show': IpcMethod<ModelShowParams, ModelDetailsJson>
  'model.logits': IpcMethod<LogitsParams, LogitsResult>
  generate: IpcMethod<GenerateParams, GenerateResult, GenerateTokenJson>
  'net.status': IpcMethod<NoParams, NetStatusJson>
  peers: IpcMethod<PeersParams, PeersResult>
  plan: IpcMethod<PlanParams, PlanResult>
  'delta.propose': IpcMethod<ProposeParams, ProposeResultJson>
  proposals: IpcMethod<ProposalsParams, ProposalsResult>
  'proposal.show': IpcMethod<ProposalShowParams, ProposalJson>
  validators: IpcMethod<ValidatorsParams, ValidatorsResult>
  'rewards.balance': IpcMethod<RewardsParams, RewardsBalanceResult>
  'rewards.history': IpcMethod<RewardsParams, RewardsHistoryResult>
  'rewards.explain': IpcMethod<RewardsExplainParams, RewardsExplainResult>
  'rewards.send': IpcMethod<RewardsSendParams, RewardsSendResult>
  'rewards.verify': IpcMethod<NoParams, RewardsVerifyResult>
  train: IpcMethod<TrainParams, TrainResultJson, TrainProgressJson>
}

export type IpcMethodName = keyof IpcMethods & string

/** A map of method names to their IpcMethod: IpcMethods, or a test's own. */
export type IpcMethodMap<M> = { [K in keyof M]: IpcMethod<unknown, unknown, unknown> }

/** Any method with any params: for tools and tests that send what they like (bad params on purpose, say). */
export type AnyIpcMethods = Record<string, IpcMethod<any, any, any>>

/** Every name of IpcMethods, once: the compiler checks this table against the map both ways. */
const IPC_METHOD_TABLE: { [K in IpcMethodName]: true } = {
  status: true,
  id: true,
  'chain.info': true,
  'chain.tips': true,
  'chain.get': true,
  'chain.verify': true,
  'chain.payload': true,
  'chain.put': true,
  'data.add': true,
  'data.list': true,
  'data.show': true,
  metrics: true,
  methods: true,
  shutdown: true,
  'model.import': true,
  'model.list': true,
  'model.show': true,
  'model.logits': true,
  generate: true,
  'net.status': true,
  peers: true,
  plan: true,
  'delta.propose': true,
  proposals: true,
  'proposal.show': true,
  validators: true,
  'rewards.balance': true,
  'rewards.history': true,
  'rewards.explain': true,
  'rewards.send': true,
  'rewards.verify': true,
  train: true
}

/** The names of IpcMethods, sorted (what a daemon's `methods` answers). */
export const IPC_METHOD_NAMES: readonly IpcMethodName[] = Object.freeze((Object.keys(IPC_METHOD_TABLE) as IpcMethodName[]).sort())
