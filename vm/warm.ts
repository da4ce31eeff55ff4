// A warm VM: `npm run vm up` boots a VM that stays up; `lab`, `shell` and
// `vm exec` attach to it instead of booting (no boot, ~0.3 s to connect);
// `vm down` stops it. Its state file (0600, in a 0700 folder) holds what it
// takes to reach it: QEMU's pid, and the forwarded port and per-VM key (ssh
// transport) or QEMU's sockets in the VM's folder (serial transport).
//
// ssh: a keeper process (vm/keeper.ts) holds an SSH connection and a step
// agent ready for the next run; a run that cannot reach it uses SSH itself.
// serial: a run connects to the agent's socket itself. The guest's agent
// serves the next runner as soon as the last one left: no keeper is needed.
//
// Two runs at once never share it: a run takes the VM's lock for as long as
// it uses it (vm/session.ts takes and releases it), and a second run finds it
// busy and boots its own throw-away VM.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { freshBundle } from '../core/bundle.mjs';
import { UserError } from '../core/errors.ts';
import { imageGuestPaths, QEMU_GUEST_PATHS, STEP_PID_DIR, stepAgentPath, type GuestPaths } from '../core/guest.ts';
import { signalGroup, sleep } from '../core/process-group.ts';
import type { Backend, BackendInfo, ExecOptions, ExecResult } from './backend.ts';
import type { VmHandle } from './qemu.ts';
import { connectAgent, serialShell, type AgentLink } from './serial.ts';
import { connectSsh, type SshTransport } from './ssh.ts';
import { StepAgent } from './step-agent.ts';

export interface WarmState extends VmHandle {
  startedAt: string;
  /** The checkout the VM shares: another checkout cannot use it. */
  projectRoot: string;
  /** The keeper's pid, when one was started. */
  keeperPid?: number;
}

/** Where the warm VM's keeper listens: in the VM's own 0700 folder, gone with it. */
export const keeperSocket = (s: WarmState) => path.join(s.vmDir, 'keeper.sock');
export const keeperLog = (vmDir: string) => path.join(vmDir, 'keeper.log');

export function alive(pid: number, what = 'qemu-system'): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
  // A pid can be reused: make sure it is still ours.
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(what);
  } catch {
    return true;
  }
}

/** Is the warm VM's keeper still running? */
export function keeperAlive(s: WarmState): boolean {
  return !!s.keeperPid && alive(s.keeperPid, 'keeper');
}

/** The warm VM's folder (Places.warmDir): its state file and its lock. */
export class WarmStore {
  private unlockOnExit = false;

  constructor(readonly dir: string) {}

  private get stateFile() {
    return path.join(this.dir, 'state.json');
  }

  private get lockFile() {
    return path.join(this.dir, 'lock');
  }

  write(s: WarmState): void {
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    fs.chmodSync(this.dir, 0o700);
    const tmp = `${this.stateFile}.${process.pid}`;
    fs.writeFileSync(tmp, JSON.stringify(s, null, 2), { mode: 0o600 });
    fs.renameSync(tmp, this.stateFile);
  }

  /** The warm VM, if one is up; a stale state file (QEMU gone) is removed. */
  read(): WarmState | undefined {
    let s: WarmState;
    try {
      s = JSON.parse(fs.readFileSync(this.stateFile, 'utf8'));
    } catch {
      return undefined;
    }
    if (alive(s.pid)) return s;
    this.forget(s);
    return undefined;
  }

  private forget(s?: WarmState) {
    if (s?.vmDir) fs.rmSync(s.vmDir, { recursive: true, force: true });
    fs.rmSync(this.stateFile, { force: true });
    fs.rmSync(this.lockFile, { force: true });
  }

  /** Stops the warm VM and removes its keys and state. Returns what was stopped. */
  async stop(): Promise<WarmState | undefined> {
    const s = this.read();
    if (!s) {
      this.forget();
      return undefined;
    }
    if (keeperAlive(s)) process.kill(s.keeperPid!, 'SIGTERM');
    signalGroup(s.pid, 'SIGTERM');
    for (let i = 0; i < 30 && (alive(s.pid) || keeperAlive(s)); i++) await sleep(100);
    if (alive(s.pid)) signalGroup(s.pid, 'SIGKILL');
    this.forget(s);
    return s;
  }

  /** Takes the warm VM's lock; false when another live run holds it. */
  tryLock(): boolean {
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        fs.writeFileSync(this.lockFile, String(process.pid), { flag: 'wx', mode: 0o600 });
        // One hook for the process, however many runs it makes (the soak makes hundreds).
        if (!this.unlockOnExit) process.once('exit', () => this.unlock());
        this.unlockOnExit = true;
        return true;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        const holder = Number(fs.readFileSync(this.lockFile, 'utf8'));
        if (holder !== process.pid && alive(holder, '')) return false;
        fs.rmSync(this.lockFile, { force: true }); // the holder died without unlocking
      }
    }
    return false;
  }

  unlock(): void {
    try {
      if (Number(fs.readFileSync(this.lockFile, 'utf8')) === process.pid) fs.rmSync(this.lockFile);
    } catch {
      /* not ours, or gone */
    }
  }

  /** Starts the warm VM's keeper (vm/keeper-main.ts) and does not wait for it. */
  async spawnKeeper(s: WarmState): Promise<ChildProcess> {
    fs.rmSync(keeperSocket(s), { force: true });
    const entry = await freshBundle('keeper', 'vm/keeper-main.ts');
    const log = fs.openSync(keeperLog(s.vmDir), 'a', 0o600);
    // Detached, in a process group of its own: a Ctrl-C in the terminal that started it does not reach it.
    const child = spawn(process.execPath, [entry, this.dir, s.vmDir], { detached: true, stdio: ['ignore', log, log] });
    fs.closeSync(log);
    child.unref();
    return child;
  }
}

/** The keeper's waiting step agent, or undefined when there is no keeper to hand one over. */
async function agentFromKeeper(s: WarmState, signal?: AbortSignal): Promise<{ agent: StepAgent; sock: net.Socket } | undefined> {
  if (!keeperAlive(s)) return undefined;
  const sock = net.connect(keeperSocket(s));
  sock.on('error', () => {});
  const agent = new StepAgent(sock, sock);
  try {
    signal?.throwIfAborted();
    await agent.started(5000);
    return { agent, sock };
  } catch {
    sock.destroy();
    return undefined;
  }
}

/** Talks to the warm VM; stop() only lets go of it. The caller holds the VM's lock. */
export class AttachedBackend implements Backend {
  readonly name = 'qemu' as const;
  readonly paths: GuestPaths;
  private ssh?: SshTransport;
  /** The step agent the keeper handed over, and the socket it came on. */
  private kept?: { agent: StepAgent; sock: net.Socket };
  /** The serial transport: our session with the guest's agent. */
  private link?: AgentLink;

  constructor(
    readonly state: WarmState,
    private readonly store: WarmStore,
    /** false: one SSH channel per step (a test hook), which only a connection of our own gives. */
    private readonly useAgent = true,
  ) {
    this.paths = state.hostBuild ? imageGuestPaths(state.hostBuild) : QEMU_GUEST_PATHS;
  }

  async start(signal?: AbortSignal): Promise<BackendInfo> {
    if (this.state.agentSocket) this.link = await connectAgent(this.state.agentSocket, { deadlineMs: 10_000, signal });
    else if (this.useAgent) this.kept = await agentFromKeeper(this.state, signal);
    if (!this.kept && !this.link) await this.connect(signal);
    return { backend: 'qemu', kernelRelease: this.state.kernelRelease, accel: this.state.accel, consoleLog: this.state.consoleLog };
  }

  private async connect(signal?: AbortSignal): Promise<void> {
    this.ssh = await connectSsh({
      host: '127.0.0.1',
      port: this.state.port!,
      username: 'root',
      privateKeyPath: this.state.clientKey!,
      hostPublicKey: this.state.hostPublicKey,
      deadlineMs: 10_000,
      signal,
      wrapping: { pidDir: STEP_PID_DIR, agent: this.useAgent ? stepAgentPath(this.paths.build) : undefined },
    });
  }

  exec(command: string, opts?: ExecOptions): Promise<ExecResult> {
    if (this.link) {
      if (this.link.agent.isClosed) return Promise.reject(new UserError('lost the connection to the warm VM', 'npm run vm -- status'));
      return this.link.agent.exec(command, opts);
    }
    if (this.kept) {
      if (this.kept.agent.isClosed) return Promise.reject(new UserError('lost the connection to the warm VM', 'npm run vm -- status'));
      return this.kept.agent.exec(command, opts);
    }
    if (!this.ssh || this.ssh.isClosed) return Promise.reject(new UserError('lost the SSH connection to the warm VM', 'npm run vm -- status'));
    return this.ssh.exec(command, opts);
  }

  /** An interactive shell: the guest's shell console (serial), or a PTY, which only SSH gives: connect for it. */
  async shell(): Promise<number> {
    if (this.link) return serialShell(this.link, this.state.shellSocket!);
    if (!this.ssh) await this.connect();
    return this.ssh!.shell();
  }

  health(): string | undefined {
    if (!alive(this.state.pid)) return 'the warm VM is gone (QEMU exited)';
    if (this.kept?.agent.isClosed || this.link?.agent.isClosed) return 'the connection to the warm VM was lost';
    if (this.ssh?.isClosed) return 'the SSH connection to the warm VM was lost';
    return undefined;
  }

  async stop(): Promise<void> {
    // Closed outright, not half-closed: end() would keep this process waiting
    // for the guest's agent to exit. The keeper ends the agent either way.
    this.kept?.sock.destroy();
    // The agent kills this run's steps and serves the next run.
    this.link?.close();
    this.link = undefined;
    this.ssh?.close();
    this.ssh = undefined;
    // This run went over SSH because the keeper was gone (killed, or its connection dropped):
    // start another for the next run, while this one still holds the lock.
    const now = this.kept || this.state.agentSocket || !this.useAgent ? undefined : this.store.read();
    if (now?.vmDir === this.state.vmDir && !keeperAlive(now)) {
      const child = await this.store.spawnKeeper(now);
      if (child.pid) this.store.write({ ...now, keeperPid: child.pid });
    }
    this.kept = undefined;
  }
}
