// One running QEMU: its serial console copied to a log file and scanned for
// the markers our guest init prints, and a stop() that leaves nothing behind.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { QEMU_BINARY } from './qemu-args.ts';

/** Lines that mean the boot has failed for good. */
const FATAL = [/Kernel panic - not syncing[^\n]*\n/, /sml-init: FAILED[^\n]*\n/, /sml-stage2: FAILED[^\n]*\n/];

/** Every QEMU this process started and has not stopped yet, killed on exit. */
const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const p of live) if (p.pid) killGroup(p.pid, 'SIGKILL');
});

function killGroup(pid: number, sig: NodeJS.Signals) {
  try {
    process.kill(-pid, sig);
  } catch {
    /* already gone */
  }
}

/** Drops terminal escape sequences and carriage returns (the firmware clears the screen). */
export function stripControl(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/\x1b(\[[0-9;?]*[A-Za-z]|[a-zA-Z])/g, '').replace(/\r/g, '');
}

export class QemuProcess {
  readonly child: ChildProcess;
  private console = '';
  private exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private exitInfo?: { code: number | null; signal: NodeJS.Signals | null };
  private waiters: Array<() => void> = [];

  constructor(args: string[], readonly logPath: string) {
    const log = fs.openSync(logPath, 'w', 0o600);
    // Own process group: the terminal's Ctrl-C reaches us, not QEMU; we stop it in order.
    this.child = spawn(QEMU_BINARY, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    live.add(this.child);
    const onData = (d: Buffer) => {
      fs.writeSync(log, d);
      this.console += d.toString('latin1');
      if (this.console.length > 1 << 20) this.console = this.console.slice(-(1 << 19));
      for (const w of this.waiters) w();
    };
    this.child.stdout!.on('data', onData);
    this.child.stderr!.on('data', onData);
    this.exited = new Promise((resolve) => {
      const done = (code: number | null, signal: NodeJS.Signals | null) => {
        live.delete(this.child);
        this.exitInfo = { code, signal };
        fs.closeSync(log);
        for (const w of this.waiters) w();
        resolve(this.exitInfo);
      };
      this.child.once('exit', (code, signal) => {
        // Let the pipes drain into the log before closing it.
        setImmediate(() => done(code, signal));
      });
      this.child.once('error', () => done(127, null));
    });
  }

  get running(): boolean {
    return !this.exitInfo;
  }

  get exit() {
    return this.exitInfo;
  }

  get output(): string {
    return this.console;
  }

  /** The last lines of the console, for error messages. */
  tail(lines = 20): string {
    return stripControl(this.console).trimEnd().split('\n').slice(-lines).join('\n');
  }

  /** The first fatal line seen on the console, if any. */
  fatal(): string | undefined {
    for (const re of FATAL) {
      const m = re.exec(this.console);
      if (m) return m[0].trim();
    }
    return undefined;
  }

  /**
   * Resolves 'marker' when `marker` appears on the console, 'exit' when QEMU
   * exits, 'fatal' on a panic or init failure, 'timeout' after `ms`, 'aborted'
   * when `signal` fires.
   */
  waitFor(marker: string, ms: number, signal?: AbortSignal): Promise<'marker' | 'exit' | 'fatal' | 'timeout' | 'aborted'> {
    return new Promise((resolve) => {
      let finished = false;
      const check = () => {
        if (finished) return;
        let r: 'marker' | 'exit' | 'fatal' | 'aborted' | undefined;
        if (this.console.includes(marker)) r = 'marker';
        else if (this.fatal()) r = 'fatal';
        else if (this.exitInfo) r = 'exit';
        else if (signal?.aborted) r = 'aborted';
        if (r) finish(r);
      };
      const finish = (r: 'marker' | 'exit' | 'fatal' | 'timeout' | 'aborted') => {
        finished = true;
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== check);
        signal?.removeEventListener('abort', check);
        resolve(r);
      };
      const timer = setTimeout(() => finish('timeout'), ms);
      this.waiters.push(check);
      signal?.addEventListener('abort', check);
      check();
    });
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves when QEMU is gone. */
  async stop(graceMs = 2000): Promise<void> {
    if (!this.exitInfo && this.child.pid) {
      killGroup(this.child.pid, 'SIGTERM');
      const t = setTimeout(() => this.child.pid && killGroup(this.child.pid, 'SIGKILL'), graceMs);
      await this.exited;
      clearTimeout(t);
    }
    await this.exited;
  }
}
