// `npm run lab validate`: every lab file (lab.yaml, broken.yaml, near-misses.yaml) checked
// against the format, with file:line for each problem, and every exercise and
// solution compiled as the guest would (when the host has clang and the BPF
// headers: ./setup.sh --dev installs them; else it says they were not). No VM needed.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { applyBroken, loadBroken } from './broken-variant.ts';
import { LabFileError, discoverLabs, parseLab, type LabProblem } from './labs.ts';
import { checkNearMisses } from './near-miss.ts';

interface ValidateResult {
  labs: number;
  problems: LabProblem[];
  /** What happened to the exercises' and solutions' C files: how many were compiled here, or why none were. */
  compiled: { files: number } | { skipped: string };
}

/** The flags bpf/Makefile gives the guest's compiler (BPF_CFLAGS), for a syntax and type check on the host. */
const bpfFlags = () => ['-g', '-O2', '-Wall', '-target', 'bpf', `-I/usr/include/${os.machine()}-linux-gnu`];

/** Why the host cannot compile BPF C like the guest does, or undefined when it can. */
function cannotCompile(): string | undefined {
  const clang = spawnSync('clang', ['--version'], { encoding: 'utf8' });
  if (clang.error || clang.status !== 0) return 'clang is not installed on this machine';
  if (!fs.existsSync('/usr/include/bpf/bpf_helpers.h')) return 'the libbpf headers (/usr/include/bpf) are not installed on this machine';
  if (!fs.existsSync(`/usr/include/${os.machine()}-linux-gnu/asm/types.h`)) return `the kernel headers (/usr/include/${os.machine()}-linux-gnu/asm) are not installed on this machine`;
  return undefined;
}

/** Compiles one BPF C file as the lab's step would (syntax and types; no object written); its errors as problems. */
function compileProblems(file: string, rel: (f: string) => string): LabProblem[] {
  const r = spawnSync('clang', [...bpfFlags(), '-fsyntax-only', file], { encoding: 'utf8' });
  if (r.status === 0) return [];
  const errors = (r.stderr ?? '').split('\n').filter((l) => /: (fatal )?error: /.test(l));
  if (!errors.length) return [{ file: rel(file), line: 1, message: `does not compile: ${(r.stderr || r.error?.message || '').split('\n')[0]}` }];
  return errors.slice(0, 3).map((l) => {
    const m = /^(.*?):(\d+):\d+: (?:fatal )?error: (.*)$/.exec(l);
    return { file: rel(file), line: m ? Number(m[2]) : 1, message: `does not compile: ${m ? m[3] : l}` };
  });
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
  const noCompiler = cannotCompile();
  let compiled = 0;
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
        else if (!noCompiler && f.endsWith('.c')) {
          problems.push(...compileProblems(path.join(ref.dir, sub, f), rel));
          compiled++;
        }
    const brokenFile = path.join(ref.dir, 'broken.yaml');
    try {
      const b = loadBroken(ref.dir);
      if (!b) problems.push({ file: rel(brokenFile), line: 1, message: 'missing: every lab needs a broken variant proving its checks can fail (docs/authoring.md)' });
      else applyBroken(spec, b);
    } catch (e) {
      if (e instanceof LabFileError) problems.push(...e.problems);
      else problems.push({ file: rel(brokenFile), line: 1, message: (e as Error).message.split('\n')[0] });
    }
    const nearMissFile = path.join(ref.dir, 'near-misses.yaml');
    try {
      for (const message of checkNearMisses(ref.dir, spec)) problems.push({ file: rel(nearMissFile), line: 1, message });
    } catch (e) {
      if (e instanceof LabFileError) problems.push(...e.problems);
      else problems.push({ file: rel(nearMissFile), line: 1, message: (e as Error).message.split('\n')[0] });
    }
  }
  return { labs: refs.length, problems, compiled: noCompiler ? { skipped: noCompiler } : { files: compiled } };
}
