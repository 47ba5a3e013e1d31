export * from './types.ts'
export * from './constants.ts'
export * from './errors.ts'
export * from './chain-store.ts'
