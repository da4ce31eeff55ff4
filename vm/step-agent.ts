// The runner's side of vm/guest/step-agent.c: one long-lived stream to the
// agent in the guest (an SSH channel, or a local child in tests), many steps
// over it. See the C file for the frame format.
import { StringDecoder } from 'node:string_decoder';
import type { Readable, Writable } from 'node:stream';
import type { ExecOptions, ExecResult } from './backend.ts';
import { exportsFor } from '../core/shell.ts';
import { EVAL_STEP } from './step-wrapper.ts';

/** How long a killed step may take to report its end before it is given up. */
const KILL_WAIT_MS = 3000;

interface Pending {
  stdout: string;
  stderr: string;
  out: StringDecoder;
  err: StringDecoder;
  opts: ExecOptions;
  timedOut: boolean;
  killed: boolean;
  finish: (code: number | null) => void;
}

export function frame(type: string, id: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(9);
  h.write(type, 0, 'latin1');
  h.writeUInt32LE(id, 1);
  h.writeUInt32LE(payload.length, 5);
  return Buffer.concat([h, payload]);
}

/** argv for one step: bash with the lab's environment, the command evaluated as `bash -c` would. */
function stepArgv(command: string, env?: Record<string, string>): string[] {
  // A bash that sees SSH_CLIENT reads ~/.bashrc even with -c. Where the guest
  // shares the host's /root (vng), the user's rc file would speak into a step's
  // output (and cost seconds): --norc for this bash, no SSH_* for any it starts.
  return ['bash', '--norc', '-c', `unset SSH_CLIENT SSH2_CLIENT SSH_CONNECTION; ${exportsFor(env)} ${EVAL_STEP}`, 'bash', command];
}

export class StepAgent {
  private buf: Buffer = Buffer.alloc(0);
  private pending = new Map<number, Pending>();
  private nextId = 0;
  private closed = false;
  private readonly ready: Promise<void>;
  private helloWords: string[] = [];

  /** `input` is what the agent writes (its stdout); `output` is its stdin. */
  constructor(
    private readonly input: Readable,
    private readonly output: Writable,
  ) {
    this.ready = new Promise((resolve, reject) => {
      this.onHello = resolve;
      this.onEarlyClose = reject;
    });
    // Nobody may be waiting yet: an agent that never starts is seen by exec().
    this.ready.catch(() => {});
    input.on('data', (d: Buffer) => this.receive(d));
    input.on('close', () => this.close());
    input.on('end', () => this.close());
    output.on('error', () => this.close());
  }

  private onHello!: () => void;
  private onEarlyClose!: (e: Error) => void;

  /** Resolves once the agent said hello; rejects if the stream closed first. */
  started(timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`the step agent did not start within ${timeoutMs} ms`)), timeoutMs);
      this.ready.then(
        () => (clearTimeout(t), resolve()),
        (e) => (clearTimeout(t), reject(e)),
      );
    });
  }

  /**
   * The guest kernel's release as the agent's hello gave it (an agent serving a
   * port says it: a runner needs no \`uname -r\` step), once the hello came.
   */
  get kernelRelease(): string | undefined {
    // "nonce version release" on a port; "version" alone over stdin/stdout.
    return this.helloWords.length >= 3 ? this.helloWords[2] : undefined;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  private receive(d: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
    while (this.buf.length >= 9) {
      const len = this.buf.readUInt32LE(5);
      if (this.buf.length < 9 + len) break;
      const type = String.fromCharCode(this.buf[0]);
      const id = this.buf.readUInt32LE(1);
      const payload = this.buf.subarray(9, 9 + len);
      this.buf = this.buf.subarray(9 + len);
      this.dispatch(type, id, payload);
    }
  }

  private dispatch(type: string, id: number, payload: Buffer): void {
    if (type === 'H') {
      this.helloWords = payload.toString('latin1').trim().split(' ');
      this.onHello();
      return;
    }
    // A new agent took the guest's port: the one serving us died, and our steps with it.
    if (type === 'B') {
      this.close();
      return;
    }
    const p = this.pending.get(id);
    if (!p) return;
    if (type === 'O') {
      const s = p.out.write(payload);
      p.stdout += s;
      if (s) p.opts.onStdout?.(s);
    } else if (type === 'E') {
      const s = p.err.write(payload);
      p.stderr += s;
      if (s) p.opts.onStderr?.(s);
    } else if (type === 'X') {
      p.finish(payload.readInt32LE(0));
    }
  }

  exec(command: string, opts: ExecOptions = {}): Promise<ExecResult> {
    if (this.closed) return Promise.reject(new Error('the step agent is gone (its connection closed)'));
    const id = ++this.nextId;
    const started = Date.now();
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      let giveUp: NodeJS.Timeout | undefined;
      const kill = () => {
        if (p.killed) return;
        p.killed = true;
        this.output.write(frame('K', id));
        // The agent reports the end within ~1.5 s even if something else holds
        // the step's pipes; past that the agent itself is stuck.
        giveUp = setTimeout(() => p.finish(null), KILL_WAIT_MS);
        giveUp.unref();
      };
      const onAbort = () => kill();
      const p: Pending = {
        stdout: '',
        stderr: '',
        out: new StringDecoder('utf8'),
        err: new StringDecoder('utf8'),
        opts,
        timedOut: false,
        killed: false,
        finish: (code) => {
          if (!this.pending.delete(id)) return;
          clearTimeout(timer);
          clearTimeout(giveUp);
          opts.signal?.removeEventListener('abort', onAbort);
          p.stdout += p.out.end();
          p.stderr += p.err.end();
          // A killed step has no exit code of its own (as with a dropped SSH channel).
          resolve({ code: p.killed ? null : code, stdout: p.stdout, stderr: p.stderr, timedOut: p.timedOut, durationMs: Date.now() - started });
        },
      };
      this.pending.set(id, p);
      if (opts.timeoutMs)
        timer = setTimeout(() => {
          p.timedOut = true;
          kill();
        }, opts.timeoutMs);
      if (opts.signal?.aborted) kill();
      else opts.signal?.addEventListener('abort', onAbort, { once: true });
      const argv = Buffer.from(stepArgv(command, opts.env).map((a) => `${a}\0`).join(''));
      this.output.write(frame('R', id, argv));
    });
  }

  /** The stream ended: every step still running ends with no exit code. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    // No effect once the agent has said hello.
    this.onEarlyClose(new Error('the step agent exited before it started'));
    for (const p of [...this.pending.values()]) p.finish(null);
  }
}
