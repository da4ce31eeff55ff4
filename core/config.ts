// The run's configuration, built once by the CLI from its flags and the
// environment, checked here, and passed down as a value. This is the only
// module that reads the LAB_* environment variables (and XDG_*, CI).
//
// User-facing settings (documented in the README and `--help`):
//   LAB_KERNEL       guest kernel image when no --kernel is given
//   LAB_ACCEL        auto | kvm | hvf | tcg (default auto: the host's accelerator when it works, else TCG)
//   LAB_ARCH         amd64 | arm64: the guest's architecture when no --arch is given (default: the host's)
//   LAB_CACHE_DIR    kernels, initramfs images, the KVM verdict (default ~/.cache/sockmap-labs)
//   LAB_STATE_HOME   where progress is kept (default $XDG_STATE_HOME or ~/.local/state)
//   LAB_VM_DIR       the warm VM's state folder (default <cache>/vm): a second warm VM
//   LAB_TRANSPORT    ssh (default) | serial: how the runner reaches a QEMU guest
//   LAB_REGISTRY_USER, LAB_REGISTRY_PASSWORD
//                    an OCI registry's user and password (or token) for `image push` (and a
//                    private `image pull`); read by registryCredentialsFrom, never printed
// Test hooks (for the project's own tests and benchmarks; see TestHooks):
//   LABS_DIR, LAB_RUN_TAG, LAB_SSH_PORT, LAB_KERNEL_APPEND, LAB_BOOT_TIMEOUT, LAB_STEP_AGENT
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { GUEST_ARCHES, hostArch, type GuestArch } from './arch.ts';
import { UserError } from './errors.ts';
import { projectRoot } from './paths.ts';

export const BACKENDS = ['qemu', 'vng', 'host'] as const;
export type BackendName = (typeof BACKENDS)[number];
const ACCEL_REQUESTS = ['auto', 'kvm', 'hvf', 'tcg'] as const;
export type AccelRequest = (typeof ACCEL_REQUESTS)[number];
const TRANSPORTS = ['ssh', 'serial'] as const;
export type Transport = (typeof TRANSPORTS)[number];
export const ROOTFS = ['host', 'image'] as const;
export type Rootfs = (typeof ROOTFS)[number];

/** Where things live on the host. */
export interface Places {
  /** Kernels, initramfs images, the KVM probe's verdict. */
  cacheDir: string;
  /** The warm VM's state file and lock. */
  warmDir: string;
  /** The learner's progress file. */
  progressFile: string;
  /** The folder of lab folders. */
  labsDir: string;
}

/** How to get a machine for a run. */
interface MachineSettings {
  backend: BackendName;
  /** Guest kernel images named by --kernel (or LAB_KERNEL); empty: the default kernel. */
  kernels: string[];
  /** Where the kernel came from, for messages: the option, the environment, or neither. */
  kernelSource: 'option' | 'env' | 'default';
  accel: AccelRequest;
  /**
   * How the runner reaches a QEMU guest: over SSH (sshd in the guest, a port
   * forwarded on 127.0.0.1), or the step agent on a virtio-serial port (no
   * network, no keys; the guest image's way, see vm/serial.ts).
   */
  transport: Transport;
  /**
   * What a QEMU guest boots: the guest image (the default: `npm run image build`;
   * serial transport), or the host's root shared read-only (--rootfs host; the
   * default with --kernel, LAB_TRANSPORT=ssh, or another backend).
   */
  rootfs: Rootfs;
  /** The guest's architecture (--arch, LAB_ARCH; default the host's). Another than the host's needs the guest image, and runs under TCG. */
  arch: GuestArch;
  memoryMb: number;
  cpus: number;
  /** false: never attach to the warm VM. */
  warm: boolean;
  /** Multiplies every step timeout; unset: 2 under TCG, else 1 (decided once the accelerator is known). */
  timeoutScale?: number;
}

/**
 * Switches for the project's own tests and benchmarks, kept apart from what
 * a learner sets. Each exists to reach a path a test must cover.
 */
interface TestHooks {
  /** LAB_RUN_TAG: names the QEMUs of one test run, so the test finds (and counts) exactly its own. */
  runTag?: string;
  /** LAB_SSH_PORT: the first boot forwards this port (a test makes it taken, to see the retry). */
  sshPort?: number;
  /** LAB_KERNEL_APPEND: extra kernel command line words (a test breaks the boot with them). */
  kernelAppend: string[];
  /** LAB_BOOT_TIMEOUT (seconds): how long a boot may take before it is given up (a test shortens it). */
  bootTimeoutMs?: number;
  /** LAB_STEP_AGENT=0: one SSH channel per step instead of the step agent (the fallback, kept tested). */
  stepAgent: boolean;
}

export interface Config {
  machine: MachineSettings;
  places: Places;
  hooks: TestHooks;
  /** Exercises run with their reference solutions. */
  solutions: boolean;
  /** CI=…: plain lines, never spinners. */
  ci: boolean;
}

/** What the command line may say; every field optional (a command takes only some). */
interface Flags {
  backend?: string;
  rootfs?: string;
  arch?: string;
  kernel?: string | string[];
  memory?: string | number;
  timeoutScale?: string | number;
  warm?: boolean;
  solutions?: boolean;
}

/** The flags a parsed command line gave (commander's option object), as buildConfig takes them. */
export function flagsFrom(o: Record<string, unknown>): Flags {
  return {
    backend: o.backend as string | undefined,
    rootfs: o.rootfs as string | undefined,
    arch: o.arch as string | undefined,
    kernel: o.kernel as string[] | string | undefined,
    memory: o.memory as string | undefined,
    timeoutScale: o.timeoutScale as string | undefined,
    warm: o.warm as boolean | undefined,
    solutions: o.solutions as boolean | undefined,
  };
}

const MIN_MEMORY_MB = 256;
const MAX_MEMORY_MB = 64 * 1024;

function oneOf<T extends string>(what: string, value: string, allowed: readonly T[], fix: string): T {
  const v = value.toLowerCase();
  const hit = allowed.find((a) => a === v);
  if (!hit) throw new UserError(`${what} "${value}" is not one of ${allowed.join(', ')}`, fix);
  return hit;
}

function wholeNumber(what: string, value: string | number, min: number, max: number, fix: string): number {
  const n = typeof value === 'number' ? value : /^\s*\d+\s*$/.test(value) ? Number(value) : NaN;
  if (!Number.isInteger(n) || n < min || n > max) throw new UserError(`${what} must be a whole number from ${min} to ${max}, not "${value}"`, fix);
  return n;
}

/** A plain decimal number (1, 2.5, .5, 1e3); not hex, Infinity or NaN. */
const DECIMAL = /^\s*(\d+\.?\d*|\.\d+)(e[+-]?\d+)?\s*$/i;

function positive(what: string, value: string | number, fix: string): number {
  const n = typeof value === 'number' ? value : DECIMAL.test(value) ? Number(value) : NaN;
  if (!(n > 0) || !Number.isFinite(n)) throw new UserError(`${what} must be a number above 0, not "${value}"`, fix);
  return n;
}

/** A number in [min, max]: timers past 2^31-1 ms fire at once in Node, and a tiny scale times every step out. */
function bounded(what: string, value: string | number, min: number, max: number, fix: string): number {
  const n = typeof value === 'number' ? value : DECIMAL.test(value) ? Number(value) : NaN;
  if (!Number.isFinite(n) || n < min || n > max) throw new UserError(`${what} must be a number from ${min} to ${max}, not "${value}"`, fix);
  return n;
}

/** --timeout-scale's range: 100 × the longest step timeout (300 s) is 8 hours, far inside Node's 24.8-day timer limit; 0.001 still leaves a 60 s step 60 ms (tests use 0.002 to force a timeout). */
export const TIMEOUT_SCALE = { min: 0.001, max: 100 } as const;
/** LAB_BOOT_TIMEOUT's range, in seconds. */
const BOOT_TIMEOUT_S = { min: 1, max: 3600 } as const;

/** --memory: in range, and no more than this machine has (QEMU would only fail, or push the host into swap). */
function memoryFor(value: string | number, help: string): number {
  const mb = wholeNumber('--memory (MiB)', value, MIN_MEMORY_MB, MAX_MEMORY_MB, `e.g. --memory 1024 (${help})`);
  const host = Math.floor(os.totalmem() / 2 ** 20);
  if (mb > host) throw new UserError(`--memory ${mb} is more than this machine has (${host} MiB)`, `e.g. --memory 1024 (at most ${host})`);
  return mb;
}

/** The host folders, from the environment (or the XDG defaults). */
export function placesFrom(env: NodeJS.ProcessEnv = process.env): Places {
  // The XDG spec: a relative XDG_*_HOME is invalid and is ignored.
  const xdg = (v: string | undefined) => (v && path.isAbsolute(v) ? v : undefined);
  // A folder variable that names something else (a file, /proc/version) is refused by name, not met later as a strange error.
  for (const name of ['LAB_CACHE_DIR', 'LAB_STATE_HOME', 'LAB_VM_DIR', 'LABS_DIR'] as const) {
    const v = env[name];
    if (!v) continue;
    let st: fs.Stats | undefined;
    try {
      st = fs.statSync(v);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOTDIR') throw new UserError(`${name}=${v}: a part of that path is a file, not a folder`, `unset ${name}, or set it to a folder`);
    }
    if (st && !st.isDirectory()) throw new UserError(`${name}=${v} is not a folder`, `unset ${name}, or set it to a folder`);
  }
  const cacheDir = env.LAB_CACHE_DIR
    ? path.resolve(env.LAB_CACHE_DIR)
    : path.join(xdg(env.XDG_CACHE_HOME) ?? path.join(os.homedir(), '.cache'), 'sockmap-labs');
  const stateHome = env.LAB_STATE_HOME || xdg(env.XDG_STATE_HOME) || path.join(os.homedir(), '.local/state');
  return {
    cacheDir,
    warmDir: env.LAB_VM_DIR ? path.resolve(env.LAB_VM_DIR) : path.join(cacheDir, 'vm'),
    progressFile: path.join(stateHome, 'sockmap-labs', 'progress.json'),
    labsDir: env.LABS_DIR ? path.resolve(env.LABS_DIR) : path.join(projectRoot, 'labs'),
  };
}

/** A registry's user and password (or token), from LAB_REGISTRY_USER and LAB_REGISTRY_PASSWORD; undefined when neither is set. */
export function registryCredentialsFrom(env: NodeJS.ProcessEnv = process.env): { user: string; password: string } | undefined {
  const user = env.LAB_REGISTRY_USER ?? '';
  const password = env.LAB_REGISTRY_PASSWORD ?? '';
  if (!user && !password) return undefined;
  if (!user) throw new UserError('LAB_REGISTRY_PASSWORD is set but LAB_REGISTRY_USER is not: a registry needs both', 'set LAB_REGISTRY_USER too (for ghcr.io: your GitHub user; in a workflow: ${{ github.actor }})');
  if (!password) throw new UserError(`LAB_REGISTRY_USER is set (${JSON.stringify(user)}) but LAB_REGISTRY_PASSWORD is empty: a registry needs both`, 'set LAB_REGISTRY_PASSWORD to the password or token (for ghcr.io: a token that may write packages), or unset LAB_REGISTRY_USER');
  if (/[:\s]/.test(user)) throw new UserError(`LAB_REGISTRY_USER ${JSON.stringify(user)} holds a colon or a space: not a user name`, 'set it to the user name alone');
  return { user, password };
}

function bootTimeout(v: string): number {
  positive('LAB_BOOT_TIMEOUT (seconds)', v, 'unset LAB_BOOT_TIMEOUT');
  return bounded('LAB_BOOT_TIMEOUT (seconds)', v, BOOT_TIMEOUT_S.min, BOOT_TIMEOUT_S.max, 'unset LAB_BOOT_TIMEOUT');
}

/** The test hooks, from the environment. */
function hooksFrom(env: NodeJS.ProcessEnv = process.env): TestHooks {
  return {
    runTag: env.LAB_RUN_TAG || undefined,
    sshPort: env.LAB_SSH_PORT ? wholeNumber('LAB_SSH_PORT', env.LAB_SSH_PORT, 1, 65535, 'unset LAB_SSH_PORT') : undefined,
    kernelAppend: (env.LAB_KERNEL_APPEND ?? '').split(/\s+/).filter(Boolean),
    bootTimeoutMs: env.LAB_BOOT_TIMEOUT ? bootTimeout(env.LAB_BOOT_TIMEOUT) * 1000 : undefined,
    stepAgent: env.LAB_STEP_AGENT === undefined || env.LAB_STEP_AGENT === '' ? true : oneOf('LAB_STEP_AGENT', env.LAB_STEP_AGENT, ['0', '1'] as const, 'unset LAB_STEP_AGENT, or set it to 0 (one SSH channel per step) or 1') === '1',
  };
}

/**
 * The whole configuration: flags first, then the environment, then defaults.
 * Every value is checked here; a bad one is a UserError (exit status 2).
 */
export function buildConfig(flags: Flags = {}, env: NodeJS.ProcessEnv = process.env): Config {
  const help = 'npm run lab -- --help';
  const backend = oneOf('backend', flags.backend ?? 'qemu', BACKENDS, `use one of: ${BACKENDS.map((b) => `--backend ${b}`).join(', ')}`);
  const accel = oneOf('LAB_ACCEL', env.LAB_ACCEL ?? 'auto', ACCEL_REQUESTS, 'unset LAB_ACCEL, or set it to auto, kvm, hvf or tcg');
  const named = flags.kernel === undefined ? [] : Array.isArray(flags.kernel) ? flags.kernel : [flags.kernel];
  if (named.some((k) => k.trim() === ''))
    throw new UserError('--kernel is empty: it needs the path of a kernel image', 'name a vmlinuz file (e.g. --kernel /boot/vmlinuz-$(uname -r)), or drop --kernel for the guest image');
  const fromEnv = !named.length && !!env.LAB_KERNEL;
  const transport = env.LAB_TRANSPORT ? oneOf('LAB_TRANSPORT', env.LAB_TRANSPORT, TRANSPORTS, 'unset LAB_TRANSPORT, or set it to ssh or serial') : undefined;
  // The guest image unless something asks for the host's root: a kernel of one's
  // own, SSH (the image has no sshd), or a backend that runs on the host's root.
  const rootfs = flags.rootfs
    ? oneOf('--rootfs', flags.rootfs, ROOTFS, 'use --rootfs image (the guest image: npm run image build) or --rootfs host (the host root shared read-only)')
    : backend !== 'qemu' || named.length || fromEnv || transport === 'ssh'
      ? 'host'
      : 'image';
  const archFix = `use --arch ${GUEST_ARCHES.join(' or --arch ')}, or unset LAB_ARCH`;
  const archAsked = flags.arch ?? env.LAB_ARCH;
  const arch = archAsked ? oneOf(flags.arch ? '--arch' : 'LAB_ARCH', archAsked, GUEST_ARCHES, archFix) : (hostArch() ?? 'amd64');
  if (arch !== hostArch() && rootfs === 'host')
    throw new UserError(
      `an ${arch} guest needs the guest image: ${backend === 'qemu' ? 'the host root (--rootfs host)' : `--backend ${backend}`} runs on this machine's own ${hostArch() ?? process.arch} programs`,
      `npm run lab -- <lab> --arch ${arch}   (the guest image, qemu backend; build it with: npm run image build -- --arch ${arch})`,
    );
  if (rootfs === 'image' && transport === 'ssh') throw new UserError('the guest image has no SSH server: it is reached over virtio-serial only', 'unset LAB_TRANSPORT, or use --rootfs host');
  return {
    machine: {
      backend,
      kernels: named.length ? named : fromEnv ? [env.LAB_KERNEL!] : [],
      kernelSource: named.length ? 'option' : fromEnv ? 'env' : 'default',
      accel,
      transport: rootfs === 'image' ? 'serial' : (transport ?? 'ssh'),
      rootfs,
      arch,
      memoryMb: memoryFor(flags.memory ?? 1024, help),
      cpus: Math.min(2, os.cpus().length),
      warm: flags.warm !== false,
      timeoutScale:
        flags.timeoutScale === undefined
          ? undefined
          : bounded('--timeout-scale', flags.timeoutScale, TIMEOUT_SCALE.min, TIMEOUT_SCALE.max, `e.g. --timeout-scale 2 (the default is 2 under TCG, else 1) (${help})`),
    },
    places: placesFrom(env),
    hooks: hooksFrom(env),
    solutions: !!flags.solutions,
    ci: !!env.CI,
  };
}
