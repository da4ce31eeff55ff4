// `npm run vm -- up|down|status|exec`, and `npm run shell`: the warm VM.
import type { Backend } from '../vm/backend.ts';
import { projectRoot } from '../vm/cache.ts';
import { resolveKernel } from '../vm/kernel.ts';
import { QemuBackend } from '../vm/qemu.ts';
import { startKeeper } from '../vm/keeper.ts';
import { AttachedBackend, keeperAlive, readState, stopWarm, tryLock, unlock, writeState, type WarmState } from '../vm/warm.ts';
import { requirePassing, vmChecks } from './doctor.ts';
import { UserError } from './errors.ts';
import { buildBpf, exitCodeFor } from './run-labs.ts';
import { colorWanted, paint, spinner } from './style.ts';

const since = (iso: string) => {
  const s = Math.round((Date.now() - Date.parse(iso)) / 1000);
  return s < 120 ? `${s} s` : s < 7200 ? `${Math.round(s / 60)} min` : `${Math.round(s / 3600)} h`;
};

export function describeState(s: WarmState): string {
  return [
    `warm VM up for ${since(s.startedAt)}: kernel ${s.kernelRelease}, accel ${s.accel}`,
    `  qemu pid ${s.pid}, ssh on 127.0.0.1:${s.port}`,
    `  console log ${s.consoleLog}`,
    keeperAlive(s) ? `  keeper pid ${s.keeperPid}: holds a step agent ready for the next run` : '  no keeper: runs connect over SSH (the next run starts one)',
  ].join('\n');
}

export async function vmUp(o: { kernel?: string; memoryMb?: number }): Promise<WarmState> {
  const existing = readState();
  if (existing) return existing;
  requirePassing(await vmChecks(o.kernel), paint(colorWanted(process.stderr)));
  await buildBpf();
  const kernel = resolveKernel({ explicit: o.kernel });
  const tty = !!process.stdout.isTTY && !process.env.CI;
  const spin = tty ? await spinner(`booting a warm VM with kernel ${kernel.release}…`) : undefined;
  const vm = new QemuBackend({ kernel, memoryMb: o.memoryMb, persistent: true, log: (l) => (spin ? (spin.text = l) : console.log(`» ${l}`)) });
  // Ctrl-C or SIGTERM while booting: stop the half-booted VM, leave nothing.
  const controller = new AbortController();
  let interrupted: NodeJS.Signals | undefined;
  const onSignal = (sig: NodeJS.Signals) => {
    interrupted ??= sig;
    controller.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    await vm.start(controller.signal);
  } catch (e) {
    await vm.stop();
    if (interrupted) {
      spin?.stop();
      console.error(`${interrupted === 'SIGINT' ? 'Ctrl-C' : interrupted}: stopped the VM while it booted; no warm VM is up`);
      process.exit(exitCodeFor(interrupted));
    }
    throw e;
  } finally {
    spin?.stop();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  const state: WarmState = { ...vm.handle!, startedAt: new Date().toISOString(), projectRoot };
  writeState(state);
  vm.detach();
  const keeper = await startKeeper(state);
  if (keeper.pid) writeState({ ...state, keeperPid: keeper.pid });
  else console.error(`the warm VM's keeper did not start (${keeper.problem}); runs will connect over SSH, ~0.5 s slower each`);
  return readState() ?? state;
}

/** The warm VM for a command that needs one (shell, vm exec), or a clear error. */
async function attach(): Promise<AttachedBackend> {
  const s = readState();
  if (!s) throw new UserError('no warm VM is up', 'npm run vm -- up');
  if (!tryLock()) throw new UserError('the warm VM is busy with another run', 'wait for it, or: npm run vm -- down');
  const b = new AttachedBackend(s);
  try {
    await b.start();
  } catch (e) {
    unlock();
    throw e;
  }
  return b;
}

export async function vmExec(command: string): Promise<number> {
  const b: Backend = await attach();
  try {
    const r = await b.exec(command, { onStdout: (c) => process.stdout.write(c), onStderr: (c) => process.stderr.write(c) });
    return r.code ?? 1;
  } finally {
    await b.stop();
  }
}

export async function vmShell(): Promise<number> {
  const b = await attach();
  try {
    return await b.shell();
  } finally {
    await b.stop();
  }
}

export { readState, stopWarm };
