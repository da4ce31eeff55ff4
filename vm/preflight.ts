// What a machine needs before it can boot, checked before anything is built or
// booted, each miss with the exact command that fixes it. The session stops a
// run on a failed check; `npm run doctor` shows every check.
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { AccelRequest, Rootfs } from '../core/config.ts';
import { UserError } from '../core/errors.ts';
import { which } from '../core/which.ts';
import { chooseAccel } from './accel.ts';
import { hostArch, type GuestArch } from '../core/arch.ts';
import { openImage, type GuestImage } from './image-verify.ts';
import { ensureInitramfs, findStaticBusybox } from './initramfs.ts';
import { BASE_CONFIG, FETCH_KERNEL_FIX, missingConfig, readConfig, resolveKernel, type Kernel } from './kernel.ts';
import { imageTools, installCommand, QEMU_TOOLS, type Tool } from './tools.ts';
import { checkVngHost } from './vng.ts';

type Level = 'ok' | 'warn' | 'fail';

export interface Check {
  name: string;
  level: Level;
  detail: string;
  fix?: string;
}

export function toolCheck(t: Tool, level: Level = 'fail'): Check {
  const found = which(t.bin);
  return found
    ? { name: path.basename(t.bin), level: 'ok', detail: found }
    : { name: path.basename(t.bin), level, detail: `missing: ${t.why}`, fix: installCommand([t]) };
}

/** A guest kernel, resolved once for a run: the kernel and its build config, or why there is none. */
export interface KernelChoice {
  kernel?: Kernel;
  config?: Map<string, string>;
  problem?: UserError;
  /** The guest image the kernel comes from (--rootfs image). */
  image?: GuestImage;
}

/** The guest image for this architecture (checked: never a corrupt one), with its kernel. */
export async function imageChoice(cacheDir: string, arch: GuestArch): Promise<KernelChoice> {
  try {
    const image = await openImage(cacheDir, arch);
    const kernel: Kernel = { image: image.kernel, release: image.manifest.kernelRelease, modulesDir: '', configPath: image.config, source: 'image' };
    return { kernel, config: readConfig(kernel), image };
  } catch (e) {
    if (e instanceof UserError) return { problem: e };
    throw e;
  }
}

/** Resolves the kernel (an image the user named, else the cache's, else /boot's) and reads its config. */
export function chooseKernel(o: { image?: string; source?: 'option' | 'env'; kernelsDir: string }): KernelChoice {
  try {
    const kernel = resolveKernel({ explicit: o.image, source: o.source, cache: o.kernelsDir });
    return { kernel, config: readConfig(kernel) };
  } catch (e) {
    if (e instanceof UserError) return { problem: e };
    throw e;
  }
}

/** The guest kernel exists, and its config has what every lab needs. */
export function kernelChecks(c: KernelChoice): Check[] {
  if (!c.kernel) return [{ name: 'guest kernel', level: 'fail', detail: c.problem?.message ?? 'no guest kernel', fix: c.problem?.fix }];
  const k = c.kernel;
  const checks: Check[] = [{ name: 'guest kernel', level: 'ok', detail: `${k.release} (${k.source}: ${k.image})` }];
  if (!c.config) {
    checks.push({ name: 'kernel config', level: 'warn', detail: 'no config file found beside the kernel: required options cannot be checked' });
    return checks;
  }
  const missing = missingConfig(c.config, BASE_CONFIG);
  checks.push(
    missing.length
      ? {
          name: 'kernel config',
          level: 'fail',
          detail: `lacks ${missing.map((m) => `CONFIG_${m}`).join(', ')}, which every lab needs`,
          // The guest image's kernel comes with the image: the fix is another image, not a host-root kernel.
          fix:
            k.source === 'image'
              ? `this guest image is not a sound one: build it again, npm run image build${c.image?.manifest.arch && c.image.manifest.arch !== hostArch() ? ` -- --arch ${c.image.manifest.arch}` : ''}   (or import an instructor's: npm run image import FILE)`
              : `use the default kernel: ${FETCH_KERNEL_FIX}   (Debian's 6.12 has them all)`,
        }
      : { name: 'kernel config', level: 'ok', detail: `${BASE_CONFIG.length} required options present` },
  );
  return checks;
}

async function portCheck(): Promise<Check> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', (e) => resolve({ name: 'local port', level: 'fail', detail: `cannot listen on 127.0.0.1: ${e.message}` }));
    s.listen(0, '127.0.0.1', () => s.close(() => resolve({ name: 'local port', level: 'ok', detail: '127.0.0.1 has free ports for SSH' })));
  });
}

function diskCheck(cacheDir: string): Check {
  let probe = cacheDir;
  while (!fs.existsSync(probe)) probe = path.dirname(probe);
  try {
    fs.accessSync(probe, fs.constants.W_OK);
  } catch {
    return { name: 'cache', level: 'fail', detail: `${cacheDir} is not writable`, fix: `export LAB_CACHE_DIR=$HOME/.cache/sockmap-labs   (any writable folder)` };
  }
  const st = fs.statfsSync(probe);
  const freeGiB = (st.bavail * st.bsize) / 2 ** 30;
  return freeGiB < 1
    ? { name: 'cache', level: 'fail', detail: `only ${freeGiB.toFixed(1)} GiB free under ${probe}`, fix: 'free disk space (a kernel takes ~120 MB)' }
    : { name: 'cache', level: 'ok', detail: `${cacheDir}, ${freeGiB.toFixed(0)} GiB free` };
}

/**
 * What booting a VM needs on the host: QEMU and its helpers, a static busybox,
 * a port, a writable cache. The guest image brings all but QEMU and the cache.
 */
export async function bootChecks(cacheDir: string, rootfs: Rootfs = 'host', arch: GuestArch = 'amd64'): Promise<Check[]> {
  if (rootfs === 'image') return [...imageTools(arch).map((t) => toolCheck(t)), diskCheck(cacheDir)];
  const checks: Check[] = QEMU_TOOLS.map((t) => toolCheck(t));
  try {
    checks.push({ name: 'busybox', level: 'ok', detail: `${findStaticBusybox()} (static)` });
  } catch (e) {
    checks.push({ name: 'busybox', level: 'fail', detail: (e as UserError).message, fix: (e as UserError).fix });
  }
  checks.push(await portCheck(), diskCheck(cacheDir));
  return checks;
}

/** virtme-ng and what its guest takes from the host (sshd, busybox, udev), for --backend vng. */
export function vngCheck(): Check {
  try {
    return { name: 'vng', level: 'ok', detail: checkVngHost() };
  } catch (e) {
    if (!(e instanceof UserError)) throw e;
    return { name: 'vng', level: 'fail', detail: e.message, fix: e.fix };
  }
}

/**
 * The accelerator a run would use, found the way a run finds it (the same
 * probe boot, whose verdict is kept): what doctor reports.
 */
export async function accelCheck(kernel: Kernel, request: AccelRequest, cacheDir: string, o: { arch?: GuestArch; initramfs?: string } = {}): Promise<Check> {
  if (request === 'tcg') return { name: 'acceleration', level: 'ok', detail: 'TCG software emulation (LAB_ACCEL=tcg)' };
  try {
    // The guest image brings its initramfs; a VM on the host's root gets one built from the host's busybox.
    const initrd = o.initramfs ?? (await ensureInitramfs(kernel, cacheDir)).path;
    const choice = await chooseAccel(kernel, initrd, request, cacheDir, o.arch);
    if (choice.accel === 'tcg') return { name: 'acceleration', level: 'warn', detail: choice.notice ?? 'TCG software emulation' };
    const name = choice.accel === 'kvm' ? 'KVM' : 'HVF (Hypervisor.framework)';
    return { name: 'acceleration', level: 'ok', detail: `${name} (${request === 'auto' ? 'a probe boot of this kernel confirmed it works' : `LAB_ACCEL=${request}`})` };
  } catch (e) {
    if (!(e instanceof UserError)) throw e;
    return { name: 'acceleration', level: 'fail', detail: e.message, fix: e.fix };
  }
}

/** Throws one UserError with the table of failed checks (shown by `format`), or returns the warnings. */
export function requirePassing(checks: Check[], format: (failed: Check[]) => string): Check[] {
  const failed = checks.filter((c) => c.level === 'fail');
  if (failed.length)
    throw new UserError(
      `${failed.length} thing${failed.length > 1 ? 's' : ''} the VM needs ${failed.length > 1 ? 'are' : 'is'} missing:`,
      failed.length === 1 ? failed[0].fix : 'the commands above; npm run doctor checks again',
      format(failed),
    );
  return checks.filter((c) => c.level === 'warn');
}
