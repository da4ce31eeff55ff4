// `npm run doctor`: everything the labs need, checked, each miss with the exact
// command that fixes it. The runner runs the same checks before it boots.
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { kvmDeviceUsable } from '../vm/accel.ts';
import { cacheDir } from '../vm/cache.ts';
import { findStaticBusybox } from '../vm/initramfs.ts';
import { BASE_CONFIG, missingConfig, readConfig, resolveKernel, type Kernel } from '../vm/kernel.ts';
import { LAB_TOOLS, QEMU_TOOLS, which, type Tool } from '../vm/tools.ts';
import { UserError } from './errors.ts';
import { discoverLabs, loadLab } from './labs.ts';
import type { Paint } from './style.ts';

export type Level = 'ok' | 'warn' | 'fail';

export interface Check {
  name: string;
  level: Level;
  detail: string;
  fix?: string;
}

const GUEST_PROGRAMS: Tool[] = [
  { bin: 'strace', pkg: 'strace', why: 'labs show errnos with it' },
  { bin: 'socat', pkg: 'socat', why: 'labs run servers with it' },
  { bin: 'ncat', pkg: 'ncat', why: "the talk's nc examples" },
  { bin: 'sockperf', pkg: 'sockperf', why: 'the bypass benchmark lab' },
  { bin: 'bash-static', pkg: 'bash-static', why: 'without it every step starts ~70 ms slower in the guest' },
];

function toolCheck(t: Tool, level: Level = 'fail'): Check {
  const found = which(t.bin);
  return found
    ? { name: path.basename(t.bin), level: 'ok', detail: found }
    : { name: path.basename(t.bin), level, detail: `missing: ${t.why}`, fix: `sudo apt-get install -y ${t.pkg}` };
}

function kernelChecks(explicit: string | undefined, labNeeds: boolean): { checks: Check[]; kernel?: Kernel } {
  let kernel: Kernel;
  try {
    kernel = resolveKernel({ explicit });
  } catch (e) {
    const u = e as UserError;
    return { checks: [{ name: 'guest kernel', level: 'fail', detail: u.message, fix: u.fix }] };
  }
  const checks: Check[] = [{ name: 'guest kernel', level: 'ok', detail: `${kernel.release} (${kernel.source}: ${kernel.image})` }];
  const config = readConfig(kernel);
  if (!config) {
    checks.push({ name: 'kernel config', level: 'warn', detail: 'no config file found beside the kernel: required options cannot be checked' });
    return { checks, kernel };
  }
  const missing = missingConfig(config, BASE_CONFIG);
  checks.push(
    missing.length
      ? { name: 'kernel config', level: 'fail', detail: `lacks ${missing.map((m) => `CONFIG_${m}`).join(', ')}`, fix: 'npm run kernels -- fetch   (Debian 6.12 has them all)' }
      : { name: 'kernel config', level: 'ok', detail: `${BASE_CONFIG.length} required options present` },
  );
  // Options individual labs need: a miss only skips those labs (a warning for
  // doctor; the runner skips such a lab itself, and does not read every lab here).
  if (!labNeeds) return { checks, kernel };
  const skipped: string[] = [];
  for (const ref of discoverLabs()) {
    try {
      const need = loadLab(ref).spec.needs?.config ?? [];
      const lack = missingConfig(config, need);
      if (lack.length) skipped.push(`${ref.id} (${lack.join(', ')})`);
    } catch {
      /* `lab validate` reports broken lab files */
    }
  }
  if (skipped.length) checks.push({ name: 'lab options', level: 'warn', detail: `these labs will be skipped: ${skipped.join('; ')}` });
  return { checks, kernel };
}

async function portCheck(): Promise<Check> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', (e) => resolve({ name: 'local port', level: 'fail', detail: `cannot listen on 127.0.0.1: ${e.message}` }));
    s.listen(0, '127.0.0.1', () => s.close(() => resolve({ name: 'local port', level: 'ok', detail: '127.0.0.1 has free ports for SSH' })));
  });
}

function diskCheck(): Check {
  const dir = cacheDir();
  let probe = dir;
  while (!fs.existsSync(probe)) probe = path.dirname(probe);
  try {
    fs.accessSync(probe, fs.constants.W_OK);
  } catch {
    return { name: 'cache', level: 'fail', detail: `${dir} is not writable`, fix: `export LAB_CACHE_DIR=$HOME/.cache/sockmap-labs   (any writable folder)` };
  }
  const st = fs.statfsSync(probe);
  const freeGiB = (st.bavail * st.bsize) / 2 ** 30;
  return freeGiB < 1
    ? { name: 'cache', level: 'fail', detail: `only ${freeGiB.toFixed(1)} GiB free under ${probe}`, fix: 'free disk space (a kernel takes ~120 MB)' }
    : { name: 'cache', level: 'ok', detail: `${dir}, ${freeGiB.toFixed(0)} GiB free` };
}

/**
 * What the QEMU backend needs before it can boot; 'fail' entries stop the runner.
 * labNeeds: also warn about labs this kernel will skip (doctor's table).
 */
export async function vmChecks(explicitKernel?: string, labNeeds = false): Promise<Check[]> {
  const checks: Check[] = QEMU_TOOLS.map((t) => toolCheck(t));
  try {
    checks.push({ name: 'busybox', level: 'ok', detail: `${findStaticBusybox()} (static)` });
  } catch (e) {
    checks.push({ name: 'busybox', level: 'fail', detail: (e as UserError).message, fix: (e as UserError).fix });
  }
  checks.push(...kernelChecks(explicitKernel, labNeeds).checks);
  checks.push(
    kvmDeviceUsable()
      ? { name: 'acceleration', level: 'ok', detail: '/dev/kvm is usable (a probe boot confirms KVM works before it is used)' }
      : { name: 'acceleration', level: 'warn', detail: 'no usable /dev/kvm: VMs run under TCG software emulation (slower, still correct)' },
  );
  checks.push(await portCheck(), diskCheck());
  return checks;
}

export async function allChecks(explicitKernel?: string): Promise<Check[]> {
  const major = Number(process.versions.node.split('.')[0]);
  const checks: Check[] = [
    major >= 20
      ? { name: 'node', level: 'ok', detail: process.version }
      : { name: 'node', level: 'fail', detail: `${process.version}: Node 20 or newer needed`, fix: 'install Node.js 20 (nodejs.org or your distribution)' },
  ];
  checks.push(...(await vmChecks(explicitKernel, true)));
  checks.push(...LAB_TOOLS.map((t) => toolCheck(t)));
  const helpers = '/usr/include/bpf/bpf_helpers.h';
  checks.push(
    fs.existsSync(helpers)
      ? { name: 'libbpf headers', level: 'ok', detail: helpers }
      : { name: 'libbpf headers', level: 'fail', detail: 'missing: BPF programs include <bpf/bpf_helpers.h>', fix: 'sudo apt-get install -y libbpf-dev' },
  );
  checks.push(...GUEST_PROGRAMS.map((t) => toolCheck(t, 'warn')));
  return checks;
}

export function formatChecks(checks: Check[], p: Paint): string {
  const mark = { ok: p.green('✔'), warn: p.yellow('!'), fail: p.red('✖') };
  const w = Math.max(...checks.map((c) => c.name.length));
  return checks
    .map((c) => `${mark[c.level]} ${c.name.padEnd(w)}  ${c.detail}${c.fix ? `\n  ${' '.repeat(w)}  ${p.bold('fix:')} ${c.fix}` : ''}`)
    .join('\n');
}

/** Throws one UserError with the table of failed checks, or returns the warnings. */
export function requirePassing(checks: Check[], p: Paint): Check[] {
  const failed = checks.filter((c) => c.level === 'fail');
  if (failed.length)
    throw new UserError(
      `${failed.length} thing${failed.length > 1 ? 's' : ''} the VM needs ${failed.length > 1 ? 'are' : 'is'} missing:`,
      failed.length === 1 ? failed[0].fix : 'the commands above; npm run doctor checks again',
      formatChecks(failed, p),
    );
  return checks.filter((c) => c.level === 'warn');
}
