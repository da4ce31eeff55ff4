// Broken variants: every lab keeps, beside its lab.yaml, a broken.yaml that
// describes one deliberate mistake (a wrong program, a missing attach, a step
// in the wrong order). Applied to the lab, it must make the lab fail at the
// step it names — proof that the lab's checks can fail.
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import type { LabSpec } from './lab-schema.ts';
import { parseYamlFile } from './labs.ts';

const Change = z.union([
  z.object({ drop: z.string() }).strict(),
  z.object({ step: z.string(), replace: z.tuple([z.string(), z.string()]) }).strict(),
  z.object({ step: z.string(), expect: z.unknown() }).strict(),
]);

const Broken = z
  .object({
    why: z.string().min(1),
    /** Title of the step that must fail. */
    fails_at: z.string().min(1),
    changes: z.array(Change).min(1),
  })
  .strict();
type Broken = z.infer<typeof Broken>;

export function loadBroken(labDir: string): Broken | undefined {
  const file = path.join(labDir, 'broken.yaml');
  if (!fs.existsSync(file)) return undefined;
  // Problems come back as file:line: path: message (a LabFileError), as for lab.yaml.
  return parseYamlFile(fs.readFileSync(file, 'utf8'), file, Broken).data;
}

/** The lab with the mistake applied; throws if a change names no step or replaces nothing. */
export function applyBroken(lab: LabSpec, b: Broken): LabSpec {
  const out: LabSpec = structuredClone(lab);
  const find = (title: string) => {
    const i = out.steps.findIndex((s) => s.title === title);
    if (i < 0) throw new Error(`broken.yaml names no step "${title}"`);
    return i;
  };
  for (const c of b.changes) {
    if ('drop' in c) out.steps.splice(find(c.drop), 1);
    else if ('replace' in c) {
      const s = out.steps[find(c.step)];
      if (!s.run.includes(c.replace[0])) throw new Error(`step "${c.step}" has no "${c.replace[0]}" to replace`);
      s.run = s.run.split(c.replace[0]).join(c.replace[1]);
    } else out.steps[find(c.step)].expect = c.expect as LabSpec['steps'][number]['expect'];
  }
  find(b.fails_at);
  return out;
}
