// The words `npm run lab` takes besides lab names: list, next, reset, validate, new, solution.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { Places } from '../core/config.ts';
import { UserError } from '../core/errors.ts';
import { discoverLabs, findLab, LabFileError, loadLab } from './labs.ts';
import { loadProgress, nextLab, resetProgress, saveProgress } from './progress.ts';
import type { Paint } from './style.ts';
import { validateLabs } from './validate.ts';

/** `lab list`: number, name, title, what it needs, and ✓ passed / ✗ failed / – not yet. */
export function listLabs(places: Places, p: Paint): string {
  const progress = loadProgress(places.progressFile);
  const labs = discoverLabs(places.labsDir);
  const broken: string[] = [];
  const rows = labs.map((ref) => {
    let lab;
    try {
      lab = loadLab(ref);
    } catch (e) {
      // One broken lab.yaml does not hide the others: it is listed as broken, with where to look.
      if (!(e instanceof LabFileError)) throw e;
      broken.push(ref.id);
      return `${p.red('!')} ${String(ref.number).padStart(2, '0')}  ${ref.id.padEnd(24)} ${p.red(`invalid lab.yaml: ${e.problems[0].file}:${e.problems[0].line}: ${e.problems[0].message}`)}`;
    }
    const pr = progress[ref.id];
    const mark = !pr ? p.dim('–') : pr.status === 'passed' ? p.green('✓') : pr.status === 'failed' ? p.red('✗') : p.yellow('~');
    const needs = [lab.spec.needs?.kernel && `kernel ≥ ${lab.spec.needs.kernel}`, ...(lab.spec.needs?.config ?? []).filter((c) => !['BPF_SYSCALL', 'INET'].includes(c))]
      .filter(Boolean)
      .join(', ');
    const steps = pr && pr.status !== 'passed' ? p.dim(` (${pr.passedSteps}/${pr.totalSteps} steps last time)`) : '';
    return `${mark} ${String(ref.number).padStart(2, '0')}  ${ref.id.padEnd(24)} ${lab.spec.title}${steps}${needs ? `\n${' '.repeat(30)}${p.dim(`needs ${needs}`)}` : ''}`;
  });
  const done = labs.filter((r) => progress[r.id]?.status === 'passed').length;
  const note = broken.length ? `\n${broken.length} lab file${broken.length === 1 ? ' is' : 's are'} invalid: npm run lab validate` : '';
  return `${rows.join('\n')}\n\n${done} of ${rows.length} labs passed. ${done < rows.length ? 'Next: npm run lab next' : 'All done!'}${note}`;
}

/** `lab next`: the first lab not passed yet. */
export function pickNext(places: Places): string {
  const id = nextLab(discoverLabs(places.labsDir).map((r) => r.id), loadProgress(places.progressFile));
  if (!id) throw new UserError('every lab has passed: nothing left to run', 'npm run lab reset   (to start over)');
  return id;
}

/** `lab reset [N]`: forget progress of one lab or all. */
export function reset(places: Places, which?: string): string {
  const progress = loadProgress(places.progressFile);
  let id: string | undefined;
  if (which !== undefined) {
    const ref = findLab(discoverLabs(places.labsDir), which);
    if (!ref) throw new UserError(`no lab "${which}"`, 'npm run lab list');
    id = ref.id;
  }
  const n = resetProgress(progress, id);
  saveProgress(progress, places.progressFile);
  return id ? (n ? `forgot the progress of ${id}` : `${id} had no progress yet`) : `forgot the progress of ${n} lab${n === 1 ? '' : 's'}`;
}

export function validate(labsDir: string): number {
  const { labs: n, problems, compiled } = validateLabs(labsDir);
  for (const pr of problems) console.error(`${pr.file}:${pr.line}: ${pr.message}`);
  console.log(`${n} labs checked, ${problems.length} problem${problems.length === 1 ? '' : 's'}`);
  console.log(
    'files' in compiled
      ? `exercises and solutions: ${compiled.files} C file${compiled.files === 1 ? '' : 's'} compiled with clang, as the guest does`
      : `exercises and solutions: not compiled: ${compiled.skipped} (the guest compiles them when the lab runs: npm run lab 5; or install clang and libbpf-dev)`,
  );
  return problems.length ? 1 : 0;
}

/** The longest lab name: folder names stay readable, and far below the file system's 255 bytes. */
const MAX_NAME = 60;

/** `lab new NAME`: a new lab folder with the next free number, a lab.yaml to fill in, and its broken.yaml. */
export function scaffold(name: string | undefined, dir: string): string {
  if (!name || !/^[a-z0-9]+(-[a-z0-9]+)*$/.test(name))
    throw new UserError(`a lab name is lower-case words joined by dashes, e.g. "udp-redirect"${name ? `, not "${name}"` : ''}`, 'npm run lab new udp-redirect');
  if (name.length > MAX_NAME)
    throw new UserError(`a lab name is at most ${MAX_NAME} characters; "${name.slice(0, 24)}…" has ${name.length}`, 'npm run lab new udp-redirect   (a short name; the title in lab.yaml can be long)');
  const numbered = /^(\d+)-(.+)$/.exec(name);
  if (numbered)
    throw new UserError(`a lab name has no number in front ("${name}"): the next free number is added for you`, `npm run lab new ${numbered[2]}`);
  const labs = discoverLabs(dir);
  if (labs.some((l) => l.slug === name)) throw new UserError(`a lab named ${name} exists already`, 'npm run lab list');
  const number = Math.max(0, ...labs.map((l) => l.number)) + 1;
  const id = `${String(number).padStart(2, '0')}-${name}`;
  const folder = path.join(dir, id);
  fs.mkdirSync(folder, { recursive: true });
  fs.writeFileSync(
    path.join(folder, 'lab.yaml'),
    `title: ${name.replace(/-/g, ' ').replace(/^./, (c) => c.toUpperCase())}
needs:
  kernel: "5.15"                # the oldest kernel this lab works on
  config: [BPF_SYSCALL, NET_SOCK_MSG]
text: |
  # What this lab shows

  Explain the idea here, in a few sentences. Cite the kernel selftest you
  checked the behaviour against (tools/testing/selftests/bpf/prog_tests/…).
cleanup: |
  # remove everything the lab makes (namespaces, cgroups…); $PIN and $STATE go anyway
  true
steps:
  - title: Create a SOCKMAP
    text: Why this step.
    run: bpftool map create $PIN/sockmap type sockmap key 4 value 8 entries 2 name sockmap
    expect:
      exit: 0

  - title: Insert a connected TCP socket
    run: socklab "use $PIN/sockmap" 'pair a tcp' 'insert a1 0'
    expect:
      stdout:
        matches: 'insert a1 0: ok, cookie \\d+'
    hint: Shown when the step fails.
`,
  );
  fs.writeFileSync(
    path.join(folder, 'broken.yaml'),
    `# One deliberate mistake that must make this lab fail (docs/authoring.md).
why: the socket goes to a slot the map does not have
fails_at: Insert a connected TCP socket
changes:
  - step: Insert a connected TCP socket
    replace: ["insert a1 0", "insert a1 7"]
`,
  );
  return `created ${path.relative(process.cwd(), folder) || folder}/lab.yaml and broken.yaml\nrun it: npm run lab ${number}`;
}

/**
 * `lab solution N`: the difference between the learner's exercise files and
 * the reference; with apply, the reference copied over them.
 */
export function solution(labsDir: string, which: string | undefined, apply: boolean): string {
  if (!which) throw new UserError('which lab? e.g. npm run lab solution 5', 'npm run lab list');
  const all = discoverLabs(labsDir);
  const ref = findLab(all, which);
  if (!ref) throw new UserError(`no lab "${which}"`, 'npm run lab list');
  const lab = loadLab(ref);
  const files = lab.spec.exercise?.files;
  if (!files) {
    const withEx = all.filter((l) => loadLab(l).spec.exercise).map((l) => l.number);
    throw new UserError(`lab ${ref.id} has no exercise`, withEx.length ? `labs with one: ${withEx.join(', ')}` : undefined);
  }
  const out: string[] = [];
  for (const f of files) {
    const mine = path.join(ref.dir, 'exercise', f);
    const theirs = path.join(ref.dir, 'solution', f);
    const rel = (p: string) => path.relative(process.cwd(), p) || p;
    if (apply) {
      const same = fs.existsSync(mine) && fs.readFileSync(mine).equals(fs.readFileSync(theirs));
      if (same) {
        out.push(`${rel(mine)}: yours is the solution already`);
        continue;
      }
      // The learner's own work is never lost: it is kept beside the exercise, under a name no build picks up.
      let kept: string | undefined;
      if (fs.existsSync(mine)) {
        kept = `${mine}.mine`;
        for (let i = 1; fs.existsSync(kept); i++) kept = `${mine}.mine.${i}`;
        fs.copyFileSync(mine, kept, fs.constants.COPYFILE_EXCL);
      }
      fs.copyFileSync(theirs, mine);
      out.push(`copied ${rel(theirs)} over ${rel(mine)}${kept ? `; your version is kept as ${rel(kept)}` : ''}`);
      continue;
    }
    // diff exits 1 when the files differ: that is the normal case here.
    const r = spawnSync('diff', ['-u', '--label', `${rel(mine)} (yours)`, '--label', `${rel(theirs)} (solution)`, mine, theirs], { encoding: 'utf8' });
    out.push(r.status === 0 ? `${rel(mine)}: yours is the solution already` : r.stdout.trimEnd());
  }
  if (apply) out.push(`run it: npm run lab ${lab.number}   (your own work is in the .mine files beside the exercise; the empty stub: git checkout -- ${path.relative(process.cwd(), path.join(ref.dir, 'exercise'))})`);
  else out.push(`\nput the solution in place: npm run lab solution ${lab.number} -- --apply`);
  return out.join('\n');
}
