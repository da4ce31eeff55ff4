// Which labs a learner has passed, kept per user in the XDG state folder
// (~/.local/state/sockmap-labs/progress.json, see core/config.ts): shown by `lab list`, used by
// `lab next`, cleared by `lab reset`.
import fs from 'node:fs';
import path from 'node:path';
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

/** The progress kept in `file` (Places.progressFile). */
export function loadProgress(file: string): Progress {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch {
    return {};
  }
}

export function saveProgress(p: Progress, file: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}`;
  fs.writeFileSync(tmp, JSON.stringify(p, null, 2) + '\n', { mode: 0o600 });
  fs.renameSync(tmp, file);
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
