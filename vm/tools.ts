// Host programs the VM backends need, each with the package that provides it,
// so a missing one is reported with the exact install command.
import path from 'node:path';
import type { GuestArch } from '../core/arch.ts';
import { UserError } from '../core/errors.ts';
import { which } from '../core/which.ts';

export interface Tool {
  /** Program name looked up on PATH (or an absolute path). */
  bin: string;
  /** Debian/Ubuntu package that provides it. */
  pkg: string;
  /** Homebrew formula that provides it, where a Mac needs it (QEMU only). */
  brew?: string;
  why: string;
}

/** Who needs a program: the QEMU backend (host root), the QEMU backend booting the amd64 or arm64 guest image, the labs (built and run from the host), the host backend. */
type Need = 'qemu' | 'image' | 'image-arm64' | 'lab' | 'host';

/** Every host program we look for, once, with what needs it. */
const TOOLS: (Tool & { for: Need[] })[] = [
  { for: ['qemu', 'image'], bin: 'qemu-system-x86_64', pkg: 'qemu-system-x86', brew: 'qemu', why: 'runs the lab VM' },
  { for: ['image-arm64'], bin: 'qemu-system-aarch64', pkg: 'qemu-system-arm', brew: 'qemu', why: 'runs the arm64 lab VM' },
  { for: ['qemu'], bin: 'ssh-keygen', pkg: 'openssh-client', why: 'makes the per-VM SSH keys' },
  { for: ['qemu'], bin: '/usr/sbin/sshd', pkg: 'openssh-server', why: 'the SSH server the guest runs (from the host root)' },
  { for: ['qemu'], bin: 'cpio', pkg: 'cpio', why: 'packs the initramfs' },
  { for: ['qemu'], bin: 'setsid', pkg: 'util-linux', why: 'runs each step in its own process group' },
  { for: ['lab'], bin: 'bpftool', pkg: 'bpftool', why: 'the labs inspect maps and programs with it' },
  { for: ['lab'], bin: 'clang', pkg: 'clang', why: 'compiles the BPF programs' },
  { for: ['lab'], bin: 'make', pkg: 'make', why: 'builds the BPF programs and helpers' },
  { for: ['lab'], bin: 'cc', pkg: 'gcc', why: 'builds the userspace helpers' },
  { for: ['lab', 'host'], bin: 'ip', pkg: 'iproute2', why: "network namespaces and veth pairs; brings up the host run's loopback" },
  { for: ['host'], bin: 'unshare', pkg: 'util-linux', why: "makes the run's mount, network and pid namespaces" },
  { for: ['host'], bin: 'nsenter', pkg: 'util-linux', why: "runs each step in the run's namespaces" },
  { for: ['host'], bin: 'mount', pkg: 'mount', why: 'mounts the private bpffs, cgroup2, /sys and /run' },
  { for: ['host'], bin: 'find', pkg: 'findutils', why: "removes the run's cgroups" },
];

const toolsFor = (need: Need): Tool[] => TOOLS.filter((t) => t.for.includes(need));
export const QEMU_TOOLS = toolsFor('qemu');
/** What booting the guest image needs on the host: QEMU alone (the one for the guest's architecture). */
export const imageTools = (arch: GuestArch): Tool[] => toolsFor(arch === 'arm64' ? 'image-arm64' : 'image');
export const LAB_TOOLS = toolsFor('lab');
/** Programs the host backend itself runs. */
export const HOST_TOOLS = toolsFor('host');

/** The command that installs these programs here: Homebrew on a Mac (for what it has), apt elsewhere. */
export function installCommand(tools: Tool[], platform: NodeJS.Platform = process.platform): string {
  if (platform === 'darwin' && tools.every((t) => t.brew)) return `brew install ${[...new Set(tools.map((t) => t.brew))].join(' ')}`;
  return `sudo apt-get install -y ${[...new Set(tools.map((t) => t.pkg))].join(' ')}`;
}

function missingTools(tools: Tool[], envPath?: string): Tool[] {
  return tools.filter((t) => !which(t.bin, envPath));
}

/** Throws one UserError naming every missing program and the one command that installs them all. */
export function requireTools(tools: Tool[], envPath?: string): void {
  const missing = missingTools(tools, envPath);
  if (!missing.length) return;
  throw new UserError(`missing program${missing.length > 1 ? 's' : ''}: ${missing.map((t) => `${path.basename(t.bin)} (${t.why})`).join(', ')}`, installCommand(missing));
}
