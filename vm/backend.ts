// The one interface every way of running lab steps implements: a QEMU VM,
// a virtme-ng VM, or the host itself. The runner only talks to this.
import type { BackendName } from '../core/config.ts';
import type { GuestPaths } from '../core/guest.ts';

export interface ExecOptions {
  /** Kill the command after this many milliseconds. */
  timeoutMs?: number;
  /** Extra environment variables for the command. */
  env?: Record<string, string>;
  /** Called with each chunk of output as it arrives. */
  onStdout?: (chunk: string) => void;
  onStderr?: (chunk: string) => void;
  /** Aborting kills the command (Ctrl-C). */
  signal?: AbortSignal;
}

export interface ExecResult {
  /** Exit code, or null when the command was killed. */
  code: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  durationMs: number;
}

export interface BackendInfo {
  backend: BackendName;
  /** `uname -r` of the kernel the steps run on. */
  kernelRelease: string;
  /** e.g. 'kvm', 'hvf', 'tcg', or 'none' for the host backend. */
  accel: string;
  /** The guest's architecture (Debian's name: amd64, arm64). */
  arch?: string;
  /** The guest image's digest (its manifest's `digest`, sha256 hex) when the VM booted the guest image. */
  imageDigest?: string;
  /** Serial console log, when there is one. */
  consoleLog?: string;
}

export interface Backend {
  readonly name: BackendInfo['backend'];
  /** Boot (or attach to) the machine; resolves when commands can run. */
  start(signal?: AbortSignal): Promise<BackendInfo>;
  /** Run one shell command (bash -c) as root. */
  exec(command: string, opts?: ExecOptions): Promise<ExecResult>;
  /** An interactive shell with the user's terminal; resolves with its exit code. */
  shell(): Promise<number>;
  /** Why the machine can no longer run steps (it panicked, QEMU died, SSH is gone), or undefined while it can. */
  health?(): string | undefined;
  /** Stop the machine and remove everything start() created. Safe to call twice. */
  stop(): Promise<void>;
  readonly paths: GuestPaths;
}
