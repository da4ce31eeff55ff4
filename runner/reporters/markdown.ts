// A markdown summary of a run: a lab × kernel table with verdicts and
// durations, and the failed steps below it. GitHub Actions shows it as the
// job summary (--reporter markdown=$GITHUB_STEP_SUMMARY). Each machine's
// fingerprint goes under the verdict counts.
import path from 'node:path';
import { writeOutputFile } from '../../core/output-file.ts';
import type { LabResult, Reporter } from '../executor.ts';
import { distinctFingerprints, fingerprintLine } from '../fingerprint.ts';

const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

export function summaryMarkdown(results: LabResult[]): string {
  const kernels = [...new Set(results.map((r) => r.machine?.kernelRelease ?? 'unknown'))];
  const labs = [...new Map(results.map((r) => [r.lab.id, r.lab])).values()];
  const out = ['## sockmap-labs', '', `| lab | ${kernels.map((k) => `\`${k}\``).join(' | ')} |`, `|---|${kernels.map(() => '---').join('|')}|`];
  for (const lab of labs) {
    const cells = kernels.map((k) => {
      const r = results.find((x) => x.lab.id === lab.id && (x.machine?.kernelRelease ?? 'unknown') === k);
      if (!r) return '';
      if (r.error) return `❌ ${r.error}`.replace(/\|/g, '\\|');
      if (r.status === 'passed') return `✅ ${secs(r.durationMs)}`;
      if (r.status === 'failed') return `❌ ${secs(r.durationMs)}`;
      return `⏭️ skipped: ${r.reason ?? ''}`.replace(/\|/g, '\\|');
    });
    out.push(`| ${lab.id} | ${cells.join(' | ')} |`);
  }
  const count = (s: string) => results.filter((r) => r.status === s).length;
  const notRun = results.filter((r) => r.error);
  if (!results.length) out.push('', '**error: no lab ran**');
  else if (notRun.length) out.push('', `**error: ${notRun.length} lab${notRun.length === 1 ? '' : 's'} did not run: ${notRun[0].error!.replace(/^not run: /, '')}**`);
  out.push('', `**${count('passed')} passed, ${count('failed') - notRun.length} failed, ${count('skipped')} skipped${notRun.length ? `, ${notRun.length} not run` : ''}**`);
  const prints = distinctFingerprints(results.map((r) => r.machine?.fingerprint));
  if (prints.length) out.push('', ...prints.map((f) => `fingerprint: \`${fingerprintLine(f).replace(/`/g, "'")}\`  `));
  const failures = results.flatMap((r) => r.steps.filter((s) => s.status === 'failed').map((s) => ({ r, s })));
  if (failures.length) {
    out.push('', '### Failed steps', '');
    for (const { r, s } of failures) {
      const checks = s.checks.filter((c) => !c.ok).map((c) => `${c.name}: expected \`${c.expected.split('\n')[0]}\`, got \`${c.got.split('\n').slice(-1)[0]}\``);
      out.push(`- **${r.lab.id}** on \`${r.machine?.kernelRelease ?? '?'}\`, ${s.title}: ${[...checks, s.reason].filter(Boolean).join('; ')}`);
    }
  }
  return out.join('\n') + '\n';
}

export class MarkdownSummaryReporter implements Reporter {
  /** `file` was checked by core/output-file.ts checkOutputFile before the run. */
  constructor(private readonly file: string) {}
  runEnd(results: LabResult[]) {
    // Append: GitHub's summary file may already hold other steps' summaries.
    writeOutputFile(path.resolve(this.file), summaryMarkdown(results), 'the markdown summary', { append: true });
  }
}
