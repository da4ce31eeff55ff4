// A fresh Debian 12 root for the tests that must start where a new user starts:
// nothing but Debian's own base system, Node 20 laid out as nodejs.org's
// tarball lays it out, and a clone of this checkout.
//
//   const root = await makeCleanRoot();            // ~/.cache/sockmap-labs-test keeps the bootstrap
//   const r = await runInRoot(root, './setup.sh', { timeoutMs: 15 * 60_000 });
//   const o = await runInRoot(root, 'npm run lab 1', { offline: true });
//   root.remove();                                  // or removeRoot(root); also done at process exit
//
// The base system is `mmdebstrap --variant=apt bookworm` with the three
// sources a Debian 12 install has (bookworm, bookworm-updates,
// bookworm-security), kept as a tarball in ~/.cache/sockmap-labs-test/roots/,
// named by a digest of what went into it (mmdebstrap's version, the suite,
// variant, sources, extra packages and architecture) and made again when it is
// older than a week, so it stays close to what a new machine installs today.
// Measured on the shared 2-core CI machine: a cold make (the bootstrap: a
// 165 MB tarball) took 1 min 52 s to 2 min; a cached one (unpacking it, adding
// Node and the clone) 21 s at a load of 14, almost all of it the disk writing
// the unpacked files.
//
// Into each root go, as a real machine has its own: the host's CA bundle and
// /etc/resolv.conf (copied at make time, never cached), and Node: the host's
// node binary at /usr/local/bin/node and its npm at
// /usr/local/lib/node_modules/npm, with the bin/npm and bin/npx links the
// nodejs.org tarball has (nodejs.org is not reachable from CI; the host's
// Node is 20, as the README asks of a learner).
//
// Which checkout: a clone of the host checkout (so .git, and only what git
// knows: no node_modules, no build/, no caches), at HEAD, then, by default
// (checkout: 'worktree'), the tracked files that differ from HEAD copied over
// it (edited, staged or added with `git add`; deleted ones deleted): what
// `git commit -a` would commit. That way a developer's edit is tested before
// it is committed, and on CI (a clean clone) it is exactly HEAD. Untracked
// files are never copied: a file a learner's clone would lack must not make the
// test pass. checkout: 'head' takes HEAD alone; false, no checkout.
//
// Running: each runInRoot() is `unshare --pid --fork --kill-child --mount
// --propagation private [--net]`, a shell that mounts /proc and /sys (read-only; both the namespace's own), a
// fresh /dev (tmpfs holding the usual nodes, /dev/kvm when the host has one
// and kvm is not false, a private devpts, /dev/shm) and /run, then chroot.
// The mounts exist only in that private namespace: when the command ends, or
// is killed (timeout, a failed test, the test process dying: --kill-child), the
// namespace's processes are killed by the kernel and its mounts vanish with it
// (unshare runs under setpriv --pdeathsig KILL: even a test process killed
// with SIGKILL takes its namespaces along).
// Nothing is ever mounted on a host path, so removing a root cannot reach
// through to the host's /dev; removeRoot() still refuses a root with anything
// mounted under it. offline: true adds a network namespace with only
// loopback (up), as on a machine without network.
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** The host checkout the roots clone. */
export const hostCheckout = path.resolve(import.meta.dirname, '../..');

/** The sources a Debian 12 install writes (the same as this CI machine's). */
export const DEBIAN12_SOURCES = [
  'deb http://deb.debian.org/debian bookworm main',
  'deb http://deb.debian.org/debian bookworm-updates main',
  'deb http://deb.debian.org/debian-security bookworm-security main',
];
const SUITE = 'bookworm';
const VARIANT = 'apt';
/** A cached bootstrap older than this is made again. */
const MAX_AGE_MS = 7 * 24 * 3600_000;
/** Where the checkout goes in the root: a learner's home. */
export const ROOT_CHECKOUT = '/root/sockmap-labs';
const PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface CleanRootOptions {
  /** Packages to add to the bootstrap (part of its cache key). Default none: what a learner's fresh machine has. */
  packages?: string[];
  /** What to clone into ROOT_CHECKOUT: HEAD plus tracked changes (default), HEAD alone, or nothing. */
  checkout?: 'worktree' | 'head' | false;
  /** Put Node 20 in /usr/local (default true). */
  node?: boolean;
  /** The folder the root is made in (default os.tmpdir()). */
  parent?: string;
  /** Where the bootstrap tarballs are kept (default $XDG_CACHE_HOME or ~/.cache, then sockmap-labs-test/roots). */
  cacheDir?: string;
  /** Progress lines. */
  log?: (line: string) => void;
}

export interface CleanRoot {
  /** The root on the host. */
  dir: string;
  /** The checkout inside the root (ROOT_CHECKOUT), or undefined. */
  checkout?: string;
  /** How the bootstrap was had: made now, or unpacked from the cache; and how long making this root took. */
  bootstrap: { cached: boolean; tarball: string; ms: number };
  /** Tracked files copied over HEAD (checkout: 'worktree'). */
  overlaid: string[];
  remove(): void;
}

export interface RunOptions {
  /** No network: a network namespace with only loopback. */
  offline?: boolean;
  /** The folder inside the root to start in (default the checkout, else /root). */
  cwd?: string;
  /** Added to the minimal environment (HOME, PATH, LANG, TERM=dumb). */
  env?: Record<string, string>;
  /** A user of the root (see addUser) to run as, instead of root. */
  user?: string;
  /** Killed (the whole namespace) after this long; default 30 min. */
  timeoutMs?: number;
  /** Give the root the host's /dev/kvm (default: when the host has one). */
  kvm?: boolean;
  /** Host folders shown inside the root (created there if missing). */
  binds?: { host: string; inRoot: string; readOnly?: boolean }[];
  /** Each chunk of output as it comes (stdout and stderr together). */
  onOutput?: (chunk: string) => void;
}

export interface RunResult {
  code: number | null;
  /** stdout and stderr, interleaved as they came. */
  out: string;
  ms: number;
  timedOut: boolean;
  /** Processes of the command still running when it ended (killed with the namespace): `pid comm` each. */
  leftover: string[];
  /**
   * CPU time (user + system) of the command and every process it waited for
   * (QEMU included): the work done, which a loaded machine stretches far less
   * than the wall time. undefined when killed.
   */
  cpuMs?: number;
}

/** Why clean roots cannot be made here, or undefined when they can (for describe.skipIf). */
export function cleanRootUnavailable(): string | undefined {
  if (process.platform !== 'linux') return 'not Linux';
  if (process.getuid?.() !== 0) return 'needs root (mmdebstrap, unshare, chroot)';
  for (const t of ['mmdebstrap', 'unshare', 'setpriv', 'chroot', 'git', 'tar', 'mount'])
    if (spawnSync('sh', ['-c', `command -v ${t}`]).status !== 0) return `${t} is missing`;
  if (!process.version.startsWith('v20.')) return `the host's Node is ${process.version}, not 20`;
  return undefined;
}

const live = new Set<string>();
process.on('exit', () => {
  for (const dir of live) {
    try {
      removeRoot(dir);
    } catch {
      // exit: nothing left to report to
    }
  }
});

/** A fresh root, ready for runInRoot. */
export async function makeCleanRoot(o: CleanRootOptions = {}): Promise<CleanRoot> {
  const log = o.log ?? (() => {});
  const started = Date.now();
  const { tarball, cached } = await bootstrapTarball(o.packages ?? [], o.cacheDir, log);
  const parent = o.parent ?? os.tmpdir();
  sweepRoots(parent);
  const dir = fs.mkdtempSync(path.join(parent, `${ROOT_PREFIX}${process.pid}-`));
  live.add(dir);
  const root: CleanRoot = { dir, bootstrap: { cached, tarball, ms: 0 }, overlaid: [], remove: () => removeRoot(dir) };
  try {
    await exec('tar', ['-x', '--numeric-owner', '-f', tarball, '-C', dir]);
    machineFiles(dir);
    if (o.node ?? true) installNode(dir);
    if (o.checkout !== false) {
      const mode = o.checkout ?? 'worktree';
      root.checkout = ROOT_CHECKOUT;
      root.overlaid = await cloneCheckout(path.join(dir, ROOT_CHECKOUT), mode);
      if (root.overlaid.length) log(`clean root: uncommitted tracked files copied in: ${root.overlaid.join(', ')}`);
    }
  } catch (e) {
    removeRoot(dir);
    throw e;
  }
  root.bootstrap.ms = Date.now() - started;
  log(`clean root: ${dir} (${cached ? 'bootstrap from the cache' : 'bootstrapped now'}, ${(root.bootstrap.ms / 1000).toFixed(1)} s)`);
  return root;
}

const ROOT_PREFIX = 'sockmap-labs-clean-root-';

/** Removes the roots of test processes that are gone (killed before they could remove their own). */
function sweepRoots(parent: string): void {
  for (const name of fs.readdirSync(parent)) {
    const m = new RegExp(`^${ROOT_PREFIX}(\\d+)-`).exec(name);
    if (m && !pidAlive(Number(m[1]))) {
      try {
        removeRoot(path.join(parent, name));
      } catch {
        // not ours to force: left for a person to look at
      }
    }
  }
}

/** The bootstrap tarball for these packages: from the cache, or made now (atomically: two makers never see half a file). */
async function bootstrapTarball(packages: string[], cacheDir: string | undefined, log: (l: string) => void): Promise<{ tarball: string; cached: boolean }> {
  const version = spawnSync('mmdebstrap', ['--version'], { encoding: 'utf8' }).stdout.trim();
  const arch = spawnSync('dpkg', ['--print-architecture'], { encoding: 'utf8' }).stdout.trim();
  const recipe = JSON.stringify({ version, SUITE, VARIANT, sources: DEBIAN12_SOURCES, packages: [...packages].sort(), arch });
  const key = crypto.createHash('sha256').update(recipe).digest('hex').slice(0, 16);
  const dir = path.join(cacheDir ?? path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'sockmap-labs-test'), 'roots');
  fs.mkdirSync(dir, { recursive: true });
  const tarball = path.join(dir, `${SUITE}-${VARIANT}-${arch}-${key}.tar`);
  const st = fs.statSync(tarball, { throwIfNoEntry: false });
  if (st && Date.now() - st.mtimeMs < MAX_AGE_MS) return { tarball, cached: true };
  // Older tarballs of any recipe go: one per recipe at most, none stale.
  for (const f of fs.readdirSync(dir)) {
    const p = path.join(dir, f);
    const old = f.endsWith('.tmp') ? !pidAlive(Number(f.split('.').at(-2))) : f.endsWith('.tar') && Date.now() - fs.statSync(p).mtimeMs >= MAX_AGE_MS;
    if (old) fs.rmSync(p, { force: true });
  }
  log(`clean root: mmdebstrap --variant=${VARIANT} ${SUITE} (about a minute; kept in ${dir})`);
  const tmp = `${tarball}.${process.pid}.tmp`;
  try {
    await exec('mmdebstrap', [
      `--variant=${VARIANT}`,
      '--quiet',
      '--format=tar',
      ...(packages.length ? [`--include=${packages.join(',')}`] : []),
      SUITE,
      tmp,
      ...DEBIAN12_SOURCES,
    ]);
    fs.renameSync(tmp, tarball);
  } finally {
    fs.rmSync(tmp, { force: true });
  }
  return { tarball, cached: false };
}

/** What a real machine has of its own: a resolver and a CA bundle (the host's, copied). */
function machineFiles(dir: string): void {
  const etc = path.join(dir, 'etc');
  fs.rmSync(path.join(etc, 'resolv.conf'), { force: true });
  fs.writeFileSync(path.join(etc, 'resolv.conf'), fs.readFileSync('/etc/resolv.conf'));
  const ca = '/etc/ssl/certs/ca-certificates.crt';
  if (fs.existsSync(ca)) {
    fs.mkdirSync(path.join(etc, 'ssl/certs'), { recursive: true });
    fs.copyFileSync(ca, path.join(etc, 'ssl/certs/ca-certificates.crt'));
  }
  fs.writeFileSync(path.join(etc, 'hostname'), 'clean-root\n');
}

/** The host's Node 20, laid out as `tar -xf node-v20…-linux-x64.tar.xz -C /usr/local --strip-components=1` lays it out. */
function installNode(dir: string): void {
  const hostNode = fs.realpathSync(process.execPath);
  const npmDir = ['/usr/lib/node_modules/npm', '/usr/local/lib/node_modules/npm', path.resolve(path.dirname(hostNode), '../lib/node_modules/npm')].find((d) =>
    fs.existsSync(path.join(d, 'bin/npm-cli.js')),
  );
  if (!npmDir) throw new Error(`clean root: no npm found beside ${hostNode}`);
  const local = path.join(dir, 'usr/local');
  fs.mkdirSync(path.join(local, 'bin'), { recursive: true });
  fs.mkdirSync(path.join(local, 'lib/node_modules'), { recursive: true });
  fs.copyFileSync(hostNode, path.join(local, 'bin/node'));
  fs.chmodSync(path.join(local, 'bin/node'), 0o755);
  fs.cpSync(npmDir, path.join(local, 'lib/node_modules/npm'), { recursive: true, verbatimSymlinks: true });
  fs.symlinkSync('../lib/node_modules/npm/bin/npm-cli.js', path.join(local, 'bin/npm'));
  fs.symlinkSync('../lib/node_modules/npm/bin/npx-cli.js', path.join(local, 'bin/npx'));
  const corepack = path.join(path.dirname(npmDir), 'corepack');
  if (fs.existsSync(path.join(corepack, 'dist/corepack.js'))) {
    fs.cpSync(corepack, path.join(local, 'lib/node_modules/corepack'), { recursive: true, verbatimSymlinks: true });
    fs.symlinkSync('../lib/node_modules/corepack/dist/corepack.js', path.join(local, 'bin/corepack'));
  }
}

/** Clones the host checkout's HEAD into `to`; with 'worktree', copies the tracked changes over it. Returns the files copied or deleted. */
async function cloneCheckout(to: string, mode: 'worktree' | 'head'): Promise<string[]> {
  fs.mkdirSync(path.dirname(to), { recursive: true });
  const head = (await exec('git', ['-C', hostCheckout, 'rev-parse', 'HEAD'])).trim();
  await exec('git', ['clone', '--quiet', '--no-hardlinks', hostCheckout, to]);
  await exec('git', ['-C', to, 'checkout', '--quiet', '--detach', head]);
  if (mode === 'head') return [];
  const changed = (await exec('git', ['-C', hostCheckout, 'diff', '--name-only', '--no-renames', '-z', 'HEAD'])).split('\0').filter(Boolean);
  for (const f of changed) {
    const from = path.join(hostCheckout, f);
    const dest = path.join(to, f);
    fs.rmSync(dest, { force: true, recursive: true });
    if (fs.existsSync(from)) {
      fs.mkdirSync(path.dirname(dest), { recursive: true });
      fs.cpSync(from, dest, { verbatimSymlinks: true });
    }
  }
  return changed;
}

/** Adds a user to the root (home /home/NAME), for runInRoot's `user`. */
export async function addUser(root: CleanRoot, name: string): Promise<void> {
  const r = await runInRoot(root, `useradd --create-home --shell /bin/bash ${name}`, { cwd: '/', timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`clean root: useradd ${name} failed: ${r.out}`);
}

/** The shell that runs in the new namespaces, on the host's tools, before the chroot. */
const WRAPPER = String.raw`
set -eu
R=$1; CWD=$2; USERSPEC=$3; KVM=$4; OFFLINE=$5; LEFT=$6; CMD=$7; shift 7
mount -t proc -o nosuid,nodev,noexec proc "$R/proc"
mount -t sysfs -o nosuid,nodev,noexec,ro sysfs "$R/sys"
mount -t tmpfs -o nosuid,mode=0755 dev "$R/dev"
for d in null zero full random urandom tty; do : >"$R/dev/$d"; mount --bind "/dev/$d" "$R/dev/$d"; done
if [ "$KVM" = 1 ] && [ -c /dev/kvm ]; then : >"$R/dev/kvm"; mount --bind /dev/kvm "$R/dev/kvm"; fi
mkdir "$R/dev/pts" "$R/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$R/dev/pts"
ln -s pts/ptmx "$R/dev/ptmx"; ln -s /proc/self/fd "$R/dev/fd"
ln -s /proc/self/fd/0 "$R/dev/stdin"; ln -s /proc/self/fd/1 "$R/dev/stdout"; ln -s /proc/self/fd/2 "$R/dev/stderr"
mount -t tmpfs -o nosuid,nodev dev-shm "$R/dev/shm"
mount -t tmpfs -o nosuid,nodev,mode=0755 run "$R/run"
while [ $# -gt 0 ]; do
  mkdir -p "$R$2"; mount --bind "$1" "$R$2"
  [ "$3" = ro ] && mount -o remount,bind,ro "$R$2"
  shift 3
done
if [ "$OFFLINE" = 1 ]; then ip link set lo up 2>/dev/null || true; fi
rc=0
chroot $USERSPEC "$R" /bin/bash -c 'cd "$1" && eval "$2"' clean-root "$CWD" "$CMD" </dev/null || rc=$?
times >"$LEFT.times"
for p in "$R"/proc/[0-9]*; do
  n=$(basename "$p")
  [ "$n" = 1 ] && continue
  c=$(cat "$p/comm" 2>/dev/null) || continue
  echo "$n $c" >>"$LEFT"
done
exit $rc
`;

/** Runs `cmd` (bash) inside the root, in private namespaces; resolves when it and everything it started are gone. */
export function runInRoot(root: CleanRoot | string, cmd: string, o: RunOptions = {}): Promise<RunResult> {
  const dir = typeof root === 'string' ? root : root.dir;
  const cwd = o.cwd ?? (typeof root === 'string' ? '/root' : root.checkout ?? '/root');
  const home = o.user ? `/home/${o.user}` : '/root';
  const env = { HOME: home, USER: o.user ?? 'root', LOGNAME: o.user ?? 'root', PATH, LANG: 'C.UTF-8', TERM: 'dumb', ...networkEnv(), ...o.env };
  const envWords = Object.entries(env).map(([k, v]) => `${k}=${shellQuote(v)}`);
  const full = `exec env -i ${envWords.join(' ')} bash -c ${shellQuote(cmd)}`;
  const leftFile = path.join(os.tmpdir(), `sockmap-labs-clean-root-left-${process.pid}-${crypto.randomBytes(4).toString('hex')}`);
  const userspec = o.user ? `--userspec=${userIds(dir, o.user)}` : '';
  const binds = (o.binds ?? []).flatMap((b) => [path.resolve(b.host), b.inRoot, b.readOnly ? 'ro' : 'rw']);
  const kvm = (o.kvm ?? fs.existsSync('/dev/kvm')) ? '1' : '0';
  const args = ['--pid', '--fork', '--kill-child', '--mount', '--propagation', 'private', ...(o.offline ? ['--net'] : [])];
  args.push('sh', '-c', WRAPPER, 'clean-root-wrapper', dir, cwd, userspec, kvm, o.offline ? '1' : '0', leftFile, full, ...binds);
  const started = Date.now();
  return new Promise((resolve, reject) => {
    // setpriv --pdeathsig: unshare is killed when this process dies in any way (SIGKILL included), and the namespace with it.
    const child = spawn('setpriv', ['--pdeathsig', 'KILL', '--', 'unshare', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? PATH } });
    let out = '';
    const take = (d: Buffer) => {
      const s = d.toString();
      out += s;
      o.onOutput?.(s);
    };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      // unshare dies; --kill-child kills the namespace's first process, and with it every other one.
      child.kill('SIGKILL');
    }, o.timeoutMs ?? 30 * 60_000);
    // The test process going away takes the namespace with it.
    const onExit = () => child.kill('SIGKILL');
    process.once('exit', onExit);
    child.on('error', (e) => {
      clearTimeout(timer);
      process.off('exit', onExit);
      reject(e);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      process.off('exit', onExit);
      let leftover: string[] = [];
      try {
        leftover = fs.readFileSync(leftFile, 'utf8').split('\n').filter(Boolean);
      } catch {
        // nothing was left running
      }
      fs.rmSync(leftFile, { force: true });
      let cpuMs: number | undefined;
      try {
        // `times`: the shell's user and system time, then its children's: "0m1.23s 0m0.45s".
        const children = fs.readFileSync(`${leftFile}.times`, 'utf8').trim().split('\n')[1] ?? '';
        const t = [...children.matchAll(/(\d+)m([\d.]+)s/g)].map((m) => Number(m[1]) * 60_000 + Number(m[2]) * 1000);
        if (t.length === 2) cpuMs = Math.round(t[0] + t[1]);
      } catch {
        // killed before it could tell
      }
      fs.rmSync(`${leftFile}.times`, { force: true });
      resolve({ code: timedOut ? null : code, out, ms: Date.now() - started, timedOut, leftover, cpuMs });
    });
  });
}

/**
 * The host's network set-up a real machine on this network would have too:
 * proxies, and trust in the CA bundle (copied into the root) where the host
 * tells Node to trust it (NODE_EXTRA_CA_CERTS; CI here reaches the npm registry
 * through a proxy whose CA only that bundle holds).
 */
function networkEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const k of ['http_proxy', 'https_proxy', 'no_proxy', 'HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY']) if (process.env[k]) env[k] = process.env[k]!;
  if (process.env.NODE_EXTRA_CA_CERTS) env.NODE_EXTRA_CA_CERTS = '/etc/ssl/certs/ca-certificates.crt';
  return env;
}

/** uid:gid of a user of the root, from its /etc/passwd (numbers: chroot never looks the name up on the host). */
function userIds(dir: string, user: string): string {
  const line = fs.readFileSync(path.join(dir, 'etc/passwd'), 'utf8').split('\n').find((l) => l.startsWith(`${user}:`));
  if (!line) throw new Error(`clean root: no user ${user} in the root (addUser first)`);
  const [, , uid, gid] = line.split(':');
  return `${uid}:${gid}`;
}

/** Mount points at or under `dir` in this process's mount namespace. */
function mountsUnder(dir: string): string[] {
  const real = fs.realpathSync(dir);
  return fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4]?.replace(/\\040/g, ' '))
    .filter((m): m is string => !!m && (m === real || m.startsWith(`${real}/`)));
}

/** Removes a root (never through a mount: refuses if anything is mounted under it). */
export function removeRoot(root: CleanRoot | string): void {
  const dir = typeof root === 'string' ? root : root.dir;
  live.delete(dir);
  if (!fs.existsSync(dir)) return;
  const mounted = mountsUnder(dir);
  if (mounted.length) throw new Error(`clean root: not removing ${dir}: ${mounted.join(', ')} mounted under it`);
  // --one-file-system: even so, never cross into another file system.
  const r = spawnSync('rm', ['-rf', '--one-file-system', dir], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`clean root: removing ${dir} failed: ${r.stderr}`);
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function exec(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${err.trim()}`))));
  });
}
