/**
 * The network layer's error class and codes live in
 * src/protocols/net-errors.ts (the block-sync codec throws ERR_SYNC_BAD_MESSAGE).
 */
export { NetError, NetErrorCode } from '../protocols/net-errors.ts'
