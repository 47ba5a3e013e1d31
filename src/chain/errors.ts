/**
 * The chain's error class and its codes live in src/protocols/chain-errors.ts
 * (the header codec throws them, and peers are scored per code); one class,
 * so `instanceof ChainError` holds for codec and store errors alike.
 */
export { ChainError, ChainErrorCode } from '../protocols/chain-errors.ts'
