/**
 * A real headless browser for the dashboard's tests: the system's chromium
 * (Debian's package; CHROMIUM_PATH names another binary) driven by
 * playwright-core, which downloads no browser of its own. No chromium is a
 * failure with the command that installs it, in CI and out of it: the
 * browser test is never skipped. Screenshots go to test-artifacts/
 * (git-ignored) at the repository root.
 */
import { access, constants, mkdir } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { chromium } from 'playwright-core'
import type { Browser } from 'playwright-core'

/** where the browser tests leave their screenshots */
export const ARTIFACTS_DIR = fileURLToPath(new URL('../../test-artifacts/', import.meta.url))

const CANDIDATES = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome', '/usr/bin/google-chrome-stable']

async function executable (path: string): Promise<boolean> {
  return access(path, constants.X_OK).then(() => true, () => false)
}

/** The chromium binary: CHROMIUM_PATH, else the first of the usual paths that exists; throws how to install one. */
export async function chromiumPath (): Promise<string> {
  const given = process.env.CHROMIUM_PATH
  if (given != null && given !== '') {
    if (!await executable(given)) {
      throw new Error(`CHROMIUM_PATH=${given} is not an executable file`)
    }
    return given
  }
  for (const path of CANDIDATES) {
    if (await executable(path)) {
      return path
    }
  }
  throw new Error(`the dashboard's browser test needs chromium and found none (looked at ${CANDIDATES.join(', ')}): install it with \`sudo apt-get install -y chromium\` (Debian/Ubuntu; .ci/run does it), or set CHROMIUM_PATH to a Chromium or Chrome binary`)
}

/** A headless chromium; close it in an after hook or a finally. */
export async function launchChromium (): Promise<Browser> {
  await mkdir(ARTIFACTS_DIR, { recursive: true })
  // --no-sandbox: CI runs as root, where chromium's sandbox refuses to start
  return chromium.launch({ executablePath: await chromiumPath(), headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'], timeout: 30_000 })
}
