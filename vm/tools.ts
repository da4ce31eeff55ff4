// Host programs the VM backends need, each with the package that provides it,
// so a missing one is reported with the exact install command.
import path from 'node:path';
import { UserError } from '../core/errors.ts';
import { which } from '../core/which.ts';

export interface Tool {
  /** Program name looked up on PATH (or an absolute path). */
  bin: string;
  /** Debian/Ubuntu package that provides it. */
  pkg: string;
  why: string;
}

export const QEMU_TOOLS: Tool[] = [
  { bin: 'qemu-system-x86_64', pkg: 'qemu-system-x86', why: 'runs the lab VM' },
  { bin: 'ssh-keygen', pkg: 'openssh-client', why: 'makes the per-VM SSH keys' },
  { bin: '/usr/sbin/sshd', pkg: 'openssh-server', why: 'the SSH server the guest runs (from the host root)' },
  { bin: 'cpio', pkg: 'cpio', why: 'packs the initramfs' },
  { bin: 'setsid', pkg: 'util-linux', why: 'runs each step in its own process group' },
];

export const LAB_TOOLS: Tool[] = [
  { bin: 'bpftool', pkg: 'bpftool', why: 'the labs inspect maps and programs with it' },
  { bin: 'clang', pkg: 'clang', why: 'compiles the BPF programs' },
  { bin: 'make', pkg: 'make', why: 'builds the BPF programs and helpers' },
  { bin: 'cc', pkg: 'gcc', why: 'builds the userspace helpers' },
  { bin: 'ip', pkg: 'iproute2', why: 'network namespaces and veth pairs' },
];

function missingTools(tools: Tool[], envPath?: string): Tool[] {
  return tools.filter((t) => !which(t.bin, envPath));
}

/** Throws one UserError naming every missing program and the one command that installs them all. */
export function requireTools(tools: Tool[], envPath?: string): void {
  const missing = missingTools(tools, envPath);
  if (!missing.length) return;
  const pkgs = [...new Set(missing.map((t) => t.pkg))].join(' ');
  throw new UserError(
    `missing program${missing.length > 1 ? 's' : ''}: ${missing.map((t) => `${path.basename(t.bin)} (${t.why})`).join(', ')}`,
    `sudo apt-get install -y ${pkgs}`,
  );
}
