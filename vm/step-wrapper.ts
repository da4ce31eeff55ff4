// How a step's command is wrapped when it runs in a guest over SSH: in a new
// session (so its whole process group can be killed on timeout or Ctrl-C), with
// its pid written where a second SSH channel can find it, stdin from /dev/null,
// and the lab's environment exported. The command travels as one single-quoted
// argument, so the author's shell code reaches bash unchanged.
import { exportsFor, shq } from '../core/shell.ts';

export interface StepWrapping {
  /** Guest directory for step pid files. */
  pidDir: string;
  /**
   * Guest path of the step agent (vm/guest/step-agent.c). When set, steps run
   * through one agent per connection instead of one SSH channel each, which is
   * ~4x cheaper per step; a guest without it falls back to a channel per step.
   */
  agent?: string;
}

/**
 * Bash code that evaluates its first argument as the step: run as
 * `bash -c EVAL_STEP bash COMMAND`, $0 is "bash" and no positional parameters
 * are left, as with a plain `bash -c COMMAND`.
 */
export const EVAL_STEP = 'c=$1; shift; eval "$c"';

export function wrapStep(command: string, id: string, w: StepWrapping, env?: Record<string, string>): string {
  const pidFile = `${w.pidDir}/${id}.pid`;
  // Few processes on purpose: every exec costs ~0.1 s in an emulated guest.
  const inner = `echo $$ 2>/dev/null > ${shq(pidFile)}; ${EVAL_STEP}`;
  return `${exportsFor(env)} exec setsid -w bash -c ${shq(inner)} bash ${shq(command)} < /dev/null`;
}

/** Kills the process group of step `id` (TERM, then KILL). */
export function killStepCommand(id: string, w: StepWrapping): string {
  const pidFile = `${w.pidDir}/${id}.pid`;
  return `p=$(cat ${shq(pidFile)} 2>/dev/null) && { kill -TERM -- -$p; sleep 0.3; kill -KILL -- -$p; } 2>/dev/null; rm -f ${shq(pidFile)}; true`;
}
