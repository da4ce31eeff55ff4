// The serial transport without a VM: the real step agent (vm/guest/step-agent.c)
// in --serve mode behind an imitation of QEMU's virtio-serial plumbing, spoken
// to by the runner's side (vm/serial.ts); and the shell console against a fake.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { projectRoot } from '../core/paths.ts';
import { buildGuestPrograms } from '../vm/build.ts';
import { connectAgent, openShell, type AgentLink } from '../vm/serial.ts';
import { frame } from '../vm/step-agent.ts';

const AGENT = path.join(projectRoot, 'build/bin/step-agent');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sml-serial-test-'));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * QEMU's side of a virtio-serial port, imitated. Runners connect to
 * agent.sock (one at a time; the next waits, as QEMU accepts one client per
 * chardev); the guest's agent is `step-agent --serve port.sock`, which
 * connects to port.sock whenever it waits for a host. Bytes from a runner wait
 * until the agent is there; the agent's bytes while no runner is there are
 * lost (QEMU drops them). When a runner leaves, the agent's connection is
 * closed (the port's host side went) — unless `unseen`, which imitates a guest
 * that did not notice before the next runner came.
 */
class FakeQemu {
  readonly agentSocket: string;
  readonly portSocket: string;
  unseen = false;
  private guest?: net.Socket;
  private runner?: net.Socket;
  private pending: Buffer[] = [];
  private queue: net.Socket[] = [];
  private servers: net.Server[] = [];

  constructor(dir: string) {
    this.agentSocket = path.join(dir, 'agent.sock');
    this.portSocket = path.join(dir, 'port.sock');
  }

  async listen(): Promise<void> {
    const guestSide = net.createServer((s) => this.onGuest(s));
    const hostSide = net.createServer((s) => this.onRunner(s));
    this.servers = [guestSide, hostSide];
    await Promise.all([
      new Promise<void>((r) => guestSide.listen(this.portSocket, r)),
      new Promise<void>((r) => hostSide.listen(this.agentSocket, r)),
    ]);
  }

  private onGuest(s: net.Socket) {
    s.on('error', () => {});
    this.guest = s;
    s.on('data', (d: Buffer) => this.runner?.write(d));
    s.once('close', () => this.guest === s && (this.guest = undefined));
    for (const d of this.pending.splice(0)) s.write(d);
  }

  private onRunner(s: net.Socket) {
    s.on('error', () => {});
    if (this.runner) {
      s.pause();
      this.queue.push(s);
    } else this.activate(s);
  }

  private activate(s: net.Socket) {
    this.runner = s;
    s.on('data', (d: Buffer) => (this.guest ? this.guest.write(d) : this.pending.push(d)));
    s.once('close', () => {
      this.runner = undefined;
      this.pending = [];
      if (!this.unseen) this.guest?.destroy();
      const next = this.queue.shift();
      if (next) {
        this.activate(next);
        next.resume();
      }
    });
    s.resume();
  }

  /** The runner vanishes as a killed process would: no 'Q', the connection just ends. */
  dropRunner() {
    this.runner?.destroy();
  }

  close() {
    this.guest?.destroy();
    this.runner?.destroy();
    for (const s of this.servers) s.close();
  }
}

const children: ChildProcess[] = [];
const fakes: FakeQemu[] = [];
const links: AgentLink[] = [];

beforeAll(async () => {
  await buildGuestPrograms();
}, 120_000);

afterEach(() => {
  for (const l of links.splice(0)) l.close();
  for (const c of children.splice(0)) c.kill('SIGKILL');
  for (const f of fakes.splice(0)) f.close();
});

afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

let n = 0;
async function fakeQemu(): Promise<FakeQemu> {
  const dir = path.join(tmp, String(++n));
  fs.mkdirSync(dir);
  const f = new FakeQemu(dir);
  await f.listen();
  fakes.push(f);
  return f;
}

function startAgent(f: FakeQemu): ChildProcess {
  const child = spawn(AGENT, ['--serve', f.portSocket], { stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr!.resume();
  children.push(child);
  return child;
}

async function connect(f: FakeQemu, deadlineMs = 10_000): Promise<AgentLink> {
  const link = await connectAgent(f.agentSocket, { deadlineMs });
  links.push(link);
  return link;
}

/** Running (a zombie waiting for its reaper counts as gone). */
function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}
async function gone(pid: number, ms = 2000): Promise<boolean> {
  for (const end = Date.now() + ms; alive(pid) && Date.now() < end; ) await sleep(50);
  return !alive(pid);
}

/** Starts a step that leaves a background child and waits; resolves with the child's pid and the step's result. */
async function stepWithChild(link: AgentLink, name: string) {
  const pidFile = path.join(tmp, `${name}-${process.pid}`);
  const result = link.agent.exec(`sleep 60 & echo $! > ${pidFile}; wait`);
  for (let i = 0; i < 100 && !fs.existsSync(pidFile); i++) await sleep(20);
  await sleep(50);
  const pid = Number(fs.readFileSync(pidFile, 'utf8'));
  expect(alive(pid)).toBe(true);
  return { pid, result };
}

describe('step agent --serve, through connectAgent', () => {
  it('a runner that comes before the agent is up gets its hello once the agent serves', async () => {
    const f = await fakeQemu();
    const linked = connect(f);
    await sleep(300);
    startAgent(f);
    const link = await linked;
    // Its hello says the kernel's release: a runner needs no `uname -r` step.
    expect(link.agent.kernelRelease).toBe(os.release());
    const r = await link.agent.exec('echo "out $A"; echo err >&2; exit 3', { env: { A: 'serial' } });
    expect(r).toMatchObject({ code: 3, stdout: 'out serial\n', stderr: 'err\n', timedOut: false });
  });

  it('a timeout and an abort kill the step and its group; the session goes on', async () => {
    const f = await fakeQemu();
    startAgent(f);
    const link = await connect(f);
    const pidFile = path.join(tmp, `timeout-${process.pid}`);
    const t = Date.now();
    const r = await link.agent.exec(`sleep 60 & echo $! > ${pidFile}; trap '' TERM; wait`, { timeoutMs: 400 });
    expect(r).toMatchObject({ code: null, timedOut: true });
    expect(Date.now() - t).toBeLessThan(2500);
    expect(await gone(Number(fs.readFileSync(pidFile, 'utf8')))).toBe(true);
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 200);
    const a = await link.agent.exec('sleep 30', { signal: ac.signal });
    expect(a.code).toBeNull();
    expect((await link.agent.exec('echo still here')).stdout).toBe('still here\n');
  });

  /** A runner connected to a fresh agent, with a step (and its child) running. */
  async function runnerWithStep(name: string) {
    const f = await fakeQemu();
    startAgent(f);
    const link = await connect(f);
    return { f, link, ...(await stepWithChild(link, name)) };
  }

  it('a runner that leaves takes its steps with it; the next runner gets an agent of its own', async () => {
    const { f, link: first, pid, result } = await runnerWithStep('leave');
    first.close();
    expect((await result).code).toBeNull();
    expect(await gone(pid)).toBe(true);
    const second = await connect(f);
    // Step ids start again at 1: nothing of the first runner's session answers for them.
    expect((await second.agent.exec('echo second')).stdout).toBe('second\n');
  });

  it('a runner that dies (no goodbye) still takes its steps with it', async () => {
    const { f, pid, result } = await runnerWithStep('die');
    f.dropRunner();
    expect((await result).code).toBeNull();
    expect(await gone(pid)).toBe(true);
  });

  it('a guest that missed the last runner leaving: the next hello ends its steps, and their output never reaches the new runner', async () => {
    const f = await fakeQemu();
    f.unseen = true;
    startAgent(f);
    const first = await connect(f);
    const { pid } = await stepWithChild(first, 'unseen');
    // Output the first runner will never read, some of it in flight when the second comes.
    void first.agent.exec('while :; do echo stale; sleep 0.01; done');
    void first.agent.exec('exit 42');
    await sleep(200);
    f.dropRunner();
    await sleep(100);
    const second = await connect(f);
    expect(await gone(pid)).toBe(true);
    const seen: string[] = [];
    const r = await second.agent.exec('echo fresh', { onStdout: (c) => seen.push(c) });
    expect(r).toMatchObject({ code: 0, stdout: 'fresh\n' });
    expect((await second.agent.exec('exit 5')).code).toBe(5);
    await sleep(200);
    expect(seen.join('')).toBe('fresh\n');
  });

  it('gives up at the deadline when nothing answers, and on abort', async () => {
    const f = await fakeQemu(); // no agent
    const t = Date.now();
    await expect(connectAgent(f.agentSocket, { deadlineMs: 1500 })).rejects.toThrow(/did not answer on .*agent\.sock within 2 s/);
    expect(Date.now() - t).toBeLessThan(3000);
    await expect(connectAgent(path.join(tmp, 'nothing-here.sock'), { deadlineMs: 600 })).rejects.toThrow(/ENOENT|ECONNREFUSED/);
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 200);
    await expect(connectAgent(f.agentSocket, { deadlineMs: 10_000, signal: ac.signal })).rejects.toThrow(/abort/i);
  });

  it('answers a hello with the nonce, its version and the kernel release; on stdin/stdout it still says hello at once', async () => {
    const f = await fakeQemu();
    startAgent(f);
    const raw = net.connect(f.agentSocket);
    const got: Buffer[] = [];
    raw.on('data', (d: Buffer) => got.push(d));
    raw.write(frame('H', 0, Buffer.from('nonce-1')));
    for (let i = 0; i < 50 && !Buffer.concat(got).includes('nonce-1'); i++) await sleep(20);
    // The nonce, the version and the release of the kernel the agent runs on (here the host's).
    expect(Buffer.concat(got).subarray(9).toString()).toBe(`nonce-1 2 ${os.release()}`);
    raw.destroy();

    const child = spawn(AGENT, [], { stdio: ['pipe', 'pipe', 'inherit'] });
    children.push(child);
    const first = await new Promise<Buffer>((r) => child.stdout!.once('data', r));
    expect(String.fromCharCode(first[0])).toBe('H');
  });
});

describe('openShell', () => {
  /** A stand-in for QEMU's shell.sock: records what it gets; `reply` answers each chunk. */
  async function fakeConsole(reply: (d: Buffer, s: net.Socket) => void = () => {}) {
    const file = path.join(tmp, `shell-${++n}.sock`);
    const got: Buffer[] = [];
    let client: net.Socket | undefined;
    const server = net.createServer((s) => {
      client = s;
      s.on('error', () => {});
      s.on('data', (d: Buffer) => {
        got.push(d);
        reply(d, s);
      });
    });
    await new Promise<void>((r) => server.listen(file, r));
    return { file, got: () => Buffer.concat(got).toString('latin1'), client: () => client, close: () => server.close() };
  }

  function terminal(tty = false) {
    const stdin = Object.assign(new PassThrough(), { isTTY: tty, isRaw: false, modes: [] as boolean[], setRawMode(raw: boolean) { this.isRaw = raw; this.modes.push(raw); return this; } });
    const stdout = new PassThrough();
    let shown = '';
    stdout.on('data', (d) => (shown += d));
    return { stdin, stdout, shown: () => shown };
  }

  it('sends Enter first and what is typed; Ctrl-] leaves (nothing after it is sent), the terminal as it was', async () => {
    const c = await fakeConsole((d, s) => s.write(`echo:${d}`));
    const t = terminal(true);
    const done = openShell(c.file, { stdin: t.stdin, stdout: t.stdout });
    await sleep(100);
    t.stdin.write('ls\r');
    await sleep(100);
    t.stdin.write(Buffer.from('pwd\x1dnot this'));
    expect(await done).toBe(0);
    await sleep(100);
    expect(c.got()).toBe('\rls\rpwd');
    expect(t.shown()).toContain("Escape character is '^]'");
    expect(t.shown()).toContain('echo:ls');
    expect(t.shown()).toContain('Left the VM');
    expect(t.stdin.modes).toEqual([true, false]);
    c.close();
  });

  it("ends with the guest shell's exit status when it exits", async () => {
    const c = await fakeConsole((d, s) => {
      if (d.toString().includes('exit')) s.write('logout\r\n[sockmap-labs: the shell ');
      if (d.toString().includes('exit')) setTimeout(() => s.write('exited with status 3]\r\n'), 50);
    });
    const t = terminal();
    const done = openShell(c.file, { stdin: t.stdin, stdout: t.stdout });
    await sleep(100);
    t.stdin.write('exit 3\r');
    expect(await done).toBe(3);
    expect(t.shown()).toContain('shell exited');
    c.close();
  });

  it('ends when the console goes away, and refuses a socket that is not there', async () => {
    const c = await fakeConsole();
    const t = terminal();
    const done = openShell(c.file, { stdin: t.stdin, stdout: t.stdout });
    await sleep(100);
    c.client()!.destroy();
    expect(await done).toBe(1);
    expect(t.shown()).toContain('closed its shell console');
    c.close();
    await expect(openShell(path.join(tmp, 'none.sock'), terminal())).rejects.toThrow(/cannot reach the VM's shell console/);
  });
});
