// `npm run lab <labs…>`: load the labs, then run each on the machines the
// session (vm/session.ts) starts for the run, with the reporters asked for.
// Ctrl-C stops the running step and the VM and leaves nothing behind.
import type { Config } from '../core/config.ts';
import { UserError } from '../core/errors.ts';
import { EXIT, exitCodeFor } from '../core/exit.ts';
import { onEachMachine, type SessionUi } from '../vm/session.ts';
import { formatChecks } from './doctor.ts';
import { fingerprintOf, runnerVersion } from './fingerprint.ts';
import { fanOut, QUIT_BY_YOU, runLab, type LabResult, type MachineInfo, type Reporter } from './executor.ts';
import { discoverLabs, loadLab, selectLabs, type LoadedLab } from './labs.ts';
import { checkProgressWritable, loadProgress, recordResult, saveProgress } from './progress.ts';
import { checkOutputFile } from '../core/output-file.ts';
import { GithubAnnotationsReporter } from './reporters/github.ts';
import { HtmlReporter } from './reporters/html.ts';
import { JsonLinesReporter } from './reporters/json.ts';
import { JUnitReporter } from './reporters/junit.ts';
import { MarkdownSummaryReporter } from './reporters/markdown.ts';
import { TerminalReporter } from './reporters/terminal.ts';
import { askStep } from './step-prompt.ts';
import { colorWanted, loadOra, paint, spinner } from './style.ts';

interface RunOptions {
  labs: string[];
  reporters?: string[];
  output?: string;
  /** Pause before each step for a key (a terminal is needed). */
  step?: boolean;
  /** Where the human reporter writes (default stdout); the soak test sends it to a log. */
  out?: NodeJS.WritableStream;
  quiet?: boolean;
}

/** A reporter named on the command line: human, junit[=FILE], json[=FILE], markdown[=FILE], html[=FILE], github. */
interface ReporterSpec {
  name: (typeof REPORTERS)[number];
  file?: string;
}
const REPORTERS = ['human', 'junit', 'json', 'markdown', 'html', 'github'] as const;
const DEFAULT_FILES: Record<string, string> = { junit: 'results.xml', json: 'results.jsonl', markdown: 'summary.md', html: 'report.html' };

export function parseReporterSpecs(specs: string[], output?: string): ReporterSpec[] {
  const out: ReporterSpec[] = [];
  for (const spec of specs.length ? specs : ['human']) {
    const eq = spec.indexOf('=');
    const name = eq < 0 ? spec : spec.slice(0, eq);
    const file = eq < 0 ? undefined : spec.slice(eq + 1);
    const known = REPORTERS.find((r) => r === name);
    if (!known) throw new UserError(`unknown reporter "${name}": use ${REPORTERS.join(', ')} (e.g. --reporter junit=results.xml)`, 'npm run lab -- --help');
    if (file !== undefined && !(known in DEFAULT_FILES))
      throw new UserError(`--reporter ${spec}: the ${known} reporter writes to the terminal, not to a file`, `drop "=${file}", or use a file reporter: --reporter markdown=${file}`);
    if (file === '') throw new UserError(`--reporter ${spec}: the file name after "=" is empty`, `name a file: --reporter ${known}=${DEFAULT_FILES[known]}`);
    out.push({ name: known, file });
  }
  const files = out.filter((r) => r.name in DEFAULT_FILES);
  if (output !== undefined) {
    if (output.trim() === '') throw new UserError('--output is empty: it needs a file name', 'name a file, e.g. --output results.xml');
    if (files.length !== 1) throw new UserError('--output names the file of one junit, json, markdown or html reporter; with several, give each its own: --reporter junit=a.xml --reporter json=b.jsonl');
    files[0].file = output;
  }
  for (const r of files) r.file ??= DEFAULT_FILES[r.name];
  // The human reporter always runs: it is how Ctrl-C, notices and failures reach the terminal.
  if (!out.some((r) => r.name === 'human')) out.unshift({ name: 'human' });
  return out;
}

/** The session's side of the terminal: notices, spinners (on a TTY), failed checks as a table. */
export function sessionUi(o: { tty: boolean; notice: (line: string) => void; what: string; out?: NodeJS.WritableStream }): SessionUi {
  return {
    notice: o.notice,
    what: o.what,
    formatChecks: (failed) => formatChecks(failed, paint(colorWanted(process.stderr))),
    progress: async (text, work) => {
      const spin = o.tty ? await spinner(text, o.out) : undefined;
      if (!spin) o.notice(text);
      try {
        return await work();
      } finally {
        spin?.stop();
      }
    },
  };
}

/** A lab that never ran because its machine never came up: a failed result carrying the reason, for every report. */
function notRun(lab: LoadedLab, why: string, _i: number): LabResult {
  const error = `not run: ${why.split('\n')[0]}`;
  return { lab, status: 'failed', steps: [], durationMs: 0, reason: error, error, startedAt: new Date() };
}

export async function runLabs(cfg: Config, o: RunOptions): Promise<number> {
  const tty = !!process.stdout.isTTY && !cfg.ci;
  if (o.step && !(process.stdin.isTTY && process.stdout.isTTY))
    throw new UserError('--step waits for your keys before each step, so it needs a terminal', `run it in a terminal, or without --step: npm run lab ${o.labs.join(' ')}`);
  const refs = selectLabs(discoverLabs(cfg.places.labsDir), o.labs);
  const labs = refs.map(loadLab);
  // Every report file is checked now, before a VM boots: a run is never lost to a report that cannot be written.
  const specs = parseReporterSpecs(o.reporters ?? [], o.output).map((r) =>
    r.file === undefined ? r : { ...r, file: checkOutputFile(r.file, { what: o.output !== undefined ? '--output' : `--reporter ${r.name}=FILE`, suggest: DEFAULT_FILES[r.name] }) },
  );
  const files = specs.flatMap((r) => (r.file ? [r.file] : []));
  const twice = files.find((f, i) => files.indexOf(f) !== i);
  if (twice) throw new UserError(`two reporters would write the same file ${twice}`, 'give each reporter its own file: --reporter junit=a.xml --reporter html=b.html');
  // Progress is the learner's own: it must be writable before the run, not fail after the first lab.
  if (!cfg.solutions) checkProgressWritable(cfg.places.progressFile);
  const terminal = new TerminalReporter({ ora: tty && !o.out ? await loadOra() : undefined, color: !o.out && colorWanted(), quiet: o.quiet, out: o.out });
  const reporter = fanOut(
    specs.map((r): Reporter => {
      switch (r.name) {
        case 'junit':
          return new JUnitReporter(r.file!);
        case 'json':
          return new JsonLinesReporter(r.file!);
        case 'markdown':
          return new MarkdownSummaryReporter(r.file!);
        case 'html':
          return new HtmlReporter(r.file!);
        case 'github':
          return new GithubAnnotationsReporter();
        default:
          return terminal;
      }
    }),
  );
  const results: LabResult[] = [];
  // Read once: package.json's version and the checkout's commit, for every machine's fingerprint.
  const runner = runnerVersion();
  let interrupted: NodeJS.Signals | undefined;
  let runError: unknown;
  try {
    const ui = sessionUi({ tty, notice: (s) => reporter.notice(s), what: 'the step', out: o.out });
    interrupted = await onEachMachine(cfg, ui, async ({ backend, info, config, signal, throwAway }) => {
      const machine: MachineInfo = { backend: info.backend, kernelRelease: info.kernelRelease, accel: info.accel, fingerprint: fingerprintOf(info, runner) };
      reporter.machineStart(machine);
      // Scaled by the accelerator really in use (a KVM that failed its probe means TCG).
      const scale = cfg.machine.timeoutScale ?? (info.accel === 'tcg' ? 2 : 1);
      for (const [i, lab] of labs.entries()) {
        if (signal.aborted) return;
        reporter.labStart(lab, i, labs.length);
        const r = await runLab(lab, backend, reporter, {
          kernelRelease: info.kernelRelease,
          kernelConfig: config,
          signal,
          timeoutScale: scale,
          beforeStep: o.step ? () => askStep() : undefined,
          solutions: cfg.solutions,
          // The last lab on a VM about to be stopped needs no teardown.
          machineGoesAfter: throwAway && i === labs.length - 1,
        });
        r.machine = machine;
        results.push(r);
        // A --solutions run checks the reference answers, not the learner's work: it is not their progress.
        if (!cfg.solutions) saveProgress(recordResult(loadProgress(cfg.places.progressFile), r), cfg.places.progressFile);
        reporter.labEnd(r);
        if (r.reason === QUIT_BY_YOU) return 'stop';
        const dead = backend.health?.();
        if (dead) {
          reporter.notice(`the machine is gone (${dead}): the remaining labs cannot run on it`);
          return;
        }
      }
    });
  } catch (e) {
    runError = e;
    throw e;
  } finally {
    // No lab ran (the VM did not boot, a machine check failed): every report says so as an error, never "0 passed".
    if (results.length === 0 && !interrupted) {
      const why = runError instanceof Error ? runError.message : 'no lab ran';
      for (const [i, lab] of labs.entries()) results.push(notRun(lab, why, i));
    }
    await reporter.runEnd(results);
  }
  if (interrupted) return exitCodeFor(interrupted);
  return results.some((r) => r.status === 'failed') ? EXIT.failed : EXIT.ok;
}
