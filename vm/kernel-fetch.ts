// Puts a Debian kernel into the cache without root and without touching /boot:
// `apt-get download` the image package, `dpkg-deb -x` it, and `depmod` the
// unpacked modules (the .deb ships no modules.dep; its postinst would make it).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { UserError } from '../core/errors.ts';
import { describeKernel, kernelsDir, type Kernel } from './kernel.ts';

/** Debian's 6.12 kernel: every lab runs on it. */
export const DEFAULT_KERNEL_PACKAGE = 'linux-image-6.12-amd64';

/**
 * Follows a meta package (linux-image-6.12-amd64) to the versioned package that
 * holds the image (linux-image-6.12.117+deb12-amd64).
 */
async function resolveImagePackage(pkg: string): Promise<string> {
  const { $ } = await import('zx'); // loaded only when needed: it takes ~0.3 s
  for (let hops = 0; hops < 4; hops++) {
    if (/^linux-image-\d+\.\d+\.\d+/.test(pkg)) return pkg;
    const r = await $`apt-cache depends --important ${pkg}`.nothrow().quiet();
    const dep = /Depends: (linux-image-[^\s]+)/.exec(r.stdout)?.[1];
    if (r.exitCode !== 0 || !dep)
      throw new UserError(`apt does not know the package ${pkg}`, 'sudo apt-get update   (then run this command again)');
    pkg = dep;
  }
  throw new UserError(`cannot resolve ${pkg} to a kernel image package`);
}

/** Unpacks Debian's kernel package `pkg` into the cache's kernels folder (below cacheDir). */
export async function fetchDebianKernel(cacheDir: string, pkg = DEFAULT_KERNEL_PACKAGE, log: (s: string) => void = () => {}): Promise<Kernel> {
  const dir = kernelsDir(cacheDir);
  const { $ } = await import('zx'); // loaded only when needed: it takes ~0.3 s
  for (const tool of ['apt-get', 'apt-cache', 'dpkg-deb', 'depmod'])
    if ((await $`command -v ${tool}`.nothrow().quiet()).exitCode !== 0)
      throw new UserError(`${tool} is missing: fetching a Debian kernel needs apt, dpkg and kmod`, 'sudo apt-get install -y apt dpkg kmod');
  const imagePkg = await resolveImagePackage(pkg);
  const existing = path.join(dir, imagePkg);
  const done = path.join(existing, '.complete');
  if (fs.existsSync(done)) {
    log(`${imagePkg} is already in the cache`);
    return describeKernel(fs.readFileSync(done, 'utf8').trim(), 'cache');
  }
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sockmap-labs-kernel-'));
  try {
    log(`downloading ${imagePkg}`);
    const dl = await $({ cwd: tmp })`apt-get download ${imagePkg}`.nothrow().quiet();
    const deb = fs.readdirSync(tmp).find((f) => f.endsWith('.deb'));
    if (dl.exitCode !== 0 || !deb)
      throw new UserError(`apt-get download ${imagePkg} failed: ${dl.stderr.trim()}`, 'sudo apt-get update   (then run this command again)');
    const unpack = path.join(tmp, 'root');
    log(`unpacking ${deb}`);
    await $`dpkg-deb -x ${path.join(tmp, deb)} ${unpack}`.quiet();
    const image = fs.readdirSync(path.join(unpack, 'boot')).find((f) => f.startsWith('vmlinuz-'));
    if (!image) throw new UserError(`${deb} holds no /boot/vmlinuz-*: is ${pkg} a kernel image package?`);
    const release = image.slice('vmlinuz-'.length);
    log(`indexing modules of ${release} (depmod)`);
    await $`depmod -b ${unpack} ${release}`.quiet();
    fs.mkdirSync(dir, { recursive: true });
    fs.rmSync(existing, { recursive: true, force: true });
    fs.renameSync(unpack, existing);
    const imagePath = path.join(existing, 'boot', image);
    fs.writeFileSync(done, imagePath + '\n');
    return describeKernel(imagePath, 'cache');
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
