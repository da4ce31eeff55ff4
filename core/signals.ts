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
  return {
    signal: controller.signal,
    /** The signal that interrupted, if one did. */
    interrupted: () => interrupted,
    dispose: () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}
