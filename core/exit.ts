// The exit statuses every command uses (README: "Exit status").
export const EXIT = {
  ok: 0,
  /** A step (or a check) failed. */
  failed: 1,
  /** Bad input or missing set-up: the message says the command that fixes it. */
  usage: 2,
} as const;

/** 128 + the signal number, as a shell reports a process killed by it (SIGINT, SIGTERM, or SIGPIPE: its output's reader went away). */
export function exitCodeFor(sig: NodeJS.Signals): number {
  return sig === 'SIGTERM' ? 143 : sig === 'SIGPIPE' ? 141 : 130;
}
