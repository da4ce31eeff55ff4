// One running QEMU: its serial console written to a log file and scanned for
// the markers our guest init prints, and a stop() that leaves nothing behind.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { signalGroup } from '../core/process-group.ts';
import { QEMU_BINARY } from './qemu-args.ts';

/** Lines that mean the boot has failed for good. */
const FATAL = [/Kernel panic - not syncing[^\n]*\n/, /sml-init: FAILED[^\n]*\n/, /sml-stage2: FAILED[^\n]*\n/];

/**
 * Every QEMU this process started and has not stopped yet, killed on exit. A
 * warm VM leaves the set (release()) only once it has booted, so an
 * interrupted `vm up` leaves no QEMU.
 */
const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const p of live) if (p.pid) signalGroup(p.pid, 'SIGKILL');
});

/** Drops terminal escape sequences and carriage returns (the firmware clears the screen). */
function stripControl(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/\x1b(\[[0-9;?]*[A-Za-z]|[a-zA-Z])/g, '').replace(/\r/g, '');
}

export class QemuProcess {
  readonly child: ChildProcess;
  private console = '';
  private readOffset = 0;
  private exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private exitInfo?: { code: number | null; signal: NodeJS.Signals | null };

  constructor(
    args: string[],
    readonly logPath: string,
    /** The QEMU program: qemuBinary(arch) for the guest's architecture. */
    binary = QEMU_BINARY,
  ) {
    // QEMU writes its console (and its own errors) straight into the log file,
    // so a warm VM keeps working after the runner that started it exits.
    const log = fs.openSync(logPath, 'w', 0o600);
    // Own process group: the terminal's Ctrl-C reaches us, not QEMU; we stop it in order.
    this.child = spawn(binary, args, { stdio: ['ignore', log, log], detached: true });
    fs.closeSync(log);
    live.add(this.child);
    this.exited = new Promise((resolve) => {
      const done = (code: number | null, signal: NodeJS.Signals | null) => {
        live.delete(this.child);
        this.exitInfo ??= { code, signal };
        resolve(this.exitInfo);
      };
      this.child.once('exit', done);
      this.child.once('error', () => done(127, null));
    });
  }

  /** Lets QEMU outlive this process (a warm VM that booted). */
  release(): void {
    live.delete(this.child);
    this.child.unref();
  }

  /** Reads what QEMU appended to the log since the last look. */
  private refresh() {
    let fd: number;
    try {
      fd = fs.openSync(this.logPath, 'r');
    } catch {
      return;
    }
    try {
      const buf = Buffer.alloc(64 * 1024);
      let n: number;
      while ((n = fs.readSync(fd, buf, 0, buf.length, this.readOffset)) > 0) {
        this.console += buf.toString('latin1', 0, n);
        this.readOffset += n;
      }
      if (this.console.length > 1 << 20) this.console = this.console.slice(-(1 << 19));
    } finally {
      fs.closeSync(fd);
    }
  }

  get running(): boolean {
    return !this.exitInfo;
  }

  get exit() {
    return this.exitInfo;
  }

  get output(): string {
    this.refresh();
    return this.console;
  }

  /** The last lines of the console, for error messages. */
  tail(lines = 20): string {
    return stripControl(this.output).trimEnd().split('\n').slice(-lines).join('\n');
  }

  /** The first fatal line seen on the console, if any. */
  fatal(): string | undefined {
    const text = this.output;
    for (const re of FATAL) {
      const m = re.exec(text);
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
      const end = Date.now() + ms;
      const check = () => {
        let r: 'marker' | 'exit' | 'fatal' | 'timeout' | 'aborted' | undefined;
        if (this.output.includes(marker)) r = 'marker';
        else if (this.fatal()) r = 'fatal';
        else if (this.exitInfo) r = 'exit';
        else if (signal?.aborted) r = 'aborted';
        else if (Date.now() > end) r = 'timeout';
        if (!r) return false;
        clearInterval(timer);
        resolve(r);
        return true;
      };
      const timer = setInterval(check, 50);
      check();
    });
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves when QEMU is gone. */
  async stop(graceMs = 2000): Promise<void> {
    if (!this.exitInfo && this.child.pid) {
      signalGroup(this.child.pid, 'SIGTERM');
      const t = setTimeout(() => this.child.pid && signalGroup(this.child.pid, 'SIGKILL'), graceMs);
      await this.exited;
      clearTimeout(t);
    }
    await this.exited;
  }
}
