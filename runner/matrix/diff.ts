// What changed between two kernels' matrices: every cell whose outcome (or
// the errno, or the syscall that failed) differs. Times never count.
import {
  describeOutcome,
  findInsert,
  findRedirect,
  INSERT_KINDS,
  KIND_LABELS,
  MAP_LABELS,
  MAPS,
  MODE_LABELS,
  MODES,
  outcomeKey,
  REDIRECT_KINDS,
  type InsertKind,
  type InsertProbe,
  type MapType,
  type Matrix,
  type Mode,
  type RedirectKind,
  type RedirectProbe,
} from './model.ts';

interface CellChange {
  probe: 'redirect' | 'insert';
  /** Both maps when they changed alike. */
  maps: MapType[];
  mode?: Mode;
  src?: RedirectKind;
  dst?: RedirectKind;
  kind?: InsertKind;
  /** The outcome in words on each kernel; "not measured" when a kernel has no such cell. */
  before: string;
  after: string;
  beforeProbe?: RedirectProbe | InsertProbe;
  afterProbe?: RedirectProbe | InsertProbe;
  /** "ingress to local UDP→VSOCK stream (SOCKMAP, SOCKHASH): 6.1: refused at … ; 6.12: lost (…)" */
  sentence: string;
}

export interface MatrixDiff {
  from: string;
  to: string;
  changes: CellChange[];
  /** Cells (one map each) measured on both kernels with the same outcome. */
  same: number;
  /** Cells (one map each) that changed; a change line may speak for two. */
  changed: number;
}

const words = (p: RedirectProbe | InsertProbe | undefined) => (p ? describeOutcome(p) : 'not measured');

/** Cell by cell, from `a` to `b`. */
export function diffMatrices(a: Matrix, b: Matrix): MatrixDiff {
  const changes: CellChange[] = [];
  let same = 0;
  const add = (cell: Omit<CellChange, 'maps' | 'before' | 'after' | 'sentence' | 'beforeProbe' | 'afterProbe'>, name: string, pairs: [MapType, RedirectProbe | InsertProbe | undefined, RedirectProbe | InsertProbe | undefined][]) => {
    const changed = pairs.filter(([, x, y]) => (x || y) && outcomeKey(x) !== outcomeKey(y));
    same += pairs.filter(([, x, y]) => x && y && outcomeKey(x) === outcomeKey(y)).length;
    // Maps that changed the same way share one line.
    const groups = new Map<string, typeof changed>();
    for (const c of changed) {
      const k = `${outcomeKey(c[1])} -> ${outcomeKey(c[2])}`;
      groups.set(k, [...(groups.get(k) ?? []), c]);
    }
    for (const g of groups.values()) {
      const [, x, y] = g[0];
      const maps = g.map(([m]) => m);
      changes.push({
        ...cell,
        maps,
        before: words(x),
        after: words(y),
        beforeProbe: x,
        afterProbe: y,
        sentence: `${name} (${maps.map((m) => MAP_LABELS[m]).join(', ')}): ${a.label}: ${words(x)}; ${b.label}: ${words(y)}`,
      });
    }
  };
  for (const mode of MODES)
    for (const src of REDIRECT_KINDS)
      for (const dst of REDIRECT_KINDS)
        add({ probe: 'redirect', mode, src, dst }, `${MODE_LABELS[mode]} ${KIND_LABELS[src]}→${KIND_LABELS[dst]}`, MAPS.map((map) => [map, findRedirect(a, map, mode, src, dst), findRedirect(b, map, mode, src, dst)]));
  for (const kind of INSERT_KINDS)
    add({ probe: 'insert', kind }, `insert ${KIND_LABELS[kind]}`, MAPS.map((map) => [map, findInsert(a, map, kind), findInsert(b, map, kind)]));
  return { from: a.label, to: b.label, changes, same, changed: changes.reduce((n, c) => n + c.maps.length, 0) };
}

/** The changes grouped by what changed ("refused at insert with EOPNOTSUPP → works"), largest group first. */
export function changeSummary(d: MatrixDiff): { before: string; after: string; cells: number }[] {
  const groups = new Map<string, { before: string; after: string; cells: number }>();
  for (const c of d.changes) {
    const k = `${c.before}\n${c.after}`;
    const g = groups.get(k) ?? { before: c.before, after: c.after, cells: 0 };
    g.cells += c.maps.length;
    groups.set(k, g);
  }
  return [...groups.values()].sort((a, b) => b.cells - a.cells);
}

/** Each kernel against the first one. */
export function diffAll(ms: Matrix[]): MatrixDiff[] {
  return ms.slice(1).map((m) => diffMatrices(ms[0], m));
}
