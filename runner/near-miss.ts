// Near misses: an exercise's plausible wrong solutions (an off-by-one range,
// the wrong byte order, half a prefix). Each is the reference solution with a
// few edits, kept in the lab's near-misses.yaml beside the step it must fail
// at; that step's hint must name the case. test/e2e/near-misses.test.ts runs
// them all. Edits, not whole files: a near miss stays the solution but for its
// mistake, and a change to the solution that an edit no longer fits is an error.
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import type { LabSpec } from './lab-schema.ts';
import { parseYamlFile } from './labs.ts';

const NearMiss = z
  .object({
    /** What the program gets wrong, as a learner would. */
    why: z.string().min(1),
    /** Title of the step that must fail. */
    fails_at: z.string().min(1),
    /** [text in the solution, its replacement], applied in order; each text must occur exactly once. */
    replace: z.array(z.tuple([z.string().min(1), z.string()])).min(1),
  })
  .strict();
export type NearMiss = z.infer<typeof NearMiss> & { name: string };

/** The lab's near misses (none when it has no near-misses.yaml). */
export function loadNearMisses(labDir: string): NearMiss[] {
  const file = path.join(labDir, 'near-misses.yaml');
  if (!fs.existsSync(file)) return [];
  // Problems come back as file:line: path: message (a LabFileError), as for lab.yaml.
  const all = parseYamlFile(fs.readFileSync(file, 'utf8'), file, z.record(z.string().regex(/^[a-z0-9][a-z0-9.-]*$/), NearMiss)).data;
  return Object.entries(all).map(([name, n]) => ({ name, ...n }));
}

/** The solution's text with the near miss's edits; throws when an edit's text is not there exactly once. */
export function applyNearMiss(solution: string, n: NearMiss): string {
  let text = solution;
  for (const [from, to] of n.replace) {
    const count = text.split(from).length - 1;
    if (count !== 1) throw new Error(`near miss ${n.name}: ${JSON.stringify(from)} is in the solution ${count} times, not once`);
    text = text.replace(from, () => to);
  }
  return text;
}

/** Checks a lab's near misses against its solution and steps; returns the problems. */
export function checkNearMisses(labDir: string, spec: LabSpec): string[] {
  const misses = loadNearMisses(labDir);
  if (!misses.length) return [];
  const file = spec.exercise?.files[0];
  if (!file) return ['near-misses.yaml, but the lab has no exercise'];
  const solution = fs.readFileSync(path.join(labDir, 'solution', file), 'utf8');
  const problems: string[] = [];
  for (const n of misses) {
    try {
      applyNearMiss(solution, n);
    } catch (e) {
      problems.push((e as Error).message);
    }
    const step = spec.steps.find((s) => s.title === n.fails_at);
    if (!step) problems.push(`near miss ${n.name}: no step "${n.fails_at}"`);
    else if (!step.hint) problems.push(`near miss ${n.name}: step "${n.fails_at}" has no hint to name the case`);
  }
  return problems;
}
