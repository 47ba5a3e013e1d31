export * from './constants.ts'
export * from './errors.ts'
export * from './types.ts'
export { findRoute, hopCost } from './find-route.ts'
