/**
 * The pipeline's error class and codes live in
 * src/protocols/pipeline-errors.ts (the /bly/infer codec throws them).
 */
export { PipelineError, PipelineErrorCode } from '../protocols/pipeline-errors.ts'
export type { PipelineErrorCodeValue, PipelineErrorOptions } from '../protocols/pipeline-errors.ts'
