// The support matrix as HTML: a coloured grid per redirect mode, the insert
// table, the comparison with the cheat sheet and the diffs between kernels.
// A fragment for the report page (runner/html-page.ts), which holds the
// CSS. Everything that comes from outside is escaped.
import { fingerprintLine } from '../fingerprint.ts';
import { compareWithCheatsheet, summarize, type Cheatsheet } from './cheatsheet.ts';
import { changeSummary, type MatrixDiff } from './diff.ts';
import {
  cellText,
  describeOutcome,
  findInsert,
  findRedirect,
  INSERT_KINDS,
  KIND_LABELS,
  MAP_LABELS,
  MAPS,
  MODE_DETAILS,
  MODE_LABELS,
  MODES,
  REDIRECT_KINDS,
  type InsertProbe,
  type Matrix,
  type RedirectProbe,
} from './model.ts';
import { mapGroups, timingLine } from './render.ts';

/** Escapes text for HTML content and attribute values. */
export function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

/** A name usable in an id: letters, digits, dashes. */
export const slug = (s: string) => s.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');

const ms = (x: number) => (x < 10 ? `${x.toFixed(2)} ms` : `${Math.round(x)} ms`);

function cell(p: RedirectProbe | InsertProbe | undefined, extra = ''): string {
  if (!p) return `<td class="cell none" data-outcome="none">–</td>`;
  const tip = `${describeOutcome(p)} · ${ms(p.ms)}${p.probe === 'redirect' && p.verdict ? ` · verdicts: ${p.verdict.pass} SK_PASS, ${p.verdict.drop} SK_DROP` : ''}`;
  return `<td class="cell ${esc(p.outcome)}" data-outcome="${esc(p.outcome)}"${extra} title="${esc(tip)}">${esc(cellText(p))}<span class="ms">${esc(ms(p.ms))}</span></td>`;
}

const LEGEND_HTML = `<ul class="legend">
<li><span class="cell works">works</span> the bytes reached the target, not their normal path</li>
<li><span class="cell refused">EACCES</span> refused: the errno of <code>send()</code>; with <b>*</b>, of the insert</li>
<li><span class="cell lost">lost</span> no error, and no bytes anywhere</li>
<li><span class="cell passthrough">normal</span> not redirected: the bytes took their normal path</li>
<li><span class="cell error">n/a</span> not measured (the sockets could not be set up)</li>
</ul>`;

/** One kernel's grids. */
export function matrixGridHtml(m: Matrix, sheet?: Cheatsheet): string {
  const id = `matrix-${slug(m.label)}`;
  const out: string[] = [`<section class="matrix" id="${esc(id)}" data-kernel="${esc(m.label)}">`];
  out.push(`<h3>Kernel <code>${esc(m.label)}</code></h3>`);
  out.push(`<p class="meta">${esc([m.backend, m.accel && `accel ${m.accel}`].filter(Boolean).join(', '))}${m.backend || m.accel ? ' · ' : ''}${esc(timingLine(m))}</p>`);
  if (m.fingerprint) out.push(`<p class="meta fingerprint">fingerprint: ${esc(fingerprintLine(m.fingerprint))}${m.fingerprint.imageDigest ? ` <small>(image <code class="digest">${esc(m.fingerprint.imageDigest)}</code>)</small>` : ''}</p>`);
  if (!m.attached) out.push(`<p class="warning">The programs were <b>not attached</b> (<code>--no-attach</code>): nothing can be redirected.</p>`);
  out.push('<div class="grids">');
  for (const mode of MODES) {
    for (const maps of mapGroups(m, mode)) {
      const d = MODE_DETAILS[mode];
      const title = `${maps.map((x) => MAP_LABELS[x]).join(' and ')}: ${MODE_LABELS[mode]}`;
      out.push(`<table class="grid" data-mode="${esc(mode)}" data-maps="${esc(maps.join(' '))}">`);
      out.push(`<caption>${esc(title)}<br><small>${esc(d.program)} · <code>${esc(d.helper)}</code> · flag ${esc(d.flag)}</small></caption>`);
      out.push(`<thead><tr><th scope="col" class="corner">in ↓ · out →</th>${REDIRECT_KINDS.map((k) => `<th scope="col">${esc(KIND_LABELS[k])}</th>`).join('')}</tr></thead><tbody>`);
      for (const src of REDIRECT_KINDS) {
        if (!m.redirect.some((x) => x.mode === mode && x.src === src && x.map === maps[0])) continue;
        out.push(
          `<tr><th scope="row">${esc(KIND_LABELS[src])}</th>${REDIRECT_KINDS.map((dst) => cell(findRedirect(m, maps[0], mode, src, dst), ` data-src="${esc(src)}" data-dst="${esc(dst)}"`)).join('')}</tr>`,
        );
      }
      out.push('</tbody></table>');
    }
  }
  out.push('</div>');
  if (m.insert.length) {
    out.push(`<table class="grid inserts"><caption>Insert alone<br><small>a map with no program attached</small></caption>`);
    out.push(`<thead><tr><th scope="col" class="corner">socket</th>${MAPS.map((x) => `<th scope="col">${esc(MAP_LABELS[x])}</th>`).join('')}</tr></thead><tbody>`);
    for (const kind of INSERT_KINDS) {
      const probes = MAPS.map((map) => findInsert(m, map, kind));
      if (probes.every((x) => !x)) continue;
      out.push(`<tr><th scope="row">${esc(KIND_LABELS[kind])}</th>${probes.map((x) => cell(x, ` data-kind="${esc(kind)}"`)).join('')}</tr>`);
    }
    out.push('</tbody></table>');
  }
  out.push(LEGEND_HTML);
  if (sheet) out.push(comparisonHtml(m, sheet));
  out.push('</section>');
  return out.join('\n');
}

function comparisonHtml(m: Matrix, sheet: Cheatsheet): string {
  const cs = compareWithCheatsheet(m, sheet);
  const s = summarize(cs);
  const src = sheet.source;
  const differ = cs.filter((c) => c.agrees === false);
  const li = (c: (typeof cs)[number]) =>
    `<li class="${c.agrees === false ? 'differs' : c.agrees ? 'agrees' : 'unmeasured'}">${esc(c.sentence)}</li>`;
  return [
    `<div class="comparison">`,
    `<h4>Compared with the talk's cheat sheet</h4>`,
    `<p>The slide “${esc(src.slide)}”${src.slideNumber ? ` (slide ${src.slideNumber})` : ''} of <i>${esc(src.talk)}</i> (${esc(src.speaker)}, ${esc(src.event)}), kept in <code>data/cheatsheet.json</code>.</p>`,
    `<p class="counts"><b>${cs.length} cells</b>: <span class="agrees">${s.agree} agree</span>, <span class="${s.differ ? 'differs' : ''}">${s.differ} differ</span>${s.unmeasured ? `, ${s.unmeasured} not measured` : ''}.${s.silentLosses ? ` In ${s.silentLosses} of them the kernel loses the bytes without an error.` : ''}</p>`,
    differ.length ? `<ul class="differences">${differ.map(li).join('')}</ul>` : '<p>No cell differs from the cheat sheet.</p>',
    `<details><summary>Every cell</summary><ul class="all-cells">${cs.map(li).join('')}</ul></details>`,
    `</div>`,
  ].join('\n');
}

/** A cell with the outcome in words (for lists of changes). */
function wordsCell(p: RedirectProbe | InsertProbe | undefined, words: string): string {
  const o = p?.outcome ?? 'none';
  return `<td class="cell wide ${esc(o)}" data-outcome="${esc(o)}">${esc(words)}</td>`;
}

export function diffHtml(d: MatrixDiff): string {
  return [
    `<section class="kernel-diff"><h3>Kernel <code>${esc(d.from)}</code> → <code>${esc(d.to)}</code></h3>`,
    `<p>${d.changed} cells changed, ${d.same} the same.</p>`,
    d.changes.length
      ? `<table class="changes summary"><thead><tr><th>cells</th><th>${esc(d.from)}</th><th>${esc(d.to)}</th></tr></thead><tbody>${changeSummary(d)
          .map((g) => `<tr><td>${g.cells}</td><td>${esc(g.before)}</td><td>${esc(g.after)}</td></tr>`)
          .join('')}</tbody></table><details><summary>Cell by cell</summary>`
      : '',
    d.changes.length
      ? `<table class="changes"><thead><tr><th>cell</th><th>maps</th><th>${esc(d.from)}</th><th>${esc(d.to)}</th></tr></thead><tbody>${d.changes
          .map((c) => {
            const name = c.probe === 'redirect' ? `${MODE_LABELS[c.mode!]}: ${KIND_LABELS[c.src!]} → ${KIND_LABELS[c.dst!]}` : `insert ${KIND_LABELS[c.kind!]}`;
            return `<tr><td>${esc(name)}</td><td>${esc(c.maps.map((x) => MAP_LABELS[x]).join(', '))}</td>${wordsCell(c.beforeProbe, c.before)}${wordsCell(c.afterProbe, c.after)}</tr>`;
          })
          .join('')}</tbody></table></details>`
      : '',
    '</section>',
  ].join('\n');
}
