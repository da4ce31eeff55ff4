// GitHub Actions workflow commands: an ::error annotation on the lab file line
// of each failed step, so the failure shows up on the pull request's diff.
import path from 'node:path';
import type { LabResult, Reporter } from '../executor.ts';
import { projectRoot } from '../../core/paths.ts';
import { failureText } from './junit.ts';

/** Escapes a workflow command's data (and, with `property`, a property value). */
export function escapeCommand(s: string, property = false): string {
  let out = s.replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
  if (property) out = out.replace(/:/g, '%3A').replace(/,/g, '%2C');
  return out;
}

export function annotations(r: LabResult): string[] {
  const file = path.relative(projectRoot, r.lab.file);
  return r.steps.flatMap((s, i) => {
    if (s.status !== 'failed') return [];
    const line = r.lab.stepLines?.[i] ?? 1;
    const title = `${r.lab.id}: ${s.title}${r.machine ? ` (kernel ${r.machine.kernelRelease})` : ''}`;
    const f = failureText(s);
    return [`::error file=${escapeCommand(file, true)},line=${line},title=${escapeCommand(title, true)}::${escapeCommand(f.body)}`];
  });
}

export class GithubAnnotationsReporter implements Reporter {
  constructor(private readonly out: NodeJS.WritableStream = process.stdout) {}
  labEnd(r: LabResult) {
    for (const a of annotations(r)) this.out.write(a + '\n');
  }
}
