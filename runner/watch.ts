// `npm run lab 5 -- --watch`: an exercise checked each time it is saved.
// A warm VM is kept up (the one already up, or one started for this and
// stopped at the end); every save of a file under the lab's exercise/ folder
// runs the lab again on it, and the terminal shows only what changed since the
// last try: all steps pass, or the first failing step with its first failed
// check and its hint. Ctrl-C stops watching with a summary of the tries; the
// exit status is the last try's (0 passed, 1 failed).
import fs from 'node:fs';
import path from 'node:path';
import type { Config } from '../core/config.ts';
import { catchSignals } from '../core/signals.ts';
import { UserError } from '../core/errors.ts';
import { onEachMachine } from '../vm/session.ts';
import { fanOut, runLab, type LabResult } from './executor.ts';
import { explanationLine } from './explain.ts';
import { discoverLabs, loadLab, selectLabs, type LoadedLab } from './labs.ts';
import { renderMarkdown } from './markdown.ts';
import { loadProgress, recordResult, saveProgress } from './progress.ts';
import { sessionUi } from './run-labs.ts';
import { colorWanted, paint, type Paint } from './style.ts';
import { vmDown, vmStatus, vmUp } from './vm-commands.ts';

/** Saves that come close together (an editor writes, renames, touches) make one try. */
const SETTLE_MS = 300;

interface Try {
  n: number;
  result: LabResult;
  /** 1-based index of the first failed step, or 0 when all passed. */
  failedAt: number;
}

/** The first failed step of a try, in a few lines: what was expected, what came, the hint. */
function describeTry(t: Try, last: Try | undefined, lab: LoadedLab, p: Paint, color: boolean): string[] {
  const steps = t.result.steps;
  const when = new Date().toLocaleTimeString();
  if (!t.failedAt) return [`${p.green('✔')} try ${t.n} (${when}): all ${steps.length} steps pass${last && last.failedAt ? ` ${p.dim(`(last try failed at step ${last.failedAt})`)}` : ''}. Solved: Ctrl-C to stop watching.`];
  const s = steps[t.failedAt - 1];
  const since = !last ? '' : !last.failedAt ? 'it passed last try' : last.failedAt === t.failedAt ? 'the same step as last try' : last.failedAt < t.failedAt ? `further than last try (step ${last.failedAt})` : `last try got to step ${last.failedAt}`;
  const lines = [`${p.red('✖')} try ${t.n} (${when}): step ${t.failedAt}/${steps.length}: ${s.title}${since ? ` ${p.dim(`(${since})`)}` : ''}`];
  const check = s.checks.find((c) => !c.ok);
  if (check) {
    lines.push(`    ${p.bold(check.name)}`);
    lines.push(`      ${p.green('expected:')} ${check.expected.split('\n').slice(0, 4).join('\n                ')}`);
    lines.push(`      ${p.red('got:     ')} ${check.got.split('\n').slice(0, 4).join('\n                ')}`);
  } else if (s.reason) lines.push(`    ${s.reason}`);
  for (const e of s.explanations ?? []) lines.push(`    ${p.cyan('in SOCKMAP terms:')} ${explanationLine(e)}`);
  const hint = lab.spec.steps.find((x) => x.title === s.title)?.hint;
  if (hint) lines.push(`    ${p.yellow('hint:')}`, renderMarkdown(hint, { width: Math.min(process.stdout.columns || 100, 100), color, indent: '      ' }));
  return lines;
}

export async function watchLab(cfg: Config, which: string[]): Promise<number> {
  if (which.length !== 1 || which[0] === 'all') throw new UserError('--watch follows one exercise: name one lab', 'npm run lab 5 -- --watch');
  const lab = loadLab(selectLabs(discoverLabs(cfg.places.labsDir), which)[0]);
  const folder = path.join(lab.dir, 'exercise');
  if (!fs.existsSync(folder))
    throw new UserError(`lab ${lab.id} has no exercise to watch (no exercise/ folder)`, `watch a lab with one: ${discoverLabs(cfg.places.labsDir).filter((r) => fs.existsSync(path.join(r.dir, 'exercise'))).map((r) => `npm run lab ${r.number} -- --watch`).join(', ')}`);
  if (cfg.machine.backend !== 'qemu') throw new UserError('--watch keeps a warm VM up, which only the qemu backend has', 'drop --backend');
  const color = colorWanted();
  const p = paint(color);
  const say = (line: string) => process.stdout.write(`${line}\n`);
  const ui = sessionUi({ tty: false, notice: (s) => say(p.dim(`» ${s}`)), what: 'the try' });

  // A warm VM for every try: the one that is up, or one of our own, stopped at the end.
  const ours = !vmStatus(cfg);
  if (ours) {
    say(p.dim('» starting a warm VM for the tries (stopped when you stop watching)…'));
    await vmUp(cfg);
  }
  const tries: Try[] = [];
  let changed = true;
  let stop: NodeJS.Signals | undefined;
  let wake: () => void = () => {};
  const watcher = fs.watch(folder, { recursive: true }, () => {
    changed = true;
    setTimeout(() => wake(), SETTLE_MS);
  });
  /** Waits for a save; resolves with the signal instead when Ctrl-C (or SIGTERM) comes first. */
  const nextSave = async (): Promise<NodeJS.Signals | undefined> => {
    const signals = catchSignals();
    try {
      while (!changed && !signals.signal.aborted)
        await new Promise<void>((r) => {
          wake = r;
          signals.signal.addEventListener('abort', () => r(), { once: true });
        });
      return signals.interrupted();
    } finally {
      signals.dispose();
    }
  };
  say(`watching ${path.relative(process.cwd(), folder) || folder}: save a file there to check lab ${lab.id} again; Ctrl-C stops.`);
  try {
    while (!(stop = await nextSave())) {
      changed = false;
      let result: LabResult | undefined;
      // Ctrl-C during a try stops the try (the session's own handler) and the watch.
      stop = await onEachMachine(cfg, ui, async ({ backend, info, config, signal }) => {
        result = await runLab(lab, backend, fanOut([]), { kernelRelease: info.kernelRelease, kernelConfig: config, signal, timeoutScale: cfg.machine.timeoutScale ?? (info.accel === 'tcg' ? 2 : 1) });
      });
      if (stop) break;
      if (!result) continue;
      saveProgress(recordResult(loadProgress(cfg.places.progressFile), result), cfg.places.progressFile);
      const failedAt = result.steps.findIndex((s) => s.status === 'failed') + 1;
      const t: Try = { n: tries.length + 1, result, failedAt: result.status === 'passed' ? 0 : failedAt || result.steps.length };
      for (const l of describeTry(t, tries.at(-1), lab, p, color)) say(l);
      tries.push(t);
      say(p.dim('» waiting for a save…'));
    }
  } finally {
    watcher.close();
    if (ours) await vmDown(cfg);
  }
  const last = tries.at(-1);
  const verdict = !last ? 'no try finished' : !last.failedAt ? 'the last one passed every step' : `the last one failed at step ${last.failedAt}/${last.result.steps.length}: ${last.result.steps[last.failedAt - 1].title}`;
  say(`\nstopped watching lab ${lab.id}${stop ? ` (${stop === 'SIGINT' ? 'Ctrl-C' : stop})` : ''}: ${tries.length} ${tries.length === 1 ? 'try' : 'tries'}, ${verdict}.${ours ? ' The warm VM is stopped.' : ''}`);
  return last && !last.failedAt ? 0 : 1;
}
