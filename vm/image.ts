// The guest image: a root filesystem made from Debian 12 packages, holding
// everything lab steps run, booted from a read-only compressed disk.
//
// `npm run image build` (buildImage below):
//   1. resolve GUEST_PACKAGES and their dependencies to exact versions with the
//      host's apt, for the guest's architecture, against an empty dpkg status
//      (the whole closure, whatever the host has installed); the kernel package
//      is resolved on its own and taken without its dependencies (initramfs
//      tools, udev: install-time machinery the guest does not run);
//   2. the inputs digest: sha256 of the arch, those name=version pairs, the
//      guest init (vm/guest/image-init) and this build script. The image folder
//      is <cache>/images/<arch>-<first 16 hex digits>; when it is there and
//      checks out, the build is done (no download, a few seconds of apt);
//   3. `apt-get download` the exact versions (kept in <cache>/images/debs/<arch>
//      for the next build), unpack each with `dpkg-deb --fsys-tarfile | tar -x`
//      into a tree with the merged-/usr symlinks made first. No maintainer
//      script runs (so an arm64 image builds on an x86_64 host without running
//      arm64 code); finishTree() does, by hand, the little they would have done
//      that the guest needs (alternatives, /etc/passwd, /var/run, depmod);
//   4. the boot pieces: rootfs.erofs (mkfs.erofs, lz4hc), vmlinuz and
//      kernel.config (from the kernel package), initramfs.cpio.gz (written here: the image's own static
//      busybox, image-init as /init, and the modules needed to mount the root
//      and the project share, decompressed with xz at build time), and
//      manifest.json; then a full check (vm/image-verify.ts) and a rename into
//      place.
import crypto from 'node:crypto';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { UserError } from '../core/errors.ts';
import { projectRoot } from '../core/paths.ts';
import { cpioNewc, S_IFCHR, S_IFDIR, S_IFREG, type CpioEntry } from './image-files.ts';
import {
  IMAGE_FILES,
  hostArch,
  imageDigest,
  imageFolderName,
  imagesDir,
  listImageFolders,
  MANIFEST,
  readManifest,
  removeOtherImages,
  requireFreeSpace,
  setCurrentImage,
  sha256File,
  verifyImage,
  type ImageArch,
  type ImageManifest,
} from './image-verify.ts';
import { findStaticBusybox, resolveBootModules } from './initramfs.ts';

/**
 * What the guest image holds: these packages and what they depend on (not
 * what they recommend). The one list; each line says why.
 */
export const GUEST_PACKAGES = [
  'usr-is-merged', // says /usr is merged (we make the links), so nothing pulls in usrmerge and its perl
  'base-files', // /etc/os-release, /etc/profile, the FHS folders
  'base-passwd', // root's passwd and group entries (finishTree installs them: no postinst runs)
  'netbase', // /etc/services and /etc/protocols, for socat, ncat and getaddrinfo
  'bash', // lab steps are bash
  'bash-static', // the step agent starts steps with it: no dynamic loading, ~70 ms less a step under TCG
  'dash', // /bin/sh
  'busybox-static', // the initramfs's shell and tools (static: the initramfs has no C library)
  'coreutils', // cat, ls, mkdir, rm, sleep, head, tail, tee, tr, wc, tac, printf in steps
  'grep', // steps grep output
  'sed', // steps edit output
  'findutils', // find
  'mawk', // awk
  'procps', // sysctl, free, ps, pkill
  'util-linux', // findmnt, mount, nsenter, unshare, setsid
  'kmod', // modprobe, lsmod: labs load vsock_loopback and friends from the image's modules
  'iproute2', // ip: netns, veth, addresses
  'iputils-ping', // ping between namespaces
  'ncat', // a TCP/UDP/UNIX peer for lab sockets
  'socat', // the same, for socket kinds ncat lacks
  'sockperf', // lab 10's latency benchmark
  'strace', // labs show the syscalls a program makes
  'bpftool', // every lab inspects maps and programs with it
  'clang', // exercises are compiled in the guest (-target bpf); also cc for C helpers (with binutils' ld)
  'llvm', // llvm-objdump, llvm-strip for BPF objects
  'libbpf-dev', // bpf/bpf_helpers.h and friends for exercises; libbpf.so for helpers
  'libc6-dev', // C headers and crt files for clang
  'linux-libc-dev', // linux/bpf.h, asm/types.h
  'make', // build helpers in the guest
] as const;

/** The guest kernel: Debian 12's 6.12 (every lab runs on it). Unpacked without its dependencies. */
export const kernelPackageFor = (arch: ImageArch) => `linux-image-6.12-${arch}`;

/**
 * Modules the initramfs loads before the root is mounted, as chains loaded
 * side by side (each chain in order, its dependencies first, built-in ones
 * left out; no module in two chains): the disk's file system, the disk, the
 * project share (9p over virtio) and overlayfs for /etc, /var and /root.
 * crc32c_generic comes before erofs because erofs needs libcrc32c, which asks
 * the crypto API for crc32c, which would otherwise need modprobe (there is
 * none before the root). Side by side, and without their signatures (below),
 * they load ~0.7 s sooner under TCG than one after another.
 */
export const IMAGE_BOOT_CHAINS = [['crc32c_generic', 'erofs'], ['virtio_blk'], ['9p', '9pnet_virtio'], ['overlay']];
export const IMAGE_BOOT_MODULES = IMAGE_BOOT_CHAINS.flat();

/** The trailer the kernel's sign-file appends to a signed module, after the signature and a 12-byte struct module_signature. */
const MODULE_SIG_MARK = Buffer.from('~Module signature appended~\n');

/**
 * A module without its appended signature. The guest kernel then loads it
 * unchecked (it taints itself 'E', which nothing in the labs reads) instead of
 * hashing it and checking an RSA signature, tens of milliseconds each under
 * TCG. Only the initramfs's boot modules: those the labs load from the image
 * (vsock_loopback, …) keep their signatures.
 */
export function withoutSignature(ko: Buffer): Buffer {
  if (ko.length < MODULE_SIG_MARK.length + 12 || !ko.subarray(ko.length - MODULE_SIG_MARK.length).equals(MODULE_SIG_MARK)) return ko;
  const info = ko.length - MODULE_SIG_MARK.length - 12;
  const sigLen = ko.readUInt32BE(info + 8);
  return sigLen > info ? ko : ko.subarray(0, info - sigLen);
}

/** mkfs.erofs compression: lz4hc, 64 KiB clusters (amd64: 307 MB in ~40 s; with 4 KiB clusters ~350 MB, plain lz4 ~380 MB; lz4 is the fastest to read under TCG). */
const EROFS_OPTIONS = ['-zlz4hc', '-C65536', '-Eztailpacking'];

/** Maintainer-script work the guest needs, done by hand: alternatives' links (link → target, from their postinst). */
const ALTERNATIVES: [link: string, target: string][] = [
  ['usr/bin/awk', 'mawk'], // mawk
  ['usr/bin/nawk', 'mawk'], // mawk
  ['usr/bin/nc', 'ncat'], // ncat
  ['usr/bin/netcat', 'ncat'], // ncat
  ['usr/bin/which', 'which.debianutils'], // debianutils
  ['usr/bin/cc', 'clang'], // clang: the guest has no gcc
  ['usr/bin/c++', 'clang++'], // clang
  ['usr/bin/pager', 'more'], // util-linux
];

/** What an init system and the hostname package would provide, from the image's busybox (stage2.sh traps with `poweroff -f`). */
const BUSYBOX_LINKS = ['usr/sbin/poweroff', 'usr/sbin/reboot', 'usr/sbin/halt', 'usr/bin/hostname'];

/** Removed from the tree: documentation (finishTree keeps each package's copyright), translations, bug-report scripts. */
const PRUNE = ['usr/share/man', 'usr/share/info', 'usr/share/locale', 'usr/share/lintian', 'usr/share/bug'];

export const IMAGE_INIT = path.join(projectRoot, 'vm/guest/image-init');
/** The build scripts: a change to them changes the image (the inputs digest). */
const BUILD_SCRIPTS = ['vm/image.ts', 'vm/image-files.ts'].map((f) => path.join(projectRoot, f));
/** Where the image keeps its init for the second stage (after switch_root). */
const INIT_IN_IMAGE = 'usr/lib/sockmap-labs/image-init';

export type Log = (line: string) => void;

interface Pkg {
  name: string;
  version: string;
  arch: string;
}

const pkgId = (p: Pkg) => `${p.name}=${p.version}`;
/** The file name apt-get download gives a package. */
const debFile = (p: Pkg) => `${p.name}_${p.version.replace(/:/g, '%3a')}_${p.arch}.deb`;

// ---- running tools -------------------------------------------------------

interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a program, collecting its output; `onLine` sees stdout line by line. Rejects only when it cannot start or `signal` fires. */
function run(cmd: string, args: string[], o: { cwd?: string; signal?: AbortSignal; onLine?: (l: string) => void; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: o.cwd, signal: o.signal, env: o.env ?? { ...process.env, LC_ALL: 'C' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let partial = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
      if (!o.onLine) return;
      const lines = (partial + d).split('\n');
      partial = lines.pop()!;
      lines.forEach(o.onLine);
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}

async function runOk(what: string, cmd: string, args: string[], o: Parameters<typeof run>[2] = {}): Promise<RunResult> {
  const r = await run(cmd, args, o);
  if (r.code !== 0) throw new Error(`${what} failed (${cmd} exit ${r.code}): ${(r.stderr || r.stdout).trim().split('\n').slice(-5).join(' | ')}`);
  return r;
}

/** `dpkg-deb --fsys-tarfile DEB | tar -x -C TREE`, the merged-/usr links kept. */
function unpackDeb(deb: string, tree: string, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const asRoot = process.getuid?.() === 0;
    const dpkg = spawn('dpkg-deb', ['--fsys-tarfile', deb], { signal, stdio: ['ignore', 'pipe', 'pipe'] });
    const tar = spawn('tar', ['-x', '--keep-directory-symlink', ...(asRoot ? ['--numeric-owner', '--same-owner'] : ['--no-same-owner']), '-C', tree], {
      signal,
      stdio: ['pipe', 'ignore', 'pipe'],
    });
    dpkg.stdout.pipe(tar.stdin);
    // A tar that stops early (an abort, a bad archive) closes the pipe: its exit code tells.
    tar.stdin.on('error', () => {});
    dpkg.stdout.on('error', () => {});
    let err = '';
    dpkg.stderr.on('data', (d) => (err += d));
    tar.stderr.on('data', (d) => (err += d));
    let dpkgCode: number | null = null;
    dpkg.on('error', reject);
    tar.on('error', reject);
    dpkg.on('close', (c) => (dpkgCode = c));
    tar.on('close', (c) => {
      const finish = () => (c === 0 && dpkgCode === 0 ? resolve() : reject(new Error(`unpacking ${path.basename(deb)} failed: ${err.trim()}`)));
      if (dpkgCode === null) dpkg.once('close', finish);
      else finish();
    });
  });
}

/** The tools a build needs, each with the package that has it (setup.sh installs these packages: test/setup-packages.test.ts keeps the two the same). */
export const BUILD_TOOLS: [tool: string, pkg: string][] = [
  ['apt-get', 'apt'],
  ['dpkg-deb', 'dpkg'],
  ['tar', 'tar'],
  ['mkfs.erofs', 'erofs-utils'],
  ['depmod', 'kmod'],
  ['xz', 'xz-utils'],
];

async function requireBuildTools(): Promise<void> {
  const missing: [string, string][] = [];
  for (const [tool, pkg] of BUILD_TOOLS) if ((await run('sh', ['-c', `command -v ${tool}`])).code !== 0) missing.push([tool, pkg]);
  if (!missing.length) return;
  const apt = missing.some(([t]) => t === 'apt-get' || t === 'dpkg-deb');
  throw new UserError(
    `building the guest image needs ${missing.map(([t]) => t).join(', ')}, which this machine lacks`,
    apt
      ? 'build it on a Debian 12 machine and copy it here: there, npm run image build && npm run image export FILE; here, npm run image import FILE'
      : `sudo apt-get install -y ${[...new Set(missing.map(([, p]) => p))].join(' ')}`,
  );
}

// ---- resolving the inputs ------------------------------------------------

/** apt options that make `arch` the only architecture, against an empty dpkg status (the full closure, not what the host lacks). */
function aptOptions(arch: ImageArch, emptyStatus: string): string[] {
  return [
    '-q',
    '-o',
    `APT::Architecture=${arch}`,
    '-o',
    `APT::Architectures=${arch}`,
    '-o',
    `Dir::State::status=${emptyStatus}`,
    '-o',
    'Dir::Cache::pkgcache=',
    '-o',
    'Dir::Cache::srcpkgcache=',
    '-o',
    'Debug::NoLocking=1',
    '-o',
    'APT::Install-Recommends=false',
    '-o',
    'APT::Sandbox::User=root',
  ];
}

function emptyStatusFile(cacheDir: string): string {
  const f = path.join(imagesDir(cacheDir), '.empty-dpkg-status');
  fs.mkdirSync(path.dirname(f), { recursive: true });
  if (!fs.existsSync(f)) fs.writeFileSync(f, '');
  return f;
}

/** What `apt-get --simulate install` would unpack, on an empty system of `arch`. */
async function simulate(arch: ImageArch, names: readonly string[], cacheDir: string): Promise<Pkg[]> {
  const r = await run('apt-get', [...aptOptions(arch, emptyStatusFile(cacheDir)), '--simulate', 'install', ...names]);
  if (r.code !== 0) {
    const unknown = /Unable to locate package (\S+)/.exec(r.stderr)?.[1] ?? /Package '?(\S+?)'? has no installation candidate/.exec(r.stderr)?.[1];
    const foreign = arch !== hostArch();
    if (unknown)
      throw new UserError(
        `apt on this machine does not offer the package ${unknown} for ${arch}${foreign ? ` (is ${arch} a configured architecture?)` : ''}: the guest image is built from Debian 12 (bookworm) packages`,
        foreign ? `sudo dpkg --add-architecture ${arch} && sudo apt-get update   (then run this command again)` : 'sudo apt-get update   (then run this command again; the host must use Debian 12 sources)',
      );
    throw new UserError(`apt cannot resolve the guest image's packages for ${arch}: ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`, 'sudo apt-get update   (then run this command again)');
  }
  const out: Pkg[] = [];
  for (const line of r.stdout.split('\n')) {
    const m = /^Inst (\S+) \((\S+) .*\[(\S+)\]\)/.exec(line);
    if (m) out.push({ name: m[1].replace(/:.*$/, ''), version: m[2], arch: m[3] });
  }
  if (!out.length) throw new UserError(`apt resolved no packages for the guest image (${arch})`, 'sudo apt-get update   (then run this command again)');
  return out;
}

export interface ImageInputs {
  arch: ImageArch;
  /** Every package unpacked into the tree, the kernel last. */
  packages: Pkg[];
  kernel: Pkg;
  inputsDigest: string;
  scriptsDigest: string;
  folder: string;
}

/** sha256 of image-init and the build scripts: known without apt (a boot compares it). */
export function scriptsDigest(): string {
  const h = crypto.createHash('sha256');
  for (const f of [IMAGE_INIT, ...BUILD_SCRIPTS]) h.update(`${path.relative(projectRoot, f)}\0`).update(fs.readFileSync(f)).update('\0');
  return h.digest('hex');
}

/** The exact packages (apt's candidates now) and the digest naming the image they make. No download. */
export async function resolveInputs(arch: ImageArch, cacheDir: string): Promise<ImageInputs> {
  const kernelMeta = kernelPackageFor(arch);
  const [userland, kernelClosure] = await Promise.all([simulate(arch, GUEST_PACKAGES, cacheDir), simulate(arch, [kernelMeta], cacheDir)]);
  const kernel = kernelClosure.find((p) => /^linux-image-\d+\.\d+\.\d+/.test(p.name));
  if (!kernel) throw new UserError(`apt does not resolve ${kernelMeta} to a kernel image package`, 'sudo apt-get update   (then run this command again)');
  const packages = [...userland.filter((p) => p.name !== kernel.name), kernel];
  const scripts = scriptsDigest();
  const h = crypto.createHash('sha256');
  h.update(`sockmap-labs guest image\narch ${arch}\n`);
  for (const id of packages.map(pkgId).sort()) h.update(`${id}\n`);
  h.update(`scripts ${scripts}\n`);
  const inputsDigest = h.digest('hex');
  return { arch, packages, kernel, inputsDigest, scriptsDigest: scripts, folder: imageFolderName(arch, inputsDigest) };
}

// ---- the tree --------------------------------------------------------------

/** Downloads the packages not yet in `debs` (apt checks each against the signed index). */
async function download(inputs: ImageInputs, debs: string, cacheDir: string, log: Log, progress: Log, signal?: AbortSignal): Promise<void> {
  fs.mkdirSync(debs, { recursive: true });
  const missing = inputs.packages.filter((p) => !fs.existsSync(path.join(debs, debFile(p))));
  if (!missing.length) {
    log(`all ${inputs.packages.length} packages are in the download cache`);
    return;
  }
  const tmp = path.join(debs, `.download-${process.pid}`);
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp);
  try {
    let got = 0;
    log(`downloading ${missing.length} of ${inputs.packages.length} packages`);
    const r = await run('apt-get', [...aptOptions(inputs.arch, emptyStatusFile(cacheDir)), 'download', ...missing.map(pkgId)], {
      cwd: tmp,
      signal,
      onLine: (l) => {
        if (/^Get:\d+/.test(l)) progress(`downloading packages: ${++got}/${missing.length}`);
      },
    });
    if (r.code !== 0)
      throw new UserError(
        `apt-get download failed for the guest image: ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`,
        'check the network, then: sudo apt-get update && npm run image build',
      );
    for (const p of missing) {
      const f = debFile(p);
      if (!fs.existsSync(path.join(tmp, f))) throw new Error(`apt-get download did not write ${f}`);
      fs.renameSync(path.join(tmp, f), path.join(debs, f));
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/** The merged-/usr layout Debian 12 installs: /bin, /sbin, /lib (and /lib64 on amd64) are links into /usr. */
function mergedUsr(tree: string, arch: ImageArch): void {
  const links = ['bin', 'sbin', 'lib', ...(arch === 'amd64' ? ['lib64'] : [])];
  for (const l of links) {
    fs.mkdirSync(path.join(tree, 'usr', l), { recursive: true });
    fs.symlinkSync(`usr/${l}`, path.join(tree, l));
  }
}

function link(tree: string, rel: string, target: string) {
  const at = path.join(tree, rel);
  fs.rmSync(at, { recursive: true, force: true });
  fs.mkdirSync(path.dirname(at), { recursive: true });
  fs.symlinkSync(target, at);
}

/** Does by hand what the packages' maintainer scripts would have done that the guest needs; removes what it does not. */
function finishTree(tree: string): void {
  for (const [l, target] of ALTERNATIVES) if (fs.existsSync(path.join(tree, path.dirname(l), target))) link(tree, l, target);
  for (const l of BUSYBOX_LINKS) if (!fs.existsSync(path.join(tree, l))) link(tree, l, '/usr/bin/busybox');
  // base-passwd's postinst: the static users and groups.
  fs.copyFileSync(path.join(tree, 'usr/share/base-passwd/passwd.master'), path.join(tree, 'etc/passwd'));
  fs.copyFileSync(path.join(tree, 'usr/share/base-passwd/group.master'), path.join(tree, 'etc/group'));
  // base-files' postinst.
  for (const [from, to] of [
    ['profile', 'etc/profile'],
    ['dot.bashrc', 'root/.bashrc'],
    ['dot.profile', 'root/.profile'],
  ])
    fs.copyFileSync(path.join(tree, 'usr/share/base-files', from), path.join(tree, to));
  for (const d of ['mnt', 'srv', 'opt', 'media', 'run/lock']) fs.mkdirSync(path.join(tree, d), { recursive: true });
  // What an installer writes. /var/run and /var/lock point into the tmpfs /run (`ip netns` uses /var/run/netns).
  link(tree, 'var/run', '/run');
  link(tree, 'var/lock', '/run/lock');
  link(tree, 'etc/mtab', '../proc/self/mounts');
  fs.writeFileSync(path.join(tree, 'etc/hostname'), 'sockmap-lab\n');
  fs.writeFileSync(path.join(tree, 'etc/hosts'), '127.0.0.1\tlocalhost sockmap-lab\n::1\tlocalhost ip6-localhost ip6-loopback\n');
  fs.writeFileSync(
    path.join(tree, 'etc/nsswitch.conf'),
    ['passwd: files', 'group: files', 'shadow: files', 'hosts: files', 'networks: files', 'protocols: files', 'services: files', 'ethers: files', 'rpc: files', ''].join('\n'),
  );
  // Nothing installs or configures packages in the guest.
  for (const p of PRUNE) fs.rmSync(path.join(tree, p), { recursive: true, force: true });
  const doc = path.join(tree, 'usr/share/doc');
  if (fs.existsSync(doc))
    for (const pkg of fs.readdirSync(doc)) {
      const d = path.join(doc, pkg);
      if (!fs.lstatSync(d).isDirectory()) {
        fs.rmSync(d, { force: true });
        continue;
      }
      for (const f of fs.readdirSync(d)) if (f !== 'copyright') fs.rmSync(path.join(d, f), { recursive: true, force: true });
    }
  // Our init, for its second stage (it runs from the image after switch_root).
  fs.mkdirSync(path.join(tree, path.dirname(INIT_IN_IMAGE)), { recursive: true });
  fs.copyFileSync(IMAGE_INIT, path.join(tree, INIT_IN_IMAGE));
  fs.chmodSync(path.join(tree, INIT_IN_IMAGE), 0o755);
}

/** The kernel's release, from the one modules folder in the tree. */
function kernelRelease(tree: string): string {
  const dir = path.join(tree, 'usr/lib/modules');
  const releases = fs.existsSync(dir) ? fs.readdirSync(dir) : [];
  if (releases.length !== 1) throw new Error(`expected one kernel in ${dir}, found: ${releases.join(', ') || 'none'}`);
  return releases[0];
}

async function decompressModule(file: string, signal?: AbortSignal): Promise<Buffer> {
  const tool = file.endsWith('.xz') ? 'xz' : file.endsWith('.zst') ? 'zstd' : file.endsWith('.gz') ? 'gzip' : undefined;
  if (!tool) return fs.readFileSync(file);
  return new Promise((resolve, reject) => {
    const child = spawn(tool, ['-dc', file], { signal, stdio: ['ignore', 'pipe', 'pipe'] });
    const chunks: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (d: Buffer) => chunks.push(d));
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('close', (c) => (c === 0 ? resolve(Buffer.concat(chunks)) : reject(new Error(`${tool} -dc ${file}: ${err.trim()}`))));
  });
}

/** The initramfs: /init (image-init), the image's static busybox, the boot modules (plain .ko, unsigned) and their chains. */
async function writeInitramfs(tree: string, release: string, out: string, signal?: AbortSignal): Promise<string[]> {
  const modulesDir = path.join(tree, 'usr/lib/modules', release);
  let chains;
  try {
    chains = IMAGE_BOOT_CHAINS.map((c) => resolveBootModules(modulesDir, c));
  } catch (e) {
    throw new Error(`the guest kernel ${release} cannot boot the image: ${(e as Error).message}`);
  }
  const modules = chains.flat();
  const twice = modules.map((m) => m.name).filter((n, i, all) => all.indexOf(n) !== i);
  if (twice.length) throw new Error(`the boot module chains of kernel ${release} share ${twice.join(', ')}: they cannot load side by side (vm/image.ts IMAGE_BOOT_CHAINS)`);
  const busybox = findStaticBusybox([path.join(tree, 'usr/bin/busybox')]);
  const dir = (name: string): CpioEntry => ({ name, mode: S_IFDIR | 0o755 });
  const entries: CpioEntry[] = [
    dir('bin'),
    { name: 'bin/busybox', mode: S_IFREG | 0o755, data: fs.readFileSync(busybox) },
    { name: 'init', mode: S_IFREG | 0o755, data: fs.readFileSync(IMAGE_INIT) },
    dir('dev'),
    { name: 'dev/console', mode: S_IFCHR | 0o600, rdev: [5, 1] },
    dir('proc'),
    dir('sys'),
    dir('newroot'),
    dir('modules'),
  ];
  for (const m of modules) entries.push({ name: `modules/${m.name}.ko`, mode: S_IFREG | 0o644, data: withoutSignature(await decompressModule(m.file, signal)) });
  // One chain a line; image-init loads the lines side by side.
  entries.push({ name: 'modules/chains', mode: S_IFREG | 0o644, data: Buffer.from(chains.map((c) => c.map((m) => m.name).join(' ')).join('\n') + '\n') });
  fs.writeFileSync(out, zlib.gzipSync(cpioNewc(entries), { level: 9 }));
  return modules.map((m) => m.name);
}

function alive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Removes build, import and download folders left by processes that no longer run (killed, power cut). */
export function sweepStale(cacheDir: string): void {
  const dir = imagesDir(cacheDir);
  const debs = path.join(dir, 'debs');
  const folders = [dir, ...(fs.existsSync(debs) ? fs.readdirSync(debs).map((a) => path.join(debs, a)) : [])];
  for (const d of folders) {
    if (!fs.existsSync(d) || !fs.statSync(d).isDirectory()) continue;
    for (const n of fs.readdirSync(d)) {
      const m = /^\.(?:build|import|download)-(?:[a-z]+\d*-)?(\d+)(?:-[0-9a-f]+)?$/.exec(n);
      if (m && !alive(Number(m[1]))) fs.rmSync(path.join(d, n), { recursive: true, force: true });
    }
  }
}

/** Room a build needs beside the download cache: the tree (~650 MB) and the erofs (~320 MB). */
const BUILD_SPACE = 1.5e9;

export interface BuildResult {
  dir: string;
  manifest: ImageManifest;
  /** false: the image for these inputs was already there, and checked out. */
  built: boolean;
  seconds: number;
}

/**
 * Builds the guest image for `arch` into <cacheDir>/images/<arch>-<digest16>,
 * unless the one for the current inputs is already there and sound. Makes it
 * the image boots of `arch` use.
 */
export async function buildImage(o: {
  arch: ImageArch;
  cacheDir: string;
  /** One line per stage of the build. */
  log: Log;
  /** Finer progress within a stage (packages downloaded, unpacked): for a spinner, not a log. */
  progress?: Log;
  signal?: AbortSignal;
  /** Build even when the image for these inputs is there. */
  force?: boolean;
}): Promise<BuildResult> {
  const { arch, cacheDir, log, signal } = o;
  const progress = o.progress ?? (() => {});
  const t0 = Date.now();
  await requireBuildTools();
  sweepStale(cacheDir);
  log(`resolving the guest image's packages for ${arch} (apt)`);
  const inputs = await resolveInputs(arch, cacheDir);
  const images = imagesDir(cacheDir);
  const final = path.join(images, inputs.folder);
  if (!o.force && fs.existsSync(final)) {
    try {
      const { manifest } = await verifyImage(final, { arch, signal, onHash: log });
      setCurrentImage(cacheDir, arch, inputs.folder);
      return { dir: final, manifest, built: false, seconds: (Date.now() - t0) / 1000 };
    } catch (e) {
      if (!(e instanceof UserError)) throw e;
      log(`the image in ${final} is unusable (${e.message}): building it again`);
    }
  }
  requireFreeSpace(images, BUILD_SPACE, 'building the guest image');
  const debs = path.join(images, 'debs', arch);
  await download(inputs, debs, cacheDir, log, progress, signal);
  const work = path.join(images, `.build-${arch}-${process.pid}`);
  fs.rmSync(work, { recursive: true, force: true });
  const tree = path.join(work, 'tree');
  const out = path.join(work, 'out');
  fs.mkdirSync(tree, { recursive: true, mode: 0o755 });
  fs.mkdirSync(out);
  try {
    mergedUsr(tree, arch);
    let n = 0;
    log(`unpacking ${inputs.packages.length} packages (no maintainer scripts run)`);
    for (const p of inputs.packages) {
      signal?.throwIfAborted();
      progress(`unpacking packages: ${++n}/${inputs.packages.length} (${p.name})`);
      await unpackDeb(path.join(debs, debFile(p)), tree, signal);
    }
    finishTree(tree);
    const release = kernelRelease(tree);
    log(`indexing the modules of kernel ${release} (depmod)`);
    await runOk('depmod', 'depmod', ['-b', tree, release], { signal });
    // The kernel boots from outside the image.
    const boot = path.join(tree, 'boot');
    const vmlinuz = path.join(boot, `vmlinuz-${release}`);
    if (!fs.existsSync(vmlinuz)) throw new Error(`${inputs.kernel.name} holds no /boot/vmlinuz-${release}`);
    fs.copyFileSync(vmlinuz, path.join(out, 'vmlinuz'));
    const config = path.join(boot, `config-${release}`);
    if (!fs.existsSync(config)) throw new Error(`${inputs.kernel.name} holds no /boot/config-${release}`);
    fs.copyFileSync(config, path.join(out, 'kernel.config'));
    for (const f of fs.readdirSync(boot)) if (/^(vmlinuz|System\.map)-/.test(f)) fs.rmSync(path.join(boot, f));
    log('writing the initramfs');
    const bootModules = await writeInitramfs(tree, release, path.join(out, 'initramfs.cpio.gz'), signal);
    log(`compressing the root file system (mkfs.erofs ${EROFS_OPTIONS.join(' ')}; about a minute)`);
    const asRoot = process.getuid?.() === 0;
    await runOk('mkfs.erofs', 'mkfs.erofs', ['--quiet', ...EROFS_OPTIONS, ...(asRoot ? [] : ['--all-root']), path.join(out, 'rootfs.erofs'), tree], { signal });
    log('hashing the image');
    const files = {} as ImageManifest['files'];
    for (const f of IMAGE_FILES) files[f] = { size: fs.statSync(path.join(out, f)).size, sha256: await sha256File(path.join(out, f), signal) };
    const manifest: ImageManifest = {
      format: 1,
      arch,
      digest: imageDigest(files),
      files,
      inputsDigest: inputs.inputsDigest,
      scriptsDigest: inputs.scriptsDigest,
      kernelRelease: release,
      packages: inputs.packages.map(pkgId).sort(),
      bootModules,
      erofs: EROFS_OPTIONS.join(' '),
      builtAt: new Date().toISOString(),
      buildSeconds: Math.round((Date.now() - t0) / 100) / 10,
    };
    fs.writeFileSync(path.join(out, MANIFEST), JSON.stringify(manifest, null, 2) + '\n');
    await verifyImage(out, { arch, full: true, signal });
    fs.rmSync(final, { recursive: true, force: true });
    fs.renameSync(out, final);
    setCurrentImage(cacheDir, arch, inputs.folder);
    for (const n of removeOtherImages(cacheDir, arch, inputs.folder)) log(`removed the older image ${n}`);
    // Keep only this image's packages in the download cache.
    const keep = new Set(inputs.packages.map(debFile));
    for (const f of fs.readdirSync(debs)) if (f.endsWith('.deb') && !keep.has(f)) fs.rmSync(path.join(debs, f));
    return { dir: final, manifest: readManifest(final, arch), built: true, seconds: (Date.now() - t0) / 1000 };
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

/** The image folders in the cache, with what `image list` shows. */
export function describeImages(cacheDir: string): { folder: string; dir: string; manifest?: ImageManifest; problem?: string; bytes: number }[] {
  return listImageFolders(cacheDir).map((folder) => {
    const dir = path.join(imagesDir(cacheDir), folder);
    let bytes = 0;
    for (const f of IMAGE_FILES) bytes += fs.statSync(path.join(dir, f), { throwIfNoEntry: false })?.size ?? 0;
    try {
      return { folder, dir, manifest: readManifest(dir), bytes };
    } catch (e) {
      return { folder, dir, problem: (e as Error).message, bytes };
    }
  });
}

