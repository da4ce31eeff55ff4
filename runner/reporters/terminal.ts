// The human reporter: lab text, each step's command and streamed output, and a
// verdict with expected vs. got on failure. On a TTY an ora spinner shows the
// running step; in CI logs (no TTY) it prints plain lines only.
import path from 'node:path';
import type { default as oraFn, Ora } from 'ora';
import type { Step } from '../lab-schema.ts';
import type { LoadedLab } from '../labs.ts';
import type { LabResult, MachineInfo, Reporter, StepResult } from '../executor.ts';
import { distinctFingerprints, fingerprintLine, type RunFingerprint } from '../fingerprint.ts';
import { highlight } from '../highlight.ts';
import { renderMarkdown } from '../markdown.ts';
import { paint, type Paint } from '../style.ts';

interface TerminalReporterOptions {
  out?: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  /** ora, for spinners on a TTY (loaded by the caller only then: it takes ~90 ms). */
  ora?: typeof oraFn;
  color?: boolean;
  /** Skip the lab and step texts. */
  quiet?: boolean;
}

const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

export class TerminalReporter implements Reporter {
  private out: NodeJS.WritableStream & { columns?: number };
  private p: Paint;
  private spinner?: Ora;
  private partial = '';
  private stepLabel = '';
  private fingerprints: (RunFingerprint | undefined)[] = [];

  constructor(private o: TerminalReporterOptions = {}) {
    this.out = o.out ?? process.stdout;
    this.p = paint(o.color ?? false);
  }

  private width() {
    return Math.min(this.out.columns ?? 80, 100);
  }

  private write(s: string) {
    if (this.spinner?.isSpinning) {
      this.spinner.clear();
      this.out.write(s);
      this.spinner.render();
    } else this.out.write(s);
  }

  private line(s = '') {
    this.write(s + '\n');
  }

  notice(line: string) {
    this.line(this.p.dim(`» ${line}`));
  }

  labStart(lab: LoadedLab, index: number, total: number) {
    const head = `Lab ${String(lab.number).padStart(2, '0')} · ${lab.spec.title}`;
    this.line();
    this.line(this.p.bold(`━━ ${head} ${total > 1 ? this.p.dim(`(${index + 1}/${total}) `) : ''}${'━'.repeat(Math.max(3, this.width() - head.length - 12))}`));
    if (!this.o.quiet && lab.spec.text) {
      this.line();
      this.line(renderMarkdown(lab.spec.text, { width: this.width(), color: this.o.color }));
    }
    const ex = lab.spec.exercise;
    if (ex) {
      const files = ex.files.map((f) => path.relative(process.cwd(), path.join(lab.dir, 'exercise', f)) || f);
      this.line();
      this.line(this.p.bold(this.p.yellow(`✎ Exercise: complete ${files.join(', ')}`)));
      if (!this.o.quiet && ex.text) this.line(renderMarkdown(ex.text, { width: this.width(), color: this.o.color, indent: '  ' }));
      this.line(this.p.dim(`  Stuck? npm run lab solution ${lab.number} shows the answer; --apply puts it in place.`));
    }
  }

  stepStart(_lab: LoadedLab, step: Step, index: number, total: number) {
    this.stepLabel = `step ${index + 1}/${total}: ${step.title}`;
    this.line();
    this.line(this.p.bold(`▶ ${this.stepLabel}`));
    if (!this.o.quiet && step.text) this.line(renderMarkdown(step.text, { width: this.width(), color: this.o.color, indent: '  ' }));
    for (const l of highlight(step.run.trimEnd(), 'sh', this.p)) this.line(`  ${this.p.dim('$')} ${l}`);
    if (step.background) this.line(this.p.dim(`  (runs in the background as "${step.background}")`));
    this.partial = '';
  }

  stepRun() {
    if (this.o.ora) this.spinner = this.o.ora({ text: this.p.dim('running…'), stream: this.out as NodeJS.WriteStream, indent: 2 }).start();
  }

  stepOutput(chunk: string) {
    const text = this.partial + chunk;
    const lines = text.split('\n');
    this.partial = lines.pop() ?? '';
    for (const l of lines) this.line(`  ${this.p.dim('│')} ${l}`);
  }

  stepEnd(_lab: LoadedLab, step: Step, r: StepResult) {
    if (this.partial) this.stepOutput('\n');
    this.spinner?.stop();
    this.spinner = undefined;
    if (r.status === 'passed') {
      this.line(`  ${this.p.green('✔ PASS')} ${this.p.dim(secs(r.durationMs))}`);
      return;
    }
    if (r.status === 'skipped') {
      this.line(`  ${this.p.yellow('– SKIP')} ${r.reason ?? ''}`);
      return;
    }
    this.line(`  ${this.p.red('✖ FAIL')} ${this.stepLabel} ${this.p.dim(secs(r.durationMs))}`);
    if (r.reason) this.line(`    ${r.reason}`);
    this.line(`    ${this.p.dim('command:')}`);
    for (const l of r.command.trimEnd().split('\n')) this.line(`      ${l}`);
    for (const c of r.checks.filter((c) => !c.ok)) {
      this.line(`    ${this.p.bold(c.name)}`);
      this.line(`      ${this.p.green('expected:')} ${c.expected.split('\n').join('\n                ')}`);
      this.line(`      ${this.p.red('got:     ')} ${c.got.split('\n').join('\n                ')}`);
    }
    if (r.exec) {
      const tail = (r.exec.stdout + r.exec.stderr).trimEnd().split('\n').slice(-10);
      if (tail.join('').trim()) {
        this.line(`    ${this.p.dim('last lines of output:')}`);
        for (const l of tail) this.line(`      ${l}`);
      }
    }
    if (r.explanations?.length) {
      this.line(`    ${this.p.cyan('in SOCKMAP terms:')}`);
      for (const e of r.explanations) {
        this.line(`      ${this.p.bold(`${e.operation} → ${e.errno}`)} ${this.p.dim(`(${e.line})`)}`);
        this.line(renderMarkdown(e.text, { width: this.width(), color: this.o.color, indent: '        ' }));
        this.line(`        ${this.p.dim(`decided by ${e.source}`)}`);
      }
    }
    if (step.hint && r.status === 'failed') {
      this.line(`    ${this.p.yellow('hint:')}`);
      this.line(renderMarkdown(step.hint, { width: this.width(), color: this.o.color, indent: '      ' }));
    }
  }

  labEnd(r: LabResult) {
    const passed = r.steps.filter((s) => s.status === 'passed').length;
    const label = `Lab ${String(r.lab.number).padStart(2, '0')} ${r.lab.spec.title}`;
    if (r.status === 'skipped') this.line(`\n${this.p.yellow('– SKIP')} ${label}: ${r.reason}`);
    else if (r.status === 'passed') this.line(`\n${this.p.green('✔ PASS')} ${label}: ${passed}/${r.steps.length} steps ${this.p.dim(secs(r.durationMs))}`);
    else this.line(`\n${this.p.red('✖ FAIL')} ${label}: ${passed}/${r.steps.length} steps passed${r.reason ? ` (${r.reason})` : ''} ${this.p.dim(secs(r.durationMs))}`);
  }

  machineStart(info: MachineInfo) {
    this.fingerprints.push(info.fingerprint);
  }

  /** The closing table (labs × kernels when several kernels ran, else one row per lab), then each machine's fingerprint. */
  runEnd(results: LabResult[]) {
    if (!results.length) return;
    if (results.length > 1) this.summary(results);
    for (const f of distinctFingerprints([...this.fingerprints, ...results.map((r) => r.machine?.fingerprint)])) this.line(this.p.dim(`fingerprint: ${fingerprintLine(f)}`));
  }

  private summary(results: LabResult[]) {
    const kernels = [...new Set(results.map((r) => r.machine?.kernelRelease ?? '?'))];
    this.line();
    if (kernels.length > 1) {
      this.line(this.p.bold('Summary: labs × kernels'));
      this.line(kernelMatrix(results, kernels, this.p));
    } else {
      this.line(this.p.bold('Summary'));
      for (const r of results) {
        const mark = r.status === 'passed' ? this.p.green('✔') : r.status === 'failed' ? this.p.red('✖') : this.p.yellow('–');
        this.line(`  ${mark} ${String(r.lab.number).padStart(2, '0')} ${r.lab.id.padEnd(28)} ${r.status.padEnd(8)} ${secs(r.durationMs)}${r.reason ? `  ${r.reason}` : ''}`);
      }
    }
    const count = (s: string) => results.filter((r) => r.status === s).length;
    this.line(`labs: ${count('passed')} passed, ${count('failed')} failed, ${count('skipped')} skipped`);
  }
}

/** A lab × kernel table of verdicts, skip reasons listed below it. */
export function kernelMatrix(results: LabResult[], kernels: string[], p: Paint): string {
  const labs = [...new Map(results.map((r) => [r.lab.id, r.lab])).values()];
  const cell = (r?: LabResult) => (!r ? '' : r.status === 'passed' ? '✔ pass' : r.status === 'failed' ? '✖ FAIL' : '– skip');
  const color = (s: string) => (s.startsWith('✔') ? p.green(s) : s.startsWith('✖') ? p.red(s) : s ? p.yellow(s) : s);
  const width = Math.max(...kernels.map((k) => k.length), 6);
  const lines = [`  ${'lab'.padEnd(28)} ${kernels.map((k) => k.padEnd(width)).join('  ')}`];
  const notes: string[] = [];
  for (const lab of labs) {
    const cells = kernels.map((k) => {
      const r = results.find((x) => x.lab.id === lab.id && (x.machine?.kernelRelease ?? '?') === k);
      if (r?.status === 'skipped' && r.reason) notes.push(`  ${lab.id} on ${k}: ${r.reason}`);
      else for (const s of r?.steps ?? []) if (s.status === 'skipped' && s.reason && s.reason !== 'an earlier step failed') notes.push(`  ${lab.id} on ${k}, "${s.title}" skipped: ${s.reason}`);
      return color(cell(r).padEnd(width));
    });
    lines.push(`  ${lab.id.padEnd(28)} ${cells.join('  ')}`);
  }
  return [...lines, ...(notes.length ? ['', ...notes] : [])].join('\n');
}
