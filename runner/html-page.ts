// A run as one page: a self-contained HTML document (inline CSS, no scripts,
// no network) with, per lab, its text, each step's command, output and
// verdict, a failed step's expected vs. got, the durations, the kernel and
// accel, each machine's fingerprint (runner, backend, arch, kernel, accel,
// guest image) in the header, and, when the run measured it, the SOCKMAP
// support matrix as coloured
// grids. Used by the html reporter (runner/reporters/html.ts) and by
// `npm run matrix -- --html FILE`. Everything from outside (lab texts, commands,
// output) is escaped; lab markdown goes through marked with raw HTML turned
// into text.
import { Marked, type Tokens } from 'marked';
import type { LabResult, MachineInfo, StepResult } from './executor.ts';
import { imageText } from './fingerprint.ts';
import { loadCheatsheet, type Cheatsheet } from './matrix/cheatsheet.ts';
import { diffAll } from './matrix/diff.ts';
import { diffHtml, esc, matrixGridHtml, slug } from './matrix/html.ts';
import { findMatrices, labelMatrices, type Matrix } from './matrix/model.ts';

const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/** Terminal colours and other control characters have no place in a page. */
export function plainText(s: string): string {
  return (
    s
      // eslint-disable-next-line no-control-regex
      .replace(/\x1b\[[0-?]*[ -/]*[@-~]/g, '')
      // eslint-disable-next-line no-control-regex
      .replace(/\x1b[@-_]/g, '')
      // eslint-disable-next-line no-control-regex
      .replace(/[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/g, '')
      .replace(/\r\n?/g, '\n')
  );
}

/** Links that may stay links: the web, mail, and anchors on the page; anything else (javascript:, data:) becomes text. */
const SAFE_HREF = /^(https?:|mailto:|#)/i;

/** Lab markdown to HTML: marked, with raw HTML shown as text, unsafe links and all images made text. */
const md = new Marked({
  gfm: true,
  renderer: {
    html({ text }: Tokens.HTML | Tokens.Tag) {
      return esc(text);
    },
    link(this: { parser: { parseInline(t: Tokens.Link['tokens']): string } }, token: Tokens.Link) {
      const text = this.parser.parseInline(token.tokens);
      if (!SAFE_HREF.test(token.href)) return text;
      return `<a href="${esc(token.href)}"${token.title ? ` title="${esc(token.title)}"` : ''} rel="noreferrer noopener">${text}</a>`;
    },
    image({ href, text }: Tokens.Image) {
      // An image would be fetched when the page opens: show what it is instead.
      return `<span class="image">[image: ${esc(text)}${href ? ` — ${esc(href)}` : ''}]</span>`;
    },
  },
});

export function markdownHtml(text: string): string {
  return md.parse(text, { async: false }) as string;
}

const OUTPUT_LIMIT = 256 * 1024;

function outputBlock(s: StepResult): string {
  if (!s.exec) return '';
  let text = plainText(s.exec.stdout + (s.exec.stderr ? (s.exec.stdout && !s.exec.stdout.endsWith('\n') ? '\n' : '') + s.exec.stderr : ''));
  let cut = '';
  if (text.length > OUTPUT_LIMIT) {
    cut = `\n… ${text.length - OUTPUT_LIMIT} more characters cut`;
    text = text.slice(0, OUTPUT_LIMIT);
  }
  const lines = text.trimEnd() ? text.trimEnd().split('\n').length : 0;
  const open = s.status === 'failed' || lines <= 30 ? ' open' : '';
  return `<details class="output"${open}><summary>output · ${lines} line${lines === 1 ? '' : 's'}${s.exec.code !== null ? ` · exit ${s.exec.code}` : ' · killed'}</summary><pre>${esc(text.trimEnd() || '(nothing)')}${esc(cut)}</pre></details>`;
}

function diffBlock(s: StepResult): string {
  const failed = s.checks.filter((c) => !c.ok);
  if (!failed.length && !(s.status === 'failed' && s.reason)) return '';
  const rows = failed
    .map(
      (c) =>
        `<tr><th scope="row">${esc(c.name)}</th><td class="expected"><pre>${esc(plainText(c.expected))}</pre></td><td class="got"><pre>${esc(plainText(c.got))}</pre></td></tr>`,
    )
    .join('');
  return [
    `<div class="diff">`,
    rows ? `<table class="checks"><thead><tr><th>check</th><th>expected</th><th>got</th></tr></thead><tbody>${rows}</tbody></table>` : '',
    s.reason ? `<p class="reason">${esc(s.reason)}</p>` : '',
    `</div>`,
  ].join('');
}

const BADGE: Record<string, string> = { passed: '✔ PASS', failed: '✖ FAIL', skipped: '– SKIP' };

function stepHtml(r: LabResult, s: StepResult, i: number, matrixIds: Map<StepResult, string>): string {
  const spec = r.lab.spec.steps.find((x) => x.title === s.title);
  const matrixLink = matrixIds.get(s);
  return [
    `<li class="step ${esc(s.status)}" data-status="${esc(s.status)}">`,
    `<h4><span class="badge ${esc(s.status)}">${BADGE[s.status]}</span> <span class="step-title">step ${i + 1}/${r.steps.length}: ${esc(s.title)}</span> <span class="dur">${esc(secs(s.durationMs))}</span></h4>`,
    spec?.text ? `<div class="text">${markdownHtml(spec.text)}</div>` : '',
    `<pre class="command"><code>${esc(s.command.trimEnd())
      .split('\n')
      .map((l, n) => `<span class="prompt">${n ? ' ' : '$'}</span> ${l}`)
      .join('\n')}</code></pre>`,
    s.status === 'skipped' && s.reason ? `<p class="reason">skipped: ${esc(s.reason)}</p>` : '',
    s.status === 'failed' ? diffBlock(s) : '',
    outputBlock(s),
    matrixLink ? `<p class="matrix-link">This step measured the support matrix: <a href="#${esc(matrixLink)}">see the grid</a>.</p>` : '',
    s.explanations?.length
      ? `<div class="explain"><b>in SOCKMAP terms</b>${s.explanations
          .map((e) => `<p><b>${esc(e.operation)} → ${esc(e.errno)}</b>: ${esc(e.text)} <span class="source">decided by <code>${esc(e.source)}</code>; seen in <code>${esc(e.line)}</code></span></p>`)
          .join('')}</div>`
      : '',
    spec?.hint && s.status === 'failed' ? `<div class="hint"><b>hint</b>${markdownHtml(spec.hint)}</div>` : '',
    `</li>`,
  ].join('\n');
}

function labHtml(r: LabResult, matrixIds: Map<StepResult, string>): string {
  const m = r.machine;
  const id = `lab-${slug(r.lab.id)}${m ? `-${slug(m.kernelRelease)}` : ''}`;
  const passed = r.steps.filter((s) => s.status === 'passed').length;
  return [
    `<section class="lab ${esc(r.status)}" id="${esc(id)}" data-lab="${esc(r.lab.id)}" data-status="${esc(r.status)}">`,
    `<h2><span class="badge ${esc(r.status)}">${r.error ? '✖ ERROR' : BADGE[r.status]}</span> Lab ${String(r.lab.number).padStart(2, '0')} · ${esc(r.lab.spec.title)}</h2>`,
    r.error ? `<p class="reason error">error: ${esc(r.error)}</p>` : '',
    `<p class="meta">${m ? `kernel <code>${esc(m.kernelRelease)}</code> · ${esc(m.backend)} · accel <b>${esc(m.accel)}</b> · ` : ''}${passed}/${r.steps.length} steps passed · ${esc(secs(r.durationMs))}${r.startedAt ? ` · started ${esc(r.startedAt.toISOString())}` : ''}${r.reason ? ` · ${esc(r.reason)}` : ''}</p>`,
    r.lab.spec.text ? `<details class="lab-text"><summary>The lab's text</summary><div class="text">${markdownHtml(r.lab.spec.text)}</div></details>` : '',
    `<ol class="steps">${r.steps.map((s, i) => stepHtml(r, s, i, matrixIds)).join('\n')}</ol>`,
    `</section>`,
  ].join('\n');
}

const CSS = `
:root { --fg:#1d2125; --muted:#5f6b76; --bg:#fff; --panel:#f5f7f9; --line:#d9dee3;
  --pass:#1a7f37; --pass-bg:#dafbe1; --fail:#c62828; --fail-bg:#ffebe9; --skip:#8a6d00; --skip-bg:#fff8c5;
  --works:#b7ebc4; --refused:#f8b4b4; --lost:#ffd27a; --normal:#e4e7eb; --error:#d7c8f5; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: var(--fg); background: var(--bg); margin: 0; }
header, main { max-width: 1180px; margin: 0 auto; padding: 0 24px; }
header { padding-top: 20px; border-bottom: 1px solid var(--line); padding-bottom: 12px; }
h1 { font-size: 26px; margin: 0 0 6px; }
h2 { font-size: 20px; margin: 28px 0 4px; }
h3 { font-size: 17px; margin: 22px 0 6px; }
h4 { font-size: 15px; margin: 0 0 6px; display: flex; gap: 8px; align-items: baseline; flex-wrap: wrap; }
code, pre { font-family: "DejaVu Sans Mono", ui-monospace, Menlo, Consolas, monospace; font-size: 13px; }
pre { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 8px 10px; overflow-x: auto; white-space: pre-wrap; word-break: break-word; margin: 6px 0; }
.meta { color: var(--muted); margin: 2px 0 10px; }
.badge { display: inline-block; font-weight: 700; font-size: 12px; padding: 1px 7px; border-radius: 10px; white-space: nowrap; }
.badge.passed { color: var(--pass); background: var(--pass-bg); }
.badge.failed { color: var(--fail); background: var(--fail-bg); }
.badge.skipped { color: var(--skip); background: var(--skip-bg); }
.summary { font-size: 16px; margin: 6px 0; }
table.machines, table.toc { border-collapse: collapse; margin: 8px 0; }
table.machines td, table.machines th, table.toc td { border: 1px solid var(--line); padding: 3px 10px; text-align: left; }
table.machines caption { text-align: left; font-weight: 600; color: var(--muted); padding-bottom: 2px; }
code.digest { font-size: 12px; word-break: break-all; }
.lab { border-top: 3px solid var(--line); margin-top: 24px; }
.lab.failed { border-top-color: var(--fail); }
.lab.passed { border-top-color: var(--pass); }
ol.steps { list-style: none; padding: 0; margin: 10px 0; }
li.step { border: 1px solid var(--line); border-left: 5px solid var(--line); border-radius: 6px; padding: 10px 12px; margin: 10px 0; }
li.step.passed { border-left-color: var(--pass); }
li.step.failed { border-left-color: var(--fail); background: #fffafa; }
li.step.skipped { border-left-color: var(--skip); }
.dur { color: var(--muted); font-size: 13px; font-weight: 400; }
pre.command { background: #0f1720; color: #e6edf3; border-color: #0f1720; }
pre.command .prompt { color: #7d8590; user-select: none; }
.text { max-width: 900px; }
.text table { border-collapse: collapse; } .text td, .text th { border: 1px solid var(--line); padding: 2px 8px; }
.diff { margin: 8px 0; }
table.checks { border-collapse: collapse; width: 100%; table-layout: fixed; }
table.checks th, table.checks td { border: 1px solid var(--line); padding: 4px 8px; vertical-align: top; text-align: left; }
table.checks thead th:first-child { width: 18%; }
table.checks td.expected { background: var(--pass-bg); }
table.checks td.got { background: var(--fail-bg); }
table.checks pre { background: transparent; border: 0; padding: 0; margin: 0; }
.reason { color: var(--fail); font-weight: 600; }
li.step.skipped .reason { color: var(--skip); font-weight: 400; }
details > summary { cursor: pointer; color: var(--muted); }
.hint { background: var(--skip-bg); border-radius: 6px; padding: 6px 10px; }
.explain { background: var(--fail-bg); border-radius: 6px; padding: 6px 10px; margin: 6px 0; }
.explain .source { color: #666; font-size: 0.9em; }
.warning { background: var(--skip-bg); padding: 6px 10px; border-radius: 6px; }
.grids { display: flex; flex-wrap: wrap; gap: 14px 28px; align-items: flex-start; }
table.grid { border-collapse: collapse; margin: 6px 0; }
table.grid caption { text-align: left; font-weight: 700; padding-bottom: 4px; }
table.grid caption small { font-weight: 400; color: var(--muted); }
table.grid th { font-size: 12px; font-weight: 600; padding: 3px 6px; text-align: left; background: var(--panel); border: 1px solid var(--line); }
table.grid th.corner { color: var(--muted); font-weight: 400; white-space: nowrap; }
td.cell, span.cell { border: 1px solid #fff; padding: 4px 6px; font-size: 13px; font-weight: 600; min-width: 70px; text-align: center; white-space: nowrap; }
span.cell { display: inline-block; min-width: 70px; border-radius: 4px; margin-right: 6px; }
td.cell .ms { display: block; font-size: 10px; font-weight: 400; color: #3d4650; }
.cell.works, .cell.accepted { background: var(--works); color: #0b4d1e; }
.cell.refused { background: var(--refused); color: #7a1010; }
.cell.lost { background: var(--lost); color: #6b4100; }
.cell.passthrough { background: var(--normal); color: #3d4650; }
.cell.other, .cell.error { background: var(--error); color: #3b1f7a; }
.cell.none { color: var(--muted); }
td.cell.wide { text-align: left; font-weight: 400; }
ul.legend { list-style: none; padding: 0; display: flex; flex-wrap: wrap; gap: 6px 18px; font-size: 13px; }
.comparison li.differs, .counts .differs { color: var(--fail); font-weight: 600; }
.comparison .agrees { color: var(--pass); }
ul.all-cells { font-size: 13px; }
table.changes { border-collapse: collapse; } table.changes td, table.changes th { border: 1px solid var(--line); padding: 3px 8px; text-align: left; }
footer { max-width: 1180px; margin: 30px auto; padding: 0 24px; color: var(--muted); font-size: 13px; }
`;

interface HtmlReportInput {
  title?: string;
  results: LabResult[];
  /** Machines the run used (the labs' own are taken from the results too). */
  machines?: MachineInfo[];
  /** Support matrices to show; without them, matrices found in the steps' output are shown. */
  matrices?: Matrix[];
  cheatsheet?: Cheatsheet;
  notices?: string[];
  durationMs?: number;
  generatedAt?: Date;
}

/** The matrices a run's steps printed (bpf/helpers/sockmap-matrix's JSON lines): the largest per step, labelled by machine. */
export function matricesFromResults(results: LabResult[]): { matrices: Matrix[]; steps: Map<StepResult, Matrix> } {
  const steps = new Map<StepResult, Matrix>();
  const matrices: Matrix[] = [];
  for (const r of results) {
    for (const s of r.steps) {
      if (!s.exec?.stdout.includes('{"probe":"start"')) continue;
      const found = findMatrices(s.exec.stdout);
      const biggest = found.sort((a, b) => b.redirect.length + b.insert.length - (a.redirect.length + a.insert.length))[0];
      // Only a full run is a matrix worth a grid; a step probing one cell is text enough.
      if (!biggest || biggest.redirect.length < 36) continue;
      const m = { ...biggest, accel: r.machine?.accel, backend: r.machine?.backend, fingerprint: r.machine?.fingerprint };
      steps.set(s, m);
      matrices.push(m);
    }
  }
  return { matrices, steps };
}

export function renderHtmlReport(input: HtmlReportInput): string {
  const { results } = input;
  const found = matricesFromResults(results);
  const matrices = labelMatrices(input.matrices ?? found.matrices);
  const matrixIds = new Map<StepResult, string>();
  if (!input.matrices)
    for (const [s, m] of found.steps) {
      const i = found.matrices.indexOf(m);
      matrixIds.set(s, `matrix-${slug(matrices[i].label)}`);
    }
  let sheet = input.cheatsheet;
  if (!sheet && matrices.length) {
    try {
      sheet = loadCheatsheet();
    } catch {
      /* the grids stand without it */
    }
  }
  const machineKey = (m: MachineInfo) => `${m.backend}/${m.kernelRelease}/${m.accel}/${m.fingerprint ? JSON.stringify(m.fingerprint) : ''}`;
  const machines = [...new Map([...(input.machines ?? []), ...results.flatMap((r) => (r.machine ? [r.machine] : []))].map((m) => [machineKey(m), m])).values()];
  const count = (s: string) => results.filter((r) => r.status === s).length;
  const stepsFailed = results.flatMap((r) => r.steps).filter((s) => s.status === 'failed').length;
  const total = input.durationMs ?? results.reduce((t, r) => t + r.durationMs, 0);
  const title = input.title ?? 'sockmap-labs run';
  const status = results.length ? `${count('passed')} passed, ${count('failed')} failed, ${count('skipped')} skipped` : `${matrices.length} kernel${matrices.length === 1 ? '' : 's'}`;
  const generated = (input.generatedAt ?? new Date()).toISOString();

  const body: string[] = [];
  body.push(`<header><h1>${esc(title)}</h1>`);
  if (results.length)
    body.push(
      `<p class="summary"><span class="badge passed">${count('passed')} passed</span> <span class="badge failed">${count('failed')} failed</span> <span class="badge skipped">${count('skipped')} skipped</span> · ${stepsFailed} failed step${stepsFailed === 1 ? '' : 's'} · ${esc(secs(total))}</p>`,
    );
  if (machines.length)
    body.push(
      `<div class="fingerprint"><table class="machines"><caption>Fingerprint</caption><thead><tr><th>runner</th><th>backend</th><th>arch</th><th>kernel</th><th>accel</th><th>guest image</th></tr></thead><tbody>${machines
        .map((m) => {
          const f = m.fingerprint;
          return `<tr><td>${esc(f?.runner ?? '')}</td><td>${esc(m.backend)}</td><td>${esc(f?.arch ?? '')}</td><td><code>${esc(m.kernelRelease)}</code></td><td>${esc(m.accel)}</td><td>${f ? `<code class="digest">${esc(imageText(f))}</code>` : ''}</td></tr>`;
        })
        .join('')}</tbody></table></div>`,
    );
  if (results.length || matrices.length) {
    const toc = results.map((r) => {
      const id = `lab-${slug(r.lab.id)}${r.machine ? `-${slug(r.machine.kernelRelease)}` : ''}`;
      return `<tr><td><span class="badge ${esc(r.status)}">${BADGE[r.status]}</span></td><td><a href="#${esc(id)}">Lab ${String(r.lab.number).padStart(2, '0')} · ${esc(r.lab.spec.title)}</a></td><td>${esc(r.machine?.kernelRelease ?? '')}</td><td>${esc(secs(r.durationMs))}</td></tr>`;
    });
    const mtoc = matrices.map((m) => `<tr><td></td><td><a href="#matrix-${esc(slug(m.label))}">Support matrix</a></td><td>${esc(m.label)}</td><td>${esc(secs(m.totalMs ?? 0))}</td></tr>`);
    body.push(`<nav><table class="toc"><tbody>${[...toc, ...mtoc].join('')}</tbody></table></nav>`);
  }
  body.push(`</header><main>`);
  for (const r of results) body.push(labHtml(r, matrixIds));
  if (matrices.length) {
    body.push(`<section class="matrices" id="support-matrix"><h2>SOCKMAP support matrix</h2>`);
    body.push(
      `<p>Measured by <code>bpf/helpers/sockmap-matrix</code> on each kernel: for SOCKMAP and SOCKHASH, each redirect mode, each kind of in socket (rows) and out socket (columns), fresh sockets are inserted, a few bytes sent, and the probe looks where they arrive. Hover a cell for the details.</p>`,
    );
    for (const m of matrices) body.push(matrixGridHtml(m, sheet));
    for (const d of diffAll(matrices)) body.push(diffHtml(d));
    body.push(`</section>`);
  }
  if (input.notices?.length) body.push(`<details class="notices"><summary>Run log</summary><pre>${esc(plainText(input.notices.join('\n')))}</pre></details>`);
  body.push(`</main><footer>Written by sockmap-labs at ${esc(generated)}. One file: no scripts, nothing fetched.</footer>`);

  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<title>${esc(`${title} — ${status}`)}</title>
<style>${CSS}</style>
</head>
<body>
${body.join('\n')}
</body>
</html>
`;
}
