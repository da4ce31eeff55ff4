// The machine-readable reporters: JUnit XML (checked against a schema with
// xmllint), the markdown job summary, GitHub annotations, JSON lines, and the
// lab × kernel table.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { LabResult, StepResult } from '../runner/executor.ts';
import type { LoadedLab } from '../runner/labs.ts';
import { annotations, escapeCommand } from '../runner/reporters/github.ts';
import { JsonLinesReporter } from '../runner/reporters/json.ts';
import { junitXml, xmlEscape } from '../runner/reporters/junit.ts';
import { summaryMarkdown } from '../runner/reporters/markdown.ts';
import { kernelMatrix } from '../runner/reporters/terminal.ts';
import { parseReporterSpecs } from '../runner/run-labs.ts';
import { paint } from '../runner/style.ts';
import { projectRoot } from '../core/paths.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sockmap-labs-reporters-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function lab(id: string): LoadedLab {
  const [n, ...rest] = id.split('-');
  return {
    id,
    number: Number(n),
    slug: rest.join('-'),
    dir: path.join(projectRoot, 'labs', id),
    file: path.join(projectRoot, 'labs', id, 'lab.yaml'),
    spec: { title: `Lab ${id}`, steps: [{ title: 'one', run: 'true' }] },
    stepLines: [10, 20, 30],
  };
}

const exec = (stdout: string, code = 0) => ({ code, stdout, stderr: '', timedOut: false, durationMs: 120 });
const passed: StepResult = { title: 'Create a map', status: 'passed', command: 'bpftool map create …', checks: [{ name: 'exit code', ok: true, expected: '0', got: '0' }], exec: exec('1: sockmap <ok> & "fine"\x1b[31m\x07'), durationMs: 120 };
const failed: StepResult = {
  title: 'Send to 192.0.2.1',
  status: 'failed',
  command: 'echo -n b | nc 192.0.2.1 1234',
  checks: [{ name: 'fails with EACCES', ok: false, expected: 'EACCES in the output', got: 'sendto(3, "b", 1) = 1' }],
  exec: exec('sendto(3, "b", 1) = 1'),
  durationMs: 300,
};
const skipped: StepResult = { title: 'VSOCK', status: 'skipped', command: 'socklab …', checks: [], durationMs: 0, reason: 'needs kernel 6.4 or newer; this one is 6.1.0' };
const m612 = { backend: 'qemu', kernelRelease: '6.12.117+deb12-amd64', accel: 'tcg' };
const m61 = { backend: 'qemu', kernelRelease: '6.1.0-27-amd64', accel: 'tcg' };

const results: LabResult[] = [
  { lab: lab('01-create-map'), status: 'passed', steps: [passed], durationMs: 3500, machine: m612, startedAt: new Date('2026-11-25T10:00:00Z') },
  { lab: lab('05-egress-policy'), status: 'failed', steps: [passed, failed, { ...skipped, reason: 'an earlier step failed' }], durationMs: 5000, machine: m612 },
  { lab: lab('08-socket-types'), status: 'passed', steps: [passed, skipped], durationMs: 4000, machine: m61 },
  { lab: lab('01-create-map'), status: 'passed', steps: [passed], durationMs: 3000, machine: m61 },
  { lab: lab('05-egress-policy'), status: 'skipped', steps: [], durationMs: 0, machine: m61, reason: 'needs kernel 6.4 or newer; this one is 6.1.0' },
];

describe('JUnit XML', () => {
  it('is accepted by the JUnit schema (xmllint)', () => {
    const file = path.join(tmp, 'results.xml');
    fs.writeFileSync(file, junitXml(results));
    const out = execFileSync('xmllint', ['--noout', '--schema', path.join(projectRoot, 'test/fixtures/junit.xsd'), file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    expect(out).toBe('');
  });

  it('has one suite per lab and kernel, one case per step, failures with expected vs. got', () => {
    const xml = junitXml(results);
    expect(xml.match(/<testsuite /g)).toHaveLength(5);
    expect(xml).toContain('<testsuite name="05-egress-policy [6.12.117+deb12-amd64]" tests="3" failures="1" errors="0" skipped="1"');
    expect(xml).toContain('<failure message="fails with EACCES: expected EACCES in the output" type="check">');
    expect(xml).toContain('got:      sendto(3, &quot;b&quot;, 1) = 1');
    expect(xml).toContain('<skipped message="needs kernel 6.4 or newer; this one is 6.1.0"/>');
    expect(xml).toContain('<testsuites name="sockmap-labs" tests="7" failures="1"');
  });

  it('escapes markup and drops control characters XML cannot hold', () => {
    expect(xmlEscape('a<b>&"c"\x1b[31m\x07')).toBe('a&lt;b&gt;&amp;&quot;c&quot;[31m');
    expect(junitXml(results)).toContain('<system-out>1: sockmap &lt;ok&gt; &amp; &quot;fine&quot;[31m</system-out>');
  });
});

describe('markdown job summary', () => {
  const md = summaryMarkdown(results);
  it('is a lab × kernel table with verdicts, durations and skip reasons', () => {
    expect(md).toContain('| lab | `6.12.117+deb12-amd64` | `6.1.0-27-amd64` |');
    expect(md).toContain('| 01-create-map | ✅ 3.5 s | ✅ 3.0 s |');
    expect(md).toContain('| 05-egress-policy | ❌ 5.0 s | ⏭️ skipped: needs kernel 6.4 or newer; this one is 6.1.0 |');
    expect(md).toContain('| 08-socket-types |  | ✅ 4.0 s |');
    expect(md).toContain('**3 passed, 1 failed, 1 skipped**');
  });
  it('lists the failed steps with expected and got', () => {
    expect(md).toContain('- **05-egress-policy** on `6.12.117+deb12-amd64`, Send to 192.0.2.1: fails with EACCES: expected `EACCES in the output`, got `sendto(3, "b", 1) = 1`');
  });
});

describe('GitHub annotations', () => {
  it('put an ::error on the lab file line of each failed step', () => {
    const a = annotations(results[1]);
    expect(a).toHaveLength(1);
    expect(a[0].startsWith('::error file=labs/05-egress-policy/lab.yaml,line=20,title=05-egress-policy%3A Send to 192.0.2.1 (kernel 6.12.117+deb12-amd64)::command:%0Aecho -n b')).toBe(true);
    expect(a[0]).toContain('expected: EACCES in the output%0A');
    expect(a[0]).not.toContain('\n');
  });
  it('escape data and properties as the runner expects', () => {
    expect(escapeCommand('50%\nnext')).toBe('50%25%0Anext');
    expect(escapeCommand('a:b,c', true)).toBe('a%3Ab%2Cc');
  });
});

describe('JSON lines', () => {
  it('writes one object per step and per lab', () => {
    const file = path.join(tmp, 'r.jsonl');
    const r = new JsonLinesReporter(file);
    r.machineStart(m612);
    r.stepEnd(results[1].lab, results[1].lab.spec.steps[0], failed);
    r.labEnd(results[1]);
    r.runEnd();
    const lines = fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines[0]).toMatchObject({ type: 'step', lab: '05-egress-policy', step: 'Send to 192.0.2.1', status: 'failed', durationMs: 300, kernel: m612.kernelRelease });
    expect(lines[0].failedChecks[0].expected).toBe('EACCES in the output');
    expect(lines[1]).toMatchObject({ type: 'lab', lab: '05-egress-policy', status: 'failed' });
  });
});

describe('reporter options', () => {
  it('keeps the human reporter and gives files their defaults', () => {
    expect(parseReporterSpecs([])).toEqual([{ name: 'human' }]);
    expect(parseReporterSpecs(['junit'])).toEqual([{ name: 'human' }, { name: 'junit', file: 'results.xml' }]);
    expect(parseReporterSpecs(['junit'], 'out.xml')).toEqual([{ name: 'human' }, { name: 'junit', file: 'out.xml' }]);
    expect(parseReporterSpecs(['json=a.jsonl', 'markdown=s.md', 'github']).map((r) => r.file)).toEqual([undefined, 'a.jsonl', 's.md', undefined]);
  });
  it('refuses an unknown reporter and an ambiguous --output', () => {
    expect(() => parseReporterSpecs(['tap'])).toThrow(/unknown reporter "tap"/);
    expect(() => parseReporterSpecs(['junit', 'json'], 'x')).toThrow(/--output names the file of one/);
  });
});

describe('terminal lab × kernel table', () => {
  it('shows a column per kernel and the skip reasons below', () => {
    const t = kernelMatrix(results, [m612.kernelRelease, m61.kernelRelease], paint(false));
    expect(t).toMatch(/01-create-map\s+✔ pass\s+✔ pass/);
    expect(t).toMatch(/05-egress-policy\s+✖ FAIL\s+– skip/);
    expect(t).toContain('05-egress-policy on 6.1.0-27-amd64: needs kernel 6.4 or newer');
    expect(t).toContain('08-socket-types on 6.1.0-27-amd64, "VSOCK" skipped: needs kernel 6.4');
  });
});
