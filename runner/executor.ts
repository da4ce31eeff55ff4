// Runs one lab on a backend: check what it needs, clean up leftovers, run each
// step with its timeout and checks, and always tear down what the lab made.
import fs from 'node:fs';
import path from 'node:path';
import { guestPathVar, PIN_ROOT, type GuestPaths } from '../core/guest.ts';
import { projectRoot } from '../core/paths.ts';
import { shq } from '../core/shell.ts';
import type { Backend, ExecResult } from '../vm/backend.ts';
import { compareVersions, missingConfig } from '../vm/kernel.ts';
import { evaluate, type CheckResult } from './checks.ts';
import { explainFailure, type Explanation } from './explain.ts';
import type { RunFingerprint } from './fingerprint.ts';
import type { LabSpec, Step } from './lab-schema.ts';
import type { LoadedLab } from './labs.ts';

type Status = 'passed' | 'failed' | 'skipped';

export interface StepResult {
  title: string;
  status: Status;
  /** The command as written in the lab. */
  command: string;
  checks: CheckResult[];
  exec?: ExecResult;
  durationMs: number;
  /** Why it was skipped, or an error that kept it from running. */
  reason?: string;
  /** A failed step's errnos from SOCKMAP operations, explained (runner/explain.ts). */
  explanations?: Explanation[];
}

/** The machine a lab ran on. */
export interface MachineInfo {
  backend: string;
  kernelRelease: string;
  accel: string;
  /** What the run ran on, for comparing and repeating it (runner/fingerprint.ts); run-labs sets it for every machine. */
  fingerprint?: RunFingerprint;
}

export interface LabResult {
  lab: LoadedLab;
  status: Status;
  steps: StepResult[];
  durationMs: number;
  reason?: string;
  machine?: MachineInfo;
  startedAt?: Date;
  /** The lab never ran: why (the VM did not boot, a machine check failed). Its status is 'failed'; reports show it as an error. */
  error?: string;
}

/** What a reporter hears about a run; every event is optional. */
export interface Reporter {
  notice?(line: string): void;
  /** A machine is ready; the labs that follow run on it. */
  machineStart?(info: MachineInfo): void;
  labStart?(lab: LoadedLab, index: number, total: number): void;
  stepStart?(lab: LoadedLab, step: Step, index: number, total: number): void;
  /** The step's command starts now (after the learner said so, with --step). */
  stepRun?(lab: LoadedLab, step: Step): void;
  stepOutput?(chunk: string, stream: 'stdout' | 'stderr'): void;
  stepEnd?(lab: LoadedLab, step: Step, result: StepResult): void;
  labEnd?(result: LabResult): void;
  /** The run is over (also after Ctrl-C): write files, print summaries. */
  runEnd?(results: LabResult[]): void | Promise<void>;
}

/** Sends every event to each reporter in turn. */
export function fanOut(reporters: Reporter[]): Required<Reporter> {
  const each =
    <K extends keyof Reporter>(k: K) =>
    (...args: Parameters<Required<Reporter>[K]>) => {
      const out: unknown[] = [];
      for (const r of reporters) {
        const f = r[k] as ((...a: unknown[]) => unknown) | undefined;
        if (f) out.push(f.apply(r, args));
      }
      return out;
    };
  return {
    notice: each('notice'),
    machineStart: each('machineStart'),
    labStart: each('labStart'),
    stepStart: each('stepStart'),
    stepRun: each('stepRun'),
    stepOutput: each('stepOutput'),
    stepEnd: each('stepEnd'),
    labEnd: each('labEnd'),
    runEnd: async (results) => {
      await Promise.all(each('runEnd')(results));
    },
  };
}

export interface RunContext {
  /** `uname -r` where the steps run. */
  kernelRelease: string;
  /** The kernel's build config, when known. */
  kernelConfig?: Map<string, string>;
  signal?: AbortSignal;
  /** Multiplies every step timeout (slow machines, TCG). */
  timeoutScale?: number;
  /** Use the reference solutions of exercises ($EXERCISE = solution/), as CI does. */
  solutions?: boolean;
  /**
   * The machine is stopped right after this lab (a throw-away VM): its teardown
   * is skipped, as what it would remove goes with the VM (under TCG the
   * teardown's programs cost ~0.2 s).
   */
  machineGoesAfter?: boolean;
  /** Interactive mode: asked before each step (after its text is shown). */
  beforeStep?: (lab: LoadedLab, step: Step) => Promise<'run' | 'skip' | 'quit'>;
}

/** Why the learner's choices ended a lab early. */
export const SKIPPED_BY_YOU = 'skipped by you';
export const QUIT_BY_YOU = 'you quit';

const DEFAULT_STEP_TIMEOUT_S = 60;
/** How long a lab's cleanup may go on after Ctrl-C. */
const TEARDOWN_GRACE_MS = 10_000;

/**
 * Compiler flags for a BPF program built in the guest (exercises): the ones
 * bpf/Makefile builds our own programs with, which it writes to build/bpf-cflags.
 */
function bpfCflags(p: GuestPaths): string {
  try {
    return fs.readFileSync(path.join(p.hostBuild ?? path.join(projectRoot, 'build'), 'bpf-cflags'), 'utf8').trim();
  } catch {
    return ''; // not built yet: an exercise's compile step then says what is missing
  }
}

/** Environment every step sees; the names are documented in docs/authoring.md. */
function labEnv(lab: LoadedLab, backend: Backend, solutions = false): Record<string, string> {
  const p = backend.paths;
  // The lab's folder as the guest sees it (labs may live outside labs/, e.g. test fixtures).
  const rel = path.relative(projectRoot, lab.dir);
  const labDir = rel.startsWith('..') ? lab.dir : `${p.project}/${rel}`;
  return {
    LAB: labDir,
    EXERCISE: `${labDir}/${solutions ? 'solution' : 'exercise'}`,
    BPF_CFLAGS: bpfCflags(p),
    STATE: `${p.state}/${lab.id}`,
    PIN: `${PIN_ROOT}/${lab.id}`,
    BUILD: p.build,
    PATH: guestPathVar(p),
    LC_ALL: 'C',
  };
}

/** Why this kernel cannot run the lab (or step), or undefined when it can. */
function unmetNeeds(needs: LabSpec['needs'], ctx: Pick<RunContext, 'kernelRelease' | 'kernelConfig'>): string | undefined {
  if (!needs) return undefined;
  if (needs.kernel && compareVersions(ctx.kernelRelease, needs.kernel) < 0)
    return `needs kernel ${needs.kernel} or newer; this one is ${ctx.kernelRelease}`;
  if (needs.config && ctx.kernelConfig) {
    const missing = missingConfig(ctx.kernelConfig, needs.config);
    if (missing.length) return `kernel ${ctx.kernelRelease} lacks ${missing.map((o) => `CONFIG_${o}`).join(', ')}`;
  }
  return undefined;
}

/** The shell that runs a background step: start it detached, then wait for its ready text. */
export function backgroundCommand(step: Step & { background: string }, timeoutS: number): string {
  const log = `"$STATE/${step.background}.log"`;
  const lines = [
    `setsid bash -c ${shq(step.run)} > ${log} 2>&1 < /dev/null &`,
    `echo $! > "$STATE/${step.background}.bgpid"`,
  ];
  if (step.ready) {
    const tries = Math.ceil(timeoutS * 10);
    lines.push(
      `for _ in $(seq ${tries}); do`,
      `  grep -qF -- ${shq(step.ready)} ${log} && { cat ${log}; exit 0; }`,
      `  kill -0 $! 2>/dev/null || { cat ${log}; echo "${step.background} exited before it was ready" >&2; exit 1; }`,
      `  sleep 0.1`,
      `done`,
      `cat ${log}; echo "${step.background} was not ready in time" >&2; exit 1`,
    );
  }
  return lines.join('\n');
}

/**
 * Why the machine died, when a step ended with no exit status. QEMU's exit
 * reaches us a moment after its connection (SSH, or the step agent's socket)
 * breaks, so a lost connection is looked at again for up to 1.5 s: a dead QEMU
 * or a panic is the better answer.
 */
async function settledHealth(backend: Backend): Promise<string | undefined> {
  let why: string | undefined;
  for (let i = 0; i < 15; i++) {
    why = backend.health?.();
    if (why && !/\bconnection\b/.test(why)) return why;
    await new Promise((r) => setTimeout(r, 100));
  }
  return why;
}

/**
 * The runner's own mkdir, rm and rmdir go through busybox where there is one
 * (the guest image has a static one): under TCG coreutils' start costs ~40 ms
 * a call more (its shared libraries), and a lab's set-up and teardown make three.
 */
const BUSYBOX_IF_ANY = 'bb=; command -v busybox >/dev/null && bb=busybox';

/** Kills background actors, runs the lab's cleanup, removes its state and pins. */
function teardownCommand(lab: LoadedLab): string {
  return [
    'for f in "$STATE"/*.bgpid; do [ -e "$f" ] || continue; g=$(<"$f"); kill -KILL -- "-$g" 2>/dev/null',
    // Until the group is gone (reaped; at most 2 s): nothing of it may outlive the run, not even briefly.
    '  for _ in {1..20}; do kill -0 -- "-$g" 2>/dev/null || break; sleep 0.1; done',
    'done',
    lab.spec.cleanup ? `( ${lab.spec.cleanup.trim()}\n) >/dev/null 2>&1` : '',
    BUSYBOX_IF_ANY,
    '$bb rm -rf "$STATE" "$PIN"',
    // The shared parents go too once empty (another lab's pins keep them).
    '$bb rmdir "${PIN%/*}" "${STATE%/*}" 2>/dev/null',
    'true',
  ]
    .filter(Boolean)
    .join('\n');
}

export async function runLab(lab: LoadedLab, backend: Backend, reporter: Required<Reporter>, ctx: RunContext): Promise<LabResult> {
  const started = Date.now();
  const startedAt = new Date(started);
  const steps = lab.spec.steps;
  const skipAll = (reason: string): StepResult[] =>
    steps.map((s) => ({ title: s.title, status: 'skipped', command: s.run, checks: [], durationMs: 0, reason }));

  const unmet = unmetNeeds(lab.spec.needs, ctx);
  if (unmet) return { lab, status: 'skipped', steps: skipAll(unmet), durationMs: 0, reason: unmet, startedAt };

  const env = labEnv(lab, backend, ctx.solutions);
  const results: StepResult[] = [];
  let failed = false;
  // Leftovers of an interrupted earlier run go first (a run makes $STATE before
  // anything else, so without it there are none: on a clean VM this saves
  // several process starts); then a fresh state dir and pin dir.
  let setupProblem: string | undefined;
  try {
    const setup = await backend.exec(`if [ -e "$STATE" ] || [ -e "$PIN" ]; then\n${teardownCommand(lab)}\nfi\n${BUSYBOX_IF_ANY}\n$bb mkdir -p "$STATE" "$PIN"`, {
      env,
      timeoutMs: 30_000,
      signal: ctx.signal,
    });
    if (setup.code !== 0 && !ctx.signal?.aborted) setupProblem = `the lab's folders could not be made: ${(setup.stderr || setup.stdout).trim() || `exit ${setup.code}`}`;
  } catch (e) {
    setupProblem = backend.health?.() ?? (e as Error).message;
  }
  if (setupProblem) {
    failed = true;
    results.push(...skipAll(`the lab could not start: ${setupProblem}`));
  }
  try {
    let quit = false;
    for (const [i, step] of setupProblem ? [] : steps.entries()) {
      if (failed || quit || ctx.signal?.aborted) {
        const reason = ctx.signal?.aborted ? 'interrupted' : failed ? 'an earlier step failed' : QUIT_BY_YOU;
        results.push({ title: step.title, status: 'skipped', command: step.run, checks: [], durationMs: 0, reason });
        continue;
      }
      const stepUnmet = unmetNeeds(step.needs, ctx);
      if (stepUnmet) {
        const skipped: StepResult = { title: step.title, status: 'skipped', command: step.run, checks: [], durationMs: 0, reason: stepUnmet };
        results.push(skipped);
        reporter.stepStart(lab, step, i, steps.length);
        reporter.stepEnd(lab, step, skipped);
        continue;
      }
      reporter.stepStart(lab, step, i, steps.length);
      const choice = ctx.beforeStep ? await ctx.beforeStep(lab, step) : 'run';
      if (choice !== 'run') {
        const skipped: StepResult = { title: step.title, status: 'skipped', command: step.run, checks: [], durationMs: 0, reason: choice === 'quit' ? QUIT_BY_YOU : SKIPPED_BY_YOU };
        results.push(skipped);
        reporter.stepEnd(lab, step, skipped);
        quit = choice === 'quit';
        continue;
      }
      reporter.stepRun(lab, step);
      const timeoutS = (step.timeout ?? DEFAULT_STEP_TIMEOUT_S) * (ctx.timeoutScale ?? 1);
      const command = step.background ? backgroundCommand({ ...step, background: step.background }, timeoutS) : step.run;
      let result: StepResult;
      try {
        const exec = await backend.exec(command, {
          env,
          timeoutMs: timeoutS * 1000,
          signal: ctx.signal,
          onStdout: (c) => reporter.stepOutput(c, 'stdout'),
          onStderr: (c) => reporter.stepOutput(c, 'stderr'),
        });
        // A step killed by Ctrl-C ends like one whose machine died: only the latter needs a look.
        const dead = exec.code === null && !exec.timedOut && !ctx.signal?.aborted ? await settledHealth(backend) : undefined;
        const checks = ctx.signal?.aborted || dead ? [] : evaluate(step.expect, exec);
        const ok = !ctx.signal?.aborted && !dead && checks.every((c) => c.ok);
        result = { title: step.title, status: ok ? 'passed' : 'failed', command: step.run, checks, exec, durationMs: exec.durationMs };
        if (ctx.signal?.aborted) result.reason = 'interrupted';
        else if (dead) result.reason = `the machine died during this step: ${dead}`;
        else if (!ok) {
          const why = explainFailure(exec.stdout + exec.stderr, step.expect?.errno);
          if (why.length) result.explanations = why;
        }
      } catch (e) {
        // The backends' exec errors already say why the machine is gone; no need to wait for more.
        const dead = backend.health?.();
        result = { title: step.title, status: 'failed', command: step.run, checks: [], durationMs: 0, reason: dead ? `the machine died during this step: ${dead}` : (e as Error).message };
      }
      results.push(result);
      reporter.stepEnd(lab, step, result);
      if (result.status === 'failed') failed = true;
    }
  } finally {
    // Best effort: a VM that died cannot be cleaned, and needs no cleaning.
    // After Ctrl-C the cleanup still runs, but gets at most 10 s more.
    const grace = new AbortController();
    const cut = () => setTimeout(() => grace.abort(), TEARDOWN_GRACE_MS).unref();
    if (ctx.signal?.aborted) cut();
    else ctx.signal?.addEventListener('abort', cut, { once: true });
    if (!backend.health?.() && !ctx.machineGoesAfter) await backend.exec(teardownCommand(lab), { env, timeoutMs: 30_000, signal: grace.signal }).catch(() => {});
    ctx.signal?.removeEventListener('abort', cut);
  }
  // A lab whose steps the learner skipped has not passed, nor failed.
  const byYou = results.find((r) => r.reason === QUIT_BY_YOU) ?? results.find((r) => r.reason === SKIPPED_BY_YOU);
  const status: Status = failed || ctx.signal?.aborted ? 'failed' : byYou ? 'skipped' : 'passed';
  const reason = ctx.signal?.aborted ? 'interrupted' : setupProblem ? results[0].reason : !failed && byYou ? byYou.reason : undefined;
  return { lab, status, steps: results, durationMs: Date.now() - started, reason, startedAt };
}
