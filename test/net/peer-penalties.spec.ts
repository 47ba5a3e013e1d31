import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { expect } from 'aegir/chai'
import { sha256 } from '../../src/chain/block-crypto.ts'
import { chunkOffence } from '../../src/net/chunk-offence.ts'
import { PEER_PENALTY_DEFAULTS, SYNC_OFFENCE_WEIGHTS } from '../../src/net/constants.ts'
import { BanReason, PeerPenalties, SyncOffence } from '../../src/net/peer-penalties.ts'
import { bytesOf } from './helpers.ts'
import type { BlockHeader } from '../../src/chain/types.ts'
import type { PeerBannedEvent } from '../../src/net/peer-penalties.ts'
import type { PeerId } from '@libp2p/interface'

async function newPeerId (): Promise<PeerId> {
  return peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
}

describe('net: peer penalties', () => {
  let now: number
  let penalties: PeerPenalties
  let banned: PeerBannedEvent[]

  beforeEach(() => {
    now = 1_000_000
    penalties = new PeerPenalties({ now: () => now })
    banned = []
    penalties.addEventListener('peer:banned', (evt) => { banned.push((evt as CustomEvent<PeerBannedEvent>).detail) })
  })

  it('subtracts each offence\'s weight, avoids after one chunk lie and bans after three', async () => {
    const peer = await newPeerId()
    expect(penalties.score(peer)).to.equal(0)
    expect(penalties.isAvoided(peer)).to.equal(false)
    expect(penalties.penalise(peer, SyncOffence.ChunkCorrupt)).to.equal(-SYNC_OFFENCE_WEIGHTS['chunk-corrupt'])
    expect(penalties.isAvoided(peer)).to.equal(true)
    penalties.penalise(peer, SyncOffence.ChunkLength)
    expect(penalties.isBanned(peer)).to.equal(false)
    expect(banned).to.have.length(0)
    penalties.penalise(peer, SyncOffence.ChunkSubstituted)
    expect(penalties.isBanned(peer)).to.equal(true)
    expect(banned).to.deep.equal([{ peerId: peer, reason: BanReason.SyncScore, until: now + PEER_PENALTY_DEFAULTS.banMs }])
    expect(penalties.stats.offences).to.include({ 'chunk-corrupt': 1, 'chunk-length': 1, 'chunk-substituted': 1 })
    expect(penalties.stats.bans).to.deep.equal({ 'sync-score': 1, 'gossip-score': 0 })
    // an offence during the ban is counted, the ban is not imposed twice
    penalties.penalise(peer, SyncOffence.InvalidHeader)
    expect(banned).to.have.length(1)
    expect(penalties.peers()).to.deep.equal([{
      peerId: peer.toString(),
      score: -120,
      banned: true,
      bannedUntil: now + PEER_PENALTY_DEFAULTS.banMs,
      offences: { 'chunk-corrupt': 1, 'chunk-length': 1, 'chunk-substituted': 1, 'invalid-header': 1 }
    }])
  })

  it('decays with the half-life; a ban holds its score for the cool-off, then the peer is on probation', async () => {
    const peer = await newPeerId()
    penalties.penalise(peer, SyncOffence.ChunkCorrupt)
    now += PEER_PENALTY_DEFAULTS.halfLifeMs
    expect(penalties.score(peer)).to.be.closeTo(-20, 1e-9)
    now += PEER_PENALTY_DEFAULTS.halfLifeMs
    expect(penalties.isAvoided(peer)).to.equal(false)

    penalties.ban(peer, BanReason.GossipScore)
    expect(penalties.score(peer)).to.equal(PEER_PENALTY_DEFAULTS.banThreshold)
    now += PEER_PENALTY_DEFAULTS.banMs - 1
    expect(penalties.isBanned(peer)).to.equal(true)
    expect(penalties.score(peer)).to.equal(PEER_PENALTY_DEFAULTS.banThreshold)
    now += 1
    expect(penalties.isBanned(peer)).to.equal(false)
    expect(penalties.score(peer)).to.equal(PEER_PENALTY_DEFAULTS.avoidThreshold)
    expect(penalties.isAvoided(peer)).to.equal(true)
    // a recidivist needs fewer offences: two chunk lies now ban it again
    penalties.penalise(peer, SyncOffence.ChunkCorrupt)
    penalties.penalise(peer, SyncOffence.ChunkCorrupt)
    expect(penalties.isBanned(peer)).to.equal(true)
    expect(penalties.stats.bans).to.deep.equal({ 'sync-score': 1, 'gossip-score': 1 })
  })

  it('gives a gater that refuses banned peers and defers to the one it wraps', async () => {
    const liar = await newPeerId()
    const other = await newPeerId()
    const blocked = await newPeerId()
    const gater = penalties.connectionGater({ denyDialPeer: (p) => p.equals(blocked) })
    expect(await gater.denyDialPeer?.(liar)).to.equal(false)
    penalties.ban(liar, BanReason.SyncScore)
    expect(await gater.denyDialPeer?.(liar)).to.equal(true)
    expect(await gater.denyInboundEncryptedConnection?.(liar, {} as any)).to.equal(true)
    expect(await gater.denyOutboundEncryptedConnection?.(liar, {} as any)).to.equal(true)
    expect(await gater.denyDialPeer?.(other)).to.equal(false)
    expect(await gater.denyDialPeer?.(blocked)).to.equal(true)
    expect(penalties.stats.refused).to.equal(3)
  })

  it('keeps at most maxPeers entries: forgiven peers go first, then the mildest, bans last', async () => {
    const small = new PeerPenalties({ now: () => now, maxPeers: 3 })
    const peers = await Promise.all(Array.from({ length: 5 }, newPeerId))
    const kept = (): string[] => small.peers().map(p => p.peerId).sort()
    small.penalise(peers[0], SyncOffence.ChunkCorrupt)
    small.ban(peers[1], BanReason.SyncScore)
    small.penalise(peers[2], SyncOffence.MissingAncestry)
    now += 2 * PEER_PENALTY_DEFAULTS.halfLifeMs
    small.penalise(peers[3], SyncOffence.ChunkCorrupt)
    // none forgiven yet (-10, -7.5): the mildest made room
    expect(kept()).to.deep.equal([peers[0], peers[1], peers[3]].map(String).sort())
    now += 4 * PEER_PENALTY_DEFAULTS.halfLifeMs
    small.penalise(peers[4], SyncOffence.ChunkCorrupt)
    // peer 0 decayed past -1 (forgiven) and was dropped; the ban ended (probation at -20, now -2.5) and is kept like peer 3 (-2.5)
    expect(kept()).to.deep.equal([peers[1], peers[3], peers[4]].map(String).sort())
    expect(small.isBanned(peers[1])).to.equal(false)
  })

  it('rejects thresholds in the wrong order', () => {
    expect(() => new PeerPenalties({ avoidThreshold: -100, banThreshold: -20 })).to.throw(RangeError)
  })
})

describe('net: which lie a refused chunk was', () => {
  const chunkSize = 1024
  const payload = bytesOf(2 * chunkSize + 100, 5)
  const chunks = [payload.subarray(0, chunkSize), payload.subarray(chunkSize, 2 * chunkSize), payload.subarray(2 * chunkSize)]
  const header = { payloadSize: BigInt(payload.length), chunkSize, chunkHashes: chunks.map(c => sha256(c)) } as unknown as BlockHeader

  it('tells a flipped bit, a wrong length and another chunk\'s bytes apart', () => {
    const flipped = chunks[1].slice()
    flipped[3] ^= 0x80
    expect(chunkOffence(header, 1, flipped)).to.equal(SyncOffence.ChunkCorrupt)
    expect(chunkOffence(header, 1, Buffer.concat([chunks[1], Uint8Array.of(1)]))).to.equal(SyncOffence.ChunkLength)
    expect(chunkOffence(header, 1, chunks[1].subarray(1))).to.equal(SyncOffence.ChunkLength)
    expect(chunkOffence(header, 1, chunks[0])).to.equal(SyncOffence.ChunkSubstituted)
    // the short last chunk served for a full one: another chunk's bytes, whatever the length
    expect(chunkOffence(header, 0, chunks[2])).to.equal(SyncOffence.ChunkSubstituted)
    expect(chunkOffence(header, 1, chunks[1])).to.equal(undefined)
  })
})
