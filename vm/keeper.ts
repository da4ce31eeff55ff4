// The warm VM's keeper: a small host process that `vm up` leaves running
// beside QEMU. It holds the SSH connection to the guest and keeps one step
// agent started ahead of time, so a lab run on the warm VM skips the SSH
// handshake and the agent's start (~0.5 s of a ~1.8 s re-run under TCG).
//
// A run connects to the keeper's unix socket (0600, in the VM's own 0700
// folder: only the user who started the VM can reach it, as with the SSH key
// beside it) and gets the waiting agent to itself; bytes pass through
// unchanged, so the run speaks the agent's own protocol (vm/step-agent.ts).
// When the run lets go (or dies), the agent's stdin closes, which kills any
// step still running, and the next agent is already waiting.
//
// It exits when QEMU does, when its SSH connection drops, or on SIGTERM
// (`vm down`). A run that cannot reach it connects over SSH as before.
import fs from 'node:fs';
import net from 'node:net';
import type { ClientChannel } from 'ssh2';
import { QEMU_GUEST_PATHS, STEP_PID_DIR, stepAgentPath } from '../core/guest.ts';
import { shq } from '../core/shell.ts';
import { connectSsh, type SshTransport } from './ssh.ts';
import { alive, keeperLog, keeperSocket, type WarmState, type WarmStore } from './warm.ts';

const AGENT = stepAgentPath(QEMU_GUEST_PATHS.build);

/**
 * Starts the keeper for a warm VM and waits until it listens. Returns its pid,
 * or undefined (with the reason) when it did not come up: runs then use SSH.
 */
export async function startKeeper(store: WarmStore, s: WarmState, waitMs = 15_000): Promise<{ pid?: number; problem?: string }> {
  const child = await store.spawnKeeper(s);
  let exited = false;
  child.once('exit', () => (exited = true));
  const end = Date.now() + waitMs;
  while (Date.now() < end && !exited) {
    if (fs.existsSync(keeperSocket(s))) return { pid: child.pid };
    await new Promise((r) => setTimeout(r, 50));
  }
  if (!exited) child.kill('SIGKILL');
  const tail = fs.readFileSync(keeperLog(s.vmDir), 'utf8').trim().split('\n').slice(-3).join(' / ');
  return { problem: exited ? `it exited: ${tail}` : `it did not listen within ${waitMs / 1000} s` };
}

/** An agent started in the guest, its first bytes (the hello) held until a run takes it. */
class WaitingAgent {
  private held: Buffer[] = [];
  private readonly hold = (d: Buffer) => this.held.push(d);
  closed = false;
  /** Resolves on the agent's first bytes; rejects if its channel closes first. */
  readonly ready: Promise<void>;

  constructor(private readonly ch: ClientChannel) {
    this.ready = new Promise((resolve, reject) => {
      ch.once('data', () => resolve());
      ch.once('close', () => reject(new Error('the step agent exited before it started')));
    });
    this.ready.catch(() => {});
    ch.on('data', this.hold);
    ch.once('close', () => (this.closed = true));
    ch.stderr.on('data', (d: Buffer) => process.stdout.write(`agent: ${d}`));
  }

  /** Gives the agent to a run: what it said so far, then a straight pipe both ways. */
  handTo(sock: net.Socket): void {
    // The run gave up waiting (it connects over SSH instead): this agent ends unused.
    if (sock.destroyed) return void this.ch.end();
    this.ch.off('data', this.hold);
    for (const d of this.held) sock.write(d);
    this.held = [];
    this.ch.pipe(sock);
    // The run's end is the agent's stdin EOF: it kills whatever the run left running, then exits.
    sock.pipe(this.ch);
    sock.once('close', () => this.ch.end());
  }
}

function log(line: string) {
  console.log(`${new Date().toISOString()} ${line}`);
}

/** The keeper process itself (vm/keeper-main.ts, started by startKeeper). Never returns. */
export async function runKeeper(store: WarmStore, vmDir: string): Promise<never> {
  const s = store.read();
  if (!s || s.vmDir !== vmDir) {
    log(`no warm VM with folder ${vmDir}`);
    process.exit(1);
  }
  let ssh: SshTransport | undefined;
  let server: net.Server | undefined;
  let run: net.Socket | undefined;
  const stop = (why: string, code = 0): never => {
    log(`stopping: ${why}`);
    server?.close();
    fs.rmSync(keeperSocket(s), { force: true });
    run?.destroy();
    ssh?.close();
    process.exit(code);
  };
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.once(sig, () => stop(sig));
  // QEMU gone, or its folder removed by `vm down`: nothing left to keep.
  setInterval(() => {
    if (!alive(s.pid) || !fs.existsSync(vmDir)) stop('the warm VM is gone');
  }, 1000);

  // A VM on the serial transport has no SSH: its agent serves each run directly.
  if (s.port === undefined || !s.clientKey) stop('this warm VM has no SSH (serial transport): runs need no keeper', 1);
  ssh = await connectSsh({
    host: '127.0.0.1',
    port: s.port!,
    username: 'root',
    privateKeyPath: s.clientKey!,
    hostPublicKey: s.hostPublicKey,
    deadlineMs: 10_000,
    wrapping: { pidDir: STEP_PID_DIR },
  }).catch((e: Error) => stop(`cannot reach the guest: ${e.message}`, 1));
  ssh.onClose(() => stop('the SSH connection to the guest closed'));
  const startAgent = async () => {
    const agent = new WaitingAgent(await ssh.channel(`exec ${shq(AGENT)}`));
    await agent.ready;
    return agent;
  };
  const ahead = () => {
    const p = startAgent();
    p.catch((e: Error) => log(`a step agent did not start: ${e.message}`));
    return p;
  };

  // The agent for the next run, started while the run before it still works.
  let next = ahead();
  await next.catch((e: Error) => stop(`${AGENT}: ${e.message}`, 1));
  let runs = 0;
  const queue: net.Socket[] = [];
  /** Hands an agent to the first run in line, once the run before it has let go. */
  const serveNext = async (): Promise<void> => {
    if (run) return;
    const sock = queue.shift();
    if (!sock) return;
    if (sock.destroyed) return serveNext();
    run = sock;
    const n = ++runs;
    sock.once('close', () => {
      log(`run ${n} detached`);
      run = undefined;
      void serveNext();
    });
    // Taken before any await: a run that comes while this one waits gets the agent after it.
    const mine = next;
    next = ahead();
    let agent: WaitingAgent | undefined = await mine.catch(() => undefined);
    // The waiting agent died (rare): start another for this run.
    if (!agent || agent.closed) agent = await startAgent().catch(() => undefined);
    if (!agent) {
      log(`run ${n}: no step agent to give; it connects over SSH`);
      return void sock.destroy();
    }
    log(`run ${n} attached`);
    agent.handTo(sock);
  };
  server = net.createServer((sock) => {
    sock.on('error', () => {});
    // Runs take the warm VM's lock, so whoever waits in line here is the run
    // after one that is letting go right now: it waits the few ms that takes.
    queue.push(sock);
    void serveNext();
  });
  const socketPath = keeperSocket(s);
  fs.rmSync(socketPath, { force: true });
  // Created private: the umask applies to the socket file bind() makes.
  const umask = process.umask(0o177);
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  process.umask(umask);
  fs.chmodSync(socketPath, 0o600);
  log(`ready on ${socketPath} (qemu pid ${s.pid})`);
  return new Promise<never>(() => {});
}
