// `npm run lab <labs…>`: load the labs, build the BPF objects, start one
// machine for the whole run, run each lab on it, stop the machine. Ctrl-C
// stops the running step and the VM and leaves nothing behind.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { Backend, BackendInfo } from '../vm/backend.ts';
import { projectRoot } from '../vm/cache.ts';
import { HostBackend, readHostConfig } from '../vm/host.ts';
import { BASE_CONFIG, FETCH_KERNEL_FIX, missingConfig, readConfig, resolveKernel } from '../vm/kernel.ts';
import { freePort, QemuBackend } from '../vm/qemu.ts';
import { connectSsh } from '../vm/ssh.ts';
import { stepAgent } from '../vm/step-wrapper.ts';
import { AttachedBackend, readState, tryLock, type WarmState } from '../vm/warm.ts';
import { VngBackend } from '../vm/vng.ts';
import { UserError } from './errors.ts';
import { loadProgress, recordResult, saveProgress } from './progress.ts';
import { fanOut, QUIT_BY_YOU, runLab, type LabResult, type MachineInfo, type Reporter } from './executor.ts';
import { askStep } from './step-prompt.ts';
import { GithubAnnotationsReporter } from './reporters/github.ts';
import { HtmlReporter } from './reporters/html.ts';
import { MarkdownSummaryReporter } from './reporters/markdown.ts';
import { JsonLinesReporter } from './reporters/json.ts';
import { JUnitReporter } from './reporters/junit.ts';
import { discoverLabs, loadLab, selectLabs } from './labs.ts';
import { colorWanted, loadOra, paint, spinner } from './style.ts';
import { requirePassing, vmChecks } from './doctor.ts';
import { TerminalReporter } from './reporters/terminal.ts';

export type BackendName = 'qemu' | 'vng' | 'host';

export interface RunOptions {
  labs: string[];
  backend: BackendName;
  /** Guest kernels: the labs run on each, one VM per kernel. */
  kernels?: string[];
  reporters?: string[];
  output?: string;
  /** false: never attach to the warm VM. */
  warm?: boolean;
  /** Pause before each step for a key (a terminal is needed). */
  step?: boolean;
  /** Exercises run with their reference solutions. */
  solutions?: boolean;
  /** Where the human reporter writes (default stdout); the soak test sends it to a log. */
  out?: NodeJS.WritableStream;
  quiet?: boolean;
  memoryMb?: number;
  timeoutScale?: number;
}

/** Builds the BPF programs and helpers (make rebuilds only what changed). */
export async function buildBpf(log: (s: string) => void = () => {}, signal?: AbortSignal): Promise<void> {
  if (!fs.existsSync(path.join(projectRoot, 'bpf/Makefile'))) return;
  // Plain spawn, not zx: this runs before every lab run, and loading zx costs ~0.2 s.
  const r = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const make = spawn('make', ['-s', '-C', 'bpf'], { cwd: projectRoot, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    make.stdout.on('data', (d) => (stdout += d));
    make.stderr.on('data', (d) => (stderr += d));
    // Ctrl-C kills the build too: make and the compilers it started, as one process group.
    const onAbort = () => {
      try {
        process.kill(-make.pid!, 'SIGTERM');
      } catch {
        /* already gone */
      }
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    make.once('error', (e: NodeJS.ErrnoException) =>
      reject(e.code === 'ENOENT' ? new UserError('make is not installed', 'sudo apt-get install -y make clang llvm libbpf-dev gcc') : e),
    );
    make.once('close', (code) => {
      signal?.removeEventListener('abort', onAbort);
      resolve({ code, stdout, stderr });
    });
  });
  signal?.throwIfAborted();
  if (r.code !== 0) {
    const missing = /(clang|bpftool|cc|gcc): (command )?not found|No such file or directory.*bpf_helpers\.h/.exec(r.stderr);
    throw new UserError(
      `building the BPF programs failed${missing ? ` (${missing[0]})` : ''}`,
      missing ? 'sudo apt-get install -y clang llvm libbpf-dev gcc make' : 'make -C bpf   (to see the compiler errors)',
      r.stderr.trim().split('\n').slice(-15).join('\n'),
    );
  }
  if (r.stdout.trim()) log(r.stdout.trim());
}

/** The warm VM, when it runs this kernel image for this checkout. */
function warmFor(kernelImage: string | undefined, o: Pick<RunOptions, 'warm'>): WarmState | undefined {
  const warm = o.warm === false ? undefined : readState();
  return warm && warm.projectRoot === projectRoot && warm.kernelImage === kernelImage ? warm : undefined;
}

export async function makeBackend(o: Pick<RunOptions, 'backend' | 'memoryMb' | 'warm'> & { kernel?: string }, log: (s: string) => void) {
  if (o.backend === 'host') return { backend: new HostBackend() as Backend, config: readHostConfig() };
  const kernel = resolveKernel({ explicit: o.kernel });
  const config = readConfig(kernel);
  if (config) {
    const missing = missingConfig(config, BASE_CONFIG);
    if (missing.length)
      throw new UserError(
        `kernel ${kernel.release} (${kernel.image}) lacks options every lab needs: ${missing.map((m) => `CONFIG_${m}`).join(', ')}`,
        `use the default kernel: ${FETCH_KERNEL_FIX}`,
      );
  }
  if (o.backend === 'vng') {
    const backend = new VngBackend({
      kernel: kernel.image,
      sshPort: await freePort(),
      accel: process.env.LAB_ACCEL === 'tcg' ? 'tcg' : 'kvm',
      memoryMb: o.memoryMb ?? 1024,
      cpus: 2,
      projectDir: projectRoot,
      connectSsh: (c) =>
        connectSsh({ ...c, privateKeyPath: c.privateKeyPath ?? '', deadlineMs: Math.max(1000, c.deadlineMs - Date.now()), wrapping: { pidDir: '/run/sockmap-labs', agent: stepAgent(`${projectRoot}/build/bin/step-agent`) } }),
    });
    return { backend: backend as Backend, config, kernel };
  }
  // A warm VM on the same kernel and checkout: attach instead of booting, unless another run uses it.
  const warm = warmFor(kernel.image, o);
  if (warm) {
    if (tryLock()) {
      log(`using the warm VM (qemu pid ${warm.pid}); stop it with: npm run vm -- down`);
      return { backend: new AttachedBackend(warm) as Backend, config, kernel };
    }
    log('the warm VM is busy with another run: booting a throw-away VM for this one');
  }
  return { backend: new QemuBackend({ kernel, memoryMb: o.memoryMb, log }) as Backend, config, kernel };
}

/** A reporter named on the command line: human, junit[=FILE], json[=FILE], markdown[=FILE], html[=FILE], github. */
export interface ReporterSpec {
  name: (typeof REPORTERS)[number];
  file?: string;
}
const REPORTERS = ['human', 'junit', 'json', 'markdown', 'html', 'github'] as const;
const DEFAULT_FILES: Record<string, string> = { junit: 'results.xml', json: 'results.jsonl', markdown: 'summary.md', html: 'report.html' };

export function parseReporterSpecs(specs: string[], output?: string): ReporterSpec[] {
  const out: ReporterSpec[] = [];
  for (const spec of specs.length ? specs : ['human']) {
    const [name, file] = spec.split('=', 2);
    const known = REPORTERS.find((r) => r === name);
    if (!known) throw new UserError(`unknown reporter "${name}": use ${REPORTERS.join(', ')} (e.g. --reporter junit=results.xml)`, 'npm run lab -- --help');
    out.push({ name: known, file });
  }
  const files = out.filter((r) => r.name in DEFAULT_FILES);
  if (output) {
    if (files.length !== 1) throw new UserError('--output names the file of one junit, json, markdown or html reporter; with several, give each its own: --reporter junit=a.xml --reporter json=b.jsonl');
    files[0].file = output;
  }
  for (const r of files) r.file ??= DEFAULT_FILES[r.name];
  // The human reporter always runs: it is how Ctrl-C, notices and failures reach the terminal.
  if (!out.some((r) => r.name === 'human')) out.unshift({ name: 'human' });
  return out;
}

/** A started machine, for the work done on it. */
export interface Machine {
  backend: Backend;
  info: BackendInfo;
  /** The kernel's build config, when known. */
  config?: Map<string, string>;
  /** Fires on Ctrl-C or SIGTERM. */
  signal: AbortSignal;
}

/**
 * One machine per kernel (one, the default, when none is named): the checks
 * `npm run doctor` makes, then the BPF build, then for each kernel boot (or
 * attach), `each`, stop. Ctrl-C or SIGTERM stops the work and the machine;
 * a second Ctrl-C quits at once. Returns the signal that interrupted, if any.
 * `each` returns 'stop' to skip the remaining kernels.
 */
export async function onEachMachine(
  o: Pick<RunOptions, 'backend' | 'kernels' | 'warm' | 'memoryMb'>,
  ui: { tty: boolean; notice: (line: string) => void; what: string; out?: NodeJS.WritableStream },
  each: (m: Machine) => Promise<'stop' | void>,
): Promise<NodeJS.Signals | undefined> {
  const controller = new AbortController();
  let backend: Backend | undefined;
  let interrupted: NodeJS.Signals | undefined;
  const onSignal = (sig: NodeJS.Signals) => {
    // Second Ctrl-C: no more waiting. The exit hook kills any QEMU we started.
    if (interrupted) process.exit(130);
    interrupted = sig;
    ui.notice(`${sig === 'SIGINT' ? 'Ctrl-C' : sig}: stopping ${ui.what} and the VM (press Ctrl-C again to quit at once)`);
    controller.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const kernels: (string | undefined)[] = o.kernels?.length ? o.kernels : [undefined];
  try {
    // A miss stops here, with its fix, before anything is built or booted
    // (a run that attaches to the warm VM boots nothing: it needs no QEMU checks).
    const image = (k?: string) => {
      try {
        return resolveKernel({ explicit: k }).image;
      } catch {
        return undefined; // no such kernel: the checks say so
      }
    };
    const boots = (k?: string) => o.backend === 'vng' || (o.backend === 'qemu' && !warmFor(image(k), o));
    for (const k of kernels) if (boots(k)) requirePassing(await vmChecks(k), paint(colorWanted(process.stderr)));
    await buildBpf(ui.notice, controller.signal);
    for (const kernelPath of kernels) {
      if (controller.signal.aborted) break;
      const made = await makeBackend({ ...o, kernel: kernelPath }, ui.notice);
      backend = made.backend;
      const what = made.kernel ? `kernel ${made.kernel.release}` : 'the host kernel';
      const spin = ui.tty ? await spinner(`starting ${o.backend} with ${what}…`, ui.out) : undefined;
      if (!spin) ui.notice(`starting ${o.backend} with ${what}…`);
      const t0 = Date.now();
      let info: BackendInfo;
      try {
        info = await backend.start(controller.signal);
      } finally {
        spin?.stop();
      }
      ui.notice(`${info.backend} ready in ${((Date.now() - t0) / 1000).toFixed(1)} s: kernel ${info.kernelRelease}, accel ${info.accel}`);
      const next = await each({ backend, info, config: made.config, signal: controller.signal });
      await backend.stop();
      backend = undefined;
      if (next === 'stop') break;
    }
  } catch (e) {
    // Interrupted while building or booting: the signal, not the error it caused, is the story.
    if (!interrupted) throw e;
  } finally {
    await backend?.stop();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  return interrupted;
}

/** 128 + the signal number, as a shell reports a process killed by it (SIGINT or SIGTERM). */
export function exitCodeFor(sig: NodeJS.Signals): number {
  return sig === 'SIGTERM' ? 143 : 130;
}

export async function runLabs(o: RunOptions): Promise<number> {
  const tty = !!process.stdout.isTTY && !process.env.CI;
  if (o.step && !(process.stdin.isTTY && process.stdout.isTTY))
    throw new UserError('--step waits for your keys before each step, so it needs a terminal', `run it in a terminal, or without --step: npm run lab ${o.labs.join(' ')}`);
  const refs = selectLabs(discoverLabs(), o.labs);
  const labs = refs.map(loadLab);
  const terminal = new TerminalReporter({ ora: tty && !o.out ? await loadOra() : undefined, color: !o.out && colorWanted(), quiet: o.quiet, out: o.out });
  const reporter = fanOut(
    parseReporterSpecs(o.reporters ?? [], o.output).map((r): Reporter => {
      switch (r.name) {
        case 'junit':
          return new JUnitReporter(r.file!);
        case 'json':
          return new JsonLinesReporter(r.file!);
        case 'markdown':
          return new MarkdownSummaryReporter(r.file!);
        case 'html':
          return new HtmlReporter(r.file!);
        case 'github':
          return new GithubAnnotationsReporter();
        default:
          return terminal;
      }
    }),
  );
  const results: LabResult[] = [];
  let interrupted: NodeJS.Signals | undefined;
  try {
    interrupted = await onEachMachine(o, { tty, notice: (s) => reporter.notice(s), what: 'the step' }, async ({ backend, info, config, signal }) => {
      const machine: MachineInfo = { backend: info.backend, kernelRelease: info.kernelRelease, accel: info.accel };
      reporter.machineStart(machine);
      const scale = o.timeoutScale ?? (info.accel === 'tcg' ? 2 : 1);
      for (const [i, lab] of labs.entries()) {
        if (signal.aborted) return;
        reporter.labStart(lab, i, labs.length);
        const r = await runLab(lab, backend, reporter, {
          kernelRelease: info.kernelRelease,
          kernelConfig: config,
          signal,
          timeoutScale: scale,
          beforeStep: o.step ? () => askStep() : undefined,
          solutions: o.solutions,
        });
        r.machine = machine;
        results.push(r);
        saveProgress(recordResult(loadProgress(), r));
        reporter.labEnd(r);
        if (r.reason === QUIT_BY_YOU) return 'stop';
        const dead = backend.health?.();
        if (dead) {
          reporter.notice(`the machine is gone (${dead}): the remaining labs cannot run on it`);
          return;
        }
      }
    });
  } finally {
    await reporter.runEnd(results);
  }
  if (interrupted) return exitCodeFor(interrupted);
  return results.some((r) => r.status === 'failed') ? 1 : 0;
}
