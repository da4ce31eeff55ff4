// The virtme-ng backend (`--backend vng`): boots the guest kernel with `vng`,
// which shares the host's root filesystem with the guest (read-only, with
// throw-away overlays), and runs lab steps over SSH.
//
// What we rely on from virtme-ng (read in github.com/arighi/virtme-ng, v1.41):
//  - `vng --run=<image>` boots a kernel image. It finds the image's modules by
//    itself: /lib/modules/<release> when the image is a host kernel, or a
//    lib/modules/<release> next to the image (it walks up from the image's
//    folder) for a kernel unpacked elsewhere; it links that folder into the
//    guest. With no modules found it still boots, without modules.
//  - `--ssh=<port>` makes the guest start /usr/sbin/sshd (from the host's root).
//    By default vng carries SSH over vsock, where <port> is a vsock CID, not a
//    TCP port; `--ssh-tcp` (vng >= 1.34) makes it a QEMU user-mode forward from
//    127.0.0.1:<port> to the guest's port 22, which is what our TCP SSH client
//    needs. In TCP mode the guest gets its address by DHCP, run with the host's
//    busybox (udhcpc).
//  - The guest's sshd permits root and reads one authorized_keys file for every
//    user, built from ~/.ssh/id_*.pub of the host user and, since vng 1.41, from
//    ~/.cache/virtme-ng/.ssh/id_virtme.pub, a key vng generates (no passphrase)
//    on first use. So we log in as root with id_virtme, or with the user's own
//    key on older vng.
//  - `--disable-kvm` forces TCG; without it vng uses KVM when /dev/kvm is
//    usable (and falls back to TCG when it is not).
//  - `--memory` and `--cpus` go to QEMU's -m and -smp; `--user root` runs the
//    console session as root; `--cwd` sets the guest's working folder;
//    `--disable-monitor` keeps QEMU's monitor off our stdin.
//  - vng hands its options to virtme-run through a shell command line without
//    quoting, so paths must not contain spaces or shell metacharacters.
//  - The host folders stay read-only in the guest unless passed with
//    `--rwdir`; /etc, /home, /tmp, /var and a few more get a tmpfs overlay, so
//    guest writes there vanish at shutdown. We never pass `--rw`.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { UserError } from '../core/errors.ts';
import { BPFFS, sharedCheckoutPaths, STEP_PID_DIR, type GuestPaths } from '../core/guest.ts';
import { signalGroup, stopGroup } from '../core/process-group.ts';
import { which } from '../core/which.ts';
import type { Backend, BackendInfo, ExecOptions, ExecResult } from './backend.ts';

// ---------------------------------------------------------------------------
// The SSH transport (implemented in vm/ssh.ts). Only its shape matters here.

interface SshTransportLike {
  exec(command: string, opts?: ExecOptions): Promise<ExecResult>;
  shell(): Promise<number>;
  close(): void;
}

export type ConnectSsh = (o: {
  host: string;
  port: number;
  username: string;
  privateKeyPath?: string;
  /** Give up at this time (milliseconds since the epoch, like Date.now()). */
  deadlineMs: number;
  signal?: AbortSignal;
}) => Promise<SshTransportLike>;

// ---------------------------------------------------------------------------
// The command line

export interface VngCommandOptions {
  /** The kernel image (bzImage / vmlinuz) to boot. */
  kernel: string;
  /** Host TCP port forwarded to the guest's sshd (bound to 127.0.0.1). */
  sshPort: number;
  accel: 'kvm' | 'tcg';
  memoryMb: number;
  cpus: number;
  /** The project checkout; the guest sees it at the same path and starts there. */
  projectDir: string;
  /** Host folders the guest may write to (vng --rwdir). Default: none. */
  rwDirs?: string[];
  /** Use a classic PC machine instead of QEMU's "microvm" (needs no VIRTIO_MMIO in the kernel). */
  disableMicrovm?: boolean;
  /** Share the root filesystem over 9p instead of virtiofs. */
  force9p?: boolean;
  /** Show the boot messages on the console (vng --verbose). */
  verbose?: boolean;
  /** Guest hostname and QEMU -name (qemu-args.ts vmName; a test's run tag tells its VMs apart). */
  name?: string;
  /** The vng executable; default 'vng' (looked up on PATH). */
  vngPath?: string;
}


// Characters that survive vng's unquoted shell command line unchanged.
const SHELL_SAFE_PATH = /^[A-Za-z0-9_+\/.,:@%=-]+$/;
// virtme-run's own pattern for --rwdir paths, minus the space (split by the shell).
const RWDIR_SAFE_PATH = /^[A-Za-z0-9_+\/.-]+$/;

function checkPath(what: string, p: string, pattern: RegExp): string {
  const abs = path.resolve(p);
  if (!pattern.test(abs))
    throw new UserError(
      `the vng backend cannot use ${what} ${JSON.stringify(abs)}: vng passes paths through a shell unquoted, so they may hold only letters, digits and _+/.-`,
      'move or symlink it to a path without spaces or special characters',
    );
  return abs;
}

function checkInt(what: string, n: number, min: number, max: number): number {
  if (!Number.isInteger(n) || n < min || n > max)
    throw new UserError(`invalid ${what} for the vng backend: ${n} (expected a whole number from ${min} to ${max})`);
  return n;
}

/** The `vng` command line that boots `kernel` with an SSH server reachable on 127.0.0.1:sshPort. */
export function buildVngCommand(opts: VngCommandOptions): { cmd: string; args: string[] } {
  const kernel = checkPath('the kernel image', opts.kernel, SHELL_SAFE_PATH);
  const projectDir = checkPath('the project folder', opts.projectDir, SHELL_SAFE_PATH);
  const port = checkInt('SSH port', opts.sshPort, 1, 65535);
  const memoryMb = checkInt('memory size (MiB)', opts.memoryMb, 64, 1024 * 1024);
  const cpus = checkInt('CPU count', opts.cpus, 1, 1024);

  const args = [
    // An absolute path, so vng never mistakes it for an upstream tag like v6.6.
    // `=` because --run takes an optional value.
    `--run=${kernel}`,
    '--name', opts.name ?? 'sockmap-labs',
    '--user', 'root',
    '--cwd', projectDir,
    // SSH over a TCP port forward on 127.0.0.1 (not vsock).
    `--ssh=${port}`,
    '--ssh-tcp',
    '--disable-monitor',
    '--memory', `${memoryMb}M`,
    '--cpus', String(cpus),
  ];
  if (opts.accel === 'tcg') args.push('--disable-kvm');
  if (opts.disableMicrovm) args.push('--disable-microvm');
  if (opts.force9p) args.push('--force-9p');
  if (opts.verbose) args.push('--verbose');
  for (const dir of opts.rwDirs ?? []) args.push('--rwdir', checkPath('the writable folder', dir, RWDIR_SAFE_PATH));
  return { cmd: opts.vngPath ?? 'vng', args };
}

// ---------------------------------------------------------------------------
// Host checks

/** Looks things up on the host; replaceable in tests. */
export interface HostLookup {
  /** Full path of an executable on PATH, or undefined. */
  which(name: string): string | undefined;
  exists(p: string): boolean;
}

// The guest runs the host's programs with this PATH (virtme-ng-init's default),
// so look there as well as on the user's PATH.
const GUEST_PATH_DIRS = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

const realHost: HostLookup = {
  which: (name) => which(name),
  exists: (p) => fs.existsSync(p),
};

const CLOCKSOURCES = '/sys/devices/system/clocksource/clocksource0/available_clocksource';

const INSTALL_VNG_FIX = 'pip install virtme-ng   (or pipx install virtme-ng, or your distribution\'s virtme-ng package)';

/** Throws a UserError naming what is missing and how to install it; returns the path of `vng`. */
export function checkVngHost(host: HostLookup = realHost, vngName = 'vng'): string {
  const vng = host.which(vngName);
  if (!vng)
    throw new UserError(
      `--backend vng needs virtme-ng, but \`${vngName}\` was not found${vngName.includes('/') ? '' : ' on PATH'}. Install it with: ${INSTALL_VNG_FIX}`,
      INSTALL_VNG_FIX,
      'pipx and pip put `vng` in ~/.local/bin; make sure that folder is on PATH. virtme-ng 1.34 or newer is needed.',
    );
  // The guest runs the host's /usr/sbin/sshd (virtme-sshd-script checks exactly this path).
  if (!host.exists('/usr/sbin/sshd'))
    throw new UserError(
      '--backend vng needs an SSH server on the host (the guest runs the host\'s /usr/sbin/sshd), but /usr/sbin/sshd does not exist',
      'sudo apt-get install openssh-server   (the host service need not be running)',
    );
  const guestPath = GUEST_PATH_DIRS.join(path.delimiter);
  const hasBusybox = ['busybox-static', 'busybox'].some((b) => host.which(b) || findOnPathWith(host, b, guestPath));
  if (!hasBusybox)
    throw new UserError(
      '--backend vng needs busybox on the host: the guest runs its udhcpc to get the address SSH is forwarded to',
      'sudo apt-get install busybox-static',
    );
  // Debian's kernels build virtio_net as a module; the guest loads it only through
  // udev's coldplug, run with the host's udevd. Without it the guest has no
  // network device, never gets the address SSH is forwarded to, and boots to nothing.
  if (!UDEVD.some((p) => host.exists(p)) && !host.which('udevd'))
    throw new UserError(
      "--backend vng needs udev on the host: the guest loads its network driver with the host's udevd, and without it SSH never comes up",
      'sudo apt-get install udev',
    );
  return vng;
}

const UDEVD = ['/usr/lib/systemd/systemd-udevd', '/lib/systemd/systemd-udevd'];

function findOnPathWith(host: HostLookup, name: string, dirs: string): boolean {
  return dirs.split(path.delimiter).some((d) => host.exists(path.join(d, name)));
}

/**
 * The private key to log in with. vng >= 1.41 makes ~/.cache/virtme-ng/.ssh/id_virtme
 * (when the VM starts); every vng also authorizes the host user's ~/.ssh/id_*.pub.
 */
export function findGuestKey(home: string, exists: (p: string) => boolean = fs.existsSync): string | undefined {
  const candidates = [
    path.join(home, '.cache/virtme-ng/.ssh/id_virtme'),
    ...['id_ed25519', 'id_ecdsa', 'id_rsa'].map((k) => path.join(home, '.ssh', k)),
  ];
  return candidates.find((k) => exists(k) && exists(`${k}.pub`));
}

// ---------------------------------------------------------------------------
// Small helpers

/**
 * One try: connect and see whether an SSH server greets us. QEMU accepts on the
 * forwarded port as soon as it runs, long before the guest's sshd does, so a
 * successful connect alone proves nothing; the "SSH-" banner does.
 */
function sshGreets(port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    let got = '';
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.on('data', (d) => {
      got += d.toString('latin1');
      if (got.length >= 4) done(got.startsWith('SSH-'));
    });
    sock.on('error', () => done(false));
    sock.on('close', () => done(false));
  });
}

function tail(file: string, lines = 30): string {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

// ---------------------------------------------------------------------------
// The backend

interface VngBackendOptions extends VngCommandOptions {
  /** Opens the SSH session once the guest's sshd answers (vm/ssh.ts). */
  connectSsh: ConnectSsh;
  /** How long to wait for the guest's sshd; default 90 s with KVM, 300 s with TCG. */
  bootTimeoutMs?: number;
  /** Host look-ups, replaceable in tests. */
  host?: HostLookup;
  /** Where vng keeps its SSH key (its ~); default os.homedir(). */
  homeDir?: string;
}

/** Time stop() gives the VM after SIGTERM before SIGKILL. */
const KILL_GRACE_MS = 3000;

export class VngBackend implements Backend {
  readonly name = 'vng' as const;
  readonly paths: GuestPaths;

  private child?: ChildProcess;
  private exited?: Promise<void>;
  private exitCode?: number | null;
  private spawnError?: Error;
  private transport?: SshTransportLike;
  private tmpDir?: string;
  private consoleLog?: string;
  private onHostExit?: () => void;

  constructor(private readonly opts: VngBackendOptions) {
    const project = path.resolve(opts.projectDir);
    // vng shares the host's filesystem, so the checkout has the same path inside.
    this.paths = sharedCheckoutPaths(project, '/run/sockmap-labs');
  }

  async start(signal?: AbortSignal): Promise<BackendInfo> {
    if (this.child) throw new Error('the vng VM is already started');
    const host = this.opts.host ?? realHost;
    const vng = checkVngHost(host, this.opts.vngPath);
    const { args } = buildVngCommand(this.opts);
    signal?.throwIfAborted();

    // vng's console (the serial port with a root shell) and kernel messages go to a log file.
    this.tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sockmap-labs-vng-'));
    this.consoleLog = path.join(this.tmpDir, 'console.log');
    const logFd = fs.openSync(this.consoleLog, 'a');
    let child: ChildProcess;
    try {
      // No shell. detached: its own process group (vng -> sh -> qemu, virtiofsd),
      // so stop() can signal all of them. stdin is a pipe we never write to nor
      // close, so the guest's console shell just waits.
      child = spawn(vng, args, {
        cwd: this.paths.project,
        detached: true,
        stdio: ['pipe', logFd, logFd],
      });
    } finally {
      fs.closeSync(logFd);
    }
    this.child = child;
    this.exited = new Promise((resolve) => {
      child.once('exit', (code) => {
        this.exitCode = code;
        resolve();
      });
      child.once('error', (err) => {
        this.spawnError = err;
        this.exitCode = null;
        resolve();
      });
    });
    // If the runner dies without stop(), take the VM down with it.
    this.onHostExit = () => this.killGroup('SIGKILL');
    process.once('exit', this.onHostExit);

    try {
      const timeout = this.opts.bootTimeoutMs ?? (this.opts.accel === 'kvm' ? 90_000 : 300_000);
      const deadline = Date.now() + timeout;
      await this.waitForSshd(deadline, timeout, signal);

      const home = this.opts.homeDir ?? os.homedir();
      const key = findGuestKey(home, (p) => host.exists(p));
      if (!key)
        throw new UserError(
          `no SSH key to log in to the vng guest: neither ${home}/.cache/virtme-ng/.ssh/id_virtme (made by vng 1.41+) nor ${home}/.ssh/id_{ed25519,ecdsa,rsa} exists`,
          `pipx upgrade virtme-ng   (or make a key: ssh-keygen -t ed25519 -N '' -f ~/.ssh/id_ed25519)`,
        );
      this.transport = await this.opts.connectSsh({
        host: '127.0.0.1',
        port: this.opts.sshPort,
        username: 'root',
        privateKeyPath: key,
        deadlineMs: deadline,
        signal,
      });

      // vng asks QEMU for accel=kvm:tcg, which falls back to TCG without a word: the
      // guest tells which it got (a KVM guest registers the kvm-clock clocksource).
      const uname = await this.transport.exec(`uname -r; grep -qsw kvm-clock ${CLOCKSOURCES} && echo kvm || echo tcg`, { timeoutMs: 30_000, signal });
      const [release, accel] = uname.stdout.trim().split('\n');
      if (uname.code !== 0 || !accel) throw new Error(`\`uname -r\` failed in the vng guest: ${uname.stderr.trim()}`);
      // /run is a tmpfs in the guest: a fresh, writable state folder every boot.
      // vng mounts no bpffs: the labs pin their maps in one, as in our own guest.
      const prep = await this.transport.exec(`mkdir -p ${this.paths.state} ${STEP_PID_DIR} && { mountpoint -q ${BPFFS} || mount -t bpf bpf ${BPFFS}; }`, { timeoutMs: 30_000, signal });
      if (prep.code !== 0) throw new Error(`the vng guest could not be prepared for the labs: ${prep.stderr.trim()}`);

      return {
        backend: 'vng',
        kernelRelease: release,
        accel,
        consoleLog: this.consoleLog,
      };
    } catch (e) {
      const log = this.consoleLog ? tail(this.consoleLog) : '';
      await this.stop();
      if (e instanceof UserError && !e.details && log) throw new UserError(e.message, e.fix, log);
      throw e;
    }
  }

  /** Waits for the guest's sshd banner on the forwarded port, watching for vng dying first. */
  private async waitForSshd(deadline: number, timeout: number, signal?: AbortSignal): Promise<void> {
    for (;;) {
      signal?.throwIfAborted();
      if (this.exitCode !== undefined) {
        const log = tail(this.consoleLog!);
        if (this.spawnError) throw new UserError(`could not run vng: ${this.spawnError.message}`, INSTALL_VNG_FIX, log);
        const tooOld = /unrecognized arguments/.test(log);
        throw new UserError(
          `vng exited (${this.exitCode === null ? 'killed by a signal' : `code ${this.exitCode}`}) before the guest's SSH server came up; the end of its output is below`,
          tooOld ? 'pipx upgrade virtme-ng   (vng 1.34 or newer is needed for --ssh-tcp)' : this.tryByHand(),
          log,
        );
      }
      if (Date.now() > deadline)
        throw new UserError(
          `the vng guest's SSH server did not answer on 127.0.0.1:${this.opts.sshPort} within ${Math.round(timeout / 1000)} s; the end of the console is below`,
          this.tryByHand(),
          tail(this.consoleLog!),
        );
      if (await sshGreets(this.opts.sshPort, 2000)) return;
      await sleep(300, undefined, { signal });
    }
  }

  /** A command to watch the same boot by hand (the console log is removed on failure). */
  private tryByHand(): string {
    const { cmd, args } = buildVngCommand({ ...this.opts, verbose: true });
    return `run it by hand to watch the boot: ${[cmd, ...args].join(' ')}`;
  }

  private get ssh(): SshTransportLike {
    if (!this.transport) throw new Error('the vng VM is not running: call start() first');
    return this.transport;
  }

  exec(command: string, opts?: ExecOptions): Promise<ExecResult> {
    return this.ssh.exec(command, opts);
  }

  shell(): Promise<number> {
    return this.ssh.shell();
  }

  /** Sends a signal to the VM's whole process group; false when none is left. */
  private killGroup(sig: NodeJS.Signals | 0): boolean {
    const pid = this.child?.pid;
    return !!pid && signalGroup(pid, sig);
  }

  async stop(): Promise<void> {
    try {
      this.transport?.close();
    } catch {
      // closing a dead connection is fine
    }
    this.transport = undefined;

    const child = this.child;
    if (child) {
      // SIGTERM to the group; QEMU, virtiofsd and vng's Python all exit on it.
      // Whatever is still there after KILL_GRACE_MS gets SIGKILL.
      if (child.pid) await stopGroup(child.pid, KILL_GRACE_MS);
      if (child.exitCode === null && child.signalCode === null) await Promise.race([this.exited, sleep(1000)]);
      child.stdin?.destroy();
      this.child = undefined;
      this.exited = undefined;
      this.exitCode = undefined;
      this.spawnError = undefined;
    }
    if (this.onHostExit) process.removeListener('exit', this.onHostExit);
    this.onHostExit = undefined;

    if (this.tmpDir) fs.rmSync(this.tmpDir, { recursive: true, force: true });
    this.tmpDir = undefined;
    this.consoleLog = undefined;
  }
}
