// The default backend: a throw-away QEMU VM booted from the host's own files.
//
// start(): make this VM's private directory, boot the kernel with the
// initramfs and accelerator it was given (vm/session.ts chooses them), and
// connect. Two transports:
//   ssh     fresh SSH keys for this VM, sshd in the guest, a port forwarded
//           from 127.0.0.1, one SSH connection with a step agent on it;
//   serial  no keys, no network: the guest's step agent serves a virtio-serial
//           port whose host end is a unix socket in the VM's folder (vm/serial.ts).
// stop(): close the connection, stop QEMU, remove the folder. Nothing survives the VM.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { UserError } from '../core/errors.ts';
import type { GuestArch } from '../core/arch.ts';
import { imageGuestPaths, QEMU_GUEST_PATHS, STEP_PID_DIR, stepAgentPath, type GuestPaths } from '../core/guest.ts';
import { projectRoot } from '../core/paths.ts';
import type { Backend, BackendInfo, ExecOptions, ExecResult } from './backend.ts';
import { BUILD_KEY_WORD, BUILD_SHARE_TAG, type GuestBuild } from './guest-build.ts';
import type { Kernel } from './kernel.ts';
import { buildQemuArgs, QBOOT, QEMU_BINARIES, type Accel, type SerialSockets } from './qemu-args.ts';
import { QemuProcess } from './qemu-process.ts';
import { connectAgent, serialShell, type AgentLink } from './serial.ts';
import { connectSsh, type SshTransport } from './ssh.ts';

const GUEST_VM_DIR = '/run/sockmap-labs/vm';
/** The console signature of TCG's text-patching race: an int3 oops before init is up. */
export const TCG_PATCH_RACE = /Oops: int3\b/;

interface QemuOptions {
  kernel: Kernel;
  /** The initramfs to boot (vm/initramfs.ts). */
  initramfs: string;
  /** The accelerator, already chosen (vm/accel.ts). */
  accel: Accel;
  memoryMb: number;
  cpus: number;
  /** Give up if SSH does not answer this long after QEMU starts. */
  bootTimeoutMs: number;
  /** Names the VM in `ps` (qemu-args.ts vmName). */
  name: string;
  /** Test hooks (core/config.ts): a port for the first boot, kernel command line words, no step agent. */
  sshPort?: number;
  kernelAppend?: string[];
  stepAgent?: boolean;
  /** Boot this root disk (the guest image's rootfs.erofs) instead of the host's root over 9p. */
  rootfsImage?: string;
  /** The guest image's lab programs: their folder, shared at GuestPaths.build, and whether the guest builds them first. */
  guestBuild?: GuestBuild;
  /** The guest's architecture (default amd64; arm64 only with the guest image). */
  arch?: GuestArch;
  /** Called with progress lines (a retried boot…). */
  log?: (line: string) => void;
  /** Where to keep the console log after the VM is gone. */
  logDir?: string;
  /** A warm VM: QEMU outlives this process; detach() leaves it running. */
  persistent?: boolean;
  /** How the runner reaches the guest (default ssh). The serial transport has no alternative to the step agent: `stepAgent` does not apply. */
  transport?: Transport;
}

export type Transport = 'ssh' | 'serial';

/** What it takes to reach a running VM again from another process. */
export interface VmHandle {
  pid: number;
  /** The ssh transport: the forwarded port, our key, the guest's host key. */
  port?: number;
  clientKey?: string;
  hostPublicKey?: string;
  /** The serial transport: QEMU's sockets for the step agent's port and the shell's console. */
  agentSocket?: string;
  shellSocket?: string;
  vmDir: string;
  consoleLog: string;
  kernelImage: string;
  kernelRelease: string;
  accel: Accel;
  /** The guest image's VM: where its lab programs are on the host, and their key (vm/guest-build.ts). */
  hostBuild?: string;
  buildKey?: string;
}

function sshdConfig(): string {
  return [
    'Port 22',
    'ListenAddress 0.0.0.0',
    `HostKey ${GUEST_VM_DIR}/ssh_host_ed25519_key`,
    `AuthorizedKeysFile ${GUEST_VM_DIR}/authorized_keys`,
    'PermitRootLogin prohibit-password',
    'PubkeyAuthentication yes',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'UsePAM no',
    'StrictModes no',
    'UseDNS no',
    'PrintMotd no',
    'PrintLastLog no',
    'PidFile /run/sshd.pid',
    'MaxSessions 64',
    'MaxStartups 64',
    'Subsystem sftp internal-sftp',
    '',
  ].join('\n');
}

/** A port on 127.0.0.1 that is free right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

function sshKeygen(file: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'sockmap-labs', '-f', file], { stdio: 'ignore' });
    p.once('error', reject);
    p.once('exit', (c) => (c === 0 ? resolve() : reject(new Error(`ssh-keygen exited with ${c}`))));
  });
}

/** Where a unix socket's path must fit (sun_path, with its NUL). */
const MAX_SOCKET_PATH = 107;

/** The guest's markers that its side of each transport is up (vm/guest/stage2.sh). */
const READY = { ssh: 'sml-stage2: SSHD-STARTED', serial: 'sml-stage2: AGENT-READY' };

/** More time to boot when the guest builds its lab programs first (about a minute under TCG, arm64 on x86_64 slower). */
const GUEST_BUILD_ALLOWANCE_MS = 600_000;

export class QemuBackend implements Backend {
  readonly name = 'qemu' as const;
  paths: GuestPaths;
  private qemu?: QemuProcess;
  private ssh?: SshTransport;
  /** The serial transport's session with the guest's step agent. */
  private link?: AgentLink;
  private vmDir?: string;
  private info?: BackendInfo;
  /** Set once the VM is up: how to reach it again (for a warm VM's state file). */
  handle?: VmHandle;
  /** Filled in by start(); for the benchmark. */
  timings: Record<string, number> = {};

  constructor(private readonly o: QemuOptions) {
    this.paths = o.guestBuild ? imageGuestPaths(o.guestBuild.dir) : QEMU_GUEST_PATHS;
  }

  get transport(): Transport {
    return this.o.transport ?? 'ssh';
  }

  /** The ssh transport's keys and sshd config, made for this VM only (guest/ is what the guest sees). */
  private async makeKeys(guestDir: string): Promise<{ clientKey: string; hostKey: string }> {
    const clientKey = path.join(this.vmDir!, 'id_ed25519');
    const hostKey = path.join(guestDir, 'ssh_host_ed25519_key');
    await Promise.all([sshKeygen(clientKey), sshKeygen(hostKey)]);
    fs.copyFileSync(`${clientKey}.pub`, path.join(guestDir, 'authorized_keys'));
    fs.writeFileSync(path.join(guestDir, 'sshd_config'), sshdConfig(), { mode: 0o600 });
    return { clientKey, hostKey };
  }

  async start(signal?: AbortSignal): Promise<BackendInfo> {
    const log = this.o.log ?? (() => {});
    const t0 = Date.now();
    const { kernel, accel } = this.o;

    // This VM's private folder (0700): keys or sockets, and guest/, the only part shared with the guest.
    this.vmDir = fs.mkdtempSync(path.join(os.tmpdir(), `${this.o.name}-vm-`));
    fs.chmodSync(this.vmDir, 0o700);
    const guestDir = path.join(this.vmDir, 'guest');
    fs.mkdirSync(guestDir, { mode: 0o700 });
    const sockets = this.transport === 'serial' ? { agentSocket: path.join(this.vmDir, 'agent.sock'), shellSocket: path.join(this.vmDir, 'shell.sock') } : undefined;
    if (sockets && Buffer.byteLength(sockets.agentSocket) > MAX_SOCKET_PATH)
      throw new UserError(`the VM's socket path is too long for a unix socket: ${sockets.agentSocket}`, 'export TMPDIR=/tmp');
    const keys = sockets ? undefined : await this.makeKeys(guestDir);
    this.timings.keys = Date.now() - t0;

    const logDir = this.o.persistent ? this.vmDir : (this.o.logDir ?? path.join(projectRoot, 'build/logs'));
    fs.mkdirSync(logDir, { recursive: true });
    if (!this.o.persistent) pruneLogs(logDir);
    const consoleLog = path.join(logDir, this.o.persistent ? 'console.log' : `console-${process.pid}.log`);
    let lastError = '';
    if (this.o.guestBuild?.building) log('building the lab programs in the guest first (once per change to bpf/; about a minute under TCG)');
    for (let attempt = 0; attempt < 3; attempt++) {
      // A test may ask for a port (to hit a taken one); a retry takes any free port.
      const port = sockets ? undefined : attempt === 0 && this.o.sshPort ? this.o.sshPort : await freePort();
      this.qemu = new QemuProcess(this.qemuArgs(port, sockets), consoleLog, QEMU_BINARIES[this.o.arch ?? 'amd64']);
      this.timings.spawned = Date.now() - t0;
      try {
        if (sockets) this.link = await this.connectSerial(sockets.agentSocket, signal);
        else this.ssh = await this.connect(port!, keys!.hostKey, keys!.clientKey, signal);
      } catch (e) {
        await this.qemu.stop(500);
        if (signal?.aborted) throw new UserError('interrupted while the VM was booting');
        // Someone took the port between our check and QEMU's bind: try another.
        if (/host forwarding rule|Could not set up host forwarding/i.test(this.qemu.output)) {
          lastError = `port ${port} on 127.0.0.1 was taken`;
          log(`${lastError}; trying another`);
          continue;
        }
        // Under TCG with two vCPUs, about one boot in fifty hits an emulation race
        // while the kernel patches its own code (a static key flipped in
        // sched_clock_cpu): the other vCPU runs a stale int3 and the kernel oopses.
        // That is QEMU's, not the lab's; a second boot does not repeat it.
        if (accel === 'tcg' && TCG_PATCH_RACE.test(this.qemu.output)) {
          lastError = 'the guest kernel crashed twice while booting (Oops: int3, a QEMU TCG code-patching race)';
          log('the guest kernel hit a QEMU TCG code-patching race while booting (Oops: int3); booting again');
          continue;
        }
        throw this.bootError(e as Error, consoleLog);
      }
      this.timings.ready = Date.now() - t0;
      // The guest built its programs (its agent, one of them, answered): keep them for the next VMs.
      if (this.o.guestBuild?.building) this.paths = { ...this.paths, hostBuild: this.o.guestBuild.keep() };
      // (an agent on a port says its kernel's release in its hello; an older one does not)
      const release =
        this.link?.agent.kernelRelease ?? (this.link ? await this.link.agent.exec('uname -r', { timeoutMs: 30_000 }) : await this.ssh!.run('uname -r')).stdout.trim();
      this.info = { backend: 'qemu', kernelRelease: release, accel, consoleLog };
      this.handle = {
        pid: this.qemu.child.pid!,
        ...(keys ? { port, clientKey: keys.clientKey, hostPublicKey: fs.readFileSync(`${keys.hostKey}.pub`, 'utf8').trim() } : sockets),
        vmDir: this.vmDir,
        consoleLog,
        kernelImage: kernel.image,
        kernelRelease: this.info.kernelRelease,
        accel,
        ...(this.o.guestBuild ? { hostBuild: this.paths.hostBuild, buildKey: this.o.guestBuild.key } : {}),
      };
      return this.info;
    }
    throw new UserError(`the VM could not start: ${lastError}`);
  }

  private qemuArgs(port: number | undefined, serial: SerialSockets | undefined): string[] {
    const { kernel, guestBuild } = this.o;
    const arch = this.o.arch ?? 'amd64';
    return buildQemuArgs({
      arch,
      kernelImage: kernel.image,
      kernelRelease: kernel.release,
      initramfs: this.o.initramfs,
      accel: this.o.accel,
      memoryMb: this.o.memoryMb,
      cpus: this.o.cpus,
      sshPort: port,
      serial,
      // qboot (x86 only) boots a -kernel faster than SeaBIOS; arm64's virt machine needs no firmware.
      bios: arch === 'amd64' && fs.existsSync(QBOOT) ? QBOOT : undefined,
      name: this.o.name,
      append: [...(guestBuild?.building ? [`${BUILD_KEY_WORD}=${guestBuild.key}`] : []), ...(this.o.kernelAppend ?? [])],
      // The guest image brings its own root and modules: only the checkout, its lab programs (and this VM's files) are shared.
      shares: this.o.rootfsImage
        ? { project: projectRoot, vmstate: path.join(this.vmDir!, 'guest'), ...(guestBuild ? { [BUILD_SHARE_TAG]: guestBuild.dir } : {}) }
        : { hostroot: '/', project: projectRoot, modules: kernel.modulesDir, vmstate: path.join(this.vmDir!, 'guest') },
      writable: guestBuild?.building ? [BUILD_SHARE_TAG] : [],
      disk: this.o.rootfsImage,
    });
  }

  /** Waits for our init to say the guest's end of the transport is up; fails fast on a panic or a dead QEMU. */
  private async booted(signal?: AbortSignal): Promise<void> {
    const q = this.qemu!;
    const deadline = this.o.bootTimeoutMs + (this.o.guestBuild?.building ? GUEST_BUILD_ALLOWANCE_MS : 0);
    const boot = await q.waitFor(READY[this.transport], deadline, signal);
    if (boot !== 'marker') {
      const what = this.transport === 'ssh' ? 'sshd' : 'step agent';
      const why = { exit: `QEMU exited (code ${q.exit?.code})`, fatal: q.fatal() ?? 'boot failed', timeout: `no ${what} within ${Math.round(deadline / 1000)} s`, aborted: 'interrupted' }[boot];
      throw new Error(why);
    }
  }

  /** Runs `connect` with a signal that also fires when QEMU dies or the guest fails while it retries. */
  private async whileQemuLives<T>(signal: AbortSignal | undefined, connect: (signal: AbortSignal, onRetry: () => void) => Promise<T>): Promise<T> {
    const q = this.qemu!;
    const controller = new AbortController();
    const onAbort = () => controller.abort();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      return await connect(controller.signal, () => {
        if (!q.running || q.fatal()) controller.abort();
      });
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  private async connectSerial(agentSocket: string, signal?: AbortSignal): Promise<AgentLink> {
    await this.booted(signal);
    return this.whileQemuLives(signal, (s, onRetry) => connectAgent(agentSocket, { deadlineMs: 60_000, signal: s, onRetry }));
  }

  private async connect(port: number, hostKey: string, clientKey: string, signal?: AbortSignal): Promise<SshTransport> {
    await this.booted(signal);
    return this.whileQemuLives(signal, (s, onRetry) =>
      connectSsh({
        host: '127.0.0.1',
        port,
        username: 'root',
        privateKeyPath: clientKey,
        hostPublicKey: fs.readFileSync(`${hostKey}.pub`, 'utf8'),
        deadlineMs: 60_000,
        signal: s,
        wrapping: { pidDir: STEP_PID_DIR, agent: this.o.stepAgent === false ? undefined : stepAgentPath(this.paths.build) },
        onRetry,
      }),
    );
  }

  private bootError(e: Error, consoleLog: string): UserError {
    // A warm VM's log lives in its own folder, which the teardown removes: keep a copy where the message points.
    if (this.o.persistent) {
      const kept = path.join(this.o.logDir ?? path.join(projectRoot, 'build/logs'), `console-vm-${process.pid}.log`);
      try {
        fs.mkdirSync(path.dirname(kept), { recursive: true });
        fs.copyFileSync(consoleLog, kept);
        consoleLog = kept;
      } catch {
        /* the message still names the log it had */
      }
    }
    return new UserError(
      `the VM did not boot: ${e.message}`,
      `read the console log: ${path.relative(process.cwd(), consoleLog) || consoleLog}; check the set-up with: npm run doctor`,
      this.qemu?.tail(15),
    );
  }

  exec(command: string, opts?: ExecOptions): Promise<ExecResult> {
    const conn = this.link?.agent ?? this.ssh;
    if (!conn) throw new Error('the VM is not running');
    if (conn.isClosed || !this.qemu?.running) {
      const why = this.qemu?.fatal() ?? (this.qemu?.running ? (this.link ? 'the connection to its step agent closed' : 'the SSH connection closed') : 'QEMU exited');
      return Promise.reject(new UserError(`the VM is gone: ${why}`, undefined, this.qemu?.tail(10)));
    }
    return conn.exec(command, opts);
  }

  shell(): Promise<number> {
    if (this.link) return serialShell(this.link, this.handle!.shellSocket!);
    if (!this.ssh) throw new Error('the VM is not running');
    return this.ssh.shell();
  }

  health(): string | undefined {
    if (!this.qemu) return undefined;
    const fatal = this.qemu.fatal();
    if (fatal) return fatal;
    if (!this.qemu.running) {
      const e = this.qemu.exit;
      return `QEMU exited${e?.signal ? ` (killed by ${e.signal})` : ` (code ${e?.code})`}`;
    }
    if (this.ssh?.isClosed) return 'the SSH connection to the guest was lost';
    if (this.link?.agent.isClosed) return "the connection to the guest's step agent was lost";
    return undefined;
  }

  private disconnect(): void {
    this.link?.close();
    this.link = undefined;
    this.ssh?.close();
    this.ssh = undefined;
  }

  /** Closes our connection and leaves the VM running (a warm VM). */
  detach(): void {
    this.disconnect();
    this.qemu?.release();
  }

  async stop(): Promise<void> {
    this.disconnect();
    await this.qemu?.stop();
    this.o.guestBuild?.discard();
    if (this.vmDir) fs.rmSync(this.vmDir, { recursive: true, force: true });
    this.vmDir = undefined;
  }
}

/** Console logs kept in build/logs (one per boot that failed or ran): the newest ones, so the folder does not grow for ever. */
const KEEP_LOGS = 20;
function pruneLogs(dir: string) {
  try {
    const logs = fs
      .readdirSync(dir)
      .filter((f) => /^console-.*\.log$/.test(f))
      .map((f) => ({ f, t: fs.statSync(path.join(dir, f)).mtimeMs }))
      .sort((a, b) => b.t - a.t);
    for (const { f } of logs.slice(KEEP_LOGS - 1)) fs.rmSync(path.join(dir, f), { force: true });
  } catch {
    /* pruning is housekeeping only */
  }
}
