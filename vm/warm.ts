// A warm VM: `npm run vm up` boots a VM that stays up; `lab`, `shell` and
// `vm exec` attach to it over SSH instead of booting (no boot, ~0.3 s to
// connect); `vm down` stops it. Its state file (0600, in a 0700 folder) holds
// what it takes to reach it: QEMU's pid, the forwarded port, the per-VM key.
//
// A keeper process (vm/keeper.ts) holds an SSH connection and a step agent
// ready for the next run; a run that cannot reach it uses SSH itself.
//
// Two runs at once never share it: a run takes the VM's lock for as long as
// it uses it, and a second run finds it busy and boots its own throw-away VM.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { UserError } from '../runner/errors.ts';
import type { Backend, BackendInfo, ExecOptions, ExecResult } from './backend.ts';
import { cacheDir, projectRoot } from './cache.ts';
import { GUEST_PATHS, type VmHandle } from './qemu.ts';
import { connectSsh, type SshTransport } from './ssh.ts';
import { StepAgent } from './step-agent.ts';
import { stepAgent } from './step-wrapper.ts';

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

/** Starts the warm VM's keeper (vm/keeper.ts) and does not wait for it. */
export function spawnKeeper(s: WarmState): ChildProcess {
  fs.rmSync(keeperSocket(s), { force: true });
  const log = fs.openSync(keeperLog(s.vmDir), 'a', 0o600);
  // Detached, in a process group of its own: a Ctrl-C in the terminal that started it does not reach it.
  const child = spawn(process.execPath, [path.join(projectRoot, 'runner', 'launch.mjs'), 'vm', 'keeper', s.vmDir], { detached: true, stdio: ['ignore', log, log] });
  fs.closeSync(log);
  child.unref();
  return child;
}

/** Where the warm VM's state lives; LAB_VM_DIR gives tests (or a second user) their own. */
export const warmDir = () => (process.env.LAB_VM_DIR ? path.resolve(process.env.LAB_VM_DIR) : path.join(cacheDir(), 'vm'));
const stateFile = () => path.join(warmDir(), 'state.json');
const lockFile = () => path.join(warmDir(), 'lock');

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

export function writeState(s: WarmState): void {
  fs.mkdirSync(warmDir(), { recursive: true, mode: 0o700 });
  fs.chmodSync(warmDir(), 0o700);
  const tmp = `${stateFile()}.${process.pid}`;
  fs.writeFileSync(tmp, JSON.stringify(s, null, 2), { mode: 0o600 });
  fs.renameSync(tmp, stateFile());
}

/** The warm VM, if one is up; a stale state file (QEMU gone) is removed. */
export function readState(): WarmState | undefined {
  let s: WarmState;
  try {
    s = JSON.parse(fs.readFileSync(stateFile(), 'utf8'));
  } catch {
    return undefined;
  }
  if (alive(s.pid)) return s;
  forget(s);
  return undefined;
}

function forget(s?: WarmState) {
  if (s?.vmDir) fs.rmSync(s.vmDir, { recursive: true, force: true });
  fs.rmSync(stateFile(), { force: true });
  fs.rmSync(lockFile(), { force: true });
}

/** Stops the warm VM and removes its keys and state. Returns what was stopped. */
export async function stopWarm(): Promise<WarmState | undefined> {
  const s = readState();
  if (!s) {
    forget();
    return undefined;
  }
  if (keeperAlive(s)) process.kill(s.keeperPid!, 'SIGTERM');
  const kill = (sig: NodeJS.Signals) => {
    try {
      process.kill(-s.pid, sig);
    } catch {
      /* gone */
    }
  };
  kill('SIGTERM');
  for (let i = 0; i < 30 && (alive(s.pid) || keeperAlive(s)); i++) await new Promise((r) => setTimeout(r, 100));
  if (alive(s.pid)) kill('SIGKILL');
  forget(s);
  return s;
}

/** Is the warm VM's keeper still running? */
export function keeperAlive(s: WarmState): boolean {
  return !!s.keeperPid && alive(s.keeperPid, 'keeper');
}

/** The keeper's waiting step agent, or undefined when there is no keeper to hand one over. */
async function agentFromKeeper(s: WarmState, signal?: AbortSignal): Promise<{ agent: StepAgent; sock: net.Socket } | undefined> {
  // LAB_STEP_AGENT=0 asks for a channel per step, which only a connection of our own gives.
  if (!keeperAlive(s) || !stepAgent('keeper')) return undefined;
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

let unlockOnExit = false;

/** Takes the warm VM's lock; false when another live run holds it. */
export function tryLock(): boolean {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.writeFileSync(lockFile(), String(process.pid), { flag: 'wx', mode: 0o600 });
      // One hook for the process, however many runs it makes (the soak makes hundreds).
      if (!unlockOnExit) process.once('exit', () => unlock());
      unlockOnExit = true;
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const holder = Number(fs.readFileSync(lockFile(), 'utf8'));
      let holderAlive = false;
      try {
        process.kill(holder, 0);
        holderAlive = true;
      } catch {
        /* the holder died without unlocking */
      }
      if (holderAlive && holder !== process.pid) return false;
      fs.rmSync(lockFile(), { force: true });
    }
  }
  return false;
}

export function unlock(): void {
  try {
    if (Number(fs.readFileSync(lockFile(), 'utf8')) === process.pid) fs.rmSync(lockFile());
  } catch {
    /* not ours, or gone */
  }
}

/** Talks to the warm VM; stop() only lets go of it (and of its lock). */
export class AttachedBackend implements Backend {
  readonly name = 'qemu' as const;
  readonly paths = GUEST_PATHS;
  private ssh?: SshTransport;
  /** The step agent the keeper handed over, and the socket it came on. */
  private kept?: { agent: StepAgent; sock: net.Socket };

  constructor(readonly state: WarmState) {}

  async start(signal?: AbortSignal): Promise<BackendInfo> {
    if (this.state.projectRoot !== projectRoot)
      throw new UserError(`the warm VM shares another checkout (${this.state.projectRoot})`, 'npm run vm -- down');
    this.kept = await agentFromKeeper(this.state, signal);
    if (!this.kept) await this.connect(signal);
    return { backend: 'qemu', kernelRelease: this.state.kernelRelease, accel: this.state.accel, consoleLog: this.state.consoleLog };
  }

  private async connect(signal?: AbortSignal): Promise<void> {
    this.ssh = await connectSsh({
      host: '127.0.0.1',
      port: this.state.port,
      username: 'root',
      privateKeyPath: this.state.clientKey,
      hostPublicKey: this.state.hostPublicKey,
      deadlineMs: 10_000,
      signal,
      wrapping: { pidDir: '/run/sockmap-labs/steps', agent: stepAgent(`${GUEST_PATHS.build}/bin/step-agent`) },
    });
  }

  exec(command: string, opts?: ExecOptions): Promise<ExecResult> {
    if (this.kept) {
      if (this.kept.agent.isClosed) return Promise.reject(new UserError('lost the connection to the warm VM', 'npm run vm -- status'));
      return this.kept.agent.exec(command, opts);
    }
    if (!this.ssh || this.ssh.isClosed) return Promise.reject(new UserError('lost the SSH connection to the warm VM', 'npm run vm -- status'));
    return this.ssh.exec(command, opts);
  }

  /** An interactive shell needs a PTY, which only SSH gives: connect for it. */
  async shell(): Promise<number> {
    if (!this.ssh) await this.connect();
    return this.ssh!.shell();
  }

  health(): string | undefined {
    if (!alive(this.state.pid)) return 'the warm VM is gone (QEMU exited)';
    if (this.kept?.agent.isClosed) return 'the connection to the warm VM was lost';
    if (this.ssh?.isClosed) return 'the SSH connection to the warm VM was lost';
    return undefined;
  }

  async stop(): Promise<void> {
    // Closed outright, not half-closed: end() would keep this process waiting
    // for the guest's agent to exit. The keeper ends the agent either way.
    this.kept?.sock.destroy();
    this.ssh?.close();
    this.ssh = undefined;
    // This run went over SSH because the keeper was gone (killed, or its connection dropped):
    // start another for the next run, while this one still holds the lock.
    const now = this.kept || !stepAgent('keeper') ? undefined : readState();
    if (now?.vmDir === this.state.vmDir && !keeperAlive(now)) {
      const child = spawnKeeper(now);
      if (child.pid) writeState({ ...now, keeperPid: child.pid });
    }
    this.kept = undefined;
    unlock();
  }
}
