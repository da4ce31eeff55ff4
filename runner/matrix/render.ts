// The support matrix for people and programs: terminal tables, markdown,
// and the JSON document `npm run matrix -- --json FILE` writes.
import { fingerprintLine } from '../fingerprint.ts';
import type { Paint } from '../style.ts';
import { compareWithCheatsheet, summarize, type CellComparison, type Cheatsheet } from './cheatsheet.ts';
import { changeSummary, type MatrixDiff } from './diff.ts';
import {
  cellText,
  findInsert,
  findRedirect,
  INSERT_KINDS,
  KIND_LABELS,
  KIND_SHORT,
  MAP_LABELS,
  MAPS,
  MODE_DETAILS,
  MODE_LABELS,
  MODES,
  outcomeKey,
  REDIRECT_KINDS,
  timing,
  type InsertProbe,
  type MapType,
  type Matrix,
  type Mode,
  type RedirectProbe,
} from './model.ts';

const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
const msText = (ms: number) => (ms < 10 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`);

/** Groups the maps that answered every cell of a mode alike: [[sockmap, sockhash]] or [[sockmap], [sockhash]]. */
export function mapGroups(m: Matrix, mode: Mode): MapType[][] {
  const present = MAPS.filter((map) => m.redirect.some((p) => p.map === map && p.mode === mode));
  if (present.length < 2) return present.map((x) => [x]);
  const same = REDIRECT_KINDS.every((s) => REDIRECT_KINDS.every((d) => outcomeKey(findRedirect(m, 'sockmap', mode, s, d)) === outcomeKey(findRedirect(m, 'sockhash', mode, s, d))));
  return same ? [present] : present.map((x) => [x]);
}

const mapsTitle = (maps: MapType[]) => maps.map((x) => MAP_LABELS[x]).join(' and ');

/** A probe's timing in words: "314 probes in 4.9 s in the guest (median 1.6 ms; slowest: …)". */
export function timingLine(m: Matrix): string {
  const t = timing(m);
  const s = t.slowest;
  const slow = s ? `; slowest ${msText(s.ms)}: ${s.probe === 'redirect' ? `${MODE_LABELS[s.mode]} ${KIND_LABELS[s.src]}→${KIND_LABELS[s.dst]}` : `insert ${KIND_LABELS[s.kind]}`} (${MAP_LABELS[s.map]})` : '';
  return `${t.probes} probes in ${secs(t.totalMs)} in the guest (median ${msText(t.medianMs)}${slow})`;
}

/* ---- terminal --------------------------------------------------------------- */

function colorCell(p: RedirectProbe | InsertProbe | undefined, text: string, paint: Paint): string {
  switch (p?.outcome) {
    case 'works':
    case 'accepted':
      return paint.green(text);
    case 'refused':
      return paint.red(text);
    case 'lost':
      return paint.bold(paint.yellow(text));
    case 'passthrough':
      return paint.dim(text);
    default:
      return paint.cyan(text);
  }
}

const SYMBOL: Record<string, string> = { works: '✔', accepted: '✔', refused: '✖', lost: '∅', passthrough: '→', other: '?', error: '!' };
const symbolText = (p: RedirectProbe | InsertProbe | undefined) => (p ? `${SYMBOL[p.outcome]} ${cellText(p)}` : '-');

const TERMINAL_LEGEND =
  '✔ works: the bytes reached the target only · ✖ ERRNO: refused at send() (ERRNO* at insert) · ∅ lost: no error, no bytes · → normal: not redirected, the bytes took their normal path · ! n/a: not measured';

/** One kernel's matrix as terminal tables: four redirect grids (per map when the maps differ) and the insert table. */
export function terminalMatrix(m: Matrix, p: Paint): string {
  const W = 14;
  const pad = (s: string, plain: string) => s + ' '.repeat(Math.max(1, W - [...plain].length));
  const out: string[] = [];
  const head = `kernel ${m.label}${m.accel ? `, ${m.backend ?? 'qemu'} ${m.accel}` : ''}${m.attached ? '' : ' — programs NOT attached (--no-attach)'}`;
  out.push(p.bold(`Support matrix · ${head}`));
  if (m.fingerprint) out.push(p.dim(`fingerprint: ${fingerprintLine(m.fingerprint)}`));
  for (const mode of MODES) {
    for (const maps of mapGroups(m, mode)) {
      const d = MODE_DETAILS[mode];
      out.push('', p.bold(`${mapsTitle(maps)} · ${MODE_LABELS[mode]}`) + p.dim(` (${d.program}, ${d.helper}, flag ${d.flag})`));
      out.push(p.dim(`  ${'in ↓  out →'.padEnd(12)} ${REDIRECT_KINDS.map((k) => KIND_SHORT[k].padEnd(W - 1)).join(' ')}`));
      for (const src of REDIRECT_KINDS) {
        if (!m.redirect.some((x) => x.mode === mode && x.src === src && x.map === maps[0])) continue;
        const cells = REDIRECT_KINDS.map((dst) => {
          const probe = findRedirect(m, maps[0], mode, src, dst);
          const text = symbolText(probe);
          return pad(colorCell(probe, text, p), text);
        });
        out.push(`  ${KIND_SHORT[src].padEnd(12)} ${cells.join('').trimEnd()}`);
      }
    }
  }
  if (m.insert.length) {
    out.push('', p.bold('Insert alone') + p.dim(' (a map with no program attached)'));
    out.push(p.dim(`  ${'socket'.padEnd(28)} ${MAPS.map((x) => MAP_LABELS[x].padEnd(24)).join('')}`));
    for (const kind of INSERT_KINDS) {
      const probes = MAPS.map((map) => findInsert(m, map, kind));
      if (probes.every((x) => !x)) continue;
      const cells = probes.map((x) => {
        const text = x ? (x.outcome === 'accepted' ? '✔ accepted' : `✖ ${x.errno} (${x.stage === 'socket' ? 'socket()' : 'insert'})`) : '-';
        return colorCell(x, text, p) + ' '.repeat(Math.max(1, 24 - [...text].length));
      });
      out.push(`  ${KIND_LABELS[kind].padEnd(28)} ${cells.join('').trimEnd()}`);
    }
  }
  out.push('', p.dim(TERMINAL_LEGEND), p.dim(timingLine(m)));
  return out.join('\n');
}

/** The cheat-sheet comparison for a terminal: counts, then every difference. */
export function terminalComparison(m: Matrix, sheet: Cheatsheet, p: Paint, all = false): string {
  const cs = compareWithCheatsheet(m, sheet);
  const s = summarize(cs);
  const src = sheet.source;
  const out = [
    p.bold(`Kernel ${m.label} vs. the talk's cheat sheet`) + p.dim(` ("${src.slide}"${src.slideNumber ? `, slide ${src.slideNumber}` : ''}, ${src.talk}, ${src.event})`),
    `  ${cs.length} cells: ${p.green(`${s.agree} agree`)}, ${s.differ ? p.red(`${s.differ} differ`) : '0 differ'}${s.unmeasured ? `, ${s.unmeasured} not measured` : ''}` +
      (s.silentLosses ? `; in ${s.silentLosses} the kernel loses the bytes without an error` : ''),
  ];
  const differ = cs.filter((c) => c.agrees === false);
  if (differ.length) out.push(p.bold('  differences:'), ...differ.map((c) => `  ${p.red('≠')} ${c.sentence}`));
  else out.push('  no cell differs from the cheat sheet');
  if (all) out.push(p.bold('  every cell:'), ...cs.map((c) => `  ${c.agrees === false ? p.red('≠') : c.agrees ? p.green('=') : '?'} ${c.sentence}`));
  return out.join('\n');
}

export function terminalDiff(d: MatrixDiff, p: Paint): string {
  const out = [p.bold(`Kernel ${d.from} → kernel ${d.to}`) + p.dim(` (${d.changed} cells changed, ${d.same} the same)`)];
  if (!d.changes.length) out.push('  no cell changed');
  else {
    out.push(p.bold('  in short (cells per map):'));
    for (const g of changeSummary(d)) out.push(`  ${String(g.cells).padStart(4)} × ${g.before}  →  ${g.after}`);
    out.push(p.bold('  cell by cell:'));
  }
  for (const c of d.changes) out.push(`  ${p.yellow('Δ')} ${c.sentence}`);
  return out.join('\n');
}

/* ---- markdown --------------------------------------------------------------- */

const MD_SYMBOL: Record<string, string> = { works: '✅', accepted: '✅', refused: '⛔', lost: '🕳️', passthrough: '↪️', other: '❓', error: '⚠️' };
const mdCell = (p: RedirectProbe | InsertProbe | undefined) => (p ? `${MD_SYMBOL[p.outcome]} ${cellText(p)}` : '–');
const mdEscape = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

const MARKDOWN_LEGEND =
  '✅ works: the bytes reached the target, not the normal path · ⛔ ERRNO: refused at `send()` (ERRNO\\* at insert) · 🕳️ lost: no error, and no bytes anywhere · ↪️ normal: not redirected, the bytes took their normal path · ⚠️ n/a: not measured';

function matrixMarkdown(m: Matrix, sheet?: Cheatsheet): string {
  const out: string[] = [`### Kernel \`${m.label}\``, ''];
  out.push(`${m.backend ?? 'qemu'}${m.accel ? `, accel ${m.accel}` : ''}; ${timingLine(m)}.${m.attached ? '' : ' **Programs not attached (`--no-attach`).**'}`, '');
  if (m.fingerprint) out.push(`fingerprint: \`${fingerprintLine(m.fingerprint).replace(/`/g, "'")}\``, '');
  for (const mode of MODES) {
    for (const maps of mapGroups(m, mode)) {
      const d = MODE_DETAILS[mode];
      out.push(`#### ${mapsTitle(maps)}: ${MODE_LABELS[mode]} (${d.program}, \`${d.helper}\`, flag ${d.flag === 'none' ? 'none' : `\`${d.flag}\``})`, '');
      out.push(`| in ↓ · out → | ${REDIRECT_KINDS.map((k) => KIND_LABELS[k]).join(' | ')} |`, `|---|${REDIRECT_KINDS.map(() => '---').join('|')}|`);
      for (const src of REDIRECT_KINDS) {
        if (!m.redirect.some((x) => x.mode === mode && x.src === src && x.map === maps[0])) continue;
        out.push(`| **${KIND_LABELS[src]}** | ${REDIRECT_KINDS.map((dst) => mdCell(findRedirect(m, maps[0], mode, src, dst))).join(' | ')} |`);
      }
      out.push('');
    }
  }
  if (m.insert.length) {
    out.push('#### Insert alone (no program attached)', '', `| socket | ${MAPS.map((x) => MAP_LABELS[x]).join(' | ')} |`, '|---|---|---|');
    for (const kind of INSERT_KINDS) {
      const probes = MAPS.map((map) => findInsert(m, map, kind));
      if (probes.every((x) => !x)) continue;
      out.push(`| ${KIND_LABELS[kind]} | ${probes.map((x) => (x ? (x.outcome === 'accepted' ? '✅ accepted' : `⛔ ${x.errno} at ${x.stage === 'socket' ? '`socket()`' : 'insert'}`) : '–')).join(' | ')} |`);
    }
    out.push('');
  }
  out.push(MARKDOWN_LEGEND, '');
  if (sheet) out.push(comparisonMarkdown(m.label, compareWithCheatsheet(m, sheet), sheet));
  return out.join('\n');
}

function comparisonMarkdown(label: string, cs: CellComparison[], sheet: Cheatsheet): string {
  const s = summarize(cs);
  const src = sheet.source;
  const out = [
    `#### \`${label}\` vs. the talk's cheat sheet`,
    '',
    `The slide "${src.slide}"${src.slideNumber ? ` (slide ${src.slideNumber})` : ''} of *${src.talk}* (${src.speaker}, ${src.event}), kept as data in \`data/cheatsheet.json\`.`,
    '',
    `**${cs.length} cells: ${s.agree} agree, ${s.differ} differ${s.unmeasured ? `, ${s.unmeasured} not measured` : ''}.**${s.silentLosses ? ` In ${s.silentLosses} of them the kernel loses the bytes without an error.` : ''}`,
    '',
  ];
  const differ = cs.filter((c) => c.agrees === false);
  out.push(differ.length ? 'Differences:' : 'No cell differs from the cheat sheet.', '');
  for (const c of differ) out.push(`- ${mdEscape(c.sentence)}`);
  if (differ.length) out.push('');
  out.push('<details><summary>Every cell</summary>', '');
  for (const c of cs) out.push(`- ${c.agrees === false ? '≠' : c.agrees ? '=' : '?'} ${mdEscape(c.sentence)}`);
  out.push('', '</details>', '');
  return out.join('\n');
}

function diffMarkdown(d: MatrixDiff): string {
  const out = [`### \`${d.from}\` → \`${d.to}\``, '', `${d.changed} cells changed, ${d.same} the same.`, ''];
  if (d.changes.length) {
    out.push('| cells | before | after |', '|---|---|---|');
    for (const g of changeSummary(d)) out.push(`| ${g.cells} | ${mdEscape(g.before)} | ${mdEscape(g.after)} |`);
    out.push('', '<details><summary>Cell by cell</summary>', '');
  }
  for (const c of d.changes) out.push(`- ${mdEscape(c.sentence)}`);
  if (d.changes.length) out.push('', '</details>');
  return out.join('\n') + '\n';
}

export function reportMarkdown(ms: Matrix[], diffs: MatrixDiff[], sheet?: Cheatsheet): string {
  return ['## SOCKMAP support matrix', '', ...ms.map((m) => matrixMarkdown(m, sheet)), ...(diffs.length ? ['## Between kernels', '', ...diffs.map(diffMarkdown)] : [])].join('\n');
}

/* ---- JSON --------------------------------------------------------------------- */

/** The document --json writes: every probe of every kernel, the comparison with the cheat sheet, the diffs. */
export function reportJson(ms: Matrix[], diffs: MatrixDiff[], sheet?: Cheatsheet, now = new Date()) {
  return {
    generatedBy: 'sockmap-labs matrix (bpf/helpers/sockmap-matrix.c)',
    generatedAt: now.toISOString(),
    outcomes: {
      works: 'the bytes arrived on the target socket, not on their normal path',
      refused: 'a syscall failed: "stage" says which (socket, insert-src, insert-dst, send), "errno" with what',
      lost: 'no error, and no bytes arrived anywhere',
      passthrough: 'not redirected: the bytes took their normal path (the program did not run, or passed them on)',
      other: 'bytes arrived somewhere unexpected ("arrived")',
      error: 'not measured: the probe could not set the sockets up',
    },
    cheatsheet: sheet?.source,
    kernels: ms.map((m) => {
      const cs = sheet ? compareWithCheatsheet(m, sheet) : [];
      const t = timing(m);
      return {
        ...m,
        timing: { probes: t.probes, totalMs: t.totalMs, medianMs: t.medianMs },
        comparison: sheet
          ? {
              summary: summarize(cs),
              cells: cs.map((c) => ({ mode: c.mode, src: c.src, dst: c.dst, maps: c.maps, outcome: c.measured.outcome, errno: c.measured.errno, stage: c.measured.stage, predicted: c.predicted, agrees: c.agrees ?? null, sentence: c.sentence })),
            }
          : undefined,
      };
    }),
    diffs: diffs.map((d) => ({
      from: d.from,
      to: d.to,
      same: d.same,
      changed: d.changed,
      changes: d.changes.map(({ beforeProbe: _b, afterProbe: _a, ...c }) => c),
    })),
  };
}
