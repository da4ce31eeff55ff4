// Talking to a guest over SSH (ssh2): connect with retries until the guest's
// sshd answers, run commands with streamed output, kill them on timeout or
// Ctrl-C, and open an interactive shell.
import fs from 'node:fs';
import type { Client, ClientChannel } from 'ssh2';
import type { ExecOptions, ExecResult } from './backend.ts';
import { StepAgent } from './step-agent.ts';
import { shq } from '../core/shell.ts';
import { wrapStep, killStepCommand, type StepWrapping } from './step-wrapper.ts';

interface SshConnectOptions {
  host: string;
  port: number;
  username: string;
  privateKeyPath: string;
  /** The guest's host public key ("ssh-ed25519 AAAA…"): any other key is refused. */
  hostPublicKey?: string;
  /** Give up connecting after this many ms. */
  deadlineMs: number;
  signal?: AbortSignal;
  /** Where the guest keeps step pid files, for killing a step. */
  wrapping: StepWrapping;
  /** Called between attempts, e.g. to notice that the VM died. */
  onRetry?: () => void;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function connectOnce(o: SshConnectOptions, privateKey: Buffer, timeoutMs: number): Promise<Client> {
  // Loaded on first use (~80 ms): a run on the warm VM's keeper never needs it.
  const { Client } = await import('ssh2');
  const expected = o.hostPublicKey ? Buffer.from(o.hostPublicKey.trim().split(/\s+/)[1] ?? '', 'base64') : undefined;
  return new Promise((resolve, reject) => {
    const c = new Client();
    c.once('ready', () => resolve(c));
    // 'on', not 'once': one failed attempt can report more than one error, and an
    // unhandled second one would kill the runner.
    c.on('error', (e) => {
      c.end();
      reject(e);
    });
    c.connect({
      host: o.host,
      port: o.port,
      username: o.username,
      privateKey,
      readyTimeout: timeoutMs,
      keepaliveInterval: 5000,
      keepaliveCountMax: 6,
      hostVerifier: expected ? (key: Buffer) => key.equals(expected) : undefined,
    });
  });
}

export async function connectSsh(o: SshConnectOptions): Promise<SshTransport> {
  const key = fs.readFileSync(o.privateKeyPath);
  const end = Date.now() + o.deadlineMs;
  let last: Error | undefined;
  while (Date.now() < end) {
    o.signal?.throwIfAborted();
    try {
      const c = await connectOnce(o, key, Math.max(1000, Math.min(20000, end - Date.now())));
      return new SshTransport(c, o.wrapping);
    } catch (e) {
      last = e as Error;
      if (/verification failed/i.test(last.message)) throw new Error('the guest presented an unexpected SSH host key');
    }
    o.onRetry?.();
    await sleep(150);
  }
  throw new Error(`SSH to 127.0.0.1:${o.port} did not answer within ${Math.round(o.deadlineMs / 1000)} s${last ? ` (last error: ${last.message})` : ''}`);
}

export class SshTransport {
  private closed = false;
  private stepCounter = 0;
  /** The step agent: started on the first step; 'none' when the guest has none. */
  private agent?: Promise<StepAgent | 'none'>;

  constructor(
    private readonly client: Client,
    private readonly wrapping: StepWrapping,
  ) {
    client.on('close', () => (this.closed = true));
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Calls back once the connection is gone (the guest died, or close()). */
  onClose(cb: () => void): void {
    if (this.closed) cb();
    else this.client.once('close', cb);
  }

  /** A channel running a raw command string (no wrapping, no kill on timeout); the keeper's step agents use it too. */
  channel(command: string): Promise<ClientChannel> {
    return new Promise((resolve, reject) => {
      if (this.closed) return reject(new Error('the SSH connection to the guest is closed'));
      this.client.exec(command, (err, ch) => (err ? reject(err) : resolve(ch)));
    });
  }

  /** Runs a command and waits for it; no timeout. Used for housekeeping. */
  async run(command: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
    const ch = await this.channel(command);
    return new Promise((resolve) => {
      let stdout = '';
      let stderr = '';
      let code: number | null = null;
      ch.on('data', (d: Buffer) => (stdout += d.toString()));
      ch.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      ch.on('exit', (c: number | null) => (code = c));
      ch.on('close', () => resolve({ code, stdout, stderr }));
    });
  }

  /** Starts the agent over one channel, or settles on 'none' (no agent binary in the guest). */
  private async startAgent(path: string): Promise<StepAgent | 'none'> {
    const ch = await this.channel(`exec ${shq(path)}`);
    const agent = new StepAgent(ch, ch);
    ch.stderr.resume();
    try {
      await agent.started(15_000);
      return agent;
    } catch {
      ch.close();
      return 'none';
    }
  }

  async exec(command: string, opts: ExecOptions = {}): Promise<ExecResult> {
    if (this.wrapping.agent) {
      this.agent ??= this.startAgent(this.wrapping.agent);
      const agent = await this.agent;
      if (agent !== 'none') return agent.exec(command, opts);
    }
    return this.execOnChannel(command, opts);
  }

  /** One SSH channel for one step, wrapped so the step can be killed from a second channel. */
  private async execOnChannel(command: string, opts: ExecOptions = {}): Promise<ExecResult> {
    const started = Date.now();
    const id = `${process.pid}-${++this.stepCounter}`;
    const ch = await this.channel(wrapStep(command, id, this.wrapping, opts.env));
    return new Promise((resolve) => {
      let stdout = '';
      let stderr = '';
      let code: number | null = null;
      let timedOut = false;
      let finished = false;
      ch.setEncoding('utf8');
      ch.stderr.setEncoding('utf8');
      ch.on('data', (d: string) => {
        stdout += d;
        opts.onStdout?.(d);
      });
      ch.stderr.on('data', (d: string) => {
        stderr += d;
        opts.onStderr?.(d);
      });
      ch.on('exit', (c: number | null) => (code = c));
      const kill = () => {
        if (finished) return;
        // Kill the step's whole process group in the guest, then drop the channel.
        this.run(killStepCommand(id, this.wrapping)).catch(() => {});
        setTimeout(() => ch.close(), 2000).unref();
      };
      const timer = opts.timeoutMs
        ? setTimeout(() => {
            timedOut = true;
            kill();
          }, opts.timeoutMs)
        : undefined;
      const onAbort = () => kill();
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      ch.on('close', () => {
        finished = true;
        if (timer) clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
        // setsid's own complaint about the child we killed is noise, not the step's output.
        if (timedOut || opts.signal?.aborted) stderr = stderr.replace(/^setsid: child \d+ did not exit normally.*\n?/m, '');
        resolve({ code: timedOut ? null : code, stdout, stderr, timedOut, durationMs: Date.now() - started });
      });
    });
  }

  /** An interactive shell on the user's terminal, resized along with it. */
  shell(): Promise<number> {
    return new Promise((resolve, reject) => {
      const out = process.stdout;
      this.client.shell({ term: process.env.TERM || 'xterm-256color', rows: out.rows || 24, cols: out.columns || 80 }, (err, ch) => {
        if (err) return reject(err);
        const stdin = process.stdin;
        const wasRaw = stdin.isTTY ? stdin.isRaw : false;
        if (stdin.isTTY) stdin.setRawMode(true);
        stdin.resume();
        stdin.pipe(ch);
        ch.pipe(out);
        ch.stderr.pipe(process.stderr);
        const onResize = () => ch.setWindow(out.rows || 24, out.columns || 80, 0, 0);
        out.on('resize', onResize);
        let code = 0;
        ch.on('exit', (c: number | null) => (code = c ?? 1));
        ch.on('close', () => {
          out.off('resize', onResize);
          stdin.unpipe(ch);
          if (stdin.isTTY) stdin.setRawMode(wasRaw);
          stdin.pause();
          resolve(code);
        });
      });
    });
  }

  close(): void {
    this.closed = true;
    this.client.end();
  }
}
