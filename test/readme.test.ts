// The README and docs/*.md show commands to type. Each one must work as
// written: every `npm run X` names a script in package.json; every
// subcommand and option after it is one the CLI's --help lists (an option's
// value one of its choices, where it has them); every ./setup.sh flag is one
// `./setup.sh --help` lists; a flag named on its own in the text (`--watch`)
// exists somewhere; and every source path the text names exists. So renaming
// a flag, a subcommand or a script without fixing the docs fails here.
//
// The help texts are read by running the real CLI (`node runner/launch.mjs
// … --help`, each command of the tree) and setup.sh, so
// this sees what a user sees; the bench scripts' options come from their
// parseArgs calls. About 3 s on an idle 2-core machine.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '..');
const DOCS = ['README.md', ...fs.readdirSync(path.join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];
const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };

/**
 * Commands other helpers of issue 20 add in parallel branches, documented
 * ahead of the merge. While the script or subcommand is missing, a line
 * naming it is let through (with a note); once it exists it is checked like
 * any other. Empty this list once they have landed.
 */
const PENDING: RegExp[] = [];

/** Lines that show a mistake on purpose (the README warns about it). */
const ON_PURPOSE = new Set(['npm run lab 1 --quiet']);

/** Flags of other programs that the docs name in passing (vng, npm, mkfs). */
const FOREIGN_FLAGS = new Set(['--disable-kvm', '--offline', '--cache', '--all-root', '--os', '--cpu']);

// ---- the help texts ------------------------------------------------------------

interface Opt {
  long: string;
  short?: string;
  takesValue: boolean;
  choices?: string[];
}
interface Cmd {
  path: string[];
  options: Opt[];
  subcommands: string[];
  /** Takes positional arguments (its usage line names some besides [options] and [command]). */
  takesArgs: boolean;
  /** The help text's Arguments section: the words a positional may be (lab's "list, next, …"). */
  argumentsText: string;
}

/** Parses commander's --help output. */
export function parseHelp(cmdPath: string[], text: string): Cmd {
  const lines = text.split('\n');
  const usage = lines.find((l) => l.startsWith('Usage:')) ?? '';
  const rest = usage.replace(/^Usage:\s*\S+/, '').split(/\s+/).filter((w) => w && !cmdPath.includes(w) && w !== '[options]' && w !== '[command]');
  const takesArgs = rest.length > 0;
  const section = (name: string) => {
    const i = lines.indexOf(`${name}:`);
    if (i < 0) return [];
    const out: string[] = [];
    for (const l of lines.slice(i + 1)) {
      if (l.trim() && !l.startsWith(' ')) break;
      out.push(l);
    }
    return out;
  };
  const options: Opt[] = [];
  let current: { opt: Opt; text: string } | undefined;
  const flush = () => {
    if (!current) return;
    const m = /\(choices: ([^)]*)\)/.exec(current.text.replace(/\s+/g, ' '));
    if (m) current.opt.choices = [...m[1].split('default:')[0].matchAll(/"([^"]+)"/g)].map((x) => x[1]);
    options.push(current.opt);
    current = undefined;
  };
  for (const l of section('Options')) {
    const m = /^ {2}(?:(-\w), )?(--[\w-]+)(?: (<[^>]*>|\[[^\]]*\]))?(?: {2,}|$)(.*)$/.exec(l);
    if (m) {
      flush();
      current = { opt: { long: m[2], short: m[1], takesValue: !!m[3] }, text: m[4] };
    } else if (current) current.text += ` ${l.trim()}`;
  }
  flush();
  const subcommands = section('Commands')
    .map((l) => /^ {2}([\w:-]+)(?:\s|$)/.exec(l)?.[1])
    .filter((c): c is string => !!c && c !== 'help');
  return { path: cmdPath, options, subcommands, takesArgs, argumentsText: section('Arguments').join(' ') };
}

async function helpOf(cmdPath: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, ['runner/launch.mjs', ...cmdPath, '--help'], { cwd: ROOT, env: { ...process.env, NO_COLOR: '1' } });
  return stdout;
}

/** The CLI's whole command tree, keyed by "lab", "image pull", …; the root is "". */
async function cliTree(): Promise<Map<string, Cmd>> {
  const tree = new Map<string, Cmd>();
  // The root first and alone: it may rebuild the CLI bundle, which the others then share.
  const root = parseHelp([], await helpOf([]));
  tree.set('', root);
  let level = root.subcommands.map((c) => [c]);
  while (level.length) {
    const cmds = await Promise.all(level.map(async (p) => parseHelp(p, await helpOf(p))));
    for (const c of cmds) tree.set(c.path.join(' '), c);
    level = cmds.flatMap((c) => c.subcommands.map((s) => [...c.path, s]));
  }
  return tree;
}

/** Every --flag a help text names (setup.sh's and the bench scripts' own usage lines). */
const flagsIn = (text: string) => new Set([...text.matchAll(/(?<![\w-])--[a-z][\w-]*/g)].map((m) => m[0]));

/**
 * A script that is not the CLI (bench, soak, bench:image): the options its
 * parseArgs call declares, read from its source (starting tsx three times
 * costs seconds of CPU on a shared machine).
 */
function scriptOptions(script: string): Set<string> | undefined {
  const file = /\bbench\/[\w-]+\.ts\b/.exec(pkg.scripts[script])?.[0];
  if (!file) return undefined;
  const src = fs.readFileSync(path.join(ROOT, file), 'utf8');
  return new Set([...src.matchAll(/['"]?([a-z][\w-]*)['"]?\s*:\s*\{\s*type\s*:\s*['"](?:string|boolean)['"]/g)].map((m) => `--${m[1]}`));
}

const CLI_SCRIPT = /^node runner\/launch\.mjs (\w+)$/;

// ---- the docs' commands --------------------------------------------------------

interface Shown {
  file: string;
  line: number;
  text: string;
}

/** The code in a markdown file: each line of a fenced block (comments cut) and each inline code span. */
export function codeIn(file: string, md: string): Shown[] {
  const out: Shown[] = [];
  let fence = false;
  md.split('\n').forEach((l, i) => {
    if (/^\s*```/.test(l)) {
      fence = !fence;
      return;
    }
    if (fence) {
      out.push({ file, line: i + 1, text: l.replace(/(^|\s)#(\s.*)?$/, '').trim() });
      return;
    }
    for (const m of l.matchAll(/`([^`]+)`/g)) out.push({ file, line: i + 1, text: m[1].trim() });
  });
  return out.filter((s) => s.text);
}

/** The commands in a piece of code: split at && ; | and with sudo -E or VAR=value in front removed. */
export function commandsIn(code: string): string[] {
  return code
    .split(/&&|\|\||;|\|/)
    .map((c) => c.trim().replace(/^\(+/, '').replace(/\)+$/, '').trim())
    .map((c) => c.replace(/^(sudo(\s+-E)?\s+)?([A-Z_]+=\S*\s+)*/, ''))
    .filter((c) => /^(npm (run|test)\b|\.\/setup\.sh\b)/.test(c));
}

/** A word that stands for a value the reader picks (FILE, NN, A, DIR, sha256:…). */
const placeholder = (w: string) => /^[A-Z][A-Z0-9_/.-]*$/.test(w) || w.includes('…') || w.includes('<') || /^[A-Z]+\//.test(w);

function checkCliArgs(tree: Map<string, Cmd>, top: string, args: string[], labNames: Set<string>): string[] {
  const problems: string[] = [];
  const start = tree.get(top);
  if (!start) return [`the CLI has no command "${top}"`];
  let cmd: Cmd = start;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--') break; // what follows is the command's own (vm exec -- bpftool …)
    if (a.startsWith('-')) {
      const [name, inline] = a.split('=', 2) as [string, string | undefined];
      const opt = name.startsWith('--') ? cmd.options.find((o) => o.long === name) : cmd.options.find((o) => o.short === name);
      if (!opt) {
        problems.push(`"${cmd.path.join(' ')}" has no option ${name} (its --help lists ${cmd.options.map((o) => o.long).join(' ')})`);
        continue;
      }
      if (!opt.takesValue) continue;
      const value = inline ?? args[++i];
      if (value === undefined) problems.push(`${name} needs a value`);
      else if (opt.choices && !placeholder(value) && !opt.choices.includes(value))
        problems.push(`${name} ${value}: not one of its choices (${opt.choices.join(', ')})`);
      continue;
    }
    const sub: Cmd | undefined = cmd.subcommands.includes(a) ? tree.get([...cmd.path, a].join(' ')) : undefined;
    if (sub) {
      cmd = sub;
      continue;
    }
    if (!cmd.takesArgs) {
      problems.push(
        cmd.subcommands.length
          ? `"${cmd.path.join(' ')}" has no subcommand "${a}" (it has ${cmd.subcommands.join(', ')})`
          : `"${cmd.path.join(' ')}" takes no argument "${a}"`,
      );
      continue;
    }
    // lab's words: a lab (number, name, all, or a placeholder) or one its --help names (list, next, solution …).
    if (top === 'lab' && cmd.path.length === 1 && !/^\d+$/.test(a) && a !== 'all' && !labNames.has(a) && !placeholder(a)) {
      const prev = args[i - 1];
      const takesName = prev === 'new' || prev === 'solution' || prev === 'reset';
      if (!takesName && !new RegExp(`\\b${a}\\b`).test(cmd.argumentsText)) problems.push(`lab has no "${a}" (its --help: ${cmd.argumentsText.trim()})`);
    }
  }
  return problems;
}

/** Splits a shell command into words (no quoting in the docs' commands but the odd "…"). */
const words = (c: string) => [...c.matchAll(/"([^"]*)"|'([^']*)'|(\S+)/g)].map((m) => m[1] ?? m[2] ?? m[3]);

let tree: Map<string, Cmd>;
let setupFlags: Set<string>;
const scriptFlags = new Map<string, Set<string>>();
let allFlags: Map<string, Set<string> | undefined>;
const notes: string[] = [];

const shown = DOCS.flatMap((f) => codeIn(f, fs.readFileSync(path.join(ROOT, f), 'utf8')));
const commands = shown.flatMap((s) => commandsIn(s.text).map((c) => ({ ...s, text: c })));
const labNames = new Set(
  fs.readdirSync(path.join(ROOT, 'labs')).flatMap((d) => [d, d.replace(/^\d+-/, '')]),
);

beforeAll(async () => {
  const [t, setup] = await Promise.all([cliTree(), run(path.join(ROOT, 'setup.sh'), ['--help'], { cwd: ROOT }).then((r) => r.stdout)]);
  tree = t;
  setupFlags = flagsIn(setup);
  for (const s of Object.keys(pkg.scripts)) {
    const o = scriptOptions(s);
    if (o) scriptFlags.set(s, o);
  }
  // Every long option anywhere, with the union of its choices (undefined: some command takes any value).
  allFlags = new Map();
  for (const c of tree.values())
    for (const o of c.options) {
      const had = allFlags.get(o.long);
      const open = (allFlags.has(o.long) && had === undefined) || !o.choices;
      allFlags.set(o.long, open ? undefined : new Set([...(had ?? []), ...o.choices!]));
    }
  for (const f of [...setupFlags, ...[...scriptFlags.values()].flatMap((s) => [...s])]) if (!allFlags.has(f)) allFlags.set(f, undefined);
}, 120_000);

describe('the docs show only commands that exist', () => {
  it('finds commands to check in README.md and docs/*.md', () => {
    expect(commands.filter((c) => c.file === 'README.md').length).toBeGreaterThan(20);
    expect(tree.get('lab')?.options.some((o) => o.long === '--watch')).toBe(true);
    expect(tree.get('image')?.subcommands).toContain('import');
    expect(setupFlags).toContain('--dev');
    // The bench scripts' options are read from their parseArgs calls: if that stops finding them, say so here.
    for (const s of ['bench', 'soak', 'bench:image']) if (pkg.scripts[s]) expect(scriptFlags.get(s)?.has('--runs'), s).toBe(true);
  });

  it('every npm run script, subcommand, option and choice', () => {
    const problems: string[] = [];
    for (const c of commands) {
      if (ON_PURPOSE.has(c.text)) continue;
      const w = words(c.text);
      const where = `${c.file}:${c.line}: ${c.text}`;
      if (w[0] === './setup.sh') {
        for (const f of w.slice(1).filter((x) => x.startsWith('-'))) if (!setupFlags.has(f)) problems.push(`${where}: ./setup.sh has no ${f} (its --help lists ${[...setupFlags].join(' ')})`);
        continue;
      }
      if (w[1] === 'test') {
        if (!pkg.scripts.test) problems.push(`${where}: package.json has no test script`);
        continue;
      }
      const script = w[2];
      const pending = PENDING.some((p) => p.test(c.text));
      if (!script) continue; // "npm run" in a sentence, not a command
      if (!pkg.scripts[script]) {
        if (pending) notes.push(`${where}: pending (no script "${script}" yet)`);
        else problems.push(`${where}: package.json has no script "${script}" (it has ${Object.keys(pkg.scripts).join(', ')})`);
        continue;
      }
      // npm run's own options come before "--": a flag there is eaten by npm, not passed on.
      const dash = w.indexOf('--');
      const before = w.slice(3, dash < 0 ? undefined : dash);
      const after = dash < 0 ? [] : w.slice(dash + 1);
      for (const f of before.filter((x) => x.startsWith('-'))) problems.push(`${where}: npm takes ${f} itself: put it after --`);
      const args = [...before, ...after];
      const cli = CLI_SCRIPT.exec(pkg.scripts[script]);
      if (cli) {
        const found = checkCliArgs(tree, cli[1], args, labNames);
        if (found.length && pending && found.every((p) => /has no (subcommand|option)/.test(p))) notes.push(`${where}: pending (${found.join('; ')})`);
        else problems.push(...found.map((p) => `${where}: ${p}`));
        continue;
      }
      const flags = scriptFlags.get(script);
      for (const f of args.filter((x) => x.startsWith('--')).map((x) => x.split('=')[0]))
        if (!flags) problems.push(`${where}: ${f}: the script "${script}" has no --help to check it against`);
        else if (!flags.has(f)) problems.push(`${where}: "npm run ${script}" has no ${f} (its --help lists ${[...flags].join(' ')})`);
    }
    if (notes.length) console.warn(`documented ahead of other branches (PENDING in test/readme.test.ts):\n  ${notes.join('\n  ')}`);
    expect(problems).toEqual([]);
  });

  it('every flag named on its own in the text exists, with a value it accepts', () => {
    const problems: string[] = [];
    for (const s of shown) {
      const t = s.text.replace(/^--\s+/, '');
      if (!/^--[a-z]/.test(t)) continue;
      const [flag, value] = words(t) as [string, string | undefined];
      const name = flag.split('=')[0];
      if (!name.startsWith('--') || FOREIGN_FLAGS.has(name)) continue;
      if (!allFlags.has(name)) {
        problems.push(`${s.file}:${s.line}: \`${s.text}\`: no command has ${name}`);
        continue;
      }
      const choices = allFlags.get(name);
      if (choices && value && !value.startsWith('-') && !placeholder(value) && !choices.has(value))
        problems.push(`${s.file}:${s.line}: \`${s.text}\`: ${value} is not a choice of ${name} (${[...choices].join(', ')})`);
    }
    expect(problems).toEqual([]);
  });

  it('every source path the text names exists', () => {
    const problems: string[] = [];
    for (const s of shown) {
      for (const w of words(s.text)) {
        const p = w.replace(/[),.:;]+$/, '').replace(/^\(/, '');
        if (!/^(core|runner|vm|bpf|labs|test|bench|docs|data|\.ci|\.github)\/[\w./-]*$/.test(p)) continue;
        if (/\b[A-Z]{2,}\b|\*/.test(p)) continue; // labs/NN-name, bpf/progs/NAME.bpf.c: placeholders
        if (!fs.existsSync(path.join(ROOT, p))) problems.push(`${s.file}:${s.line}: ${p} does not exist`);
      }
    }
    expect(problems).toEqual([]);
  });

  it('the checker itself: a renamed flag, subcommand or script is caught', () => {
    const lab = tree.get('lab')!;
    expect(checkCliArgs(tree, 'lab', ['1', '--watch'], labNames)).toEqual([]);
    expect(checkCliArgs(tree, 'lab', ['1', '--wacth'], labNames).join()).toMatch(/no option --wacth/);
    expect(checkCliArgs(tree, 'lab', ['1', '--arch', 'mips'], labNames).join()).toMatch(/not one of its choices/);
    expect(checkCliArgs(tree, 'lab', ['frobnicate'], labNames).join()).toMatch(/lab has no "frobnicate"/);
    expect(checkCliArgs(tree, 'image', ['frob'], labNames).join()).toMatch(/no subcommand "frob"/);
    expect(checkCliArgs(tree, 'vm', ['exec', '--', 'bpftool', '--json'], labNames)).toEqual([]);
    expect(lab.options.find((o) => o.long === '--backend')?.choices).toEqual(expect.arrayContaining(['qemu', 'host']));
    expect(commandsIn('sudo -E npm run lab 1 -- --backend host')).toEqual(['npm run lab 1 -- --backend host']);
    expect(commandsIn('./setup.sh --dev && npm test')).toEqual(['./setup.sh --dev', 'npm test']);
  });
});
