// The run's fingerprint (runner/fingerprint.ts): the runner version read from
// package.json and a .git folder (loose refs, packed-refs, detached HEAD,
// worktrees), and every report that records it — terminal, JUnit (its
// <properties>, checked with xmllint), JSON lines, markdown, HTML, and the
// support matrix's tables and files. Synthetic results: no VM.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { hostArch } from '../core/arch.ts';
import { projectRoot } from '../core/paths.ts';
import type { LabResult, MachineInfo, StepResult } from '../runner/executor.ts';
import { fingerprintLine, fingerprintOf, gitCommit, NO_IMAGE, runnerVersion, type RunFingerprint } from '../runner/fingerprint.ts';
import { matricesFromResults, renderHtmlReport } from '../runner/html-page.ts';
import type { LoadedLab } from '../runner/labs.ts';
import { matrixGridHtml } from '../runner/matrix/html.ts';
import { parseProbeOutput } from '../runner/matrix/model.ts';
import { reportJson, reportMarkdown, terminalMatrix } from '../runner/matrix/render.ts';
import { HtmlReporter } from '../runner/reporters/html.ts';
import { JsonLinesReporter } from '../runner/reporters/json.ts';
import { junitXml } from '../runner/reporters/junit.ts';
import { summaryMarkdown } from '../runner/reporters/markdown.ts';
import { TerminalReporter } from '../runner/reporters/terminal.ts';
import { paint } from '../runner/style.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sockmap-labs-fingerprint-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const COMMIT = 'd9fc38b1a2c3d4e5f60718293a4b5c6d7e8f9012';
const OTHER = '0123456789abcdef0123456789abcdef01234567';
const DIGEST = '3f2a1b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708';

/** A folder with package.json and, when `git` is given, a .git folder with those files. */
function checkout(name: string, git?: Record<string, string>, version = '0.1.0'): string {
  const root = path.join(tmp, name);
  fs.mkdirSync(root, { recursive: true });
  fs.writeFileSync(path.join(root, 'package.json'), JSON.stringify({ name: 'sockmap-labs', version }));
  for (const [file, text] of Object.entries(git ?? {})) {
    fs.mkdirSync(path.dirname(path.join(root, '.git', file)), { recursive: true });
    fs.writeFileSync(path.join(root, '.git', file), text);
  }
  return root;
}

describe('the runner version', () => {
  it('reads a branch from its loose ref', () => {
    const root = checkout('loose', { HEAD: 'ref: refs/heads/main\n', 'refs/heads/main': `${COMMIT}\n` });
    expect(gitCommit(root)).toBe(COMMIT);
    expect(runnerVersion(root)).toBe('0.1.0 (d9fc38b1a2c3)');
  });

  it('reads a branch from packed-refs, skipping the header and peeled tags', () => {
    const packed = ['# pack-refs with: peeled fully-peeled sorted ', `${OTHER} refs/heads/other`, `${COMMIT} refs/heads/feature/x`, `${OTHER} refs/tags/v0.1.0`, `^${OTHER}`, ''].join('\n');
    const root = checkout('packed', { HEAD: 'ref: refs/heads/feature/x\n', 'packed-refs': packed, 'refs/heads/.keep': '' });
    expect(gitCommit(root)).toBe(COMMIT);
    expect(runnerVersion(root)).toBe('0.1.0 (d9fc38b1a2c3)');
  });

  it('prefers the loose ref to a stale packed one', () => {
    const root = checkout('both', { HEAD: 'ref: refs/heads/main', 'refs/heads/main': COMMIT, 'packed-refs': `${OTHER} refs/heads/main\n` });
    expect(gitCommit(root)).toBe(COMMIT);
  });

  it('reads a detached HEAD', () => {
    expect(gitCommit(checkout('detached', { HEAD: `${OTHER}\n` }))).toBe(OTHER);
  });

  it('follows a worktree\'s .git file and commondir', () => {
    const main = checkout('wt-main', { HEAD: 'ref: refs/heads/main\n', 'packed-refs': `${OTHER} refs/heads/topic\n`, 'worktrees/wt/HEAD': 'ref: refs/heads/topic\n', 'worktrees/wt/commondir': '../..\n' });
    const wt = checkout('wt');
    fs.writeFileSync(path.join(wt, '.git'), `gitdir: ${path.join(main, '.git/worktrees/wt')}\n`);
    expect(gitCommit(wt)).toBe(OTHER);
  });

  it('is the version alone outside a git checkout, or when the ref cannot be read', () => {
    expect(gitCommit(checkout('plain'))).toBeUndefined();
    expect(runnerVersion(checkout('plain2', undefined, '2.3.4'))).toBe('2.3.4');
    // A new repository: HEAD names a branch with no commit yet.
    expect(runnerVersion(checkout('unborn', { HEAD: 'ref: refs/heads/main\n' }))).toBe('0.1.0');
    expect(gitCommit(checkout('garbage', { HEAD: 'ref: ../../etc/passwd\n' }))).toBeUndefined();
    expect(runnerVersion(path.join(tmp, 'nothing-here'))).toBe('unknown');
  });

  it('of this checkout has package.json\'s version', () => {
    const version = (JSON.parse(fs.readFileSync(path.join(projectRoot, 'package.json'), 'utf8')) as { version: string }).version;
    expect(runnerVersion()).toMatch(new RegExp(`^${version.replace(/\./g, '\\.')}( \\([0-9a-f]{12}\\))?$`));
  });
});

describe('fingerprintOf', () => {
  it('takes arch and image digest from the machine when it has them', () => {
    expect(fingerprintOf({ backend: 'qemu', kernelRelease: '6.12.1', accel: 'tcg', arch: 'arm64', imageDigest: DIGEST }, '0.1.0')).toEqual({
      runner: '0.1.0',
      backend: 'qemu',
      arch: 'arm64',
      kernelRelease: '6.12.1',
      accel: 'tcg',
      imageDigest: DIGEST,
    });
  });

  it('falls back to the host\'s architecture by Debian\'s name, and has no image key without an image', () => {
    const f = fingerprintOf({ backend: 'host', kernelRelease: '6.1.0', accel: 'none' }, '0.1.0');
    expect(f.arch).toBe(hostArch());
    expect('imageDigest' in f).toBe(false);
  });

  it('reads as one line, the digest cut to 12 hex', () => {
    expect(fingerprintLine(fingerprintOf({ backend: 'qemu', kernelRelease: '6.12.1', accel: 'kvm', arch: 'amd64', imageDigest: DIGEST }, '0.1.0 (d9fc38b1a2c3)'))).toBe(
      'runner 0.1.0 (d9fc38b1a2c3) · qemu · amd64 · kernel 6.12.1 · kvm · image 3f2a1b4c5d6e…',
    );
    expect(fingerprintLine(fingerprintOf({ backend: 'host', kernelRelease: '6.1.0', accel: 'none', arch: 'amd64' }, '0.1.0'))).toBe(
      `runner 0.1.0 · host · amd64 · kernel 6.1.0 · none · image ${NO_IMAGE}`,
    );
  });
});

/* ---- the reports ------------------------------------------------------------ */

function lab(id: string): LoadedLab {
  const [n, ...rest] = id.split('-');
  return { id, number: Number(n), slug: rest.join('-'), dir: path.join(projectRoot, 'labs', id), file: path.join(projectRoot, 'labs', id, 'lab.yaml'), spec: { title: `Lab ${id}`, steps: [{ title: 'one', run: 'true' }] } };
}

const exec = (stdout: string) => ({ code: 0, stdout, stderr: '', timedOut: false, durationMs: 10 });
const step: StepResult = { title: 'one', status: 'passed', command: 'true', checks: [], exec: exec('ok\n'), durationMs: 10 };
const fpImage: RunFingerprint = { runner: '0.1.0 (d9fc38b1a2c3)', backend: 'qemu', arch: 'arm64', kernelRelease: '6.12.117+deb12-arm64', accel: 'tcg', imageDigest: DIGEST };
const fpHost: RunFingerprint = { runner: '0.1.0 (d9fc38b1a2c3)', backend: 'qemu', arch: 'amd64', kernelRelease: '6.1.0-27-amd64', accel: 'kvm' };
const machineOf = (f: RunFingerprint): MachineInfo => ({ backend: f.backend, kernelRelease: f.kernelRelease, accel: f.accel, fingerprint: f });
const mImage = machineOf(fpImage);
const mHost = machineOf(fpHost);
const results: LabResult[] = [
  { lab: lab('01-create-map'), status: 'passed', steps: [step], durationMs: 100, machine: mImage, startedAt: new Date('2026-11-25T10:00:00Z') },
  { lab: lab('02-insert'), status: 'passed', steps: [step], durationMs: 100, machine: mImage },
  { lab: lab('01-create-map'), status: 'passed', steps: [step], durationMs: 100, machine: mHost },
];

function captured() {
  const out = new PassThrough();
  let text = '';
  out.on('data', (d: Buffer) => (text += d.toString()));
  return { out, text: () => text };
}

describe('the terminal summary', () => {
  it('ends with one fingerprint line per machine', () => {
    const c = captured();
    const t = new TerminalReporter({ out: c.out, color: false });
    t.machineStart(mImage);
    t.machineStart(mHost);
    t.runEnd(results);
    const lines = c.text().trimEnd().split('\n');
    expect(lines.slice(-2)).toEqual([
      'fingerprint: runner 0.1.0 (d9fc38b1a2c3) · qemu · arm64 · kernel 6.12.117+deb12-arm64 · tcg · image 3f2a1b4c5d6e…',
      'fingerprint: runner 0.1.0 (d9fc38b1a2c3) · qemu · amd64 · kernel 6.1.0-27-amd64 · kvm · image none (host root)',
    ]);
    expect(c.text()).toContain('labs: 3 passed, 0 failed, 0 skipped');
  });

  it('shows it after a single lab too, dim', () => {
    const c = captured();
    const t = new TerminalReporter({ out: c.out, color: true });
    t.machineStart(mHost);
    t.runEnd([results[2]]);
    expect(c.text()).toBe(`${paint(true).dim('fingerprint: runner 0.1.0 (d9fc38b1a2c3) · qemu · amd64 · kernel 6.1.0-27-amd64 · kvm · image none (host root)')}\n`);
  });

  it('prints nothing when no lab ran', () => {
    const c = captured();
    const t = new TerminalReporter({ out: c.out });
    t.machineStart(mHost);
    t.runEnd([]);
    expect(c.text()).toBe('');
  });
});

describe('the JUnit report', () => {
  const xml = junitXml(results);

  it('puts the fingerprint in each suite\'s <properties>, before the cases', () => {
    const suites = xml.split('<testsuite ').slice(1);
    expect(suites).toHaveLength(3);
    for (const s of suites) expect(s.indexOf('</properties>')).toBeLessThan(s.indexOf('<testcase'));
    expect(suites[0]).toContain(
      [
        '<property name="backend" value="qemu"/>',
        '<property name="kernelRelease" value="6.12.117+deb12-arm64"/>',
        '<property name="accel" value="tcg"/>',
        '<property name="sockmap-labs.runner" value="0.1.0 (d9fc38b1a2c3)"/>',
        '<property name="sockmap-labs.backend" value="qemu"/>',
        '<property name="sockmap-labs.arch" value="arm64"/>',
        '<property name="sockmap-labs.kernel" value="6.12.117+deb12-arm64"/>',
        '<property name="sockmap-labs.accel" value="tcg"/>',
        `<property name="sockmap-labs.image" value="${DIGEST}"/>`,
      ].join('\n      '),
    );
    expect(suites[2]).toContain('<property name="sockmap-labs.image" value="none (host root)"/>');
    expect(xml).not.toContain('[object Object]');
  });

  it('is well-formed and accepted by the JUnit schema (xmllint), odd values escaped', () => {
    const odd: RunFingerprint = { ...fpHost, runner: '0.1.0 <dev> & "x"', kernelRelease: '6.1.0-"quoted"<&>\x1b[0m' };
    const file = path.join(tmp, 'fingerprint.xml');
    fs.writeFileSync(file, junitXml([...results, { ...results[2], machine: machineOf(odd) }]));
    expect(execFileSync('xmllint', ['--noout', file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })).toBe('');
    expect(execFileSync('xmllint', ['--noout', '--schema', path.join(projectRoot, 'test/fixtures/junit.xsd'), file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })).toBe('');
    expect(fs.readFileSync(file, 'utf8')).toContain('<property name="sockmap-labs.runner" value="0.1.0 &lt;dev&gt; &amp; &quot;x&quot;"/>');
  });

  it('keeps the machine properties alone when a result has no fingerprint', () => {
    const bare = junitXml([{ ...results[0], machine: { backend: 'qemu', kernelRelease: '6.12.1', accel: 'kvm' } }]);
    expect(bare).toContain('<property name="accel" value="kvm"/>\n    </properties>');
    expect(bare).not.toContain('sockmap-labs.');
  });
});

describe('the JSON lines report', () => {
  it('gives each lab object the fingerprint, beside its other fields', () => {
    const file = path.join(tmp, 'fp.jsonl');
    const r = new JsonLinesReporter(file);
    r.machineStart(mImage);
    r.stepEnd(results[0].lab, results[0].lab.spec.steps[0], step);
    r.labEnd(results[0]);
    r.machineStart(mHost);
    r.labEnd({ ...results[2], machine: undefined });
    r.runEnd();
    const lines = fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines[0]).toMatchObject({ type: 'step', lab: '01-create-map', kernel: fpImage.kernelRelease, accel: 'tcg' });
    expect(lines[1]).toMatchObject({ type: 'lab', lab: '01-create-map', status: 'passed', kernel: fpImage.kernelRelease, fingerprint: fpImage });
    // The machine it heard of last, when the result does not name one; no image: no key.
    expect(lines[2].fingerprint).toEqual(fpHost);
    expect('imageDigest' in lines[2].fingerprint).toBe(false);
  });
});

describe('the markdown summary', () => {
  it('lists each machine\'s fingerprint under the counts', () => {
    const md = summaryMarkdown(results);
    expect(md).toContain('**3 passed, 0 failed, 0 skipped**\n\nfingerprint: `runner 0.1.0 (d9fc38b1a2c3) · qemu · arm64 · kernel 6.12.117+deb12-arm64 · tcg · image 3f2a1b4c5d6e…`  \n');
    expect(md).toContain('fingerprint: `runner 0.1.0 (d9fc38b1a2c3) · qemu · amd64 · kernel 6.1.0-27-amd64 · kvm · image none (host root)`');
  });
});

describe('the HTML report', () => {
  it('has a fingerprint block in its header, one row per machine', () => {
    const html = renderHtmlReport({ results, machines: [mImage, mHost], generatedAt: new Date('2026-11-25T12:00:00Z') });
    const header = html.slice(html.indexOf('<header>'), html.indexOf('</header>'));
    expect(header).toContain('<div class="fingerprint"><table class="machines"><caption>Fingerprint</caption>');
    expect(header).toContain('<th>runner</th><th>backend</th><th>arch</th><th>kernel</th><th>accel</th><th>guest image</th>');
    expect(header).toContain(`<tr><td>0.1.0 (d9fc38b1a2c3)</td><td>qemu</td><td>arm64</td><td><code>6.12.117+deb12-arm64</code></td><td>tcg</td><td><code class="digest">${DIGEST}</code></td></tr>`);
    expect(header).toContain('<td>kvm</td><td><code class="digest">none (host root)</code></td></tr>');
    expect(header.match(/<tr><td>0\.1\.0/g)).toHaveLength(2);
  });

  it('escapes the fingerprint', () => {
    const html = renderHtmlReport({ results: [{ ...results[0], machine: machineOf({ ...fpImage, runner: '<b>1</b>' }) }] });
    expect(html).toContain('<td>&lt;b&gt;1&lt;/b&gt;</td>');
  });

  it('is written so by the reporter', async () => {
    const file = path.join(tmp, 'fp.html');
    const r = new HtmlReporter(file);
    r.machineStart(mImage);
    await r.runEnd(results.slice(0, 2));
    expect(fs.readFileSync(file, 'utf8')).toContain(`<code class="digest">${DIGEST}</code>`);
  });
});

describe('the support matrix reports', () => {
  const m = { ...parseProbeOutput(fs.readFileSync(path.join(projectRoot, 'data/measured/6.12.117+deb12-amd64.jsonl'), 'utf8'))!, accel: 'tcg', backend: 'qemu', fingerprint: fpImage };
  const line = 'fingerprint: runner 0.1.0 (d9fc38b1a2c3) · qemu · arm64 · kernel 6.12.117+deb12-arm64 · tcg · image 3f2a1b4c5d6e…';

  it('show it under each kernel\'s heading: terminal, markdown, HTML', () => {
    expect(terminalMatrix(m, paint(false)).split('\n')[1]).toBe(line);
    expect(reportMarkdown([m], [])).toContain(`\n${line.replace('fingerprint: ', 'fingerprint: `')}\`\n`);
    const html = matrixGridHtml(m);
    expect(html).toContain(`<p class="meta fingerprint">${line}`);
    expect(html).toContain(`<code class="digest">${DIGEST}</code>`);
  });

  it('write it in each kernel of the JSON document', () => {
    const j = JSON.parse(JSON.stringify(reportJson([m], [])));
    expect(j.kernels[0].fingerprint).toEqual(fpImage);
  });

  it('leave it out when the matrix has none', () => {
    expect(terminalMatrix({ ...m, fingerprint: undefined }, paint(false))).not.toContain('fingerprint:');
  });

  it('take it from the lab result whose step printed the matrix', () => {
    const probe = fs.readFileSync(path.join(projectRoot, 'data/measured/6.12.117+deb12-amd64.jsonl'), 'utf8');
    const found = matricesFromResults([{ ...results[0], steps: [{ ...step, exec: exec(probe) }] }]);
    expect(found.matrices[0].fingerprint).toBe(fpImage);
  });
});
