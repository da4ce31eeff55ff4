// KVM or TCG? /dev/kvm can exist and still not run a normal kernel (a nested
// hypervisor such as PVM aborts or hangs QEMU). So "auto" boots the real kernel
// once with KVM in probe mode (init prints a marker and powers off) under a
// short deadline, and remembers the verdict per host kernel and QEMU build.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { AccelRequest } from '../core/config.ts';
import { UserError } from '../core/errors.ts';
import { buildQemuArgs, type Accel } from './qemu-args.ts';
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

function probeKey(kernel: Kernel) {
  return `${os.release()} ${kernel.release}`;
}

/** Boots the guest kernel once with KVM; true when it reaches init. */
async function probeKvm(kernel: Kernel, initramfs: string): Promise<boolean> {
  const log = path.join(os.tmpdir(), `sockmap-labs-kvm-probe-${process.pid}.log`);
  const q = new QemuProcess(
    buildQemuArgs({ kernelImage: kernel.image, kernelRelease: kernel.release, initramfs, accel: 'kvm', memoryMb: 256, cpus: 1, shares: {}, append: ['sml.probe=1'] }),
    log,
  );
  try {
    return (await q.waitFor('sml-init: PROBE-OK', PROBE_DEADLINE_MS)) === 'marker';
  } finally {
    await q.stop(500);
    fs.rmSync(log, { force: true });
  }
}

/**
 * The accelerator a VM of this kernel gets: the one asked for, or with 'auto'
 * KVM when a probe boot shows it works (the verdict is kept in cacheDir), else TCG.
 */
export async function chooseAccel(kernel: Kernel, initramfs: string, request: AccelRequest, cacheDir: string): Promise<AccelChoice> {
  if (request === 'tcg') return { accel: 'tcg' };
  if (request === 'kvm') {
    if (!kvmDeviceUsable()) throw new UserError('LAB_ACCEL=kvm but /dev/kvm cannot be opened', 'sudo usermod -aG kvm $USER (then log in again), or unset LAB_ACCEL');
    return { accel: 'kvm' };
  }
  if (!kvmDeviceUsable()) return { accel: 'tcg', notice: 'KVM is not available (/dev/kvm missing or not accessible): using TCG software emulation, which is slower' };
  let cache: Record<string, boolean> = {};
  try {
    cache = JSON.parse(fs.readFileSync(verdictFile(cacheDir), 'utf8'));
  } catch {
    /* no verdict yet */
  }
  const key = probeKey(kernel);
  if (!(key in cache)) {
    cache[key] = await probeKvm(kernel, initramfs);
    fs.mkdirSync(cacheDir, { recursive: true });
    fs.writeFileSync(verdictFile(cacheDir), JSON.stringify(cache, null, 2));
  }
  return cache[key]
    ? { accel: 'kvm' }
    : { accel: 'tcg', notice: '/dev/kvm exists but QEMU cannot boot this kernel with it (a nested hypervisor?): using TCG software emulation' };
}
