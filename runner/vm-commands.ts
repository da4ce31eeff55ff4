// `npm run vm -- up|down|status|exec`, and `npm run shell`: the warm VM.
import type { Config } from '../core/config.ts';
import { exitCodeFor } from '../core/exit.ts';
import { bootWarmVm, warmStore, withWarmVm } from '../vm/session.ts';
import { keeperAlive, type WarmState } from '../vm/warm.ts';
import { sessionUi } from './run-labs.ts';

const since = (iso: string) => {
  const s = Math.round((Date.now() - Date.parse(iso)) / 1000);
  return s < 120 ? `${s} s` : s < 7200 ? `${Math.round(s / 60)} min` : `${Math.round(s / 3600)} h`;
};

export function describeState(s: WarmState): string {
  return [
    `warm VM up for ${since(s.startedAt)}: kernel ${s.kernelRelease}, accel ${s.accel}`,
    s.agentSocket ? `  qemu pid ${s.pid}, step agent on ${s.agentSocket} (virtio-serial)` : `  qemu pid ${s.pid}, ssh on 127.0.0.1:${s.port}`,
    `  console log ${s.consoleLog}`,
    s.agentSocket
      ? '  no keeper needed: the guest agent serves each run as soon as the last one ends'
      : keeperAlive(s)
        ? `  keeper pid ${s.keeperPid}: holds a step agent ready for the next run`
        : '  no keeper: runs connect over SSH (the next run starts one)',
  ].join('\n');
}

/** `vm up`: the warm VM (booted now, or the one already up); exits 130/143 when interrupted while booting. */
export async function vmUp(cfg: Config): Promise<WarmState> {
  const tty = !!process.stdout.isTTY && !cfg.ci;
  const ui = sessionUi({ tty, notice: (l) => console.log(`» ${l}`), what: 'the boot' });
  const r = await bootWarmVm(cfg, ui);
  if (r.interrupted) {
    console.error(`${r.interrupted === 'SIGINT' ? 'Ctrl-C' : r.interrupted}: stopped the VM while it booted; no warm VM is up`);
    process.exit(exitCodeFor(r.interrupted));
  }
  return r.state;
}

/** `vm status`: the warm VM, if one is up. */
export const vmStatus = (cfg: Config) => warmStore(cfg).read();

/** `vm down`: stops the warm VM; what was stopped, if anything. */
export const vmDown = (cfg: Config) => warmStore(cfg).stop();

export function vmExec(cfg: Config, command: string): Promise<number> {
  return withWarmVm(cfg, async (b) => {
    const r = await b.exec(command, { onStdout: (c) => process.stdout.write(c), onStderr: (c) => process.stderr.write(c) });
    return r.code ?? 1;
  });
}

export function vmShell(cfg: Config): Promise<number> {
  return withWarmVm(cfg, (b) => b.shell());
}
