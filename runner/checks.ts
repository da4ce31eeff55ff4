// Checking what a step printed and returned against what the lab expects.
// Every check reports what it expected and what it got, for the failure output.
import type { ExecResult } from '../vm/backend.ts';
import { errnoPatterns } from './errno.ts';
import type { Expect, TextExpect } from './lab-schema.ts';

export interface CheckResult {
  /** e.g. "exit code", "stdout contains" */
  name: string;
  ok: boolean;
  expected: string;
  got: string;
}

const list = (v: string | string[] | undefined): string[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

/** Compiles a lab regex, multi-line; "/…/i" (flags i, m, s, u) is allowed too, so "/dev/sd" stays a plain pattern. */
export function compileRegex(src: string): RegExp {
  const m = /^\/(.*)\/([imsu]*)$/s.exec(src);
  return m ? new RegExp(m[1], m[2].includes('m') ? m[2] : m[2] + 'm') : new RegExp(src, 'm');
}

const short = (s: string, max = 400) => {
  const t = s.trimEnd();
  return t.length > max ? `…${t.slice(-max)}` : t || '(nothing)';
};

function checkText(stream: string, text: string, exp: TextExpect): CheckResult[] {
  const e = typeof exp === 'string' ? { contains: exp } : exp;
  const out: CheckResult[] = [];
  for (const s of list(e.contains)) out.push({ name: `${stream} contains`, ok: text.includes(s), expected: s, got: short(text) });
  for (const s of list(e.not_contains))
    out.push({ name: `${stream} does not contain`, ok: !text.includes(s), expected: `no "${s}"`, got: short(text) });
  for (const r of list(e.matches)) out.push({ name: `${stream} matches`, ok: compileRegex(r).test(text), expected: `/${r}/`, got: short(text) });
  for (const r of list(e.not_matches))
    out.push({ name: `${stream} does not match`, ok: !compileRegex(r).test(text), expected: `no match for /${r}/`, got: short(text) });
  if (e.equals !== undefined) out.push({ name: `${stream} equals`, ok: text.trim() === e.equals.trim(), expected: e.equals.trim() || '(nothing)', got: short(text) });
  return out;
}

export function evaluate(expect: Expect | undefined, r: ExecResult): CheckResult[] {
  const e = expect ?? {};
  const out: CheckResult[] = [];
  if (r.timedOut) return [{ name: 'finished in time', ok: false, expected: 'the command to finish', got: `killed after ${(r.durationMs / 1000).toFixed(1)} s` }];
  const exit = e.exit ?? (e.errno ? 'nonzero' : 0);
  const got = r.code === null ? 'killed' : String(r.code);
  out.push(
    exit === 'nonzero'
      ? { name: 'exit code', ok: r.code !== null && r.code !== 0, expected: 'non-zero (failure)', got }
      : { name: 'exit code', ok: r.code === exit, expected: String(exit), got },
  );
  const both = r.stdout + r.stderr;
  if (e.errno) {
    const found = errnoPatterns(e.errno).some((p) => p.test(both));
    out.push({ name: `fails with ${e.errno}`, ok: found, expected: `${e.errno} in the output`, got: short(both) });
  }
  if (e.stdout !== undefined) out.push(...checkText('stdout', r.stdout, e.stdout));
  if (e.stderr !== undefined) out.push(...checkText('stderr', r.stderr, e.stderr));
  if (e.output !== undefined) out.push(...checkText('output', both, e.output));
  return out;
}
