import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { directChannelBind, loadConfig } from '../../src/daemon/config.ts'
import { ConfigError } from '../../src/daemon/errors.ts'
import { makeTempDir, rejection, removeDir } from './helpers.ts'

describe('daemon config: directChannel, directChannelHost, directChannelPort', () => {
  let dir: string

  beforeEach(async () => {
    dir = await makeTempDir()
  })

  afterEach(async () => {
    await removeDir(dir)
  })

  it('is on by default, bound to the listen host on an ephemeral port', async () => {
    const config = await loadConfig({ dataDir: dir, env: {} })
    expect(config).to.include({ directChannel: 'on', directChannelHost: null, directChannelPort: 0 })
    expect(directChannelBind(config)).to.deep.equal({ host: '0.0.0.0', port: 0 })
    expect(directChannelBind({ ...config, listen: ['/ip4/127.0.0.1/tcp/4801'] })).to.deep.equal({ host: '127.0.0.1', port: 0 })
    expect(directChannelBind({ ...config, listen: ['/dns4/example.com/tcp/1', '/ip6/::1/tcp/1'] })).to.deep.equal({ host: '::1', port: 0 })
  })

  it('config.json < env < flags, and off turns it off', async () => {
    await writeFile(join(dir, 'config.json'), JSON.stringify({ directChannel: 'off', directChannelHost: '10.0.0.5', directChannelPort: 4802 }))
    const fromFile = await loadConfig({ dataDir: dir, env: {} })
    expect(directChannelBind(fromFile)).to.equal(false)
    const fromEnv = await loadConfig({ dataDir: dir, env: { BLYD_DIRECT_CHANNEL: 'on', BLYD_DIRECT_CHANNEL_PORT: '4803' } })
    expect(directChannelBind(fromEnv)).to.deep.equal({ host: '10.0.0.5', port: 4803 })
    const fromFlags = await loadConfig({ dataDir: dir, env: { BLYD_DIRECT_CHANNEL: 'on' }, flags: { directChannel: 'off' } })
    expect(fromFlags.directChannel).to.equal('off')
  })

  it('rejects bad values with the source named', async () => {
    const cases: Array<[Record<string, string>, Record<string, unknown>, RegExp]> = [
      [{ BLYD_DIRECT_CHANNEL: 'yes' }, {}, /^BLYD_DIRECT_CHANNEL: must be one of on, off/],
      [{}, { directChannelPort: '65536' }, /^--direct-channel-port: must be an integer from 0 to 65535/],
      [{}, { directChannelPort: '-1' }, /^--direct-channel-port: must be an integer/],
      [{ BLYD_DIRECT_CHANNEL_HOST: 'a b' }, {}, /^BLYD_DIRECT_CHANNEL_HOST: must be an IP address or host name/]
    ]
    for (const [env, flags, message] of cases) {
      const err = await rejection(loadConfig({ dataDir: dir, env, flags }))
      expect(err).to.be.instanceOf(ConfigError)
      expect(err.message).to.match(message)
    }
  })
})
