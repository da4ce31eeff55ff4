// The machine session: everything between a command's configuration and a
// started backend, in one place, for every command that needs a machine
// (`lab`, `matrix`, `vm up`, `vm exec`, `shell`).
//
//   1. resolve each guest kernel once, and read its config once;
//   2. decide, per kernel, whether to attach to the warm VM (taking its lock)
//      or to boot, and run the preflight checks that choice needs;
//   3. build what the guest runs: on the host (make -C bpf) for a VM on the
//      host's root; a guest-image VM builds its own in the guest, kept on the
//      host by content hash (vm/guest-build.ts);
//   4. per kernel: build the initramfs, choose the accelerator (KVM probe),
//      create the backend, start it, hand it over, stop it;
//   5. always: stop the backend, release the warm VM's lock, and stop on
//      Ctrl-C or SIGTERM (a second Ctrl-C quits at once).
import { hostArch } from '../core/arch.ts';
import type { Config } from '../core/config.ts';
import { UserError } from '../core/errors.ts';
import { catchSignals } from '../core/signals.ts';
import { STEP_PID_DIR, stepAgentPath } from '../core/guest.ts';
import { projectRoot } from '../core/paths.ts';
import { chooseAccel } from './accel.ts';
import type { Backend, BackendInfo } from './backend.ts';
import { buildGuestPrograms } from './build.ts';
import { guestBuildKey, guestBuildReady, prepareGuestBuild } from './guest-build.ts';
import { HostBackend, readHostConfig } from './host.ts';
import { ensureInitramfs } from './initramfs.ts';
import { kernelsDir, type Kernel } from './kernel.ts';
import { startKeeper } from './keeper.ts';
import { bootChecks, chooseKernel, imageChoice, kernelChecks, requirePassing, vngCheck, type Check, type KernelChoice } from './preflight.ts';
import type { GuestImage } from './image-verify.ts';
import { vmName } from './qemu-args.ts';
import { freePort, QemuBackend } from './qemu.ts';
import { connectSsh } from './ssh.ts';
import { AttachedBackend, WarmStore, type WarmState } from './warm.ts';
import { VngBackend } from './vng.ts';

/** How the session talks to the person (or CI log) watching. */
export interface SessionUi {
  notice(line: string): void;
  /** Runs `work` while showing `text`: a spinner on a terminal, a plain line otherwise. */
  progress<T>(text: string, work: () => Promise<T>): Promise<T>;
  /** The table of failed checks, for the error that stops the run. */
  formatChecks(failed: Check[]): string;
  /** What Ctrl-C interrupts, for its notice: 'the step', 'the probe'. */
  what: string;
}

/** A started machine, for the work done on it. */
interface Machine {
  backend: Backend;
  /** What really runs: the kernel release and the accelerator in use. */
  info: BackendInfo;
  /** The kernel's build config, when known. */
  config?: Map<string, string>;
  /** Fires on Ctrl-C or SIGTERM. */
  signal: AbortSignal;
  /** Booted for this run and stopped after it (not the warm VM, not the host): what is left in it goes with it. */
  throwAway: boolean;
}

/** Default time from QEMU's start to the guest's sshd (a test hook shortens it). */
const BOOT_TIMEOUT_MS = 180_000;

export const warmStore = (cfg: Config) => new WarmStore(cfg.places.warmDir);

/** The plans' kernels: the guest image's (--rootfs image), or each --kernel (or the default one). */
async function kernelChoices(cfg: Config): Promise<KernelChoice[]> {
  const { machine } = cfg;
  if (machine.rootfs === 'image') {
    if (machine.backend !== 'qemu') throw new UserError(`--rootfs image boots the guest image with QEMU; --backend ${machine.backend} cannot`, 'drop --rootfs image, or use --backend qemu');
    if (machine.kernels.length) throw new UserError('--rootfs image boots the kernel inside the guest image; it takes no --kernel (nor LAB_KERNEL)', 'drop --kernel, or use --rootfs host');
    return [await imageChoice(cfg.places.cacheDir, machine.arch)];
  }
  return (machine.kernels.length ? machine.kernels : [undefined]).map((image) => kernelChoice(cfg, image));
}

/** The kernel a command would use for `image` (a --kernel path), or the default one. */
export function kernelChoice(cfg: Config, image?: string): KernelChoice {
  return chooseKernel({ image, source: cfg.machine.kernelSource === 'env' ? 'env' : 'option', kernelsDir: kernelsDir(cfg.places.cacheDir) });
}

/** Ctrl-C and SIGTERM stop the session's work and its VM; a second Ctrl-C quits at once. */
const catchSessionSignals = (ui: Pick<SessionUi, 'notice' | 'what'>) =>
  catchSignals((sig) => ui.notice(`${sig === 'SIGINT' ? 'Ctrl-C' : sig}: stopping ${ui.what} and the VM (press Ctrl-C again to quit at once)`));

/**
 * A booted VM's backend: the initramfs built (or cached), the accelerator
 * chosen by the same probe for every backend that boots, the backend made.
 */
export async function bootBackend(
  cfg: Config,
  kernel: Kernel,
  log: (line: string) => void,
  o: { backend?: 'qemu' | 'vng'; persistent?: boolean; image?: GuestImage } = {},
): Promise<Backend & { start(signal?: AbortSignal): Promise<BackendInfo> }> {
  const { machine, hooks, places } = cfg;
  // The guest image brings its own initramfs; the host-root VM's is built from the host's busybox.
  const initrd = o.image ? { path: o.image.initramfs, built: false } : await ensureInitramfs(kernel, places.cacheDir);
  if (initrd.built) log(`built the initramfs for kernel ${kernel.release}`);
  const arch = o.image?.manifest.arch ?? machine.arch;
  const accel = await chooseAccel(kernel, initrd.path, machine.accel, places.cacheDir, arch);
  if (accel.notice) log(accel.notice);
  if ((o.backend ?? machine.backend) === 'vng') {
    if (accel.accel === 'hvf') throw new UserError('the vng backend runs on Linux only', 'use --backend qemu');
    const agent = hooks.stepAgent ? stepAgentPath(`${projectRoot}/build`) : undefined;
    return new VngBackend({
      kernel: kernel.image,
      sshPort: hooks.sshPort ?? (await freePort()),
      accel: accel.accel,
      memoryMb: machine.memoryMb,
      cpus: machine.cpus,
      projectDir: projectRoot,
      name: vmName(hooks.runTag),
      // The kernel's boot messages go to the console log (not the terminal): a guest
      // that does not come up is shown with the end of its boot.
      verbose: true,
      bootTimeoutMs: hooks.bootTimeoutMs,
      connectSsh: (c) =>
        connectSsh({ ...c, privateKeyPath: c.privateKeyPath ?? '', deadlineMs: Math.max(1000, c.deadlineMs - Date.now()), wrapping: { pidDir: STEP_PID_DIR, agent } }),
    });
  }
  return new QemuBackend({
    kernel,
    initramfs: initrd.path,
    accel: accel.accel,
    memoryMb: machine.memoryMb,
    cpus: machine.cpus,
    bootTimeoutMs: hooks.bootTimeoutMs ?? BOOT_TIMEOUT_MS,
    name: vmName(hooks.runTag),
    sshPort: hooks.sshPort,
    kernelAppend: hooks.kernelAppend,
    stepAgent: hooks.stepAgent,
    // The image has no sshd: its guest is reached over virtio-serial only.
    transport: o.image ? 'serial' : machine.transport,
    rootfsImage: o.image?.rootfs,
    guestBuild: o.image ? prepareGuestBuild(places.cacheDir, arch, o.image.manifest.digest) : undefined,
    arch,
    persistent: o.persistent,
    log,
  });
}

/** One machine of a run: a kernel (none for the host backend), and the warm VM when it attaches. */
interface Plan {
  choice: KernelChoice;
  warm?: WarmState;
}

/**
 * One machine per kernel (one, the default, when none is named): the checks,
 * the build, then for each kernel boot (or attach), `each`, stop. Returns the
 * signal that interrupted, if any. `each` returns 'stop' to skip the rest.
 */
export async function onEachMachine(cfg: Config, ui: SessionUi, each: (m: Machine) => Promise<'stop' | void>): Promise<NodeJS.Signals | undefined> {
  const { backend: kind } = cfg.machine;
  const signals = catchSessionSignals(ui);
  const store = warmStore(cfg);
  let locked = false;
  let backend: Backend | undefined;
  try {
    // Kernels resolved once; the warm VM taken (locked) by the first plan whose kernel it runs.
    const plans: Plan[] = kind === 'host' ? [{ choice: { config: readHostConfig() } }] : (await kernelChoices(cfg)).map((choice) => ({ choice }));
    const warm = kind === 'qemu' && cfg.machine.warm ? store.read() : undefined;
    const sameKernel = warm && warm.projectRoot === projectRoot ? plans.find((p) => p.choice.kernel?.image === warm.kernelImage) : undefined;
    // A guest-image VM runs the lab programs it built: from this checkout's bpf/ as it was then.
    const stale = sameKernel?.choice.image && warm?.buildKey !== guestBuildKey(sameKernel.choice.image.manifest.digest);
    if (stale) ui.notice('the warm VM runs lab programs built from another version of bpf/: booting a throw-away VM (restart it: npm run vm -- down && npm run vm -- up)');
    const match = stale ? undefined : sameKernel;
    if (match) {
      if (store.tryLock()) {
        locked = true;
        match.warm = warm;
      } else ui.notice('the warm VM is busy with another run: booting a throw-away VM for this one');
    }
    // A miss stops here, with its fix, before anything is built or booted
    // (a run that attaches to the warm VM boots nothing: it needs no QEMU checks).
    if (kind !== 'host') {
      const checks = plans.flatMap((p) => kernelChecks(p.choice));
      if (plans.some((p) => !p.warm)) checks.push(...(await bootChecks(cfg.places.cacheDir, cfg.machine.rootfs, cfg.machine.arch)));
      if (kind === 'vng') checks.push(vngCheck());
      requirePassing(checks, ui.formatChecks);
    }
    if (cfg.machine.rootfs === 'host') await buildGuestPrograms(ui.notice, signals.signal);
    for (const plan of plans) {
      if (signals.signal.aborted) break;
      const kernel = plan.choice.kernel;
      if (plan.warm) ui.notice(`using the warm VM (qemu pid ${plan.warm.pid}); stop it with: npm run vm -- down`);
      const t0 = Date.now();
      const starting = plan.warm ? 'attaching to the warm VM…' : `starting ${kind} with ${kernel ? `kernel ${kernel.release}` : 'the host kernel'}…`;
      const info = await ui.progress(starting, async () => {
        backend = plan.warm
          ? new AttachedBackend(plan.warm, store, cfg.hooks.stepAgent)
          : kernel
            ? await bootBackend(cfg, kernel, ui.notice, { image: plan.choice.image })
            : new HostBackend({ runTag: cfg.hooks.runTag });
        const started = await backend.start(signals.signal);
        // What the result's fingerprint records: the guest's architecture and image.
        const image = plan.choice.image;
        return { ...started, arch: image?.manifest.arch ?? (kind === 'host' ? hostArch() : cfg.machine.arch), imageDigest: image?.manifest.digest };
      });
      ui.notice(`${info.backend} ready in ${((Date.now() - t0) / 1000).toFixed(1)} s: kernel ${info.kernelRelease}, accel ${info.accel}`);
      const next = await each({ backend: backend!, info, config: plan.choice.config, signal: signals.signal, throwAway: !plan.warm && kind !== 'host' });
      const done = backend!;
      backend = undefined;
      await done.stop();
      if (next === 'stop') break;
    }
  } catch (e) {
    // Interrupted while building or booting: the signal, not the error it caused, is the story.
    if (!signals.interrupted()) throw e;
  } finally {
    await backend?.stop();
    if (locked) store.unlock();
    signals.dispose();
  }
  return signals.interrupted();
}

/**
 * `image prepare` (setup.sh's last step): the one-time work of the first
 * guest-image run, done now rather than in a learner's first lab: boots the
 * image once (the accelerator probe; the lab programs built in the guest and
 * kept by content hash, vm/guest-build.ts) and stops it, on the same path a lab
 * run takes (onEachMachine). 'ready': nothing to do, the programs for this image
 * and this checkout's bpf/ are there. Any other one-time work for the image
 * belongs here too.
 */
export async function prepareImage(cfg: Config, ui: SessionUi): Promise<{ done: 'ready' | 'prepared'; interrupted?: NodeJS.Signals }> {
  const machine = { ...cfg.machine, rootfs: 'image' as const, backend: 'qemu' as const, kernels: [], warm: false };
  if (await imagePrepared(cfg)) return { done: 'ready' };
  // No image: onEachMachine's checks stop with the fix (build, pull or import one).
  const interrupted = await onEachMachine({ ...cfg, machine }, ui, async () => 'stop');
  return { done: 'prepared', interrupted };
}

/** Is the current guest image of cfg's arch there and prepared (its lab programs for this checkout built)? Boots nothing. */
export async function imagePrepared(cfg: Config): Promise<boolean> {
  const { image } = await imageChoice(cfg.places.cacheDir, cfg.machine.arch);
  return !!image && guestBuildReady(cfg.places.cacheDir, image.manifest.arch, image.manifest.digest);
}

/**
 * `vm up`: boots a VM that stays up after this process, records it, and starts
 * its keeper. Returns the warm VM (the one already up, if any), or the signal
 * that interrupted the boot (the half-booted VM is gone then).
 */
export async function bootWarmVm(cfg: Config, ui: SessionUi): Promise<{ state: WarmState; interrupted?: undefined } | { interrupted: NodeJS.Signals }> {
  if (cfg.machine.backend !== 'qemu')
    throw new UserError(
      `the warm VM runs on the qemu backend only: ${cfg.machine.backend === 'vng' ? "a vng guest is vng's own (its init, its SSH keys), which the warm VM's keeper cannot hold" : 'the host backend has no VM to keep'}`,
      `npm run vm -- up   (the qemu backend); runs with --backend ${cfg.machine.backend} boot their own machine each time`,
    );
  const store = warmStore(cfg);
  const existing = store.read();
  if (existing) return { state: existing };
  const [choice] = await kernelChoices(cfg);
  requirePassing([...kernelChecks(choice), ...(await bootChecks(cfg.places.cacheDir, cfg.machine.rootfs, cfg.machine.arch))], ui.formatChecks);
  const kernel = choice.kernel!;
  const signals = catchSessionSignals({ ...ui, what: 'the boot' });
  let vm: QemuBackend | undefined;
  try {
    if (!choice.image) await buildGuestPrograms(ui.notice, signals.signal);
    await ui.progress(`booting a warm VM with kernel ${kernel.release}…`, async () => {
      vm = (await bootBackend(cfg, kernel, ui.notice, { backend: 'qemu', persistent: true, image: choice.image })) as QemuBackend;
      await vm.start(signals.signal);
    });
  } catch (e) {
    await vm?.stop();
    const sig = signals.interrupted();
    if (sig) return { interrupted: sig };
    throw e;
  } finally {
    signals.dispose();
  }
  const state: WarmState = { ...vm!.handle!, startedAt: new Date().toISOString(), projectRoot };
  store.write(state);
  vm!.detach();
  // The serial transport needs no keeper: the guest's agent serves the next run as soon as one ends.
  if (state.agentSocket) return { state };
  const keeper = await startKeeper(store, state);
  if (keeper.pid) store.write({ ...state, keeperPid: keeper.pid });
  else ui.notice(`the warm VM's keeper did not start (${keeper.problem}); runs will connect over SSH, ~0.5 s slower each`);
  return { state: store.read() ?? state };
}

/** Runs `use` on the warm VM (`vm exec`, `shell`), holding its lock meanwhile; a clear error when there is none. */
export async function withWarmVm<T>(cfg: Config, use: (b: Backend) => Promise<T>): Promise<T> {
  const store = warmStore(cfg);
  const s = store.read();
  if (!s) throw new UserError('no warm VM is up', 'npm run vm -- up');
  if (s.projectRoot !== projectRoot) throw new UserError(`the warm VM shares another checkout (${s.projectRoot})`, 'npm run vm -- down');
  if (!store.tryLock()) throw new UserError('the warm VM is busy with another run', 'wait for it, or: npm run vm -- down');
  const b = new AttachedBackend(s, store, cfg.hooks.stepAgent);
  try {
    await b.start();
    return await use(b);
  } finally {
    await b.stop();
    store.unlock();
  }
}

