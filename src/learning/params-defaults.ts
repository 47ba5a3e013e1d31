/**
 * The default parameters of a model: the ONE table every threshold of the
 * learning path comes from (no threshold is written anywhere else in code).
 * `model import` writes them, complete, as the model's genesis Params block;
 * a genesis body that omits a key gets its default from here, so the table
 * is part of the protocol (protocols/params.md): change a default only with
 * a new params version.
 */
import { ParamKey, resolveParams } from '../protocols/params.ts'
import type { Params } from '../protocols/params.ts'

/** One row of the table: the default and why it is what it is. */
export interface ParamDefault<T> {
  value: T
  reason: string
}

/** The defaults, with the reason for each. */
export const PARAMS_DEFAULTS: { [K in keyof Params]: ParamDefault<Params[K]> } = {
  [ParamKey.QUORUM_NUM]: {
    value: 2,
    reason: 'quorum = ceil(n x 2 / 3): two quorums share more than n/3 members, so with fewer than n/3 faulty validators two conflicting outcomes cannot both reach quorum (the issue\'s 2/3 of the set)'
  },
  [ParamKey.QUORUM_DEN]: {
    value: 3,
    reason: 'see quorumNum'
  },
  [ParamKey.MIN_GAIN_PPM]: {
    value: 5000,
    reason: 'a relative eval-loss gain of at least 0.5%, the original design\'s acceptance threshold: smaller gains are within the noise of one sample of windows and not worth a new version'
  },
  [ParamKey.MAX_REGRESSION_PPM]: {
    value: 20000,
    reason: 'a loss increase of at most 2% on each regression dataset (the issue\'s default): a delta may trade a little general ability for its gain, not more'
  },
  [ParamKey.T_CRIT_MILLI]: {
    value: 1645,
    reason: 'the one-sided 95% normal quantile (1.645): the paired gain must be significant across the sampled windows, not one lucky window; the rule scales it to Student\'s t for the number of windows (1.669 at 64, 6.31 at 2)'
  },
  [ParamKey.SAMPLE_WINDOWS]: {
    value: 64,
    reason: '64 windows (8192 tokens at the default 128-token windows) per dataset: enough pairs that the t quantile is close to the normal one tCritMilli uses, few enough that a validator\'s two forward passes (base and candidate) stay cheap on a CPU'
  },
  [ParamKey.REGRESSION_DATASETS]: {
    value: [],
    reason: 'none until the model\'s validators name held-out datasets (params.set): a dataset id cannot be known before the dataset is on chain'
  },
  [ParamKey.GENESIS_ALLOCATION]: {
    value: 1_000_000_000_000,
    reason: 'the importer\'s float to fund the first clients (docs/ledger.md): 2.7 x 10^7 generations of 1000 positions on a 36-layer model at the default price, and 10^4 below the u64 bound so rewards can be minted for a very long time; read from the genesis params only'
  },
  [ParamKey.PRICE_LAYER_POSITION]: {
    value: 1,
    reason: 'the smallest unit per decoder layer per position: serving is paid from the first position and every price is an exact integer (a 36-layer model\'s 1000-position generation costs 36 000 for the whole pipeline)'
  },
  [ParamKey.REWARD_PER_MICRO_NAT]: {
    value: 1000,
    reason: 'the minimum accepted gain (0.5%) on an eval loss of ~3 nats is ~15 000 micro-nats, which mints 1.5 x 10^7: the price of ~400 such generations, so improving the model pays like serving much of it'
  },
  [ParamKey.VALIDATOR_REWARD]: {
    value: 1_000_000,
    reason: 'about what a validator\'s measurement would cost at the inference price: 2 passes x 64 windows x 128 tokens x 36..60 layers = 0.6..1.0 x 10^6 base units'
  }
}

/** The default params as a value (a fresh copy each call). */
export function defaultParams (): Params {
  return {
    quorumNum: PARAMS_DEFAULTS.quorumNum.value,
    quorumDen: PARAMS_DEFAULTS.quorumDen.value,
    minGainPpm: PARAMS_DEFAULTS.minGainPpm.value,
    maxRegressionPpm: PARAMS_DEFAULTS.maxRegressionPpm.value,
    tCritMilli: PARAMS_DEFAULTS.tCritMilli.value,
    sampleWindows: PARAMS_DEFAULTS.sampleWindows.value,
    regressionDatasets: [...PARAMS_DEFAULTS.regressionDatasets.value],
    genesisAllocation: PARAMS_DEFAULTS.genesisAllocation.value,
    priceLayerPosition: PARAMS_DEFAULTS.priceLayerPosition.value,
    rewardPerMicroNat: PARAMS_DEFAULTS.rewardPerMicroNat.value,
    validatorReward: PARAMS_DEFAULTS.validatorReward.value
  }
}

/** Complete params from a genesis body: its keys over the defaults, checked (throws ParamsError). */
export function genesisParams (body: Partial<Params>): Params {
  return resolveParams(defaultParams(), body)
}
