// A hand-written expectation of a kernel's matrix (data/expected/*.json) and
// the check of a measured matrix against it: every mismatch, in words. Also
// the shape of a matrix in the JSON file `npm run matrix` writes, to read it
// back.
import fs from 'node:fs';
import { z } from 'zod';
import { findInsert, findRedirect, INSERT_KINDS, InsertProbe, MAPS, MODES, REDIRECT_KINDS, RedirectProbe, type Matrix } from '../runner/matrix/model.ts';

/** A matrix as the JSON file holds it (runner/matrix/model.ts's Matrix). */
export const MatrixSchema = z.object({
  kernel: z.string(),
  label: z.string(),
  accel: z.string().optional(),
  backend: z.string().optional(),
  attached: z.boolean(),
  waitMs: z.number(),
  redirect: z.array(RedirectProbe),
  insert: z.array(InsertProbe),
  probes: z.number().optional(),
  totalMs: z.number().optional(),
  startedAt: z.string().optional(),
}) satisfies z.ZodType<Matrix>;

const Expectation = z.object({
  kernel: z.string(),
  maps: z.array(z.enum(MAPS)),
  /** mode → in socket → six words, one per out socket in REDIRECT_KINDS order. */
  redirect: z.partialRecord(z.enum(MODES), z.partialRecord(z.enum(REDIRECT_KINDS), z.string())),
  /** insert kind → "accepted" or "STAGE:ERRNO". */
  insert: z.partialRecord(z.enum(INSERT_KINDS), z.string()).optional(),
});
type Expectation = z.infer<typeof Expectation>;

export function loadExpectation(file: string): Expectation {
  return Expectation.parse(JSON.parse(fs.readFileSync(file, 'utf8')));
}

/** A measured cell as an expectation word: works, lost, normal, send:EACCES, insert-dst:EOPNOTSUPP, accepted… */
export function cellWord(p: RedirectProbe | InsertProbe | undefined): string {
  if (!p) return 'missing';
  if (p.outcome === 'passthrough') return 'normal';
  if (p.outcome === 'refused' || p.outcome === 'error') return `${p.outcome === 'error' ? 'error:' : ''}${p.stage}:${p.errno}`;
  return p.outcome;
}

/** Every cell that differs from the expectation: "sockmap ingress-to-local udp→vsock-stream: expected lost, got works". */
export function checkExpectation(m: Matrix, e: Expectation): string[] {
  const out: string[] = [];
  for (const map of e.maps) {
    for (const [mode, rows] of Object.entries(e.redirect) as [(typeof MODES)[number], Record<string, string>][]) {
      for (const [src, row] of Object.entries(rows) as [(typeof REDIRECT_KINDS)[number], string][]) {
        const words = row.trim().split(/\s+/);
        if (words.length !== REDIRECT_KINDS.length) {
          out.push(`expectation ${mode} ${src}: ${words.length} words, want ${REDIRECT_KINDS.length}`);
          continue;
        }
        REDIRECT_KINDS.forEach((dst, i) => {
          const got = cellWord(findRedirect(m, map, mode, src, dst));
          if (got !== words[i]) out.push(`${map} ${mode} ${src}→${dst}: expected ${words[i]}, got ${got}`);
        });
      }
    }
    for (const [kind, want] of Object.entries(e.insert ?? {}) as [(typeof INSERT_KINDS)[number], string][]) {
      const got = cellWord(findInsert(m, map, kind));
      if (got !== want) out.push(`${map} insert ${kind}: expected ${want}, got ${got}`);
    }
  }
  return out;
}
