// The HTML report: one self-contained page, everything escaped, and — in a
// real headless Chromium — the support matrix grid and a failed step's
// expected vs. got on screen. Synthetic results: no VM needed.
// Needs Debian's chromium (/usr/bin/chromium) and the playwright-core package
// for the browser test; without them that test is skipped, saying why.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { LabResult, StepResult } from '../runner/executor.ts';
import type { LoadedLab } from '../runner/labs.ts';
import { parseProbeOutput } from '../runner/matrix/model.ts';
import { markdownHtml, matricesFromResults, plainText, renderHtmlReport } from '../runner/html-page.ts';
import { HtmlReporter } from '../runner/reporters/html.ts';
import { projectRoot } from '../core/paths.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sockmap-labs-html-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const artifacts = path.join(projectRoot, 'build/test-artifacts');

const probeOutput = fs.readFileSync(path.join(projectRoot, 'data/measured/6.12.117+deb12-amd64.jsonl'), 'utf8');

function lab(id: string, text: string, steps: { title: string; run: string; text?: string; hint?: string }[]): LoadedLab {
  const [n, ...rest] = id.split('-');
  return { id, number: Number(n), slug: rest.join('-'), dir: path.join(projectRoot, 'labs', id), file: path.join(projectRoot, 'labs', id, 'lab.yaml'), spec: { title: `Title of ${id} <b>bold?</b>`, text, steps } };
}

const exec = (stdout: string, code: number | null = 0, stderr = '') => ({ code, stdout, stderr, timedOut: false, durationMs: 100 });
const machine = { backend: 'qemu', kernelRelease: '6.12.117+deb12-amd64', accel: 'tcg' };

const passed: StepResult = {
  title: 'Create a SOCKMAP',
  status: 'passed',
  command: 'bpftool map create $PIN/m type sockmap key 4 value 8 entries 2 name m',
  checks: [{ name: 'exit code', ok: true, expected: '0', got: '0' }],
  exec: exec('\x1b[32mok\x1b[0m <script>alert("out")</script> & done\n'),
  durationMs: 412,
};
const failed: StepResult = {
  title: 'Send to local (SK_MSG, BPF_F_INGRESS)',
  status: 'failed',
  command: 'socklab "use $PIN/maps/map_send_local" "pair a tcp" \\\n  "send a0 ping" "poll"',
  checks: [
    { name: 'exit code', ok: true, expected: '0', got: '0' },
    { name: 'stdout matches', ok: false, expected: '/^  b0 +"ping" \\(4 bytes\\)$/', got: 'poll:\n  a0 nothing\n  b0 nothing <img src=x onerror=alert(1)>' },
  ],
  exec: exec('send a0 ping: 4 bytes\npoll:\n  a0 nothing\n  b0 nothing\n'),
  durationMs: 1530,
};
const skipped: StepResult = { title: 'Later', status: 'skipped', command: 'true', checks: [], durationMs: 0, reason: 'an earlier step failed' };
const matrixStep: StepResult = { title: 'The whole matrix', status: 'passed', command: 'sockmap-matrix --grid', checks: [], exec: exec(probeOutput + '\nSOCKMAP, send to local …\n'), durationMs: 3600 };

const labA = lab('07-redirect', '# Redirect\n\nRaw <img src="http://example.com/x.png"> HTML, a [bad link](javascript:alert(1)), a [good one](https://kernel.org), ![pic](https://example.com/p.png)\n\n```c\nint x = a < b && c > d;\n```\n', [
  { title: passed.title, run: passed.command, text: 'Make the **map**.' },
  { title: failed.title, run: failed.command, hint: 'Look at `slot 1`.' },
  { title: 'Later', run: 'true' },
]);
const labB = lab('11-support-matrix', 'The matrix.', [{ title: 'The whole matrix', run: 'sockmap-matrix --grid' }]);
const results: LabResult[] = [
  { lab: labA, status: 'failed', steps: [passed, failed, skipped], durationMs: 5200, machine, startedAt: new Date('2026-11-25T10:00:00Z') },
  { lab: labB, status: 'passed', steps: [matrixStep], durationMs: 4100, machine },
];

describe('the HTML report as text', () => {
  const html = renderHtmlReport({ results, generatedAt: new Date('2026-11-25T12:00:00Z') });

  it('is one file: inline CSS, no scripts, nothing to fetch', () => {
    expect(html).toMatch(/^<!doctype html>/);
    expect(html).toContain(`<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">`);
    expect(html).toContain('<style>');
    // (Booleans, not toMatch: a failure would print the whole page.)
    expect(/<script/i.test(html), 'a script element').toBe(false);
    expect(/<link /i.test(html), 'a link element').toBe(false);
    expect(/<img/i.test(html), 'an img element').toBe(false);
    expect(/<[a-z]+[^>]*\s(src|srcset|background)=/i.test(html), 'an element that fetches').toBe(false);
  });

  it('escapes output, checks, titles and raw HTML in lab texts', () => {
    expect(html).toContain('&lt;script&gt;alert(&quot;out&quot;)&lt;/script&gt; &amp; done');
    expect(html).toContain('b0 nothing &lt;img src=x onerror=alert(1)&gt;');
    expect(html).toContain('Title of 07-redirect &lt;b&gt;bold?&lt;/b&gt;');
    expect(html).toContain('Raw &lt;img src=&quot;http://example.com/x.png&quot;&gt; HTML');
    expect(html).not.toContain('\x1b');
  });

  it('renders lab markdown, keeps safe links only, shows images as text', () => {
    expect(html).toContain('<h1>Redirect</h1>');
    expect(html).toContain('<strong>map</strong>');
    expect(html).toContain('int x = a &lt; b &amp;&amp; c &gt; d;');
    expect(html).not.toContain('javascript:');
    expect(html).toContain('<a href="https://kernel.org" rel="noreferrer noopener">good one</a>');
    expect(html).toContain('[image: pic — https://example.com/p.png]');
    expect(markdownHtml('<div onclick="x()">hi</div>')).toBe('&lt;div onclick=&quot;x()&quot;&gt;hi&lt;/div&gt;');
  });

  it('shows each step: command, verdict, durations, kernel and accel; a failure with expected vs. got and its hint', () => {
    expect(html).toContain('step 2/3: Send to local (SK_MSG, BPF_F_INGRESS)');
    expect(html).toContain('<span class="badge failed">✖ FAIL</span>');
    expect(html).toContain('<span class="dur">1.5 s</span>');
    expect(html).toContain('kernel <code>6.12.117+deb12-amd64</code> · qemu · accel <b>tcg</b>');
    expect(html).toMatch(/<td class="expected"><pre>\/\^ {2}b0 \+&quot;ping&quot; \\\(4 bytes\\\)\$\/<\/pre><\/td>/);
    expect(html).toContain('<b>hint</b>');
    expect(html).toContain('skipped: an earlier step failed');
  });

  it('draws the support matrix a step printed, and links the step to it', () => {
    expect(html).toContain('<section class="matrix" id="matrix-6-12-117-deb12-amd64"');
    expect(html).toContain('<a href="#matrix-6-12-117-deb12-amd64">see the grid</a>');
    expect(html).toMatch(/<td class="cell lost" data-outcome="lost" data-src="udp" data-dst="vsock-stream" title="lost \(no error, no bytes; the program returned SK_DROP\)/);
    expect(html).toContain('No cell differs from the cheat sheet.');
  });

  it('finds only full matrices in step output', () => {
    expect(matricesFromResults(results).matrices).toHaveLength(1);
    const one = probeOutput.split('\n').slice(0, 3).join('\n');
    expect(matricesFromResults([{ ...results[1], steps: [{ ...matrixStep, exec: exec(one) }] }]).matrices).toHaveLength(0);
  });

  it('strips terminal control codes', () => {
    expect(plainText('\x1b[1;31mred\x1b[0m\r\nnext\x07')).toBe('red\nnext');
  });

  it('is written by the reporter when the run ends', async () => {
    const file = path.join(tmp, 'sub/report.html');
    const r = new HtmlReporter(file);
    r.machineStart(machine);
    r.notice('qemu ready in 7.1 s');
    await r.runEnd(results);
    const text = fs.readFileSync(file, 'utf8');
    expect(text).toContain('Lab 07 · Title of 07-redirect');
    expect(text).toContain('qemu ready in 7.1 s');
  });
});

type Playwright = typeof import('playwright-core');
const CHROMIUM = '/usr/bin/chromium';
async function loadPlaywright(): Promise<Playwright | undefined> {
  try {
    return await import('playwright-core');
  } catch {
    return undefined;
  }
}
const pw = await loadPlaywright();
const why = !fs.existsSync(CHROMIUM) ? `no ${CHROMIUM} (apt-get install -y chromium)` : !pw ? 'no playwright-core (npm install playwright-core)' : '';

describe(`the HTML report in headless Chromium${why ? ` — skipped: ${why}` : ''}`, () => {
  it.skipIf(!!why)(
    'shows the grid cells and the failed step\'s diff, fetches nothing, and looks readable',
    async () => {
      const file = path.join(tmp, 'report.html');
      const old = parseProbeOutput(fs.readFileSync(path.join(projectRoot, 'data/measured/6.1.0-56-amd64.jsonl'), 'utf8'))!;
      const now = parseProbeOutput(probeOutput)!;
      fs.writeFileSync(file, renderHtmlReport({ results, matrices: [{ ...old, accel: 'tcg', backend: 'qemu' }, { ...now, accel: 'tcg', backend: 'qemu' }] }));
      const profile = fs.mkdtempSync(path.join(tmp, 'chromium-'));
      const browser = await pw!.chromium.launchPersistentContext(profile, {
        executablePath: CHROMIUM,
        args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
        viewport: { width: 1280, height: 900 },
      });
      try {
        const page = await browser.newPage();
        const requests: string[] = [];
        page.on('request', (r) => requests.push(r.url()));
        await page.goto(`file://${file}`);

        // The failed step: its diff table is on screen, expected and got side by side.
        const step = page.locator('li.step.failed');
        await expect.poll(() => step.isVisible()).toBe(true);
        const diff = step.locator('table.checks');
        expect(await diff.isVisible()).toBe(true);
        expect(await diff.locator('td.expected').innerText()).toContain('b0 +"ping"');
        expect(await diff.locator('td.got').innerText()).toContain('b0 nothing <img src=x onerror=alert(1)>');
        expect(await step.locator('details.output').getAttribute('open')).toBe('');
        expect(await page.locator('img').count()).toBe(0);

        // The grid of 6.12: a silent loss, a refusal, a working cell, each in its colour.
        const grid = page.locator('#matrix-6-12-117-deb12-amd64');
        const cell = (mode: string, src: string, dst: string) => grid.locator(`table.grid[data-mode="${mode}"] td[data-src="${src}"][data-dst="${dst}"]`);
        const lost = cell('ingress-to-local', 'udp', 'vsock-stream');
        await lost.scrollIntoViewIfNeeded();
        expect(await lost.isVisible()).toBe(true);
        expect(await lost.innerText()).toMatch(/^lost\n[\d.]+ ms$/);
        const bg = (l: typeof lost) => l.evaluate((e) => getComputedStyle(e).backgroundColor);
        expect(await bg(lost)).toBe('rgb(255, 210, 122)');
        expect(await cell('send-to-egress', 'tcp', 'udp').innerText()).toMatch(/^EACCES/);
        expect(await bg(cell('send-to-egress', 'tcp', 'udp'))).toBe('rgb(248, 180, 180)');
        expect(await bg(cell('ingress-to-egress', 'vsock-seqpacket', 'unix-dgram'))).toBe('rgb(183, 235, 196)');
        expect(await grid.locator('td.cell').count()).toBe(4 * 36 + 13 * 2);
        // 6.1 cannot put VSOCK sockets in a map: refused at insert, starred.
        expect(await page.locator('#matrix-6-1-0-56-amd64 table.grid[data-mode="ingress-to-egress"] td[data-src="tcp"][data-dst="vsock-stream"]').innerText()).toMatch(/^EOPNOTSUPP\*/);
        expect(await page.locator('.kernel-diff').innerText()).toContain('164 cells changed, 150 the same.');

        // Nothing but the page itself was loaded.
        expect(requests).toEqual([`file://${file}`]);

        fs.mkdirSync(artifacts, { recursive: true });
        await page.screenshot({ path: path.join(artifacts, 'html-report.png'), fullPage: true });
        await step.screenshot({ path: path.join(artifacts, 'html-report-failed-step.png') });
        await grid.locator('.grids').screenshot({ path: path.join(artifacts, 'html-report-grid.png') });
        expect(fs.statSync(path.join(artifacts, 'html-report-grid.png')).size).toBeGreaterThan(10_000);
      } finally {
        await browser.close();
      }
    },
    120_000,
  );
});
