import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { createChainStore, createSignerFromSeed } from '../../src/chain/index.ts'
import { createBlyNetwork } from '../../src/net/index.ts'
import type { ChainStore } from '../../src/chain/index.ts'
import type { BlockSigner } from '../../src/chain/types.ts'
import type { BlyNetwork, BlyNetworkInit } from '../../src/net/index.ts'
import type { PrivateKey } from '@libp2p/interface'

export interface TestNode {
  dir: string
  store: ChainStore
  net: BlyNetwork
  privateKey: PrivateKey
  signer: BlockSigner
  stop(): Promise<void>
}

export type TestNodeOptions = Partial<Omit<BlyNetworkInit, 'store'>> & { dir?: string }

/** A real node: its own ChainStore in a temp dir, libp2p on 127.0.0.1, port chosen by the OS. */
export async function startNode (options: TestNodeOptions = {}): Promise<TestNode> {
  const dir = options.dir ?? await mkdtemp(join(tmpdir(), 'bly-net-'))
  const store = createChainStore({ path: join(dir, 'chain'), fsync: false })
  await store.start()
  const privateKey = options.privateKey ?? await generateKeyPair('Ed25519')
  let net: BlyNetwork
  try {
    net = await createBlyNetwork({ listen: ['/ip4/127.0.0.1/tcp/0'], ...options, privateKey, store })
  } catch (err) {
    await store.stop()
    throw err
  }
  let stopped = false
  return {
    dir,
    store,
    net,
    privateKey,
    signer: createSignerFromSeed(privateKey.raw),
    async stop () {
      if (stopped) {
        return
      }
      stopped = true
      await net.stop()
      await store.stop()
    }
  }
}

/** Stop nodes and remove their directories (for after hooks). */
export async function stopAll (nodes: TestNode[]): Promise<void> {
  await Promise.allSettled(nodes.map(async n => n.stop()))
  await Promise.allSettled(nodes.map(async n => rm(n.dir, { recursive: true, force: true })))
  nodes.length = 0
}

export async function connect (a: TestNode, b: TestNode): Promise<void> {
  await a.net.libp2p.dial(b.net.libp2p.getMultiaddrs()[0])
}

/** Poll `check` until it returns true; throws after `timeoutMs` with `what` in the message. */
export async function waitFor (what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (true) {
    if (await check()) {
      return
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    }
    await new Promise(resolve => setTimeout(resolve, 25))
  }
}

/** Wait until `from` sees each of `peers` subscribed to `topic` (gossip can flow). */
export async function waitForSubscribers (from: TestNode, topic: string, peers: TestNode[]): Promise<void> {
  await waitFor(`subscribers of ${topic}`, () => {
    const subs = from.net.libp2p.services.pubsub.getSubscribers(topic).map(p => p.toString())
    return peers.every(p => subs.includes(p.net.libp2p.peerId.toString()))
  })
}

/** deterministic pseudo-random bytes */
export function bytesOf (length: number, seed = 1): Uint8Array {
  const out = new Uint8Array(length)
  let x = seed * 2654435761 >>> 0
  for (let i = 0; i < length; i++) {
    x = (x * 1103515245 + 12345) >>> 0
    out[i] = x >>> 24
  }
  return out
}

export async function collect (source: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = []
  for await (const p of source) {
    parts.push(p)
  }
  return Buffer.concat(parts)
}
