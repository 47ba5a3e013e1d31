/**
 * Node-record errors live in src/protocols/record-errors.ts (the node-record
 * codec throws them).
 */
export { RecordError, RecordErrorCode } from '../../protocols/record-errors.ts'
