// Ctrl-C and SIGTERM for a command that must stop cleanly: the first aborts
// the work's signal (the work then tears down what it made), a second exits
// at once (exit hooks still kill any QEMU we started).
import { exitCodeFor } from './exit.ts';

export function catchSignals(onFirst: (sig: NodeJS.Signals) => void = () => {}) {
  const controller = new AbortController();
  let interrupted: NodeJS.Signals | undefined;
  const onSignal = (sig: NodeJS.Signals) => {
    if (interrupted) process.exit(exitCodeFor(interrupted));
    interrupted = sig;
    onFirst(sig);
    controller.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const onBrokenPipe = () => onSignal('SIGPIPE');
  brokenPipeHandlers.add(onBrokenPipe);
  return {
    signal: controller.signal,
    /** The signal that interrupted, if one did. */
    interrupted: () => interrupted,
    dispose: () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      brokenPipeHandlers.delete(onBrokenPipe);
    },
  };
}

/** The running commands' stops, for a broken pipe. */
const brokenPipeHandlers = new Set<() => void>();
let pipeBroken = false;

/**
 * When the reader of stdout or stderr goes away (`npm run lab 1 | head`,
 * `… 2>&1 | head`, a pager quit early), writes fail with EPIPE. Instead of a
 * crash that leaves the VM's folder behind: the work stops as on Ctrl-C and
 * tears down what it made, quietly (later writes fail too, and are dropped),
 * and the command exits 141, as one killed by SIGPIPE. With no work running it
 * exits 141 at once.
 */
export function stopOnBrokenPipe(): void {
  const onError = (e: NodeJS.ErrnoException) => {
    if (e.code !== 'EPIPE' && e.code !== 'ERR_STREAM_DESTROYED') throw e;
    if (pipeBroken) return;
    pipeBroken = true;
    if (brokenPipeHandlers.size) for (const stop of brokenPipeHandlers) stop();
    else process.exit(exitCodeFor('SIGPIPE'));
  };
  process.stdout.on('error', onError);
  process.stderr.on('error', onError);
}
