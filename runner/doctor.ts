// `npm run doctor`: everything the labs need, checked, each miss with the exact
// command that fixes it. The session (vm/session.ts) runs the same machine
// checks (vm/preflight.ts) before it boots; doctor adds what the labs need.
// `doctor --backend host` checks the host kernel instead (hostChecks). In the
// default mode, the guest image, the host needs QEMU only: doctor checks that,
// the image, and the accelerator; `--rootfs host` adds the host's lab tools.
import fs from 'node:fs';
import os from 'node:os';
import type { Config } from '../core/config.ts';
import { hostConfigFile, probeHost, readHostConfig } from '../vm/host.ts';
import { compareVersions, missingConfig } from '../vm/kernel.ts';
import { accelCheck, bootChecks, imageChoice, kernelChecks, toolCheck, vngCheck, type Check } from '../vm/preflight.ts';
import { kernelChoice } from '../vm/session.ts';
import { HOST_TOOLS, LAB_TOOLS, type Tool } from '../vm/tools.ts';
import { discoverLabs, loadLab } from './labs.ts';
import type { Paint } from './style.ts';

const GUEST_PROGRAMS: Tool[] = [
  { bin: 'strace', pkg: 'strace', why: 'labs show errnos with it' },
  { bin: 'socat', pkg: 'socat', why: 'labs run servers with it' },
  { bin: 'ncat', pkg: 'ncat', why: "the talk's nc examples" },
  { bin: 'sockperf', pkg: 'sockperf', why: 'the bypass benchmark lab' },
  { bin: 'bash-static', pkg: 'bash-static', why: 'without it every step starts ~70 ms slower in the guest' },
];

/** Options individual labs need: a miss only skips those labs (the runner skips them itself). */
function labOptionsCheck(config: Map<string, string>, labsDir: string): Check | undefined {
  const skipped: string[] = [];
  for (const ref of discoverLabs(labsDir)) {
    try {
      const lack = missingConfig(config, loadLab(ref).spec.needs?.config ?? []);
      if (lack.length) skipped.push(`${ref.id} (${lack.join(', ')})`);
    } catch {
      /* `lab validate` reports broken lab files */
    }
  }
  return skipped.length ? { name: 'lab options', level: 'warn', detail: `these labs will be skipped: ${skipped.join('; ')}` } : undefined;
}

function nodeCheck(): Check {
  const major = Number(process.versions.node.split('.')[0]);
  return major >= 20
    ? { name: 'node', level: 'ok', detail: process.version }
    : { name: 'node', level: 'fail', detail: `${process.version}: Node 20 or newer needed`, fix: 'install Node.js 20 (nodejs.org or your distribution)' };
}

function libbpfCheck(): Check {
  const helpers = '/usr/include/bpf/bpf_helpers.h';
  return fs.existsSync(helpers)
    ? { name: 'libbpf headers', level: 'ok', detail: helpers }
    : { name: 'libbpf headers', level: 'fail', detail: 'missing: BPF programs include <bpf/bpf_helpers.h>', fix: 'sudo apt-get install -y libbpf-dev' };
}

export async function allChecks(cfg: Config): Promise<Check[]> {
  if (cfg.machine.backend === 'host') return hostChecks(cfg);
  const { machine, places } = cfg;
  // The guest image holds every program the labs run: the host needs QEMU alone.
  const image = machine.rootfs === 'image';
  const checks: Check[] = [nodeCheck()];
  const boot = await bootChecks(places.cacheDir, machine.rootfs, machine.arch);
  const choice = image ? await imageChoice(places.cacheDir, machine.arch) : kernelChoice(cfg, machine.kernels[0]);
  checks.push(...boot, ...kernelChecks(choice));
  if (cfg.machine.backend === 'vng') checks.push(vngCheck());
  const labOptions = choice.config && labOptionsCheck(choice.config, cfg.places.labsDir);
  if (labOptions) checks.push(labOptions);
  // The accelerator a run would really use: the same probe, the same kept verdict.
  const canBoot = choice.kernel && !boot.some((c) => c.level === 'fail');
  checks.push(
    canBoot
      ? await accelCheck(choice.kernel!, machine.accel, places.cacheDir, { arch: machine.arch, initramfs: choice.image?.initramfs })
      : { name: 'acceleration', level: 'warn', detail: `not known until QEMU and the guest ${image ? 'image' : 'kernel'} above are in place` },
  );
  if (image) return checks;
  checks.push(...LAB_TOOLS.map((t) => toolCheck(t)));
  checks.push(libbpfCheck());
  checks.push(...GUEST_PROGRAMS.map((t) => toolCheck(t, 'warn')));
  return checks;
}

/** What the host backend itself needs of the kernel: its namespaces, bpffs and cgroup2. */
const HOST_BACKEND_CONFIG = ['NAMESPACES', 'NET_NS', 'PID_NS', 'CGROUPS', 'BPF_SYSCALL'];

/** Labs and steps the host kernel would skip (their `needs`), with the reasons the runner gives. */
function hostLabsCheck(release: string, config: Map<string, string> | undefined, labsDir: string): Check {
  const unmet = (n?: { kernel?: string; config?: string[] }): string | undefined => {
    if (n?.kernel && compareVersions(release, n.kernel) < 0) return `kernel ${n.kernel}+`;
    const lack = config ? missingConfig(config, n?.config ?? []) : [];
    return lack.length ? lack.map((o) => `CONFIG_${o}`).join(', ') : undefined;
  };
  const labs: string[] = [];
  const steps: string[] = [];
  let count = 0;
  for (const ref of discoverLabs(labsDir)) {
    try {
      const spec = loadLab(ref).spec;
      count++;
      const why = unmet(spec.needs);
      if (why) {
        labs.push(`${ref.id} (${why})`);
        continue;
      }
      const byReason = new Map<string, number>();
      for (const st of spec.steps) {
        const w = unmet(st.needs);
        if (w) byReason.set(w, (byReason.get(w) ?? 0) + 1);
      }
      for (const [w, n] of byReason) steps.push(`${ref.id}: ${n} step${n > 1 ? 's' : ''} (${w})`);
    } catch {
      /* `lab validate` reports broken lab files */
    }
  }
  const parts = [labs.length ? `labs skipped: ${labs.join('; ')}` : `all ${count} labs run`, steps.length ? `steps skipped: ${steps.join('; ')}` : 'no step skipped'];
  return { name: 'labs on this kernel', level: labs.length || steps.length ? 'warn' : 'ok', detail: parts.join('; ') };
}

/**
 * `doctor --backend host`: what the host kernel offers the host backend, each
 * measured where it can be (the run's namespaces made, a map created), and the
 * labs and steps it would skip.
 */
export async function hostChecks(cfg: Config): Promise<Check[]> {
  const release = os.release();
  const root = process.getuid?.() === 0;
  const checks: Check[] = [
    nodeCheck(),
    { name: 'host kernel', level: 'ok', detail: `${release}: the steps run on it` },
    root
      ? { name: 'root', level: 'ok', detail: 'the steps run as root' }
      : { name: 'root', level: 'fail', detail: 'the host backend runs the steps as root', fix: 'sudo -E npm run doctor -- --backend host' },
    ...HOST_TOOLS.map((t) => toolCheck(t)),
    ...LAB_TOOLS.filter((t) => !HOST_TOOLS.some((h) => h.bin === t.bin)).map((t) => toolCheck(t)),
    libbpfCheck(),
  ];
  const toolsMissing = checks.some((c) => c.level === 'fail' && c.name !== 'root');
  if (toolsMissing && root) checks.push({ name: 'host namespaces', level: 'warn', detail: 'not checked: install the programs above first' });
  else checks.push(...(await probeHost(cfg.hooks.runTag)));
  const file = hostConfigFile(release);
  const config = readHostConfig(release);
  if (!config) {
    checks.push({
      name: 'kernel config',
      level: 'warn',
      detail: `none found (/boot/config-${release}, /proc/config.gz): labs that need an option this kernel lacks fail instead of being skipped`,
      fix: 'sudo modprobe configs   (gives /proc/config.gz when the kernel has IKCONFIG=m)',
    });
  } else {
    const lack = missingConfig(config, HOST_BACKEND_CONFIG);
    checks.push(
      lack.length
        ? { name: 'kernel config', level: 'fail', detail: `${file} lacks ${lack.map((o) => `CONFIG_${o}`).join(', ')}: the host backend needs them`, fix: 'use the VM backend: drop --backend host' }
        : { name: 'kernel config', level: 'ok', detail: `${file}${fs.existsSync(`/lib/modules/${release}`) ? '' : ' (no /lib/modules for it: =m options count as missing)'}` },
    );
  }
  checks.push(hostLabsCheck(release, config, cfg.places.labsDir));
  checks.push(...GUEST_PROGRAMS.filter((t) => t.bin !== 'bash-static').map((t) => toolCheck(t, 'warn')));
  return checks;
}

export function formatChecks(checks: Check[], p: Paint): string {
  const mark = { ok: p.green('✔'), warn: p.yellow('!'), fail: p.red('✖') };
  const w = Math.max(...checks.map((c) => c.name.length));
  return checks
    .map((c) => `${mark[c.level]} ${c.name.padEnd(w)}  ${c.detail}${c.fix ? `\n  ${' '.repeat(w)}  ${p.bold('fix:')} ${c.fix}` : ''}`)
    .join('\n');
}
