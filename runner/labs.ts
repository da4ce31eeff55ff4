// Finding labs (labs/NN-name/lab.yaml) and loading them, with schema errors
// reported as file:line.
import fs from 'node:fs';
import path from 'node:path';
import { LineCounter, parseDocument, isMap, isNode, isScalar, type Document } from 'yaml';
import type { z } from 'zod';
import { UserError } from '../core/errors.ts';
import { compileRegex } from './checks.ts';
import { isKnownErrno } from './errno.ts';
import { Lab, type LabSpec } from './lab-schema.ts';

export interface LabRef {
  /** Folder name, e.g. "01-create-map". */
  id: string;
  number: number;
  /** The part after the number, e.g. "create-map". */
  slug: string;
  dir: string;
  file: string;
}

export interface LoadedLab extends LabRef {
  spec: LabSpec;
  /** Line in lab.yaml where each step starts (for CI annotations). */
  stepLines?: number[];
}

/** The labs in `dir` (Places.labsDir), by number. */
export function discoverLabs(dir: string): LabRef[] {
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .map((id) => ({ id, m: /^(\d+)-([a-z0-9-]+)$/.exec(id) }))
    .filter((x) => x.m && fs.existsSync(path.join(dir, x.id, 'lab.yaml')))
    .map(({ id, m }) => ({ id, number: Number(m![1]), slug: m![2], dir: path.join(dir, id), file: path.join(dir, id, 'lab.yaml') }))
    .sort((a, b) => a.number - b.number);
}

/** The lab a learner means by a number ("3", "03"), a folder name or a slug. */
export function findLab(all: LabRef[], which: string): LabRef | undefined {
  return all.find((l) => (/^\d+$/.test(which) ? l.number === Number(which) : l.id === which || l.slug === which));
}

/** Picks labs by number, folder name, or slug; "all" picks every lab. */
export function selectLabs(all: LabRef[], wanted: string[]): LabRef[] {
  if (wanted.length === 0) return all;
  // Every name is checked, "all 99" included; a lab named twice ("1 01") runs once.
  const picked = wanted.filter((w) => w !== 'all').map((w) => {
    const hit = findLab(all, w);
    if (!hit)
      throw new UserError(
        `no lab "${w}". The labs are:\n${all.map((l) => `  ${String(l.number).padStart(2)}  ${l.id}`).join('\n')}`,
        `npm run lab ${all[0]?.number ?? 1}`,
      );
    return hit;
  });
  return wanted.includes('all') ? all : [...new Set(picked)];
}

export interface LabProblem {
  file: string;
  line: number;
  message: string;
}

export class LabFileError extends UserError {
  constructor(readonly problems: LabProblem[]) {
    super(`invalid lab file:\n${problems.map((p) => `  ${p.file}:${p.line}: ${p.message}`).join('\n')}`, 'fix the lines named above (the format: docs/authoring.md)');
  }
}

/** Line of `key` inside the mapping at `at` (for "unknown key" errors). */
function keyLine(doc: Document, lc: LineCounter, at: (string | number)[], key: string): number | undefined {
  const node = at.length ? doc.getIn(at, true) : doc.contents;
  if (!isMap(node)) return undefined;
  const pair = node.items.find((p) => isScalar(p.key) && p.key.value === key);
  return pair && isScalar(pair.key) && pair.key.range ? lc.linePos(pair.key.range[0]).line : undefined;
}

function lineOf(doc: Document, lc: LineCounter, at: (string | number)[]): number {
  // Walk up the path until a node with a position is found.
  for (let n = at.length; n >= 0; n--) {
    const node = doc.getIn(at.slice(0, n), true);
    if (isNode(node) && node.range) return lc.linePos(node.range[0]).line;
  }
  return 1;
}

/** Problems the schema cannot see: regexes that do not compile, unknown errno names. */
function semanticProblems(spec: LabSpec): { at: (string | number)[]; message: string }[] {
  const out: { at: (string | number)[]; message: string }[] = [];
  spec.steps.forEach((step, i) => {
    if (step.ready && !step.background) out.push({ at: ['steps', i, 'ready'], message: '"ready" needs "background"' });
    const e = step.expect;
    if (!e) return;
    if (e.errno && !isKnownErrno(e.errno)) out.push({ at: ['steps', i, 'expect', 'errno'], message: `unknown errno ${e.errno}` });
    for (const stream of ['stdout', 'stderr', 'output'] as const) {
      const t = e[stream];
      if (!t || typeof t === 'string') continue;
      for (const key of ['matches', 'not_matches'] as const) {
        const v = t[key];
        for (const r of v === undefined ? [] : Array.isArray(v) ? v : [v]) {
          try {
            compileRegex(r);
          } catch (err) {
            out.push({ at: ['steps', i, 'expect', stream, key], message: `bad regular expression: ${(err as Error).message}` });
          }
        }
      }
    }
  });
  return out;
}

export function parseLab(text: string, file: string): LabSpec {
  return parseLabWithLines(text, file).spec;
}

/**
 * Parses a YAML file against a zod schema; every problem (a YAML syntax error,
 * a missing or ill-typed field, an unknown key) as file:line: path: message.
 * Used for lab.yaml, broken.yaml and near-misses.yaml alike.
 */
export function parseYamlFile<T>(text: string, file: string, schema: z.ZodType<T>): { data: T; doc: Document; lc: LineCounter; rel: string } {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false });
  const rel = path.relative(process.cwd(), file) || file;
  if (doc.errors.length)
    throw new LabFileError(doc.errors.map((e) => ({ file: rel, line: lc.linePos(e.pos[0]).line, message: e.message.split('\n')[0] })));
  const parsed = schema.safeParse(doc.toJS());
  if (!parsed.success)
    throw new LabFileError(
      parsed.error.issues.map((i) => {
        const at = i.path.filter((p): p is string | number => typeof p !== 'symbol');
        const where = at.length ? `${at.join('.')}: ` : '';
        const keys: string[] = 'keys' in i && Array.isArray(i.keys) ? i.keys : [];
        const line = (keys.length && keyLine(doc, lc, at, keys[0])) || lineOf(doc, lc, at);
        return { file: rel, line, message: `${where}${i.message}${keys.length ? ` (${keys.join(', ')})` : ''}` };
      }),
    );
  return { data: parsed.data, doc, lc, rel };
}

/** The lab, and the line in the file where each step starts (for CI annotations). */
function parseLabWithLines(text: string, file: string): { spec: LabSpec; stepLines: number[] } {
  const { data, doc, lc, rel } = parseYamlFile(text, file, Lab);
  const extra = semanticProblems(data);
  if (extra.length) throw new LabFileError(extra.map((p) => ({ file: rel, line: lineOf(doc, lc, p.at), message: `${p.at.join('.')}: ${p.message}` })));
  return { spec: data, stepLines: data.steps.map((_, i) => lineOf(doc, lc, ['steps', i])) };
}

export function loadLab(ref: LabRef): LoadedLab {
  return { ...ref, ...parseLabWithLines(fs.readFileSync(ref.file, 'utf8'), ref.file) };
}
