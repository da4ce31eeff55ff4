// Finding the guest kernel, and reading its version and build config.
//
// Order of preference: an explicit path (--kernel or LAB_KERNEL, see
// core/config.ts), a kernel the set-up step unpacked into the cache, then the
// newest /boot/vmlinuz-* that has its modules under /lib/modules.
import fs from 'node:fs';
import path from 'node:path';
import { UserError } from '../core/errors.ts';

export interface Kernel {
  /** The bzImage to boot. */
  image: string;
  /** Its release string, as `uname -r` prints it in the guest. */
  release: string;
  /** Where the kernel's modules live on the host (mounted at /lib/modules/<release> in the guest). */
  modulesDir: string;
  /** Its build config, when found. */
  configPath?: string;
  source: 'option' | 'env' | 'cache' | 'boot' | 'image';
}

/** The options every lab needs from the guest kernel. */
export const BASE_CONFIG = [
  'BPF_SYSCALL',
  'INET',
  'NET_SOCK_MSG',
  'CGROUP_BPF',
  'NET_9P',
  '9P_FS',
  'NET_9P_VIRTIO',
  'VIRTIO_NET',
  'VIRTIO_PCI',
];

/** The command that puts the default kernel into the cache. */
export const FETCH_KERNEL_FIX = 'npm run kernels -- fetch';

/**
 * Reads the release string out of an x86 bzImage header: the 16-bit field at
 * 0x20e points (minus 0x200) at a NUL-terminated "6.12.1-amd64 (builder@…) #1 …".
 */
export function readKernelRelease(image: string, source: Kernel['source'] = 'cache'): string {
  // Where the path came from decides the fix: a path the user typed (or set in LAB_KERNEL) is checked, not re-fetched.
  const named = source === 'option' ? `--kernel ${image}` : source === 'env' ? `LAB_KERNEL=${image}` : image;
  const pathFix =
    source === 'option'
      ? `check the path given to --kernel (a vmlinuz file, e.g. /boot/vmlinuz-$(uname -r)), or drop --kernel for the default`
      : source === 'env'
        ? `check the path in LAB_KERNEL (a vmlinuz file), or unset LAB_KERNEL for the default`
        : FETCH_KERNEL_FIX;
  let st: fs.Stats;
  try {
    st = fs.statSync(image);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'EACCES') throw new UserError(`cannot read the kernel image ${named} (permission denied)`, `sudo chmod a+r ${image}`);
    throw new UserError(`kernel image ${named} does not exist`, pathFix);
  }
  if (st.isDirectory()) {
    let inside: string[] = [];
    try {
      inside = fs.readdirSync(image).filter((f) => f.startsWith('vmlinuz')).map((f) => path.join(image, f));
    } catch {
      /* listed only as a hint */
    }
    throw new UserError(`kernel image ${named} is a folder, not a kernel file`, inside.length ? `name the file: ${source === 'env' ? 'LAB_KERNEL=' : '--kernel '}${inside[0]}` : pathFix);
  }
  // Never open a FIFO, a socket or a device: a FIFO would block, a device is not a kernel.
  if (!st.isFile()) throw new UserError(`kernel image ${named} is not a regular file`, pathFix);
  let fd: number;
  try {
    fd = fs.openSync(image, 'r');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'EACCES')
      throw new UserError(`cannot read the kernel image ${named} (permission denied)`, `sudo chmod a+r ${image}`);
    throw new UserError(`cannot read the kernel image ${named} (${err.code})`, pathFix);
  }
  try {
    const head = Buffer.alloc(0x210);
    fs.readSync(fd, head, 0, head.length, 0);
    if (head.toString('latin1', 0x202, 0x206) !== 'HdrS')
      throw new UserError(`${named} is not a bootable x86 kernel image (no bzImage header)`, source === 'option' || source === 'env' ? pathFix : `pass a vmlinuz file, or: ${FETCH_KERNEL_FIX}`);
    const at = head.readUInt16LE(0x20e) + 0x200;
    const buf = Buffer.alloc(256);
    fs.readSync(fd, buf, 0, buf.length, at);
    const text = buf.toString('latin1');
    const release = text.slice(0, text.search(/[\s\0]/));
    if (!/^\d+\.\d+/.test(release)) throw new UserError(`cannot read the version of kernel ${image}`);
    return release;
  } finally {
    fs.closeSync(fd);
  }
}

/** `CONFIG_FOO=y` lines into a map FOO → 'y' | 'm' | value. */
export function parseConfig(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^CONFIG_([A-Za-z0-9_]+)=(.*)$/.exec(line);
    if (m) out.set(m[1], m[2]);
  }
  return out;
}

/** Options from `wanted` that the config lacks (neither built in nor a module). */
export function missingConfig(config: Map<string, string>, wanted: string[]): string[] {
  return wanted.filter((o) => {
    const v = config.get(o.replace(/^CONFIG_/, ''));
    return v !== 'y' && v !== 'm';
  });
}

export function readConfig(kernel: Kernel): Map<string, string> | undefined {
  if (!kernel.configPath) return undefined;
  return parseConfig(fs.readFileSync(kernel.configPath, 'utf8'));
}

/** Compares two kernel versions by their leading numbers: "6.12.117+deb12-amd64" vs "5.15". */
export function compareVersions(a: string, b: string): number {
  const nums = (v: string) => (/^[\d.]+/.exec(v)?.[0] ?? '0').split('.').filter(Boolean).map(Number);
  const x = nums(a);
  const y = nums(b);
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (x[i] ?? 0) - (y[i] ?? 0);
    if (d !== 0) return Math.sign(d);
  }
  return 0;
}

function firstExisting(candidates: string[]): string | undefined {
  return candidates.find((p) => fs.existsSync(p));
}

/** Describes a kernel image: its release, modules and config, looked up beside it. */
export function describeKernel(image: string, source: Kernel['source'], libModules = '/lib/modules'): Kernel {
  const abs = path.resolve(image);
  const release = readKernelRelease(abs, source);
  // A kernel unpacked from a .deb sits in <root>/boot with modules in <root>/lib/modules.
  const root = path.resolve(path.dirname(abs), '..');
  const modulesDir = firstExisting([path.join(root, 'lib/modules', release), path.join(libModules, release)]);
  if (!modulesDir)
    throw new UserError(
      `kernel ${abs} (${release}) has no modules directory: looked in ${path.join(root, 'lib/modules', release)} and ${path.join(libModules, release)}`,
      `install its modules, or use the default kernel: ${FETCH_KERNEL_FIX}`,
    );
  const configPath = firstExisting([
    path.join(path.dirname(abs), `config-${release}`),
    path.join(modulesDir, 'config'),
    path.join(modulesDir, 'build/.config'),
    `/boot/config-${release}`,
  ]);
  return { image: abs, release, modulesDir, configPath, source };
}

/** The cache's folder of unpacked kernels. */
export const kernelsDir = (cacheDir: string) => path.join(cacheDir, 'kernels');

/** Kernels unpacked in the cache, newest first. */
export function cachedKernels(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  const images: string[] = [];
  for (const entry of fs.readdirSync(dir)) {
    const boot = path.join(dir, entry, 'boot');
    if (!fs.existsSync(boot)) continue;
    for (const f of fs.readdirSync(boot)) if (f.startsWith('vmlinuz-')) images.push(path.join(boot, f));
  }
  return images.sort((a, b) => compareVersions(path.basename(b).slice(8), path.basename(a).slice(8)));
}

/** /boot kernels that have matching modules, newest first. */
export function bootKernels(bootDir = '/boot', libModules = '/lib/modules'): string[] {
  if (!fs.existsSync(bootDir)) return [];
  return fs
    .readdirSync(bootDir)
    .filter((f) => f.startsWith('vmlinuz-') && fs.existsSync(path.join(libModules, f.slice(8))))
    .sort((a, b) => compareVersions(b.slice(8), a.slice(8)))
    .map((f) => path.join(bootDir, f));
}

interface ResolveOptions {
  /** A kernel image named by the user (--kernel, or LAB_KERNEL: `source` tells which). */
  explicit?: string;
  source?: 'option' | 'env';
  /** The cache's kernels folder (kernelsDir). */
  cache: string;
  bootDir?: string;
  libModules?: string;
}

export function resolveKernel(opts: ResolveOptions): Kernel {
  const libModules = opts.libModules ?? '/lib/modules';
  if (opts.explicit) return describeKernel(opts.explicit, opts.source ?? 'option', libModules);
  const cached = cachedKernels(opts.cache);
  if (cached.length) return describeKernel(cached[0], 'cache', libModules);
  const boot = bootKernels(opts.bootDir ?? '/boot', libModules);
  if (boot.length) return describeKernel(boot[0], 'boot', libModules);
  throw new UserError(
    'no guest kernel found: none given with --kernel or LAB_KERNEL, none in the cache, none in /boot with modules in /lib/modules',
    FETCH_KERNEL_FIX,
  );
}
