// Bad input never crashes and never destroys (issue 20, item 4).
//
// One table: every case of ../shared/reference/review-bad-input.md whose
// verdict was not "good", and the inputs next to them, each run as a real CLI
// process the way a learner runs it. A QEMU shim first on PATH refuses every
// boot (it logs its arguments and exits 1) and passes probes through, so no VM
// ever starts. Each case gets its own TMPDIR, progress and warm-VM folders, and
// INIT_CWD (the folder `npm run` was typed in). For each row the test checks:
//   - the exit status and the one line that names the bad value (a regex);
//   - no stack trace ("    at …" lines, "Error:"/"TypeError:" dumps);
//   - no boot was attempted where the input must be refused first (boot: false);
//   - every non-regular file it names (a device, a FIFO, a socket) is still one;
//   - TMPDIR is left empty.
// Rows that need a boot to fail (a report of a run in which no lab ran) use the
// shim's refusal. Rows that need root (a read-only or full tmpfs, a device
// node) or the guest image are skipped without them (CI has both).
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { placesFrom } from '../core/config.ts';
import { currentImageFolder } from '../vm/image-verify.ts';
import { fakeImage, flipByte } from './image-fixtures.ts';

const root = path.resolve(import.meta.dirname, '..');
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'sockmap-labs-bad-input-'));
const isRoot = process.getuid?.() === 0;
const cacheDir = placesFrom().cacheDir;
const haveImage = !!currentImageFolder(cacheDir, 'amd64') && os.arch() === 'x64';
const mounts: string[] = [];

/** Paths every case can name; made in beforeAll. */
const P = {
  shim: path.join(scratch, 'shim'),
  ro: path.join(scratch, 'ro'), // a read-only tmpfs
  full: path.join(scratch, 'full'), // a tmpfs with no space left
  small: path.join(scratch, 'small'), // a 1 MiB tmpfs (an image export does not fit)
  dev: path.join(scratch, 'chardev'), // a character device node (1,3: like /dev/null)
  fifo: path.join(scratch, 'fifo'),
  sock: path.join(scratch, 'sock'),
  dir: path.join(scratch, 'a-folder'),
  file: path.join(scratch, 'a-file.txt'),
};
let sockServer: net.Server | undefined;

interface Ctx {
  /** The case's own folder (also INIT_CWD's parent). */
  dir: string;
  /** INIT_CWD: where relative outputs must land. */
  cwd: string;
  state: string;
  /** A copy of labs/ (only when the case asks for one). */
  labs: string;
}

interface Case {
  /** Review rows it covers ("34, 203"), or "new" for a neighbour added here. */
  row: string;
  args: (c: Ctx) => string[];
  /** Run through npm (args[0] is the script), for what npm itself does with the words. */
  npm?: boolean;
  env?: (c: Ctx) => Record<string, string>;
  /** Prepares the case's files before it runs. */
  setup?: (c: Ctx) => void;
  /** A copy of labs/ in c.labs, with LABS_DIR pointing at it. */
  labs?: boolean;
  code: number;
  /** The line that must appear (anywhere in stdout+stderr). */
  line: RegExp;
  /** A boot must happen (true) or must not (false, the default: refused first); 'probe': doctor's accelerator probe may start QEMU. */
  boot?: boolean | 'probe';
  /** Extra checks. */
  after?: (c: Ctx, out: string) => void;
  needs?: ('root' | 'image' | 'clang')[];
  /** Paths that must still be what they were (not replaced by a regular file). */
  keep?: string[];
}

const LAB1 = ['lab', '1'];
const oneLineHelp = (out: string) => {
  // The error, and one pointer to the help; never the 70-line help itself.
  expect(out).toMatch(/\(see npm run [a-z]+ -- .*--help\)/);
  expect(out).not.toMatch(/Examples:|Options:/);
  expect(out.trim().split('\n').length).toBeLessThanOrEqual(3);
};
const mkdirs = (...dirs: string[]) => dirs.forEach((d) => fs.mkdirSync(d, { recursive: true }));
const progressFile = (c: Ctx) => path.join(c.state, 'sockmap-labs', 'progress.json');
const writeProgress = (c: Ctx, text: string) => {
  mkdirs(path.dirname(progressFile(c)));
  fs.writeFileSync(progressFile(c), text);
};
const corruptKept = (c: Ctx, text: string) => {
  // The corrupt file is kept aside, byte for byte, and nothing was overwritten.
  const dir = path.dirname(progressFile(c));
  const aside = fs.readdirSync(dir).filter((f) => f.startsWith('progress.json.corrupt-'));
  expect(aside).toHaveLength(1);
  expect(fs.readFileSync(path.join(dir, aside[0]), 'utf8')).toBe(text);
};
const edit = (file: string, from: string | RegExp, to: string) => fs.writeFileSync(file, fs.readFileSync(file, 'utf8').replace(from, to));
const notRunReports = (c: Ctx) => {
  const junit = fs.readFileSync(path.join(c.cwd, 'j.xml'), 'utf8');
  expect(junit).toMatch(/<testsuites[^>]* errors="1"/);
  expect(junit).toMatch(/<error message="not run: the VM did not boot/);
  expect(junit).not.toMatch(/tests="0" failures="0" errors="0"/);
  const md = fs.readFileSync(path.join(c.cwd, 's.md'), 'utf8');
  expect(md).toMatch(/\*\*error: 1 lab did not run: the VM did not boot/);
  expect(md).toMatch(/❌ not run: the VM did not boot/);
  expect(md).not.toMatch(/\*\*0 passed, 0 failed, 0 skipped\*\*$/m);
  const json = fs.readFileSync(path.join(c.cwd, 'r.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  expect(json).toContainEqual(expect.objectContaining({ type: 'error', lab: '01-create-map', status: 'error', error: expect.stringMatching(/^not run: the VM did not boot/) }));
  const html = fs.readFileSync(path.join(c.cwd, 'r.html'), 'utf8');
  expect(html).toMatch(/✖ ERROR/);
  expect(html).toMatch(/error: not run: the VM did not boot/);
};

const cases: Case[] = [
  // ---- 1. Report outputs: checked before any VM starts (rows 39–49, 228) ----
  { row: '39', args: () => [...LAB1, '--reporter', 'junit='], code: 2, line: /error: --reporter junit=: the file name after "=" is empty/ },
  { row: '228', args: () => [...LAB1, '--reporter', 'json='], code: 2, line: /error: --reporter json=: the file name after "=" is empty/ },
  { row: 'new', args: () => [...LAB1, '--reporter', 'junit', '--output', ''], code: 2, line: /error: --output is empty/ },
  { row: '40', args: () => [...LAB1, '--reporter', 'junit=/nonexistent-bad-input/dir/r.xml'], code: 2, line: /the folder \/nonexistent-bad-input\/dir does not exist/, after: () => expect(fs.existsSync('/nonexistent-bad-input')).toBe(false) },
  { row: '41', args: () => [...LAB1, '--reporter', 'junit', '--output', '/nonexistent-bad-input/dir/r.xml'], code: 2, line: /error: --output "\/nonexistent-bad-input\/dir\/r.xml": the folder .* does not exist\nfix: +create it first \(mkdir -p/ },
  { row: '42', args: () => [...LAB1, '--reporter', 'junit', '--output', '/proc/version'], code: 2, line: /error: --output "\/proc\/version" is in \/proc/ },
  { row: 'new', args: () => [...LAB1, '--reporter', 'junit', '--output', '/proc/self/new.xml'], code: 2, line: /is in \/proc/ },
  { row: 'new', args: () => [...LAB1, '--reporter', 'junit=/sys/kernel/r.xml'], code: 2, line: /is in \/sys/ },
  { row: 'new', args: () => [...LAB1, '--reporter', 'junit=/dev/shm-bad-input.xml'], code: 2, line: /is in \/dev/ },
  { row: '45', args: () => [...LAB1, '--reporter', 'html', '--output', P.dir], code: 2, line: /is a folder, not a regular file: it will not be written or replaced\nfix: +name a file in it: .*report\.html/, keep: [P.dir] },
  { row: '46', needs: ['root'], args: () => [...LAB1, '--reporter', 'junit', '--output', `${P.ro}/r.xml`], code: 2, line: /the folder .*\/ro is on a read-only file system/ },
  { row: '47', needs: ['root'], args: () => [...LAB1, '--reporter', 'json', '--output', `${P.ro}/r.jsonl`], code: 2, line: /the folder .*\/ro is on a read-only file system/ },
  { row: '48', needs: ['root'], args: () => [...LAB1, '--reporter', 'markdown', '--output', `${P.ro}/s.md`], code: 2, line: /read-only file system/ },
  { row: '49', needs: ['root'], args: () => [...LAB1, '--reporter', 'html', '--output', `${P.ro}/sub/r.html`], code: 2, line: /the folder .*\/ro\/sub does not exist/ },
  { row: 'new', needs: ['root'], args: () => [...LAB1, '--reporter', `junit=${P.dev}`], code: 2, line: /is a character device, not a regular file: it will not be written or replaced/, keep: [P.dev] },
  { row: 'new', args: () => [...LAB1, '--reporter', `markdown=${P.fifo}`], code: 2, line: /is a FIFO \(named pipe\), not a regular file/, keep: [P.fifo] },
  { row: 'new', args: () => [...LAB1, '--reporter', `json=${P.sock}`], code: 2, line: /is a socket, not a regular file/, keep: [P.sock] },
  { row: 'new', needs: ['root'], setup: (c) => fs.symlinkSync(P.dev, path.join(c.cwd, 'link.xml')), args: () => [...LAB1, '--reporter', 'junit=link.xml'], code: 2, line: /is a character device/, keep: [P.dev] },
  { row: 'new', args: () => [...LAB1, '--reporter', `junit=${P.file}/r.xml`], code: 2, line: /a part of the path is a file, not a folder/ },
  { row: 'new', args: () => [...LAB1, '--reporter', `junit=${'x'.repeat(300)}.xml`], code: 2, line: /the name is too long/ },
  { row: 'new', args: () => [...LAB1, '--reporter', 'junit=out/'], code: 2, line: /error: --reporter junit=FILE "out\/" names a folder, not a file\nfix: +name a file in it: out\/results.xml/ },
  { row: '51', args: () => [...LAB1, '--reporter', 'human=x.txt'], code: 2, line: /error: --reporter human=x.txt: the human reporter writes to the terminal, not to a file/ },
  { row: 'new', args: () => [...LAB1, '--reporter', 'github=x.txt'], code: 2, line: /the github reporter writes to the terminal/ },
  { row: '52', args: () => [...LAB1, '--reporter', 'junit=a.xml', '--reporter', 'junit=a.xml'], code: 2, line: /error: two reporters would write the same file .*a\.xml/ },
  { row: '208', needs: ['root'], args: () => ['matrix', '--html', `${P.ro}/m.html`], code: 2, line: /error: --html ".*\/ro\/m.html": the folder .* is on a read-only file system/ },
  { row: '209', needs: ['root'], args: () => ['matrix', '--json', `${P.ro}/m.json`], code: 2, line: /error: --json .*read-only file system/ },
  { row: '210', needs: ['root'], args: () => ['matrix', '--markdown', `${P.ro}/m.md`], code: 2, line: /error: --markdown .*read-only file system/ },
  { row: 'new', args: () => ['matrix', '--html', P.fifo], code: 2, line: /error: --html .* is a FIFO/, keep: [P.fifo] },
  { row: 'new', args: () => ['matrix', '--json', ''], code: 2, line: /error: --json is empty/ },
  // A relative output goes to the folder the user typed the command in (INIT_CWD), not the checkout; folders under it are made.
  { row: 'new (files left behind: a.xml in the checkout)', needs: ['image'], args: () => [...LAB1, '--reporter', 'junit=out/sub/a.xml'], code: 2, line: /the VM did not boot/, boot: true, after: (c) => {
    expect(fs.existsSync(path.join(c.cwd, 'out/sub/a.xml'))).toBe(true);
    expect(fs.existsSync(path.join(root, 'out/sub/a.xml'))).toBe(false);
  } },

  // ---- 2. A run in which no lab ran: every report says so as an error (row 241) ----
  { row: '5 (control: valid input reaches the boot; a lab that never ran is no progress)', needs: ['image'], args: () => LAB1, code: 2, boot: true, line: /error: the VM did not boot/, after: (c) => expect(fs.existsSync(progressFile(c))).toBe(false) },
  { row: '241', needs: ['image'], args: () => [...LAB1, '--reporter', 'junit=j.xml', '--reporter', 'json=r.jsonl', '--reporter', 'markdown=s.md', '--reporter', 'html=r.html'], code: 2, line: /error: the VM did not boot/, boot: true, after: (c) => notRunReports(c) },
  // The report cannot be written at the end (a full disk): an error, nothing partial left, the old file kept.
  { row: 'new (ENOSPC)', needs: ['root', 'image'], args: () => [...LAB1, '--reporter', `junit=${P.full}/r.xml`], code: 2, line: /cannot write the JUnit report .*\/full\/r.xml: the disk is full \(ENOSPC\); nothing was written/, boot: true, after: () => {
    expect(fs.readdirSync(P.full).filter((f) => f !== 'filler')).toEqual([]);
  } },

  // ---- 3. Stack traces (rows 37, 79, 86, 91, 146, 190, 221, 234–236) ----
  { row: '37', args: () => [...LAB1, '--kernel', '/tmp'], code: 2, line: /kernel image --kernel \/tmp is a folder, not a kernel file/ },
  { row: '79', args: () => LAB1, env: () => ({ LAB_KERNEL: '/tmp' }), code: 2, line: /kernel image LAB_KERNEL=\/tmp is a folder/ },
  { row: 'new', args: () => [...LAB1, '--kernel', P.fifo], code: 2, line: /kernel image --kernel .*fifo is not a regular file/, keep: [P.fifo] },
  { row: 'new', needs: ['root'], args: () => [...LAB1, '--kernel', P.dev], code: 2, line: /is not a regular file/, keep: [P.dev] },
  { row: 'new', args: () => [...LAB1, '--kernel', P.sock], code: 2, line: /is not a regular file/, keep: [P.sock] },
  { row: '86', needs: ['root'], args: () => ['lab', 'reset'], env: () => ({ LAB_STATE_HOME: P.ro }), code: 2, line: /error: your progress cannot be saved in .*\/ro\/sockmap-labs\/progress.json.*\nfix: +set LAB_STATE_HOME to a folder you can write/ },
  { row: '91', args: () => ['lab', 'reset'], env: () => ({ LAB_STATE_HOME: '/proc/version' }), code: 2, line: /error: LAB_STATE_HOME=\/proc\/version is not a folder/ },
  { row: '85', args: () => LAB1, env: () => ({ LAB_STATE_HOME: '/proc/version' }), code: 2, line: /LAB_STATE_HOME=\/proc\/version is not a folder/ },
  { row: 'new (85: saveProgress after the first lab)', needs: ['root'], args: () => LAB1, env: () => ({ LAB_STATE_HOME: P.ro }), code: 2, line: /your progress cannot be saved/ },
  { row: '146', labs: true, args: () => ['lab', 'new', Array(60).fill('word').join('-')], code: 2, line: /error: a lab name is at most 60 characters/ },
  { row: '190', args: () => ['image', 'pull', '--registry', 'not a host!', '--ref', 'amd64-latest'], env: (c) => ({ LAB_CACHE_DIR: path.join(c.dir, 'cache') }), code: 2, line: /error: .*not a host!.*\n(.*\n)?fix: /, after: (_c, out) => expect(out).toMatch(/--registry/) },
  { row: '221', setup: (c) => writeProgress(c, 'null'), args: () => ['lab', 'list'], code: 0, line: /warning: your progress file .* could not be read: it holds null, not a map of labs. It was kept as .*progress\.json\.corrupt-/, after: (c) => corruptKept(c, 'null') },
  { row: '234', npm: true, args: () => ['bench', '--', '--bogus'], code: 2, line: /error: Unknown option '--bogus'\n\(see npm run bench -- --help\)/ },
  { row: '235', npm: true, args: () => ['soak', '--', '--bogus'], code: 2, line: /error: Unknown option '--bogus'\n\(see npm run soak -- --help\)/ },
  { row: '236', npm: true, args: () => ['bench:image', '--', '--bogus'], code: 2, line: /error: Unknown option '--bogus'\n\(see npm run bench:image -- --help\)/ },
  { row: 'new', npm: true, args: () => ['soak', '--', '--runs', 'many'], code: 2, line: /error: --runs must be a whole number from 1 to 1000, not "many"/ },
  { row: 'new', npm: true, args: () => ['bench', '--', '--steps'], code: 2, line: /error: Option '--steps <value>' argument missing/ },

  // ---- 4. Numbers bounded (rows 56–58), --memory above the host ----
  { row: '57', args: () => [...LAB1, '--timeout-scale', '99999999999'], code: 2, line: /error: --timeout-scale must be a number from 0.001 to 100, not "99999999999"/ },
  { row: '58', args: () => [...LAB1, '--timeout-scale', '0.0000001'], code: 2, line: /--timeout-scale must be a number from 0.001 to 100/ },
  { row: '56', args: () => [...LAB1, '--timeout-scale', '1e9'], code: 2, line: /--timeout-scale must be a number from 0.001 to 100, not "1e9"/ },
  { row: 'new', args: () => [...LAB1, '--timeout-scale', 'Infinity'], code: 2, line: /--timeout-scale must be a number from 0.001 to 100/ },
  { row: 'new', args: () => [...LAB1, '--timeout-scale', 'NaN'], code: 2, line: /--timeout-scale must be a number from 0.001 to 100/ },
  { row: 'new', args: () => [...LAB1, '--timeout-scale', '1e-300'], code: 2, line: /--timeout-scale must be a number from 0.001 to 100/ },
  { row: 'new', args: () => [...LAB1, '--timeout-scale', '0x10'], code: 2, line: /--timeout-scale must be a number from 0.001 to 100/ },
  { row: 'new', args: () => LAB1, env: () => ({ LAB_BOOT_TIMEOUT: '99999999' }), code: 2, line: /LAB_BOOT_TIMEOUT \(seconds\) must be a number from 1 to 3600/ },
  ...(os.totalmem() < 64 * 2 ** 30 ? [{ row: '27', args: () => [...LAB1, '--memory', '65536'], code: 2, line: /error: --memory 65536 is more than this machine has/ }] : []),

  // ---- 5. Meaningless input that reached QEMU (rows 36, 63, 68–70, 9) ----
  { row: '36', args: () => [...LAB1, '--kernel', ''], code: 2, line: /error: --kernel is empty: it needs the path of a kernel image/ },
  { row: 'new', args: () => [...LAB1, '--kernel', '  '], code: 2, line: /--kernel is empty/ },
  { row: '63', args: () => [...LAB1, '--apply'], code: 2, line: /error: --apply goes with "solution N": it copies a solution over your exercise\nfix: +npm run lab solution 5 -- --apply/ },
  { row: 'new', args: () => ['lab', 'list', '--apply'], code: 2, line: /--apply goes with "solution N"/ },
  { row: '68', npm: true, args: () => ['lab', '1', '--memory', 'abc'], code: 2, line: /error: npm took --memory for itself \(options after "npm run lab" need "--" before them\)/ },
  { row: '70', npm: true, args: () => ['lab', '1', '--arch', 'mips'], code: 2, line: /error: npm took --arch for itself/ },
  { row: 'new', npm: true, args: () => ['lab', '1', '--kernel', '/x'], code: 2, line: /error: npm took --kernel for itself/ },
  { row: '9', npm: true, args: () => ['lab', '-1'], code: 2, line: /error: npm took -1 for itself, and lab numbers start at 1/ },
  { row: '69', npm: true, needs: ['image'], args: () => ['lab', '1', '--quiet'], code: 2, boot: true, line: /note: npm took --quiet for itself; for the lab's quiet mode put -- before it/ },
  { row: '244', args: () => ['lab', '5', '--watch', '--kernel', '/a', '--kernel', '/b'], code: 2, line: /error: --watch follows one exercise on one kernel, not 2/ },

  // ---- 6. Usage errors: one line and a pointer to --help (rows 29–33, 59–62, 198, 215, 226, 227) ----
  ...([
    ['29', [...LAB1, '--cpus', '0'], /error: unknown option '--cpus'/],
    ['30', [...LAB1, '--cpus', 'abc'], /error: unknown option '--cpus'/],
    ['31', [...LAB1, '--backend', 'xyz'], /error: option '-b, --backend <name>' argument 'xyz' is invalid/],
    ['32', [...LAB1, '--arch', 'mips'], /argument 'mips' is invalid/],
    ['33', [...LAB1, '--rootfs', 'nowhere'], /argument 'nowhere' is invalid/],
    ['59', [...LAB1, '--bogus'], /error: unknown option '--bogus'/],
    ['60', [...LAB1, '--memroy', '512'], /error: unknown option '--memroy'\n\(Did you mean --memory\?\)/],
    ['61', [...LAB1, '-x'], /error: unknown option '-x'/],
    ['62', [...LAB1, '--timeout', '5'], /error: unknown option '--timeout'/],
    ['211', ['matrix', '5'], /error: too many arguments for 'matrix'/],
    ['new', ['image', 'build', '--arch', 'mips'], /argument 'mips' is invalid/],
    ['new', ['vm', 'up', '--bogus'], /error: unknown option '--bogus'\n\(see npm run vm -- up --help\)/],
  ] as const).map(([row, args, line]): Case => ({ row, args: () => [...args], code: 2, line, after: (_c, out) => oneLineHelp(out) })),
  { row: '198', args: () => ['vm', 'frobnicate'], code: 2, line: /error: unknown vm command "frobnicate": use up, down, status, exec/ },
  { row: '215', args: () => ['kernels', 'frob'], code: 2, line: /error: unknown kernels command "frob": use list, fetch/ },
  { row: 'new', args: () => ['image', 'frob'], code: 2, line: /error: unknown image command "frob": use build, export, import, pull, push, prepare, list, verify/ },
  { row: 'new', args: () => ['nosuchcommand'], code: 2, line: /error: unknown command 'nosuchcommand'/ },
  { row: '226', args: () => ['lab', '--version'], code: 0, line: /^\d+\.\d+\.\d+/m },
  { row: '227', args: () => ['lab', '-V'], code: 0, line: /^\d+\.\d+\.\d+/m },

  // ---- 7. Extra arguments (rows 20, 138, 140) ----
  { row: '20', args: () => ['lab', 'list', '5'], code: 2, line: /error: "lab list" takes no arguments, not: 5/ },
  { row: '138', args: () => ['lab', 'reset', '1', '2', '3'], code: 2, line: /error: "lab reset" takes one argument, not: 2 3/ },
  { row: '140', args: () => ['lab', 'validate', '5'], code: 2, line: /error: "lab validate" takes no arguments, not: 5/ },
  { row: 'new', args: () => ['lab', 'solution', '5', '6'], code: 2, line: /"lab solution" takes one argument, not: 6/ },
  { row: 'new', args: () => ['lab', 'next', 'now'], code: 2, line: /"lab next" takes no arguments/ },

  // ---- 8. Misleading fixes (rows 34, 78, 82, 88, 89, 90, 92, 169, 171, 203, 207) ----
  { row: '34', args: () => [...LAB1, '--kernel', '/nonexistent'], code: 2, line: /kernel image --kernel \/nonexistent does not exist\n.*fix: check the path given to --kernel/, after: (_c, out) => expect(out).not.toMatch(/kernels -- fetch/) },
  { row: '203', args: () => ['vm', 'up', '--kernel', '/nonexistent'], code: 2, line: /--kernel \/nonexistent does not exist/, after: (_c, out) => expect(out).not.toMatch(/kernels -- fetch/) },
  { row: '207', args: () => ['matrix', '--kernel', '/nonexistent'], code: 2, line: /--kernel \/nonexistent does not exist/, after: (_c, out) => expect(out).not.toMatch(/kernels -- fetch/) },
  { row: '78', args: () => LAB1, env: () => ({ LAB_KERNEL: '/nonexistent' }), code: 2, line: /kernel image LAB_KERNEL=\/nonexistent does not exist\n.*fix: check the path in LAB_KERNEL .*or unset LAB_KERNEL/ },
  { row: '82', args: () => LAB1, env: () => ({ LAB_CACHE_DIR: '/proc/version' }), code: 2, line: /error: LAB_CACHE_DIR=\/proc\/version is not a folder/ },
  { row: '88', args: () => ['vm', 'status'], env: () => ({ LAB_VM_DIR: '/proc/version' }), code: 2, line: /error: LAB_VM_DIR=\/proc\/version is not a folder/ },
  { row: '87', args: () => LAB1, env: () => ({ LAB_VM_DIR: '/proc/version' }), code: 2, line: /LAB_VM_DIR=\/proc\/version is not a folder/ },
  { row: '89', args: () => ['lab', 'list'], env: () => ({ LABS_DIR: '/nonexistent' }), code: 2, line: /error: no labs in \/nonexistent \(LABS_DIR\)/ },
  { row: '90', args: () => LAB1, env: () => ({ LABS_DIR: P.dir }), code: 2, line: /error: no labs in .* \(LABS_DIR\)/ },
  { row: '92', needs: ['image'], args: () => ['vm', 'up'], code: 2, boot: true, line: /the VM did not boot/, after: (_c, out) => {
    // The console log it names still exists (a warm VM's own folder is gone after the failed boot).
    const log = /read the console log: (\S+?);/.exec(out)?.[1];
    expect(log, out).toBeTruthy();
    const abs = path.resolve(root, log!);
    expect(fs.existsSync(abs), abs).toBe(true);
    fs.rmSync(abs);
  } },
  { row: '169, 171', setup: (c) => forgedImage(path.join(c.dir, 'cache')), env: (c) => ({ LAB_CACHE_DIR: path.join(c.dir, 'cache') }), args: () => LAB1, code: 2, line: /kernel config.*lacks CONFIG_/s, after: (_c, out) => {
    expect(out).toMatch(/fix: this guest image is not a sound one: build it again, npm run image build/);
    expect(out).not.toMatch(/kernels -- fetch/);
  } },
  { row: '171', setup: (c) => forgedImage(path.join(c.dir, 'cache')), env: (c) => ({ LAB_CACHE_DIR: path.join(c.dir, 'cache') }), args: () => ['doctor'], boot: 'probe', code: 1, line: /npm run image build/, after: (_c, out) => expect(out).not.toMatch(/kernels -- fetch/) },
  { row: '98', args: () => ['lab', 'list'], env: () => ({ XDG_CACHE_HOME: 'relative/dir', XDG_STATE_HOME: 'relative/state' }), code: 0, line: /labs passed/, after: () => {
    expect(fs.existsSync(path.join(root, 'relative'))).toBe(false);
  } },

  // ---- 9. lab validate (rows 119, 122, 123, 127, 128) and lab new (145) ----
  { row: '122', labs: true, setup: (c) => fs.writeFileSync(path.join(c.labs, '01-create-map/broken.yaml'), ''), args: () => ['lab', 'validate'], code: 1, line: /01-create-map\/broken.yaml:1: Invalid input: expected object, received null/ },
  { row: '123', labs: true, setup: (c) => edit(path.join(c.labs, '01-create-map/broken.yaml'), /^why: >-\n(  .*\n)+/m, ''), args: () => ['lab', 'validate'], code: 1, line: /01-create-map\/broken.yaml:\d+: why: Invalid input: expected string, received undefined/ },
  { row: '119', labs: true, setup: (c) => edit(path.join(c.labs, '01-create-map/broken.yaml'), /^fails_at: .*$/m, 'fails_at: [unclosed'), args: () => ['lab', 'validate'], code: 1, line: /01-create-map\/broken.yaml:([2-9]|1\d): /, after: (_c, out) => expect(out).not.toMatch(/broken.yaml:1: \[?$/m) },
  { row: '127', labs: true, setup: (c) => edit(path.join(c.labs, '05-egress-policy/near-misses.yaml'), /^  why: .*\n/m, ''), args: () => ['lab', 'validate'], code: 1, line: /05-egress-policy\/near-misses.yaml:\d+: ipv4-only: Invalid input: expected string, received undefined|near-misses.yaml:\d+: ipv4-only.why/ },
  { row: '128', labs: true, setup: (c) => fs.appendFileSync(path.join(c.labs, '05-egress-policy/exercise/policy_egress.bpf.c'), '\nint broken( {\n'), args: () => ['lab', 'validate'], code: 1, line: /05-egress-policy\/exercise\/policy_egress.bpf.c:\d+: does not compile: /, needs: ['clang'] },
  { row: '128 (control)', args: () => ['lab', 'validate'], code: 0, line: /17 labs checked, 0 problems\nexercises and solutions: (8 C files compiled with clang, as the guest does|not compiled: .*)/ },
  { row: '107', labs: true, setup: (c) => edit(path.join(c.labs, '01-create-map/lab.yaml'), /exit: 0/, 'exit: zero'), args: () => ['lab', 'validate'], code: 1, line: /01-create-map\/lab.yaml:\d+: steps\.\d+\.expect\.exit: an exit status from 0 to 255, or "nonzero"/ },
  { row: '118', labs: true, setup: (c) => edit(path.join(c.labs, '01-create-map/lab.yaml'), /^title: .*$/m, 'title: "unclosed'), args: () => ['lab', 'list'], code: 0, line: /! 01  01-create-map +invalid lab.yaml: .*01-create-map\/lab.yaml:\d+: /, after: (_c, out) => {
    expect(out).toMatch(/– 02  02-attach-program/);
    expect(out).toMatch(/1 lab file is invalid: npm run lab validate/);
  } },
  { row: '97', args: () => LAB1, env: () => ({ LAB_STEP_AGENT: 'banana' }), code: 2, line: /error: LAB_STEP_AGENT "banana" is not one of 0, 1/ },
  { row: '145', labs: true, args: () => ['lab', 'new', '01-create-map'], code: 2, line: /error: a lab name has no number in front \("01-create-map"\): the next free number is added for you\nfix: +npm run lab new create-map/ },
  { row: 'new', labs: true, args: () => ['lab', 'new', '07-fresh-name'], code: 2, line: /a lab name has no number in front/, after: (c) => expect(fs.readdirSync(c.labs).some((d) => d.includes('fresh'))).toBe(false) },

  // ---- 10. Learner data (rows 218, 219, 222–225, 237, --solutions) ----
  { row: '218', setup: (c) => writeProgress(c, 'not json{'), args: () => ['lab', 'list'], code: 0, line: /warning: your progress file .* could not be read: it is not JSON/, after: (c) => corruptKept(c, 'not json{') },
  { row: '219', needs: ['image'], setup: (c) => writeProgress(c, 'not json{'), args: () => ['lab', 'next'], code: 2, boot: true, line: /It was kept as .*progress\.json\.corrupt-/, after: (c) => corruptKept(c, 'not json{') },
  { row: '222', setup: (c) => writeProgress(c, '42'), args: () => ['lab', 'list'], code: 0, line: /it holds number, not a map of labs/, after: (c) => corruptKept(c, '42') },
  { row: '223', setup: (c) => writeProgress(c, '{"01-create-map": null}'), args: () => ['lab', 'list'], code: 0, line: /the entry for 01-create-map is not a lab result/, after: (c) => corruptKept(c, '{"01-create-map": null}') },
  { row: '224', setup: (c) => writeProgress(c, '{"01-create-map": "passed"}'), args: () => ['lab', 'list'], code: 0, line: /the entry for 01-create-map is not a lab result/, after: (_c, out) => expect(out).not.toMatch(/undefined/) },
  { row: '225', setup: (c) => writeProgress(c, '[1,2]'), args: () => ['lab', 'list'], code: 0, line: /it holds a list, not a map of labs/ },
  { row: '84', args: () => ['lab', 'list'], env: () => ({ LAB_STATE_HOME: path.join(P.file, 'sub') }), code: 2, line: /LAB_STATE_HOME=.*a-file.txt\/sub: a part of that path is a file, not a folder/ },
  { row: '237', labs: true, setup: (c) => fs.writeFileSync(path.join(c.labs, '05-egress-policy/exercise/policy_egress.bpf.c'), '// my own work\n'), args: () => ['lab', 'solution', '5', '--apply'], code: 0, line: /copied .*solution\/policy_egress.bpf.c over .*exercise\/policy_egress.bpf.c; your version is kept as .*exercise\/policy_egress.bpf.c.mine/, after: (c) => {
    const ex = path.join(c.labs, '05-egress-policy/exercise/policy_egress.bpf.c');
    expect(fs.readFileSync(`${ex}.mine`, 'utf8')).toBe('// my own work\n');
    expect(fs.readFileSync(ex, 'utf8')).toBe(fs.readFileSync(path.join(c.labs, '05-egress-policy/solution/policy_egress.bpf.c'), 'utf8'));
  } },
  { row: 'new (237 twice)', labs: true, setup: (c) => {
    const ex = path.join(c.labs, '05-egress-policy/exercise/policy_egress.bpf.c');
    fs.writeFileSync(`${ex}.mine`, '// first try\n');
    fs.writeFileSync(ex, '// second try\n');
  }, args: () => ['lab', 'solution', '5', '--apply'], code: 0, line: /your version is kept as .*policy_egress.bpf.c.mine.1/, after: (c) => {
    const ex = path.join(c.labs, '05-egress-policy/exercise/policy_egress.bpf.c');
    expect(fs.readFileSync(`${ex}.mine`, 'utf8')).toBe('// first try\n');
    expect(fs.readFileSync(`${ex}.mine.1`, 'utf8')).toBe('// second try\n');
  } },
  { row: 'new (--solutions records no progress)', needs: ['image'], args: () => ['lab', '5', '--solutions'], code: 2, boot: true, line: /the VM did not boot/, after: (c) => expect(fs.existsSync(progressFile(c))).toBe(false) },

  // ---- 11. image export: never replaces a non-regular file; a full disk is an error (issue; rows 178–183) ----
  { row: 'new (issue: export over a char device)', needs: ['root', 'image'], args: () => ['image', 'export', P.dev], code: 2, line: /error: the export file ".*chardev" is a character device, not a regular file: it will not be written or replaced/, keep: [P.dev] },
  { row: 'new', args: () => ['image', 'export', P.fifo], code: 2, line: /is a FIFO \(named pipe\), not a regular file/, keep: [P.fifo] },
  { row: 'new', args: () => ['image', 'export', P.sock], code: 2, line: /is a socket/, keep: [P.sock] },
  { row: '183', args: () => ['image', 'export', '/proc/version'], code: 2, line: /the export file "\/proc\/version" is in \/proc/ },
  { row: '181', args: () => ['image', 'export', ''], code: 2, line: /the export file is empty/ },
  { row: '180', args: () => ['image', 'export', P.dir], code: 2, line: /is a folder, not a regular file.*\nfix: +name a file in it: .*sockmap-labs-image-amd64.tar/, keep: [P.dir] },
  { row: '179', args: () => ['image', 'export', '/nonexistent-bad-input/sub/x.tar'], code: 2, line: /the folder \/nonexistent-bad-input\/sub does not exist/ },
  { row: '178', needs: ['root'], args: () => ['image', 'export', `${P.ro}/x.tar`], code: 2, line: /read-only file system/ },
  { row: 'new (ENOSPC)', needs: ['root', 'image'], args: () => ['image', 'export', `${P.small}/x.tar`], code: 2, line: /error: cannot write the export file .*\/small\/x.tar: the disk is full \(ENOSPC\); nothing was written/, after: (_c, out) => {
    expect(out).not.toMatch(/exported/);
    expect(fs.readdirSync(P.small)).toEqual([]);
  } },
  { row: 'new (153: import a FIFO)', args: () => ['image', 'import', P.fifo], env: (c) => ({ LAB_CACHE_DIR: path.join(c.dir, 'cache') }), code: 2, line: /fifo does not exist \(or is not a file\)/, keep: [P.fifo] },
  { row: 'new (153: import a device)', args: () => ['image', 'import', '/dev/zero'], env: (c) => ({ LAB_CACHE_DIR: path.join(c.dir, 'cache') }), code: 2, line: /\/dev\/zero does not exist \(or is not a file\)/ },
  // ---- 12. Accepted on purpose (valid input: it reaches the shim's refused boot), and what is left as it was ----
  { row: '15', needs: ['image'], args: () => ['lab', 'create-map'], code: 2, boot: true, line: /the VM did not boot/ },
  { row: '17', needs: ['image'], args: () => ['lab', '1', '01', '--reporter', 'junit=j.xml'], code: 2, boot: true, line: /the VM did not boot/, after: (c) => {
    // A lab named twice runs once.
    expect(fs.readFileSync(path.join(c.cwd, 'j.xml'), 'utf8').match(/<testsuite /g)).toHaveLength(1);
  } },
  { row: '18', args: () => ['lab', 'all', '99'], code: 2, line: /error: no lab "99"/ },
  { row: '18 (valid)', needs: ['image'], args: () => ['lab', 'all', '3'], code: 2, boot: true, line: /the VM did not boot/ },
  { row: '19', needs: ['image'], args: () => ['lab', '01'], code: 2, boot: true, line: /the VM did not boot/ },
  { row: '50', needs: ['image'], args: () => [...LAB1, '--reporter', 'github'], code: 2, boot: true, line: /the VM did not boot/ },
  { row: '67', needs: ['image'], args: () => [...LAB1, '--solutions'], code: 2, boot: true, line: /the VM did not boot/, after: (c) => expect(fs.existsSync(progressFile(c))).toBe(false) },
  // LAB_KERNEL= (empty) is unset, as an empty variable is by shell convention: the guest image boots.
  { row: '80', needs: ['image'], args: () => LAB1, env: () => ({ LAB_KERNEL: '' }), code: 2, boot: true, line: /the VM did not boot/ },
  { row: '117', needs: ['image'], labs: true, setup: (c) => edit(path.join(c.labs, '01-create-map/lab.yaml'), /^title: .*$/m, 'title: "unclosed'), args: () => ['lab', '2'], code: 2, boot: true, line: /the VM did not boot/ },
  { row: '126', labs: true, setup: (c) => mkdirs(path.join(c.labs, '18-nothing')), args: () => ['lab', 'validate'], code: 1, line: /18-nothing:1: no lab.yaml in this lab folder/ },
  // Left: npm answers "npm run lab --help" itself, before the script starts (the project's help: npm run lab -- --help).
  { row: '71 (npm\'s own)', npm: true, args: () => ['lab', '--help'], code: 0, line: /npm run|run-script/ },
  // Left: an image's manifest proves its files are whole, not who made it (no signing yet); the kernel-config check then refuses a forged one (rows 169, 171).
  { row: '168, 170 (integrity, not origin)', setup: (c) => forgedImage(path.join(c.dir, 'cache')), env: (c) => ({ LAB_CACHE_DIR: path.join(c.dir, 'cache') }), args: () => ['image', 'verify'], code: 0, line: /: sound \(amd64/ },
  // Left (vm/image.ts): image list reads sizes, not hashes: a flipped byte shows only in image verify, lab and doctor (rows 172-177).
  { row: '173 (list does not hash)', setup: (c) => {
    const { dir } = fakeImage(path.join(c.dir, 'cache'), 'amd64');
    flipByte(path.join(dir, 'rootfs.erofs'), 10);
  }, env: (c) => ({ LAB_CACHE_DIR: path.join(c.dir, 'cache') }), args: () => ['image', 'list'], code: 0, line: /amd64-/ },
  { row: '185', args: () => ['image', 'verify', '--all'], env: (c) => ({ LAB_CACHE_DIR: path.join(c.dir, 'empty-cache') }), code: 2, line: /error: no guest images in .*: nothing to verify/ },
];

/** A cache holding a "guest image" whose kernel config lacks what the labs need (rows 168–171), manifest digests made to match. */
function forgedImage(cache: string) {
  fakeImage(cache, 'amd64');
}

function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  // Not the npm of `npm test`: its npm_* variables would look like flags npm took from the command line.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('npm_') && k !== 'INIT_CWD'));
  return { ...env, ...extra };
}

interface Outcome {
  code: number | null;
  out: string;
  booted: boolean;
  tmpLeft: string[];
  ctx: Ctx;
  ms: number;
}

async function runCase(c: Case, i: number): Promise<Outcome> {
  const dir = path.join(scratch, `case-${i}`);
  const ctx: Ctx = { dir, cwd: path.join(dir, 'cwd'), state: path.join(dir, 'state'), labs: path.join(dir, 'labs') };
  const tmp = path.join(dir, 'tmp');
  mkdirs(ctx.cwd, ctx.state, tmp, path.join(dir, 'vm'));
  if (c.labs) fs.cpSync(path.join(root, 'labs'), ctx.labs, { recursive: true });
  c.setup?.(ctx);
  const log = path.join(dir, 'shim.log');
  const env = cleanEnv({
    PATH: `${P.shim}:${process.env.PATH}`,
    SHIM_LOG: log,
    TMPDIR: tmp,
    LAB_STATE_HOME: ctx.state,
    LAB_VM_DIR: path.join(dir, 'vm'),
    NO_COLOR: '1',
    CI: '1',
    ...(c.npm ? {} : { INIT_CWD: ctx.cwd }),
    ...(c.labs ? { LABS_DIR: ctx.labs } : {}),
    ...c.env?.(ctx),
  });
  const [cmd, args] = c.npm ? ['npm', ['run', '--silent', ...c.args(ctx)]] : [process.execPath, ['runner/launch.mjs', ...c.args(ctx)]];
  const child = spawn(cmd, args, { cwd: c.npm ? root : root, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const t0 = Date.now();
  const killer = setTimeout(() => child.kill('SIGKILL'), 90_000);
  const code = await new Promise<number | null>((r) => child.once('close', r));
  clearTimeout(killer);
  return { code, out, booted: fs.existsSync(log), tmpLeft: fs.readdirSync(tmp), ctx, ms: Date.now() - t0 };
}

/** Every case's outcome, run a few at a time (the machine is shared; a case is a short Node process). */
const outcomes = new Map<number, Promise<Outcome>>();
const haveClang = (() => {
  try {
    execFileSync('clang', ['--version'], { stdio: 'ignore' });
    return fs.existsSync('/usr/include/bpf/bpf_helpers.h');
  } catch {
    return false;
  }
})();
const can = (c: Case) => (c.needs ?? []).every((n) => (n === 'root' ? isRoot : n === 'image' ? haveImage : haveClang));

beforeAll(async () => {
  mkdirs(P.shim, P.dir, P.ro, P.full, P.small);
  for (const q of ['qemu-system-x86_64', 'qemu-system-aarch64']) {
    const real = ['/usr/bin', '/usr/local/bin'].map((d) => path.join(d, q)).find((f) => fs.existsSync(f)) ?? q;
    fs.writeFileSync(
      path.join(P.shim, q),
      `#!/bin/sh\n# Refuses every boot (a -kernel argument), after writing it down; probes go to the real QEMU.\ncase " $* " in\n  *" -kernel "*) echo "BOOT $*" >> "$SHIM_LOG"; echo "shim: refusing to boot" >&2; exit 1;;\nesac\nexec ${real} "$@"\n`,
      { mode: 0o755 },
    );
  }
  fs.writeFileSync(P.file, 'a plain file\n');
  execFileSync('mkfifo', [P.fifo]);
  sockServer = net.createServer();
  await new Promise<void>((r) => sockServer!.listen(P.sock, r));
  if (isRoot) {
    execFileSync('mknod', [P.dev, 'c', '1', '3']);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=64k', 'tmpfs', P.ro]);
    mounts.push(P.ro);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', P.full]);
    mounts.push(P.full);
    // Filled to the last block: the next write gets ENOSPC.
    try {
      execFileSync('dd', ['if=/dev/zero', `of=${path.join(P.full, 'filler')}`, 'bs=4k'], { stdio: 'ignore' });
    } catch {
      /* dd stops at ENOSPC, as meant */
    }
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', P.small]);
    mounts.push(P.small);
  }
  // The CLI bundle is built once, before the cases start at once.
  execFileSync(process.execPath, ['runner/launch.mjs', 'lab', '--version'], { cwd: root, env: cleanEnv({}) });
  execFileSync(process.execPath, ['bench/launch.mjs', 'bench/boot-bench.ts', '--help'], { cwd: root, env: cleanEnv({}) });
  // Four at a time: each is a short Node process; the boots are refused by the shim.
  let next = 0;
  const pending = cases.map((c, i) => ({ c, i })).filter(({ c }) => can(c));
  const settle = new Map<number, (o: Outcome) => void>();
  for (const { i } of pending) outcomes.set(i, new Promise((r) => settle.set(i, r)));
  const worker = async () => {
    while (next < pending.length) {
      const { c, i } = pending[next++];
      const dir = path.join(scratch, `case-${i}`);
      // A case that throws (its set-up, say) fails its own row; it never leaves the others waiting.
      settle.get(i)!(
        await runCase(c, i).catch((e: Error): Outcome => ({ code: null, out: `the case could not run: ${e.stack}`, booted: false, tmpLeft: [], ms: 0, ctx: { dir, cwd: dir, state: dir, labs: dir } })),
      );
    }
  };
  void Promise.all([worker(), worker(), worker(), worker()]);
}, 60_000);

afterAll(async () => {
  // Every case has ended (a filtered run started them all) before its folders go.
  const done = await Promise.all(outcomes.values()).catch(() => [] as Outcome[]);
  if (process.env.BAD_INPUT_TIMES) for (const o of done.sort((a, b) => b.ms - a.ms).slice(0, 15)) console.log(`${o.ms} ms  ${o.ctx.dir}`);
  sockServer?.close();
  for (const m of mounts) {
    try {
      execFileSync('umount', [m]);
    } catch {
      execFileSync('umount', ['-l', m]); // busy (a case still in it): detached now, gone when free
    }
  }
  fs.rmSync(scratch, { recursive: true, force: true });
});

describe('bad input never crashes and never destroys', () => {
  it.each(cases.map((c, i) => ({ ...c, i, name: `${c.row}: ${c.npm ? 'npm run' : ''} ${c.args({ dir: '<case>', cwd: '<cwd>', state: '<state>', labs: '<labs>' }).join(' ')}`.slice(0, 140) })))(
    'row $name',
    async (c) => {
      if (!can(c)) return; // needs root, or the guest image (CI has both)
      const o = await outcomes.get(c.i)!;
      const shown = `exit ${o.code}; output:\n${o.out}`;
      expect(o.out, shown).toMatch(c.line);
      expect(o.code, shown).toBe(c.code);
      // No stack trace, no uncaught error dump.
      expect(o.out, shown).not.toMatch(/^\s+at .+/m);
      expect(o.out, shown).not.toMatch(/^(\w+)?Error( \[\w+\])?: /m);
      expect(o.out, shown).not.toMatch(/node:internal|Node\.js v\d+/);
      if (c.boot !== 'probe') expect(o.booted, `boot ${c.boot ? 'expected' : 'attempted where the input must be refused first'}; ${shown}`).toBe(!!c.boot);
      expect(o.tmpLeft, `left in TMPDIR; ${shown}`).toEqual([]);
      for (const k of c.keep ?? []) {
        const st = fs.lstatSync(k);
        expect(st.isFile(), `${k} was replaced by a regular file`).toBe(false);
      }
      c.after?.(o.ctx, o.out);
    },
    120_000,
  );
});
