/**
 * A progress bar for long CLI work, drawn on stderr only when stderr is a
 * terminal (scripts and pipes see nothing).
 */
import cliProgress from 'cli-progress'

export interface PhaseProgress {
  phase: string
  done: number
  total: number
}

export interface ProgressBar {
  update(p: PhaseProgress): void
  stop(): void
}

const MB = 1024 * 1024

export function createProgressBar (stream: NodeJS.WriteStream = process.stderr): ProgressBar {
  if (stream.isTTY !== true) {
    return { update: () => {}, stop: () => {} }
  }
  let bar: cliProgress.SingleBar | undefined
  let phase = ''
  const stop = (): void => {
    bar?.stop()
    bar = undefined
  }
  return {
    update: (p: PhaseProgress): void => {
      if (p.phase !== phase || bar == null) {
        stop()
        phase = p.phase
        bar = new cliProgress.SingleBar({
          stream,
          format: `${p.phase.padEnd(5)} [{bar}] {percentage}% | {doneMb}/{totalMb} MB | {eta_formatted}`,
          hideCursor: true,
          clearOnComplete: false
        }, cliProgress.Presets.shades_classic)
        bar.start(Math.max(1, p.total), 0, { doneMb: '0', totalMb: (p.total / MB).toFixed(0) })
      }
      bar.update(Math.min(p.done, Math.max(1, p.total)), { doneMb: (p.done / MB).toFixed(0), totalMb: (p.total / MB).toFixed(0) })
    },
    stop
  }
}
