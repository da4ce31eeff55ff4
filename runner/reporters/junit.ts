// JUnit XML for CI systems: one <testsuite> per lab and machine, one <testcase>
// per step; a failure carries expected vs. got, <system-out> the step's output,
// a skip its reason. Each suite's <properties> name the machine and the run's
// fingerprint (sockmap-labs.runner, .backend, .arch, .kernel, .accel, .image).
import os from 'node:os';
import path from 'node:path';
import type { LabResult, MachineInfo, Reporter, StepResult } from '../executor.ts';
import { explanationLine } from '../explain.ts';
import { fingerprintProperties } from '../fingerprint.ts';
import { projectRoot } from '../../core/paths.ts';
import { writeOutputFile } from '../../core/output-file.ts';

/** Escapes text for XML, dropping characters XML 1.0 cannot hold (console control codes). */
export function xmlEscape(s: string): string {
  return s
    // eslint-disable-next-line no-control-regex
    .replace(/[^\x09\x0A\x0D\x20-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/gu, '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;');
}

const attrs = (a: Record<string, string | number | undefined>) =>
  Object.entries(a)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => ` ${k}="${xmlEscape(String(v))}"`)
    .join('');

const secs = (ms: number) => (ms / 1000).toFixed(3);

/** A failed step as text: the command, each failed check, the reason. */
export function failureText(s: StepResult): { message: string; body: string } {
  const failed = s.checks.filter((c) => !c.ok);
  const why = s.explanations ?? [];
  const message = [
    failed.length ? failed.map((c) => `${c.name}: expected ${c.expected.split('\n')[0]}`).join('; ') : (s.reason ?? 'failed'),
    ...why.map((e) => `${explanationLine(e)} [${e.source}]`),
  ].join(' — ');
  const body = [
    `command:\n${s.command.trimEnd()}`,
    ...failed.map((c) => `${c.name}\n  expected: ${c.expected}\n  got:      ${c.got}`),
    ...(s.reason ? [`reason: ${s.reason}`] : []),
    ...why.map((e) => `in SOCKMAP terms: ${explanationLine(e)}\n  seen in: ${e.line}\n  decided by: ${e.source}`),
  ].join('\n\n');
  return { message, body };
}

/** A suite's <property> pairs: the machine as before (backend, kernelRelease, accel), then its fingerprint. */
function machineProperties(m: MachineInfo): [string, string][] {
  return [['backend', m.backend], ['kernelRelease', m.kernelRelease], ['accel', m.accel], ...(m.fingerprint ? fingerprintProperties(m.fingerprint) : [])];
}

export function junitXml(results: LabResult[]): string {
  const suites = results.map((r) => {
    const kernel = r.machine?.kernelRelease;
    const file = path.relative(projectRoot, r.lab.file);
    if (r.error) {
      // The lab never ran (the machine did not come up): one errored case, so CI shows red, not an empty green suite.
      const a = attrs({ classname: `labs.${r.lab.id}${kernel ? `.${kernel}` : ''}`, name: 'the lab ran', time: '0.000', file });
      return `  <testsuite${attrs({ name: r.lab.id, tests: 1, failures: 0, errors: 1, skipped: 0, time: '0.000', timestamp: (r.startedAt ?? new Date()).toISOString().replace(/\.\d+Z$/, ''), hostname: os.hostname() })}>\n    <testcase${a}><error${attrs({ message: r.error, type: 'not-run' })}>${xmlEscape(r.error)}</error></testcase>\n  </testsuite>`;
    }
    const cases = r.steps.map((s, i) => {
      const name = `step ${i + 1}: ${s.title}`;
      const a = attrs({ classname: `labs.${r.lab.id}${kernel ? `.${kernel}` : ''}`, name, time: secs(s.durationMs), file });
      let inner = '';
      if (s.status === 'failed') {
        const f = failureText(s);
        inner += `<failure${attrs({ message: f.message, type: 'check' })}>${xmlEscape(f.body)}</failure>`;
      } else if (s.status === 'skipped') inner += `<skipped${attrs({ message: s.reason ?? 'skipped' })}/>`;
      if (s.exec) {
        inner += `<system-out>${xmlEscape(s.exec.stdout)}</system-out>`;
        if (s.exec.stderr) inner += `<system-err>${xmlEscape(s.exec.stderr)}</system-err>`;
      }
      return `    <testcase${a}>${inner}</testcase>`;
    });
    const count = (st: string) => r.steps.filter((s) => s.status === st).length;
    const props = r.machine
      ? `    <properties>\n${machineProperties(r.machine)
          .map(([k, v]) => `      <property${attrs({ name: k, value: v })}/>`)
          .join('\n')}\n    </properties>\n`
      : '';
    return (
      `  <testsuite${attrs({
        name: `${r.lab.id}${kernel ? ` [${kernel}]` : ''}`,
        tests: r.steps.length,
        failures: count('failed'),
        errors: 0,
        skipped: count('skipped'),
        time: secs(r.durationMs),
        timestamp: (r.startedAt ?? new Date()).toISOString().replace(/\.\d+Z$/, ''),
        hostname: os.hostname(),
      })}>\n${props}${cases.join('\n')}\n  </testsuite>`
    );
  });
  const all = results.flatMap((r) => r.steps);
  const errors = results.filter((r) => r.error).length;
  const total = attrs({
    name: 'sockmap-labs',
    tests: all.length + errors,
    failures: all.filter((s) => s.status === 'failed').length,
    errors,
    skipped: all.filter((s) => s.status === 'skipped').length,
    time: secs(results.reduce((t, r) => t + r.durationMs, 0)),
  });
  return `<?xml version="1.0" encoding="UTF-8"?>\n<testsuites${total}>\n${suites.join('\n')}\n</testsuites>\n`;
}

export class JUnitReporter implements Reporter {
  /** `file` was checked by core/output-file.ts checkOutputFile before the run. */
  constructor(private readonly file: string) {}
  runEnd(results: LabResult[]) {
    writeOutputFile(path.resolve(this.file), junitXml(results), 'the JUnit report');
  }
}
