// `npm run doctor`: everything the labs need, checked, each miss with the exact
// command that fixes it. The session (vm/session.ts) runs the same machine
// checks (vm/preflight.ts) before it boots; doctor adds what the labs need.
import fs from 'node:fs';
import type { Config } from '../core/config.ts';
import { missingConfig } from '../vm/kernel.ts';
import { accelCheck, bootChecks, kernelChecks, toolCheck, type Check } from '../vm/preflight.ts';
import { kernelChoice } from '../vm/session.ts';
import { LAB_TOOLS, type Tool } from '../vm/tools.ts';
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

export async function allChecks(cfg: Config): Promise<Check[]> {
  const major = Number(process.versions.node.split('.')[0]);
  const checks: Check[] = [
    major >= 20
      ? { name: 'node', level: 'ok', detail: process.version }
      : { name: 'node', level: 'fail', detail: `${process.version}: Node 20 or newer needed`, fix: 'install Node.js 20 (nodejs.org or your distribution)' },
  ];
  const boot = await bootChecks(cfg.places.cacheDir);
  const choice = kernelChoice(cfg, cfg.machine.kernels[0]);
  checks.push(...boot, ...kernelChecks(choice));
  const labOptions = choice.config && labOptionsCheck(choice.config, cfg.places.labsDir);
  if (labOptions) checks.push(labOptions);
  // The accelerator a run would really use: the same probe, the same kept verdict.
  const canBoot = choice.kernel && !boot.some((c) => c.level === 'fail');
  checks.push(
    canBoot
      ? await accelCheck(choice.kernel!, cfg.machine.accel, cfg.places.cacheDir)
      : { name: 'acceleration', level: 'warn', detail: 'not known until QEMU and the guest kernel above are in place' },
  );
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
