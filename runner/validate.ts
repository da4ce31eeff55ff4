// `npm run lab validate`: every lab file (lab.yaml, broken.yaml, near-misses.yaml) checked
// against the format, with file:line for each problem. No VM needed.
import fs from 'node:fs';
import path from 'node:path';
import { applyBroken, loadBroken } from './broken-variant.ts';
import { LabFileError, discoverLabs, parseLab, type LabProblem } from './labs.ts';
import { checkNearMisses } from './near-miss.ts';

interface ValidateResult {
  labs: number;
  problems: LabProblem[];
}

export function validateLabs(dir: string): ValidateResult {
  const problems: LabProblem[] = [];
  const rel = (f: string) => path.relative(process.cwd(), f) || f;
  // Folders that look like labs but are not named NN-name, or lack lab.yaml.
  if (fs.existsSync(dir))
    for (const d of fs.readdirSync(dir)) {
      const full = path.join(dir, d);
      if (!fs.statSync(full).isDirectory()) continue;
      if (!/^\d+-[a-z0-9-]+$/.test(d)) problems.push({ file: rel(full), line: 1, message: 'a lab folder is named NN-name (digits, a dash, lower-case words)' });
      else if (!fs.existsSync(path.join(full, 'lab.yaml'))) problems.push({ file: rel(full), line: 1, message: 'no lab.yaml in this lab folder' });
    }
  const refs = discoverLabs(dir);
  const numbers = new Map<number, string>();
  for (const ref of refs) {
    if (numbers.has(ref.number)) problems.push({ file: rel(ref.file), line: 1, message: `lab number ${ref.number} is also used by ${numbers.get(ref.number)}` });
    numbers.set(ref.number, ref.id);
    let spec;
    try {
      spec = parseLab(fs.readFileSync(ref.file, 'utf8'), ref.file);
    } catch (e) {
      if (e instanceof LabFileError) problems.push(...e.problems);
      else throw e;
      continue;
    }
    for (const f of spec.exercise?.files ?? [])
      for (const sub of ['exercise', 'solution'])
        if (!fs.existsSync(path.join(ref.dir, sub, f))) problems.push({ file: rel(path.join(ref.dir, sub, f)), line: 1, message: `missing: the exercise names ${f}, so ${sub}/${f} must exist` });
    const brokenFile = path.join(ref.dir, 'broken.yaml');
    try {
      const b = loadBroken(ref.dir);
      if (!b) problems.push({ file: rel(brokenFile), line: 1, message: 'missing: every lab needs a broken variant proving its checks can fail (docs/authoring.md)' });
      else applyBroken(spec, b);
    } catch (e) {
      problems.push({ file: rel(brokenFile), line: 1, message: (e as Error).message.split('\n')[0] });
    }
    const nearMissFile = path.join(ref.dir, 'near-misses.yaml');
    try {
      for (const message of checkNearMisses(ref.dir, spec)) problems.push({ file: rel(nearMissFile), line: 1, message });
    } catch (e) {
      problems.push({ file: rel(nearMissFile), line: 1, message: (e as Error).message.split('\n')[0] });
    }
  }
  return { labs: refs.length, problems };
}
