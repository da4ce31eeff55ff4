// The serial transport: no network device, no sshd, no keys. The guest has
// two virtio-serial ports whose host ends are unix sockets QEMU listens on,
// in the VM's own 0700 folder (vm/qemu-args.ts):
//
//   agent.sock  the step agent (vm/guest/step-agent.c --serve, started by
//               vm/guest/stage2.sh): one runner at a time, speaking the frames
//               of vm/step-agent.ts. When a runner leaves, the agent kills what
//               it left running and waits for the next one.
//   shell.sock  a virtio console (a tty in the guest) with a login shell on it.
//
// QEMU accepts a connection whether or not the guest's agent is up yet, and a
// guest may not have noticed that the last runner left before the next one
// came: so a runner says hello with a nonce of its own ('H'), and only the
// agent's answer carrying that nonce proves the agent is there, serving this
// runner. Whatever arrives before it (output of the last runner's steps,
// written before the guest saw that runner go) is skipped.
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { PassThrough, type Readable, type Writable } from 'node:stream';
import { frame, StepAgent } from './step-agent.ts';

/**
 * The first attempt's wait for the agent's answer, doubled at each attempt. A
 * connection that got none is replaced by a new one: QEMU stops passing on a
 * port's output when the guest wrote to it between one client and the next
 * (it throttles the port, and only a disconnect lifts that), and a slow guest
 * still gets longer and longer to answer.
 */
const FIRST_ATTEMPT_MS = 1000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A runner's session with the guest's step agent. */
export interface AgentLink {
  readonly agent: StepAgent;
  /** Leaves: the agent kills this runner's steps at once ('Q'), and the connection closes. */
  close(): void;
}

interface ConnectOptions {
  /** Give up after this many ms. */
  deadlineMs: number;
  signal?: AbortSignal;
  /** Called between attempts, e.g. to notice that the VM died (then abort `signal`). */
  onRetry?: () => void;
}

/** One connection and one hello; rejects when the connection fails or closes, or no answer comes in `timeoutMs`. */
function helloOnce(socketPath: string, timeoutMs: number, signal?: AbortSignal): Promise<AgentLink> {
  return new Promise((resolve, reject) => {
    const nonce = Buffer.from(`sml-hello-${randomBytes(12).toString('hex')}`);
    const sock = net.connect(socketPath);
    let seen = Buffer.alloc(0);
    let settled = false;
    const settle = () => {
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      sock.off('data', onData);
      sock.off('close', onClose);
    };
    const fail = (why: string) => {
      if (settled) return;
      settle();
      sock.destroy();
      reject(new Error(why));
    };
    const timer = setTimeout(() => fail(`no answer from the step agent within ${timeoutMs} ms`), timeoutMs);
    const onAbort = () => fail('interrupted');
    const onClose = () => fail('the connection closed before the step agent answered');
    const onData = (d: Buffer) => {
      seen = Buffer.concat([seen, d]);
      // Our answer: 'H', id 0, length, then the nonce (and the agent's version).
      const at = seen.indexOf(nonce);
      if (at < 9 || seen[at - 9] !== 'H'.charCodeAt(0) || seen.readUInt32LE(at - 8) !== 0) {
        // Keep only what could still begin our answer.
        if (at < 0) seen = seen.subarray(Math.max(0, seen.length - (9 + nonce.length)));
        else seen = seen.subarray(at + nonce.length);
        return;
      }
      settle();
      // From our answer on, the stream is this runner's.
      const input = new PassThrough();
      const agent = new StepAgent(input, sock);
      input.write(seen.subarray(at - 9));
      sock.on('data', (more: Buffer) => input.write(more));
      sock.once('close', () => input.end());
      resolve({
        agent,
        close: () => {
          if (sock.destroyed) return;
          // Flushed, then closed outright: a guest that does not read must not keep us waiting.
          sock.end(frame('Q', 0), () => sock.destroy());
          setTimeout(() => sock.destroy(), 1000).unref();
        },
      });
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    sock.on('error', (e) => fail(e.message));
    sock.on('data', onData);
    sock.on('close', onClose);
    // Sent at once: QEMU keeps it until the guest's agent reads its port.
    sock.write(frame('H', 0, nonce));
  });
}

/**
 * Connects to the step agent behind QEMU's socket for the agent's port,
 * retrying (the socket may not exist yet; the agent may not be up yet) until
 * the agent answers our hello.
 */
export async function connectAgent(socketPath: string, o: ConnectOptions): Promise<AgentLink> {
  const end = Date.now() + o.deadlineMs;
  let last = '';
  for (let attempt = 0; ; attempt++) {
    o.signal?.throwIfAborted();
    const left = end - Date.now();
    if (left <= 0) break;
    try {
      return await helloOnce(socketPath, Math.min(left, FIRST_ATTEMPT_MS * 2 ** attempt), o.signal);
    } catch (e) {
      last = (e as Error).message;
    }
    o.signal?.throwIfAborted();
    o.onRetry?.();
    await sleep(100);
  }
  throw new Error(`the step agent did not answer on ${socketPath} within ${Math.round(o.deadlineMs / 1000)} s${last ? ` (last: ${last})` : ''}`);
}

/** Ctrl-] leaves the shell, as it leaves telnet. */
const ESCAPE = 0x1d;

/** What the guest's shell loop (vm/guest/stage2.sh) prints on the console when the shell exits. */
export const SHELL_EXITED = /\[sockmap-labs: the shell exited with status (\d+)\]/;

/** The shell's tty in the guest (stage2 names the ports as udev would), and where it finds the TERM for the next shell. */
export const GUEST_SHELL_TTY = '/dev/virtio-ports/sockmap-labs.shell';
export const GUEST_SHELL_TERM = '/run/sockmap-labs/shell-term';

interface ShellOptions {
  /** The user's terminal (process.stdin/stdout unless given). */
  stdin?: Readable & { isTTY?: boolean; isRaw?: boolean; setRawMode?: (raw: boolean) => unknown };
  stdout?: Writable & { rows?: number; columns?: number };
  /** Called when the terminal's size changes (the console carries bytes only). */
  onResize?: (rows: number, cols: number) => void;
}

/**
 * The user's terminal, raw, on the guest's shell console (QEMU's shell.sock).
 * Ends on Ctrl-] (the guest's shell keeps running, as a serial console's
 * does) or when the guest's shell exits; resolves with its exit status (0
 * after Ctrl-]), and leaves the terminal as it found it.
 */
export function openShell(socketPath: string, o: ShellOptions = {}): Promise<number> {
  const stdin = o.stdin ?? process.stdin;
  const out = o.stdout ?? process.stdout;
  return new Promise((resolve, reject) => {
    const sock = net.connect(socketPath);
    sock.once('error', (e) => reject(new Error(`cannot reach the VM's shell console: ${e.message}`)));
    sock.once('connect', () => {
      out.write("Connected to the VM's shell. Escape character is '^]' (the shell keeps running); `exit` ends it.\n");
      const wasRaw = stdin.isTTY ? stdin.isRaw : false;
      if (stdin.isTTY) stdin.setRawMode?.(true);
      let tail = '';
      let done = false;
      const finish = (code: number, note: string) => {
        if (done) return;
        done = true;
        stdin.off('data', onInput);
        out.off('resize', onResize);
        if (stdin.isTTY) stdin.setRawMode?.(wasRaw ?? false);
        stdin.pause();
        // What was typed before Ctrl-] still goes; then closed outright.
        sock.end(() => sock.destroy());
        setTimeout(() => sock.destroy(), 1000).unref();
        out.write(`\r\n${note}\n`);
        resolve(code);
      };
      const onInput = (d: Buffer) => {
        const i = d.indexOf(ESCAPE);
        if (i < 0) return void sock.write(d);
        if (i > 0) sock.write(d.subarray(0, i));
        finish(0, "Left the VM's shell (it keeps running).");
      };
      const onResize = () => o.onResize?.(out.rows || 24, out.columns || 80);
      sock.on('data', (d: Buffer) => {
        out.write(d);
        tail = (tail + d.toString('latin1')).slice(-200);
        const m = SHELL_EXITED.exec(tail);
        if (m) finish(Number(m[1]), "The VM's shell exited.");
      });
      sock.on('error', () => {});
      sock.once('close', () => finish(1, "The VM closed its shell console (is the VM still up?)."));
      stdin.on('data', onInput);
      stdin.resume();
      out.on('resize', onResize);
      // As Enter on a serial console: a prompt (the guest starts a shell if none runs).
      sock.write('\r');
    });
  });
}

/**
 * `shell` on a VM with the serial transport: the guest's console sized like
 * this terminal (through the agent: the console cannot tell its size), and
 * this TERM for a shell started now, then openShell.
 */
export async function serialShell(link: AgentLink, shellSocket: string): Promise<number> {
  const stty = (rows: number, cols: number) => `stty -F ${GUEST_SHELL_TTY} rows ${rows} cols ${cols}`;
  const term = /^[\w.+-]+$/.test(process.env.TERM ?? '') ? process.env.TERM : 'xterm-256color';
  const out = process.stdout;
  await link.agent.exec(`echo ${term} > ${GUEST_SHELL_TERM}; ${stty(out.rows || 24, out.columns || 80)}`, { timeoutMs: 10_000 });
  return openShell(shellSocket, { onResize: (rows, cols) => void link.agent.exec(stty(rows, cols), { timeoutMs: 10_000 }).catch(() => {}) });
}
