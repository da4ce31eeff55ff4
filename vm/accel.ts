// KVM, HVF or TCG? A hardware accelerator runs a guest of the host's own
// architecture only: KVM on Linux, HVF (Hypervisor.framework) on macOS; any
// other guest, say arm64 on an x86_64 laptop, runs under TCG. And /dev/kvm can
// exist and still not run a normal kernel (a nested hypervisor such as PVM
// aborts or hangs QEMU). So "auto" boots the real kernel once with the
// accelerator in probe mode (init prints a marker and powers off) under a
// short deadline, and remembers the verdict per host kernel and guest kernel.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { hostArch, type GuestArch } from '../core/arch.ts';
import type { AccelRequest } from '../core/config.ts';
import { UserError } from '../core/errors.ts';
import { buildQemuArgs, QEMU_BINARIES, type Accel } from './qemu-args.ts';
import { QemuProcess } from './qemu-process.ts';
import type { Kernel } from './kernel.ts';

interface AccelChoice {
  accel: Accel;
  /** One line for the user when we fell back, or why we chose what we chose. */
  notice?: string;
}

/** Can this user open /dev/kvm for reading and writing? */
export function kvmDeviceUsable(dev = '/dev/kvm'): boolean {
  try {
    fs.accessSync(dev, fs.constants.R_OK | fs.constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

const PROBE_DEADLINE_MS = 20_000;

const verdictFile = (cacheDir: string) => path.join(cacheDir, 'kvm-probe.json');

function probeKey(kernel: Kernel, accel: Accel) {
  return `${accel === 'kvm' ? '' : `${accel} `}${os.release()} ${kernel.release}`;
}

/** Boots the guest kernel once with the accelerator; true when it reaches init. */
async function probe(kernel: Kernel, initramfs: string, accel: Accel, arch: GuestArch): Promise<boolean> {
  const log = path.join(os.tmpdir(), `sockmap-labs-${accel}-probe-${process.pid}.log`);
  const q = new QemuProcess(
    buildQemuArgs({ arch, kernelImage: kernel.image, kernelRelease: kernel.release, initramfs, accel, memoryMb: 256, cpus: 1, shares: {}, append: ['sml.probe=1'] }),
    log,
    QEMU_BINARIES[arch],
  );
  try {
    return (await q.waitFor('sml-init: PROBE-OK', PROBE_DEADLINE_MS)) === 'marker';
  } finally {
    await q.stop(500);
    fs.rmSync(log, { force: true });
  }
}

/** The hardware accelerator of this host's OS: KVM on Linux, HVF on macOS, none elsewhere. */
export const hostAccel = (platform: NodeJS.Platform = process.platform): Accel | undefined =>
  platform === 'linux' ? 'kvm' : platform === 'darwin' ? 'hvf' : undefined;

/**
 * The accelerator a VM of this kernel gets: the one asked for, or with 'auto'
 * the host's (KVM, HVF) when the guest is of the host's architecture and a
 * probe boot shows it works (the verdict is kept in cacheDir), else TCG.
 */
export async function chooseAccel(kernel: Kernel, initramfs: string, request: AccelRequest, cacheDir: string, arch: GuestArch = 'amd64'): Promise<AccelChoice> {
  if (request === 'tcg') return { accel: 'tcg' };
  const native = hostAccel();
  const foreign = arch !== hostArch();
  if (request !== 'auto') {
    if (foreign) throw new UserError(`LAB_ACCEL=${request} cannot run an ${arch} guest on this ${hostArch() ?? process.arch} machine: only TCG emulates another architecture`, 'unset LAB_ACCEL');
    if (request !== native) throw new UserError(`LAB_ACCEL=${request} is not available on ${process.platform}${native ? `: its accelerator is ${native}` : ''}`, 'unset LAB_ACCEL');
    if (request === 'kvm' && !kvmDeviceUsable()) throw new UserError('LAB_ACCEL=kvm but /dev/kvm cannot be opened', 'sudo usermod -aG kvm $USER (then log in again), or unset LAB_ACCEL');
    return { accel: request };
  }
  if (foreign) return { accel: 'tcg', notice: `an ${arch} guest on this ${hostArch() ?? process.arch} machine runs under TCG software emulation (slower; correct)` };
  if (!native) return { accel: 'tcg', notice: `no hardware accelerator on ${process.platform}: using TCG software emulation, which is slower` };
  if (native === 'kvm' && !kvmDeviceUsable()) return { accel: 'tcg', notice: 'KVM is not available (/dev/kvm missing or not accessible): using TCG software emulation, which is slower' };
  let cache: Record<string, boolean> = {};
  try {
    cache = JSON.parse(fs.readFileSync(verdictFile(cacheDir), 'utf8'));
  } catch {
    /* no verdict yet */
  }
  const key = probeKey(kernel, native);
  if (!(key in cache)) {
    cache[key] = await probe(kernel, initramfs, native, arch);
    fs.mkdirSync(cacheDir, { recursive: true });
    fs.writeFileSync(verdictFile(cacheDir), JSON.stringify(cache, null, 2));
  }
  if (cache[key]) return { accel: native };
  return native === 'kvm'
    ? { accel: 'tcg', notice: '/dev/kvm exists but QEMU cannot boot this kernel with it (a nested hypervisor?): using TCG software emulation' }
    : { accel: 'tcg', notice: 'QEMU cannot boot this kernel with HVF (Hypervisor.framework): using TCG software emulation' };
}
