// The QEMU command line of a lab VM, as a pure function (unit-tested).
//
// The guest boots our initramfs, which mounts the host's root read-only over
// 9p (the idea virtme-ng uses) plus three more read-only shares: the project
// checkout, the guest kernel's modules and this VM's private files.
//
// The runner reaches the guest one of two ways:
//   ssh     QEMU's user-mode network with restrict=on (the guest reaches nothing
//           outside), and SSH forwarded from 127.0.0.1 to the guest's sshd;
//   serial  no network device at all: a virtio-serial port for the step agent and
//           a virtio console for the shell, whose host ends are unix sockets that
//           QEMU listens on (in the VM's own 0700 folder). See vm/serial.ts.

import type { GuestArch } from '../core/arch.ts';

/** kvm (Linux, guest arch = host arch), hvf (macOS, likewise), or tcg (software, any guest on any host). */
export type Accel = 'kvm' | 'hvf' | 'tcg';

export interface QemuArgsInput {
  /** The guest's architecture (default amd64): x86_64 on q35, or arm64 on the virt machine. */
  arch?: GuestArch;
  kernelImage: string;
  kernelRelease: string;
  initramfs: string;
  accel: Accel;
  memoryMb: number;
  cpus: number;
  /** Host port on 127.0.0.1 forwarded to the guest's sshd; without it, the guest has no network. */
  sshPort?: number;
  /** The serial transport: where QEMU listens for the step agent's port and the shell's console. */
  serial?: SerialSockets;
  /** Host directories shared into the guest, by 9p mount tag; read-only unless named in `writable`. */
  shares: Record<string, string>;
  /** Tags of shares the guest may write to (the guest image's build folder while it builds). */
  writable?: string[];
  /** A read-only root disk (the guest image's rootfs.erofs), the guest's /dev/vda. */
  disk?: string;
  /** Extra kernel command line words. */
  append?: string[];
  /** Firmware; qboot boots a -kernel much faster than SeaBIOS. */
  bios?: string;
  /** Names the VM in `ps` (and lets tests find the QEMUs a run started). */
  name?: string;
}

export interface SerialSockets {
  agentSocket: string;
  shellSocket: string;
}

/** The two ports' names, as the guest reads them in /sys/class/virtio-ports: the step agent's, the shell's. */
export const AGENT_PORT = 'sockmap-labs.agent';
export const SHELL_PORT = 'sockmap-labs.shell';
/** The kernel command line word that tells stage2 to serve the agent on its port and start no sshd. */
export const SERIAL_TRANSPORT_WORD = 'sml.transport=serial';

/** The VM name; a run tag (a test hook) tells apart the VMs of one test run. */
export const vmName = (runTag?: string) => `sockmap-labs${runTag ? `-${runTag}` : ''}`;

export const QBOOT = '/usr/share/qemu/qboot.rom';

export const QEMU_BINARY = 'qemu-system-x86_64';
/** The QEMU program for each guest architecture. */
export const QEMU_BINARIES: Record<GuestArch, string> = { amd64: QEMU_BINARY, arm64: 'qemu-system-aarch64' };

export function kernelCommandLine(release: string, extra: string[] = [], arch: GuestArch = 'amd64'): string {
  return [
    // The first serial port: the 8250 UART on x86, the PL011 on arm64's virt machine.
    arch === 'arm64' ? 'console=ttyAMA0' : 'console=ttyS0',
    'quiet',
    'panic=-1', // reboot at once on panic; with -no-reboot QEMU then exits
    'oops=panic',
    'mitigations=off', // a throw-away VM; speculation mitigations only slow TCG down
    // x86 only: trust the TSC (no calibration, no watchdog), one 8250 UART probed instead of four.
    ...(arch === 'arm64' ? [] : ['tsc=reliable', 'no_timer_check']),
    'random.trust_cpu=on',
    ...(arch === 'arm64' ? [] : ['8250.nr_uarts=1']),
    `sml.modver=${release}`,
    ...extra,
  ].join(' ');
}

/** -machine, -accel and -cpu for a guest architecture and accelerator. */
function machineArgs(arch: GuestArch, accel: Accel): string[] {
  const tcg = accel === 'tcg';
  // TCG: the CPU model with every feature QEMU emulates; on arm64 with QEMU's
  // cheap pointer-authentication algorithm (the architected one costs ~10% under TCG).
  const cpu = !tcg ? 'host' : arch === 'arm64' ? 'max,pauth-impdef=on' : 'max';
  return ['-machine', arch === 'arm64' ? 'virt' : 'q35', '-accel', tcg ? 'tcg,thread=multi' : accel, '-cpu', cpu];
}

export function buildQemuArgs(i: QemuArgsInput): string[] {
  const arch = i.arch ?? 'amd64';
  const args = [
    '-nodefaults',
    '-no-user-config',
    '-nographic',
    '-no-reboot',
    ...machineArgs(arch, i.accel),
    '-m',
    String(i.memoryMb),
    '-smp',
    String(i.cpus),
    '-kernel',
    i.kernelImage,
    '-initrd',
    i.initramfs,
    '-append',
    kernelCommandLine(i.kernelRelease, i.serial ? [SERIAL_TRANSPORT_WORD, ...(i.append ?? [])] : i.append, arch),
    // The serial console goes to our stdout; signal=off keeps Ctrl-C ours.
    '-chardev',
    'stdio,id=console,signal=off',
    '-serial',
    'chardev:console',
  ];
  if (i.bios) args.push('-bios', i.bios);
  if (i.name) args.push('-name', i.name.replace(/,/g, ',,'));
  for (const [tag, dir] of Object.entries(i.shares)) {
    // QEMU option values escape a comma by doubling it.
    const ro = i.writable?.includes(tag) ? '' : ',readonly=on';
    args.push('-fsdev', `local,id=fs_${tag},path=${dir.replace(/,/g, ',,')},security_model=none${ro},multidevs=remap`);
    args.push('-device', `virtio-9p-pci,fsdev=fs_${tag},mount_tag=${tag}`);
  }
  if (i.disk) args.push('-drive', `file=${i.disk.replace(/,/g, ',,')},if=virtio,format=raw,readonly=on`);
  if (i.serial) {
    // server=on,wait=off: QEMU listens, boots without waiting for a client, and
    // takes one client at a time; the next is accepted once the last one left.
    const listen = (id: string, file: string) => `socket,id=${id},path=${file.replace(/,/g, ',,')},server=on,wait=off`;
    args.push('-device', 'virtio-serial-pci');
    args.push('-chardev', listen('agent', i.serial.agentSocket));
    args.push('-device', `virtserialport,chardev=agent,name=${AGENT_PORT}`);
    // A virtconsole is a tty in the guest (/dev/hvcN): a login shell's terminal.
    args.push('-chardev', listen('shell', i.serial.shellSocket));
    args.push('-device', `virtconsole,chardev=shell,name=${SHELL_PORT}`);
  }
  if (i.sshPort !== undefined) {
    args.push('-netdev', `user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:${i.sshPort}-:22`);
    args.push('-device', 'virtio-net-pci,netdev=net0,romfile=');
  }
  return args;
}
