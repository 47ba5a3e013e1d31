/**
 * Defaults of the daemon part. Everything tunable lives here; config.ts
 * layers config.json, BLYD_* env vars and flags on top of these.
 */

/** data directory when neither --data-dir nor BLYD_DATA_DIR is given (relative to $HOME) */
export const DEFAULT_DATA_DIR_NAME = '.blyd'

export const CONFIG_FILE_NAME = 'config.json'
export const IDENTITY_FILE_NAME = 'identity.key'
export const PID_FILE_NAME = 'blyd.pid'
export const SOCKET_FILE_NAME = 'blyd.sock'
export const CHAIN_DIR_NAME = 'chain'
/** LevelDB of the libp2p peer store and DHT records, so a restarted node redials its peers */
export const P2P_DIR_NAME = 'p2p'

/** mode of the data dir, identity key and socket: owner only */
export const DATA_DIR_MODE = 0o700
export const PRIVATE_FILE_MODE = 0o600

export const DEFAULT_LISTEN = ['/ip4/0.0.0.0/tcp/4801']
/**
 * Peers a node dials at start when no bootstrap list is configured. Empty
 * until public bly bootstrap nodes exist: set `bootstrap` in config.json,
 * BLYD_BOOTSTRAP or `--bootstrap` to join a swarm.
 */
export const DEFAULT_BOOTSTRAP: string[] = []
/** lifetime of the node's signed span record (the announcer refreshes it every third) */
export const DEFAULT_RECORD_TTL_MS = 10 * 60 * 1000
export const MIN_RECORD_TTL_MS = 1000
/** the DHT validators refuse records expiring further ahead (NODE_RECORD_LIMITS.maxTtlMs) */
export const MAX_RECORD_TTL_MS = 60 * 60 * 1000
/** generate through the mesh: a stage's answer to one step (per 32 positions) may take this long before failover */
export const DEFAULT_STEP_TIMEOUT_MS = 10_000
export const MIN_STEP_TIMEOUT_MS = 100
export const MAX_STEP_TIMEOUT_MS = 10 * 60 * 1000
/** upper bounds of maxSessions and maxCachePositions (a typo guard, not a tuning) */
export const MAX_STAGE_SESSIONS = 4096
export const MAX_STAGE_CACHE_POSITIONS = 1 << 24
/** direct TLS data channel for stage traffic (docs/transport.md): on = offer it, off = libp2p streams only */
export const DIRECT_CHANNEL_MODES = ['on', 'off'] as const
export const DEFAULT_DIRECT_CHANNEL = 'on'
/** the direct channel's TCP port: 0 = an ephemeral port (the offer carries it) */
export const DEFAULT_DIRECT_CHANNEL_PORT = 0
export const DEFAULT_BACKEND = 'auto'
/** tfjs-node-gpu and tfjs-node both mean the native 'tensorflow' backend (the gpu package is tried first) */
export const BACKENDS = ['auto', 'tensorflow', 'tfjs-node-gpu', 'tfjs-node', 'webgpu', 'wasm', 'cpu'] as const
/** tensor-parallel worker threads per model: 'auto' (the rule is in src/model/workers.ts) or a count */
export const DEFAULT_WORKERS = 'auto'
export const DEFAULT_LOG_LEVEL = 'info'
/** most to least severe; a level writes its lines and those above it (debug: libp2p's own diagnostics too; trace: per-message detail) */
export const LOG_LEVELS = ['error', 'warn', 'info', 'debug', 'trace'] as const

/** longest IPC line the daemon accepts; longer lines are answered with an error and skipped */
export const DEFAULT_IPC_MAX_LINE_BYTES = 16 * 1024 * 1024
/** longest line the IPC client accepts from the daemon */
export const IPC_CLIENT_MAX_LINE_BYTES = 64 * 1024 * 1024
/**
 * calls one connection may have in flight (a batch counts its calls) before
 * the server stops reading it; it reads again once half of them are answered
 */
export const IPC_MAX_INFLIGHT_PER_CONNECTION = 64
/**
 * answer bytes queued on one connection (socket.writableLength) past which the
 * server stops reading that connection until the peer has read them ('drain')
 */
export const IPC_WRITE_HIGH_WATER_BYTES = 1024 * 1024
/** connections the IPC server holds at once; one more is answered with an error line and closed */
export const DEFAULT_IPC_MAX_CONNECTIONS = 128
/** calls one JSON-RPC batch may hold; a longer batch is answered with one -32600 error */
export const DEFAULT_IPC_MAX_BATCH = 100
/** calls of one batch that run at once */
export const IPC_BATCH_CONCURRENCY = 8
/** deepest nesting of arrays and objects in a request line, checked before JSON.parse */
export const IPC_MAX_JSON_DEPTH = 64
/**
 * most JSON values in a request line (counted as commas plus arrays and
 * objects), checked before JSON.parse: 16 MiB of `{},` would parse into 5
 * million objects (~500 MiB); 262,144 values parse into at most ~15 MiB
 */
export const IPC_MAX_JSON_VALUES = 262_144
/**
 * request lines this long or longer are parsed one per turn of the event loop
 * (a 16 MiB line takes 100s of ms to copy, decode and parse), so the other
 * connections are served between two of them
 */
export const IPC_HEAVY_LINE_BYTES = 1024 * 1024
/**
 * bytes of unfinished request lines held over all connections, when
 * ipcMaxBufferedLineBytes is not set: this many times ipcMaxLineBytes
 */
export const IPC_BUFFERED_LINES_PER_MAX_LINE = 2
/** bytes of payload per `stream` notification when a payload is sent over IPC */
export const IPC_PAYLOAD_PIECE_BYTES = 1024 * 1024
/** how long stopping the IPC server waits for in-flight handlers to unwind after their abort */
export const IPC_STOP_DRAIN_MS = 10_000
/** how long a client waits to connect before deciding no daemon answers */
export const IPC_CONNECT_TIMEOUT_MS = 5000

/** a stop slower than this is logged as an error (something is stuck) */
export const STOP_TIMEOUT_MS = 30_000
/** how long `blyd stop` waits for the daemon's pid to go away */
export const STOP_WAIT_MS = 30_000

/** Unix socket paths are limited to 107 bytes on Linux (104 on macOS) */
export const MAX_SOCKET_PATH_BYTES = 103

/** block type accepted by `chain.put` when none is given */
export const DEFAULT_PUT_TYPE = 'note'

/** How old the ledger fold behind `status` and the metrics may be (ms) before it is folded again (docs/ledger.md). */
export const LEDGER_STATUS_MAX_AGE_MS = 5_000
