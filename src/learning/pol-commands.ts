/**
 * What `blyd proposals`, `blyd proposal show` and `blyd validators` do, on a
 * chain store (the daemon's, or the data dir's offline): answers read from
 * the fold, and the one write, a validator-set change: a Motion on the
 * current governance state, or a Vote for an identical pending motion
 * (two motions on one state split the signatures; only one can apply).
 *
 * A change is refused before anything is written when this node's key is
 * not in the current set (its motion would be void: `not-member`), when it
 * would be void from the start (adding a member, removing a non-member or
 * the last validator), or when this key already signed the identical
 * pending motion.
 */
import { publicKeyFromRaw } from '@libp2p/crypto/keys'
import { peerIdFromPublicKey, peerIdFromString } from '@libp2p/peer-id'
import { fromHex, toHex } from '../protocols/hex.ts'
import { MotionKind } from '../protocols/learning-blocks.ts'
import { VALIDATOR_KEY_LENGTH } from '../protocols/motion.ts'
import { findProposal, isValidator, pendingMotions, samePendingMotion } from './fold/query.ts'
import { motionBlock, voteBlock } from './new-blocks.ts'
import { LearningError, LearningErrorCode } from './pol-errors.ts'
import { foldOf, modelIds, pickModel, requireGenesis } from './pol-models.ts'
import type { EvalWindowsCache } from './fold/eval-windows.ts'
import type { ModelFold, MotionExplain, ProposalExplain } from './fold/types.ts'
import type { BlockSigner, ChainStoreApi } from '../chain/types.ts'
import type { MotionJson, ProposalJson, ProposalsResult, ValidatorsResult } from '../protocols/ipc-learning.ts'

/**
 * A validator key from the command line: 64 hex characters (the raw
 * Ed25519 public key) or an Ed25519 peer id (12D3KooW...). LearningError
 * KEY otherwise.
 */
export function parseValidatorKey (text: string): Uint8Array {
  const s = text.trim()
  if (/^[0-9a-fA-F]{64}$/.test(s)) {
    const raw = fromHex(s.toLowerCase())
    try {
      publicKeyFromRaw(raw)
    } catch (err: any) {
      throw new LearningError(LearningErrorCode.KEY, `${s} is not an Ed25519 public key: ${String(err?.message ?? err)}`, { cause: err })
    }
    return raw
  }
  let raw: Uint8Array | undefined
  try {
    const peerId = peerIdFromString(s)
    raw = peerId.type === 'Ed25519' ? peerId.publicKey.raw : undefined
  } catch (err: any) {
    throw new LearningError(LearningErrorCode.KEY, `a validator key is 64 hex characters (an Ed25519 public key) or an Ed25519 peer id, not ${JSON.stringify(s)}`, { cause: err })
  }
  if (raw?.length !== VALIDATOR_KEY_LENGTH) {
    throw new LearningError(LearningErrorCode.KEY, `peer id ${s} is not an Ed25519 peer id: validators sign with Ed25519 keys`)
  }
  return raw
}

/** The libp2p peer id of a raw Ed25519 public key (hex). */
export function peerIdOfKey (keyHex: string): string {
  return peerIdFromPublicKey(publicKeyFromRaw(fromHex(keyHex))).toString()
}

/** A proposal of the fold as the IPC answers give it. */
export function proposalJson (fold: ModelFold, p: ProposalExplain): ProposalJson {
  return { model: fold.model, ...p, attestations: p.attestations.map(a => ({ ...a })) }
}

/** Every proposal of `model` (or of every model), by model then id. */
export async function listProposals (store: ChainStoreApi, options: { model?: string, evalWindows?: EvalWindowsCache } = {}): Promise<ProposalsResult> {
  const ids = options.model != null ? [await pickModel(store, options.model)] : await modelIds(store)
  const proposals: ProposalJson[] = []
  for (const id of ids) {
    const manifest = await store.get(id)
    if (manifest?.payloadComplete !== true) {
      continue
    }
    const fold = await foldOf(store, id, options.evalWindows)
    proposals.push(...fold.proposals.map(p => proposalJson(fold, p)))
  }
  return { proposals }
}

/** One proposal by id or unique prefix (>= 8 hex), searched in `model` or every model. */
export async function showProposal (store: ChainStoreApi, id: string, options: { model?: string, evalWindows?: EvalWindowsCache } = {}): Promise<ProposalJson> {
  if (!/^[0-9a-fA-F]{8,64}$/.test(id)) {
    throw new LearningError(LearningErrorCode.PROPOSAL_NOT_FOUND, `a proposal id is 64 hex characters or a unique prefix of at least 8 (got ${JSON.stringify(id)})`)
  }
  const ids = options.model != null ? [await pickModel(store, options.model)] : await modelIds(store)
  const found: ProposalJson[] = []
  for (const modelId of ids) {
    const manifest = await store.get(modelId)
    if (manifest?.payloadComplete !== true) {
      continue
    }
    const fold = await foldOf(store, modelId, options.evalWindows)
    let p: ProposalExplain | undefined
    try {
      p = findProposal(fold, id)
    } catch (err: any) {
      throw new LearningError(LearningErrorCode.AMBIGUOUS, err.message, { cause: err })
    }
    if (p != null) {
      found.push(proposalJson(fold, p))
    }
  }
  if (found.length > 1) {
    throw new LearningError(LearningErrorCode.AMBIGUOUS, `proposals of ${found.length} models have ids starting with ${id}`)
  }
  if (found.length === 0) {
    throw new LearningError(LearningErrorCode.PROPOSAL_NOT_FOUND, `no proposal with an id starting with ${id.toLowerCase()} on chain A`)
  }
  return found[0]
}

function motionJson (m: MotionExplain): MotionJson {
  return {
    id: m.id,
    author: m.author,
    kind: m.kind,
    ...(m.key != null ? { key: m.key, peerId: peerIdOfKey(m.key) } : {}),
    ...(m.params != null ? { params: { ...m.params } } : {}),
    count: m.count,
    quorum: m.quorum,
    signers: m.signers.map(s => s.key)
  }
}

export function validatorsJson (fold: ModelFold): ValidatorsResult {
  const current = fold.governance.current
  return {
    model: fold.model,
    governance: current.id,
    validators: current.validators.map(key => ({ key, peerId: peerIdOfKey(key) })),
    quorum: current.quorum,
    pending: pendingMotions(fold).map(motionJson)
  }
}

/** The validator set of `model` (default: the only model on chain), its quorum and the pending motions. */
export async function listValidators (store: ChainStoreApi, options: { model?: string, evalWindows?: EvalWindowsCache } = {}): Promise<ValidatorsResult> {
  return validatorsJson(await foldOf(store, await pickModel(store, options.model), options.evalWindows))
}

export interface ChangeValidatorsOptions {
  model?: string
  /** exactly one of add and remove: a key as parseValidatorKey reads it */
  add?: string
  remove?: string
  evalWindows?: EvalWindowsCache
}

/** Publishes the motion (or the vote) for one change of the validator set; see the file comment. */
export async function changeValidators (store: ChainStoreApi, signer: BlockSigner, options: ChangeValidatorsOptions): Promise<ValidatorsResult> {
  if ((options.add == null) === (options.remove == null)) {
    throw new LearningError(LearningErrorCode.OPTION, 'name exactly one change: --add KEY or --remove KEY')
  }
  const kind = options.add != null ? MotionKind.ADD_VALIDATOR : MotionKind.REMOVE_VALIDATOR
  const key = parseValidatorKey((options.add ?? options.remove) as string)
  const keyHex = toHex(key)
  const modelId = await pickModel(store, options.model)
  const fold = await foldOf(store, modelId, options.evalWindows)
  requireGenesis(fold)
  const me = toHex(signer.publicKey)
  if (!isValidator(fold, me)) {
    throw new LearningError(LearningErrorCode.NOT_VALIDATOR, `this node (${peerIdOfKey(me)}) is not a validator of model ${fold.model}: only members of its set (${fold.governance.current.validators.map(peerIdOfKey).join(', ')}) may move or vote on a change`)
  }
  const set = fold.governance.current.validators
  if (kind === MotionKind.ADD_VALIDATOR && set.includes(keyHex)) {
    throw new LearningError(LearningErrorCode.MOTION, `${peerIdOfKey(keyHex)} is already a validator of model ${fold.model}`)
  }
  if (kind === MotionKind.REMOVE_VALIDATOR && !set.includes(keyHex)) {
    throw new LearningError(LearningErrorCode.MOTION, `${peerIdOfKey(keyHex)} is not a validator of model ${fold.model}`)
  }
  if (kind === MotionKind.REMOVE_VALIDATOR && set.length === 1) {
    throw new LearningError(LearningErrorCode.MOTION, `${peerIdOfKey(keyHex)} is the last validator of model ${fold.model}: a model always keeps one`)
  }
  const same = samePendingMotion(fold, kind, keyHex)
  let published: NonNullable<ValidatorsResult['published']>
  if (same != null) {
    if (same.signers.some(s => s.key === me)) {
      throw new LearningError(LearningErrorCode.MOTION, `this node already signed the pending motion ${same.id} (${kind} ${peerIdOfKey(keyHex)}): it waits for ${(same.quorum ?? 0) - same.count} more signature(s) of the set`)
    }
    const vote = await store.createBlock(voteBlock(modelId, fromHex(same.id)), signer)
    published = { kind: 'vote', block: toHex(vote.id), motion: same.id, change: kind, key: keyHex, applied: false }
  } else {
    const motion = await store.createBlock(motionBlock(modelId, fromHex(fold.governance.current.id), { kind, key }), signer)
    published = { kind: 'motion', block: toHex(motion.id), motion: toHex(motion.id), change: kind, key: keyHex, applied: false }
  }
  const after = await foldOf(store, modelId, options.evalWindows)
  published.applied = after.governance.motions.some(m => m.id === published.motion && m.status === 'applied')
  return { ...validatorsJson(after), published }
}
