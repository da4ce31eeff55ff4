// Which labs a learner has passed, kept per user in the XDG state folder
// (~/.local/state/sockmap-labs/progress.json, see core/config.ts): shown by `lab list`, used by
// `lab next`, cleared by `lab reset`.
import fs from 'node:fs';
import path from 'node:path';
import { UserError } from '../core/errors.ts';
import type { LabResult } from './executor.ts';

interface LabProgress {
  status: 'passed' | 'failed' | 'skipped';
  /** Steps passed / steps in the lab, at the last run. */
  passedSteps: number;
  totalSteps: number;
  lastRun: string;
  /** When the lab first passed. */
  firstPassed?: string;
  kernel?: string;
}

export type Progress = Record<string, LabProgress>;

const STATUSES = new Set(['passed', 'failed', 'skipped']);
const isEntry = (v: unknown): v is LabProgress =>
  !!v && typeof v === 'object' && !Array.isArray(v) && STATUSES.has((v as LabProgress).status) && Number.isInteger((v as LabProgress).passedSteps) && Number.isInteger((v as LabProgress).totalSteps);

/** Notices already printed (one per file and problem, however often the progress is read). */
const told = new Set<string>();
const warn = (line: string) => {
  if (told.has(line)) return;
  told.add(line);
  process.stderr.write(`warning: ${line}\n`);
};

/**
 * The progress kept in `file` (Places.progressFile). A file that does not
 * parse, or is not a map of lab results, is never silently treated as empty
 * (the next save would overwrite it): it is moved aside as
 * progress.json.corrupt-<time>, with a notice saying where, and the learner
 * starts afresh. A file that cannot be read at all is reported and left alone.
 */
export function loadProgress(file: string): Progress {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') warn(`cannot read your progress in ${file} (${code}): it is not shown, and will not be saved (set LAB_STATE_HOME to a folder you can write)`);
    return {};
  }
  let data: unknown;
  let problem: string | undefined;
  try {
    data = JSON.parse(text);
    if (!data || typeof data !== 'object' || Array.isArray(data)) problem = `it holds ${data === null ? 'null' : Array.isArray(data) ? 'a list' : typeof data}, not a map of labs`;
    else {
      const bad = Object.entries(data).filter(([, v]) => !isEntry(v));
      if (bad.length) problem = `the entry for ${bad[0][0]} is not a lab result`;
    }
  } catch (e) {
    problem = `it is not JSON (${(e as Error).message.split('\n')[0]})`;
  }
  if (!problem) return data as Progress;
  const aside = `${file}.corrupt-${new Date().toISOString().replace(/[:.]/g, '-')}`;
  try {
    fs.renameSync(file, aside);
    warn(`your progress file ${file} could not be read: ${problem}. It was kept as ${aside}; progress starts afresh`);
  } catch {
    warn(`your progress file ${file} could not be read: ${problem}. It is left as it is, and progress is not shown`);
  }
  return {};
}

/** The state folder LAB_STATE_HOME (or XDG_STATE_HOME) points at, for messages. */
const stateFix = (file: string) => `set LAB_STATE_HOME to a folder you can write (progress goes to $LAB_STATE_HOME/${path.basename(path.dirname(file))}/${path.basename(file)})`;

/** Refuses, before a run, a progress file that could not be saved after the first lab. */
export function checkProgressWritable(file: string): void {
  let dir = path.dirname(file);
  while (!fs.existsSync(dir) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  let ok = false;
  try {
    ok = fs.statSync(dir).isDirectory();
    if (ok) fs.accessSync(dir, fs.constants.W_OK | fs.constants.X_OK);
    const st = fs.statSync(file, { throwIfNoEntry: false });
    if (st && !st.isFile()) ok = false;
  } catch {
    ok = false;
  }
  if (!ok) throw new UserError(`your progress cannot be saved in ${file}: ${dir} is not a folder you can write`, stateFix(file));
}

export function saveProgress(p: Progress, file: string): void {
  const tmp = `${file}.${process.pid}`;
  try {
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    fs.writeFileSync(tmp, JSON.stringify(p, null, 2) + '\n', { mode: 0o600 });
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw new UserError(`your progress cannot be saved in ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, stateFix(file));
  }
}

/** Records a lab's result. A skip (kernel too old) does not overwrite a pass. */
export function recordResult(p: Progress, r: LabResult, now = new Date()): Progress {
  const prev = p[r.lab.id];
  if (r.status === 'skipped' && prev) return p;
  const passed = r.steps.filter((s) => s.status === 'passed').length;
  p[r.lab.id] = {
    status: r.status,
    passedSteps: passed,
    totalSteps: r.steps.length,
    lastRun: now.toISOString(),
    firstPassed: prev?.firstPassed ?? (r.status === 'passed' ? now.toISOString() : undefined),
    kernel: r.machine?.kernelRelease,
  };
  return p;
}

/** The first lab (in order) not passed yet, or undefined when all are done. */
export function nextLab(ids: string[], p: Progress): string | undefined {
  return ids.find((id) => p[id]?.status !== 'passed');
}

/** Forgets one lab (or all); returns how many entries were removed. */
export function resetProgress(p: Progress, id?: string): number {
  if (id === undefined) {
    const n = Object.keys(p).length;
    for (const k of Object.keys(p)) delete p[k];
    return n;
  }
  if (!(id in p)) return 0;
  delete p[id];
  return 1;
}
