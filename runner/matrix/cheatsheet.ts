// The talk's redirect cheat sheet (data/cheatsheet.json), and its comparison
// with a measured matrix, cell by cell: for each mode and pair of socket
// kinds, does the kernel do what the slide says?
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { projectRoot } from '../../core/paths.ts';
import { UserError } from '../../core/errors.ts';
import {
  describeOutcome,
  findRedirect,
  KIND_LABELS,
  MAP_LABELS,
  MAPS,
  MODE_LABELS,
  MODES,
  outcomeKey,
  REDIRECT_KINDS,
  type MapType,
  type Matrix,
  type Mode,
  type RedirectKind,
  type RedirectProbe,
} from './model.ts';

const CHEATSHEET_FILE = path.join(projectRoot, 'data/cheatsheet.json');

const Row = z.object({
  scenario: z.string(),
  mode: z.enum(MODES),
  program: z.string(),
  attach: z.string(),
  helper: z.string(),
  flag: z.string(),
  /** As on the slide: "any", "any but VSOCK", "TCP" (family names, comma-separated). */
  in: z.string(),
  out: z.string(),
});

export const Cheatsheet = z.object({
  source: z.object({ talk: z.string(), speaker: z.string(), event: z.string(), slide: z.string(), slideNumber: z.number().optional() }).passthrough(),
  families: z.record(z.string(), z.array(z.enum(REDIRECT_KINDS))),
  rows: z.array(Row),
});
export type Cheatsheet = z.infer<typeof Cheatsheet>;
type CheatsheetRow = z.infer<typeof Row>;

export function loadCheatsheet(file = CHEATSHEET_FILE): Cheatsheet {
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new UserError(`cannot read the cheat sheet ${file}: ${(e as Error).message}`, 'git checkout data/cheatsheet.json');
  }
  const r = Cheatsheet.safeParse(raw);
  if (!r.success) throw new UserError(`${file}: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return r.data;
}

/** The socket kinds a slide cell names: "any", "any but VSOCK", "TCP", "TCP, UDP". */
export function kindsOf(text: string, families: Cheatsheet['families']): Set<RedirectKind> {
  const t = text.trim();
  const family = (name: string): RedirectKind[] => {
    const f = families[name.trim().toUpperCase()];
    if (!f) throw new UserError(`the cheat sheet names "${name.trim()}", which is none of its families (${Object.keys(families).join(', ')})`);
    return f;
  };
  if (/^any$/i.test(t)) return new Set(REDIRECT_KINDS);
  const but = /^any but (.+)$/i.exec(t);
  if (but) {
    const out = new Set<RedirectKind>(REDIRECT_KINDS);
    for (const name of but[1].split(/,| and /)) for (const k of family(name)) out.delete(k);
    return out;
  }
  return new Set(t.split(',').flatMap(family));
}

/** Does the slide say this redirect works? */
export function predicts(row: CheatsheetRow, families: Cheatsheet['families'], src: RedirectKind, dst: RedirectKind): boolean {
  return kindsOf(row.in, families).has(src) && kindsOf(row.out, families).has(dst);
}

export interface CellComparison {
  kernel: string;
  mode: Mode;
  src: RedirectKind;
  dst: RedirectKind;
  /** The maps this line speaks for (both, when SOCKMAP and SOCKHASH agree). */
  maps: MapType[];
  measured: RedirectProbe;
  /** The slide says it works. */
  predicted: boolean;
  /** The slide's words that decide this cell: "works (TCP → any but VSOCK)", "in socket: TCP", "out socket: any but VSOCK". */
  sheet: string;
  /** undefined: not measured (the probe could not set it up). */
  agrees?: boolean;
  /** "kernel 6.12.1: ingress to local UDP→VSOCK stream lost (…); cheat sheet: out socket: any but VSOCK — agrees" */
  sentence: string;
}

/** Compares every measured redirect cell of the cheat sheet's four rows with the slide. */
export function compareWithCheatsheet(m: Matrix, sheet: Cheatsheet): CellComparison[] {
  const out: CellComparison[] = [];
  for (const row of sheet.rows) {
    for (const src of REDIRECT_KINDS) {
      for (const dst of REDIRECT_KINDS) {
        const probes = MAPS.map((map) => findRedirect(m, map, row.mode, src, dst)).filter((p): p is RedirectProbe => !!p);
        if (!probes.length) continue;
        // One line for both maps when they answered alike, else one line each.
        const groups = new Map<string, RedirectProbe[]>();
        for (const p of probes) groups.set(outcomeKey(p), [...(groups.get(outcomeKey(p)) ?? []), p]);
        for (const group of groups.values()) {
          const measured = group[0];
          const maps = group.map((p) => p.map);
          const predicted = predicts(row, sheet.families, src, dst);
          const agrees = measured.outcome === 'error' ? undefined : (measured.outcome === 'works') === predicted;
          const mapNote = groups.size > 1 ? `, ${maps.map((x) => MAP_LABELS[x]).join(' and ')}` : '';
          // The slide's words that decide this cell.
          const sheetWords = predicted
            ? `works (${row.in} → ${row.out})`
            : !kindsOf(row.in, sheet.families).has(src)
              ? `in socket: ${row.in}`
              : `out socket: ${row.out}`;
          const verdict = agrees === undefined ? 'not measured' : agrees ? 'agrees' : 'DIFFERS';
          const silently = agrees && measured.outcome === 'lost' ? ' (but silently: no error tells the sender)' : '';
          out.push({
            kernel: m.label,
            mode: row.mode,
            src,
            dst,
            maps,
            measured,
            predicted,
            sheet: sheetWords,
            agrees,
            sentence: `kernel ${m.label}${mapNote}: ${MODE_LABELS[row.mode]} ${KIND_LABELS[src]}→${KIND_LABELS[dst]} ${describeOutcome(measured)}; cheat sheet: ${sheetWords} — ${verdict}${silently}`,
          });
        }
      }
    }
  }
  return out;
}

interface ComparisonSummary {
  agree: number;
  differ: number;
  unmeasured: number;
  /** Cells where the slide says "no" and the kernel drops the bytes without an error. */
  silentLosses: number;
}

export function summarize(cs: CellComparison[]): ComparisonSummary {
  return {
    agree: cs.filter((c) => c.agrees === true).length,
    differ: cs.filter((c) => c.agrees === false).length,
    unmeasured: cs.filter((c) => c.agrees === undefined).length,
    silentLosses: cs.filter((c) => c.measured.outcome === 'lost').length,
  };
}
