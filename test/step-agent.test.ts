// The step agent (vm/guest/step-agent.c) run on the host, spoken to by the
// runner's client (vm/step-agent.ts) over its stdin/stdout, as over SSH.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildGuestPrograms } from '../vm/build.ts';
import { projectRoot } from '../core/paths.ts';
import { frame, StepAgent } from '../vm/step-agent.ts';

const AGENT = path.join(projectRoot, 'build/bin/step-agent');
const children: ChildProcess[] = [];

beforeAll(async () => {
  await buildGuestPrograms();
}, 120_000);

afterEach(() => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
});

async function startAgent(): Promise<{ agent: StepAgent; child: ChildProcess }> {
  const child = spawn(AGENT, [], { stdio: ['pipe', 'pipe', 'inherit'] });
  children.push(child);
  const agent = new StepAgent(child.stdout!, child.stdin!);
  await agent.started(5000);
  return { agent, child };
}

/** Running (a zombie waiting for its reaper counts as gone). */
function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}
async function gone(pid: number): Promise<boolean> {
  for (let i = 0; i < 20 && alive(pid); i++) await sleep(50);
  return !alive(pid);
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('step agent', () => {
  it('runs a step as bash -c would: stdout, stderr, exit code, environment', async () => {
    const { agent } = await startAgent();
    const r = await agent.exec('echo "out $A"; echo err >&2; echo "$0 $#"; exit 3', { env: { A: "it's" } });
    expect(r).toMatchObject({ code: 3, stdout: "out it's\nbash 0\n", stderr: 'err\n', timedOut: false });
    // stdin is /dev/null, and each step is a session leader of its own.
    const s = await agent.exec('cat; ps -o sid=,pid= -p $$');
    const [sid, pid] = s.stdout.trim().split(/\s+/);
    expect(sid).toBe(pid);
  });

  it('a step gets fds 0, 1 and 2 only (lab 03 inserts a closed fd and expects EBADF)', async () => {
    const { agent } = await startAgent();
    // The shell's own listing fd is the fourth; nothing of the agent's leaks into the step.
    const r = await agent.exec('ls /proc/self/fd | sort -n | tr "\\n" " "');
    expect(r.stdout.trim()).toBe('0 1 2 3');
  });

  it('streams output and keeps UTF-8 and large output intact', async () => {
    const { agent } = await startAgent();
    const chunks: string[] = [];
    const r = await agent.exec("for i in $(seq 20000); do echo \"ligne $i: é✓\"; done", { onStdout: (c) => chunks.push(c) });
    const want = Array.from({ length: 20000 }, (_, i) => `ligne ${i + 1}: é✓\n`).join('');
    expect(r.stdout).toBe(want);
    expect(chunks.join('')).toBe(want);
    expect(chunks.length).toBeGreaterThan(1);
  });

  it('runs steps side by side on one agent', async () => {
    const { agent } = await startAgent();
    const t = Date.now();
    const rs = await Promise.all([1, 2, 3, 4].map((i) => agent.exec(`sleep 0.5; echo ${i}; exit ${i}`)));
    expect(rs.map((r) => [r.code, r.stdout])).toEqual([1, 2, 3, 4].map((i) => [i, `${i}\n`]));
    expect(Date.now() - t).toBeLessThan(2000);
  });

  it('a timeout kills the step and its children within 2 s; the agent runs the next step', async () => {
    const { agent } = await startAgent();
    const pidFile = path.join(os.tmpdir(), `sml-agent-child-${process.pid}`);
    const t = Date.now();
    const r = await agent.exec(`sleep 60 & echo $! > ${pidFile}; trap '' TERM; wait`, { timeoutMs: 500 });
    expect(r.timedOut).toBe(true);
    expect(r.code).toBeNull();
    expect(Date.now() - t).toBeLessThan(2500);
    const child = Number(fs.readFileSync(pidFile, 'utf8'));
    fs.rmSync(pidFile);
    expect(await gone(child)).toBe(true);
    expect((await agent.exec('echo still here')).stdout).toBe('still here\n');
  });

  it('an abort (Ctrl-C) kills the step', async () => {
    const { agent } = await startAgent();
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 300);
    const r = await agent.exec('sleep 30', { signal: ac.signal });
    expect(r.code).toBeNull();
    expect(r.durationMs).toBeLessThan(2500);
  });

  it('a step killed while something outside its group holds its output still ends', async () => {
    const { agent } = await startAgent();
    const pidFile = path.join(os.tmpdir(), `sml-agent-holder-${process.pid}`);
    const r = await agent.exec(`setsid sleep 30 & echo $! > ${pidFile}; sleep 30`, { timeoutMs: 300 });
    expect(r.timedOut).toBe(true);
    expect(r.durationMs).toBeLessThan(3500);
    process.kill(Number(fs.readFileSync(pidFile, 'utf8')), 'SIGKILL');
    fs.rmSync(pidFile);
  });

  it('when the runner goes away, every running step dies and the agent exits', async () => {
    const { agent, child } = await startAgent();
    const pidFile = path.join(os.tmpdir(), `sml-agent-orphan-${process.pid}`);
    const running = agent.exec(`sleep 60 & echo $! > ${pidFile}; wait`);
    await sleep(300);
    const grandchild = Number(fs.readFileSync(pidFile, 'utf8'));
    fs.rmSync(pidFile);
    const exited = new Promise((r) => child.once('exit', r));
    child.stdin!.end();
    await exited;
    expect((await running).code).toBeNull();
    expect(await gone(grandchild)).toBe(true);
  });

  it('a program that cannot run, or no program at all, is exit code 127 with the reason', async () => {
    const { child } = await startAgent();
    // Speak the protocol by hand: argv that names no program.
    const out: Buffer[] = [];
    child.stdout!.on('data', (d: Buffer) => out.push(d));
    // An empty run request, then a good one in the same write: the first is
    // refused, the second still runs.
    child.stdin!.write(Buffer.concat([frame('R', 7, Buffer.from('/no/such/program\0')), frame('R', 8), frame('R', 9, Buffer.from('true\0'))]));
    await sleep(500);
    const all = Buffer.concat(out);
    expect(all.toString('latin1')).toContain('step-agent: cannot run /no/such/program');
    const exits = new Map<number, number>();
    for (let o = 0; o + 9 <= all.length; o += 9 + all.readUInt32LE(o + 5))
      if (all[o] === 'X'.charCodeAt(0)) exits.set(all.readUInt32LE(o + 1), all.readInt32LE(o + 9));
    expect(Object.fromEntries(exits)).toEqual({ 7: 127, 8: 127, 9: 0 });
  });
});

describe("the runner's client", () => {
  it("takes a 'B' frame (a new agent took the guest's port) as its agent gone: the running step ends with no exit code", async () => {
    const { PassThrough } = await import('node:stream');
    const fromAgent = new PassThrough();
    const toAgent = new PassThrough();
    const agent = new StepAgent(fromAgent, toAgent);
    fromAgent.write(frame('H', 0, Buffer.from('1')));
    await agent.started(1000);
    const step = agent.exec('sleep 300');
    fromAgent.write(frame('O', 1, Buffer.from('started\n')));
    fromAgent.write(frame('B', 0));
    const r = await step;
    expect(r.code).toBeNull();
    expect(agent.isClosed).toBe(true);
  });
});
