import { generateKeyPair } from '@libp2p/crypto/keys'
import { LayerRange } from '../../src/model/qwen3/layer-range.ts'
import { createBlyLibp2p } from '../../src/net/libp2p-node.ts'
import { createStageServer } from '../../src/pipeline/stage-server.ts'
import { silentLogger } from '../../src/protocols/logger.ts'
import { sourceOf } from '../model/fixtures.ts'
import type { BlyLibp2p } from '../../src/net/libp2p-node.ts'
import type { StageServer, StageServerInit } from '../../src/pipeline/stage-server.ts'
import type { Fixture } from '../model/fixtures.ts'

export const MODEL_ID = 'qwen3-tiny-untied-f32'

/** A real libp2p node on 127.0.0.1 (OS-chosen port). */
export async function startNode (): Promise<BlyLibp2p> {
  return createBlyLibp2p({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'] })
}

export interface TestStage {
  node: BlyLibp2p
  layers: LayerRange
  server: StageServer
  stop(): Promise<void>
}

/**
 * A stage node serving layers [start, end) of the fixture. The weights come
 * from the fixture file through the safetensors codec (in production they
 * come from the chain loader).
 */
export async function startStage (fixture: Fixture, start: number, end: number, init: Partial<Omit<StageServerInit, 'layers'>> = {}): Promise<TestStage> {
  const layers = await LayerRange.load(fixture.config, sourceOf(fixture), { start, end, head: end === fixture.config.numLayers })
  const node = await startNode()
  const server = createStageServer({ libp2p: node, logger: silentLogger() }, { modelId: MODEL_ID, ...init, layers })
  await server.start()
  return {
    node,
    layers,
    server,
    async stop () {
      await server.stop()
      await node.stop()
      layers.dispose()
    }
  }
}

/** Poll `check` until it holds; throws after `timeoutMs` naming `what`. */
export async function waitFor (what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    }
    await new Promise(resolve => setTimeout(resolve, 20))
  }
}
