// A Backend for unit tests: no machine, each command answered from a script the
// test gives. It records every call, streams output through onStdout/onStderr,
// and honours timeoutMs and signal the way the real backends do (a timeout
// resolves { code: null, timedOut: true }; an abort resolves { code: null }).
import type { GuestPaths } from '../core/guest.ts';
import type { Backend, BackendInfo, ExecOptions, ExecResult } from '../vm/backend.ts';

/** How the fake answers one command. */
export type Reply =
  /** Finish at once with this status and output (code defaults to 0). Output is streamed chunk by chunk first. */
  | { code?: number | null; stdout?: string | string[]; stderr?: string | string[] }
  /** Run until killed: by opts.timeoutMs (timedOut) or opts.signal. */
  | { hang: true }
  /** The machine dies under the command: health() says `die` from now on, exec resolves with no exit status. */
  | { die: string }
  /** exec rejects with this error (a broken channel, say). */
  | { throw: Error };

/** Answers a command; undefined means "exit 0, no output" (setup, teardown, anything unscripted). */
type Script = (command: string, opts: ExecOptions, call: number) => Reply | undefined;

interface ExecCall {
  command: string;
  env: Record<string, string> | undefined;
  timeoutMs: number | undefined;
  signal: AbortSignal | undefined;
  /** How the call ended: 'exit', 'timeout', 'abort', 'died', 'threw'. */
  outcome?: string;
}

export const FAKE_PATHS: GuestPaths = { project: '/guest/project', build: '/guest/build', state: '/guest/state' };

export class FakeBackend implements Backend {
  readonly name = 'qemu' as const;
  readonly paths = FAKE_PATHS;
  readonly calls: ExecCall[] = [];
  /** Why the machine is dead; health() answers this unless `healthAnswers` says otherwise. */
  deadReason: string | undefined;
  /** health() answers these in turn once the machine is dead (the last one repeats); for a reason that settles late. */
  healthAnswers: string[] | undefined;
  healthCalls = 0;

  constructor(private readonly script: Script = () => undefined) {}

  async start(): Promise<BackendInfo> {
    return { backend: 'qemu', kernelRelease: '6.12.0', accel: 'kvm' };
  }
  async shell(): Promise<number> {
    return 0;
  }
  async stop(): Promise<void> {}

  health(): string | undefined {
    this.healthCalls++;
    if (this.deadReason === undefined) return undefined;
    if (this.healthAnswers?.length) return this.healthAnswers.length > 1 ? this.healthAnswers.shift() : this.healthAnswers[0];
    return this.deadReason;
  }

  /** The commands exec got, in order. */
  get commands(): string[] {
    return this.calls.map((c) => c.command);
  }

  exec(command: string, opts: ExecOptions = {}): Promise<ExecResult> {
    const call: ExecCall = { command, env: opts.env, timeoutMs: opts.timeoutMs, signal: opts.signal };
    this.calls.push(call);
    if (this.deadReason !== undefined) {
      call.outcome = 'threw';
      return Promise.reject(new Error(`exec on a dead machine: ${this.deadReason}`));
    }
    const reply = this.script(command, opts, this.calls.length - 1) ?? {};
    const started = Date.now();
    const end = (code: number | null, stdout: string, stderr: string, timedOut: boolean): ExecResult => ({
      code,
      stdout,
      stderr,
      timedOut,
      durationMs: Date.now() - started,
    });
    if ('throw' in reply) {
      call.outcome = 'threw';
      return Promise.reject(reply.throw);
    }
    if ('die' in reply) {
      this.deadReason = reply.die;
      call.outcome = 'died';
      return Promise.resolve(end(null, '', '', false));
    }
    if ('hang' in reply) {
      return new Promise((resolve) => {
        let timer: ReturnType<typeof setTimeout> | undefined;
        const finish = (timedOut: boolean) => {
          clearTimeout(timer);
          opts.signal?.removeEventListener('abort', onAbort);
          call.outcome = timedOut ? 'timeout' : 'abort';
          resolve(end(null, '', '', timedOut));
        };
        const onAbort = () => finish(false);
        if (opts.timeoutMs) timer = setTimeout(() => finish(true), opts.timeoutMs);
        if (opts.signal?.aborted) finish(false);
        else opts.signal?.addEventListener('abort', onAbort, { once: true });
      });
    }
    const chunks = (v: string | string[] | undefined) => (v === undefined ? [] : Array.isArray(v) ? v : [v]);
    const out = chunks(reply.stdout);
    const err = chunks(reply.stderr);
    for (const c of out) opts.onStdout?.(c);
    for (const c of err) opts.onStderr?.(c);
    call.outcome = 'exit';
    return Promise.resolve(end(reply.code === undefined ? 0 : reply.code, out.join(''), err.join(''), false));
  }
}
