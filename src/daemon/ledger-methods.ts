/**
 * IPC methods of the ledger (docs/ledger.md): `rewards.balance`,
 * `rewards.history`, `rewards.explain`, `rewards.send` (a Transfer block
 * written with the daemon's publishing store, so it is gossiped) and
 * `rewards.verify`.
 *
 * Sends run one at a time (a queue in this registration, not module state):
 * two at once would read the same balance and nonce, and the second
 * transfer would reuse the first one's nonce (and be skipped).
 */
import { rewardsBalance, rewardsExplain, rewardsHistory, rewardsSend, rewardsVerify } from '../learning/ledger/commands.ts'
import { noParams, objectParams, optionalString, requiredString } from './params.ts'
import type { IpcServer } from './ipc-server.ts'
import type { BlockSigner, ChainStoreApi } from '../chain/types.ts'
import type { LedgerService } from '../learning/ledger/service.ts'
import type { RewardsExplainParams, RewardsParams, RewardsSendParams, RewardsSendResult } from '../protocols/ipc-ledger.ts'

export interface LedgerMethodContext {
  ipc: IpcServer
  ledger(): LedgerService
  /** the publishing store: blocks written are gossiped */
  store(): ChainStoreApi
  signer(): BlockSigner
  /** called after a Transfer block was written */
  onSent?(result: RewardsSendResult): void
}

const rewardsParams = objectParams<{ [K in keyof Required<RewardsParams>]: RewardsParams[K] }>({ peer: optionalString, model: optionalString })

const explainParams = objectParams<{ [K in keyof Required<RewardsExplainParams>]: RewardsExplainParams[K] }>({ entry: requiredString, model: optionalString })

const sendParams = objectParams<{ [K in keyof Required<RewardsSendParams>]: RewardsSendParams[K] }>({ to: requiredString, amount: requiredString, model: optionalString })

export function registerLedgerMethods (ctx: LedgerMethodContext): void {
  const { ipc } = ctx
  let sending: Promise<unknown> = Promise.resolve()

  ipc.register('rewards.balance', rewardsParams, async (params) => rewardsBalance(ctx.ledger(), ctx.signer().publicKey, params))

  ipc.register('rewards.history', rewardsParams, async (params) => rewardsHistory(ctx.ledger(), ctx.signer().publicKey, params))

  ipc.register('rewards.explain', explainParams, async (params) => rewardsExplain(ctx.ledger(), params))

  ipc.register('rewards.send', sendParams, async (params) => {
    const run = sending.then(async () => rewardsSend(ctx.ledger(), ctx.store(), ctx.signer(), params))
    sending = run.catch(() => {})
    const result = await run
    ctx.onSent?.(result)
    return result
  })

  ipc.register('rewards.verify', noParams, async () => rewardsVerify(ctx.ledger()))
}
