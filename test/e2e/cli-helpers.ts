// Runs the real CLI as a child process, the way a learner or CI does.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll } from 'vitest';

export const root = path.resolve(import.meta.dirname, '../..');
export const fixtures = path.join(root, 'test/fixtures/labs');

export interface CliRun {
  child: ChildProcess;
  /** Resolves with the exit code and all output once the CLI exits. */
  done: Promise<{ code: number | null; out: string }>;
  /** Output so far. */
  output(): string;
}

/** Progress of the tests' runs, apart from the developer's own; gone after the test file. */
export const testStateHome = fs.mkdtempSync(path.join(os.tmpdir(), 'sockmap-labs-test-state-'));
/** The warm VM a test's run would attach to: none, unless the test sets LAB_VM_DIR (a developer's own warm VM is never used). */
const noWarmVm = fs.mkdtempSync(path.join(os.tmpdir(), 'sockmap-labs-test-no-warm-'));
afterAll(() => {
  fs.rmSync(testStateHome, { recursive: true, force: true });
  fs.rmSync(noWarmVm, { recursive: true, force: true });
});

export function cli(args: string[], env: Record<string, string> = {}): CliRun {
  // As `npm run lab` starts it (the bundled CLI, rebuilt when a source changed), minus npm.
  const child = spawn(process.execPath, ['runner/launch.mjs', ...args], {
    cwd: root,
    env: { ...process.env, CI: '1', NO_COLOR: '1', LAB_STATE_HOME: testStateHome, LAB_VM_DIR: noWarmVm, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const done = new Promise<{ code: number | null; out: string }>((resolve) => child.once('close', (code) => resolve({ code, out })));
  return { child, done, output: () => out };
}

export async function waitForOutput(run: CliRun, text: string, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!run.output().includes(text)) {
    if (Date.now() > end) throw new Error(`no "${text}" within ${ms} ms; output:\n${run.output()}`);
    if (run.child.exitCode !== null) throw new Error(`CLI exited before "${text}"; output:\n${run.output()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function pgrep(pattern: string): number[] {
  try {
    return execFileSync('pgrep', ['-f', pattern], { encoding: 'utf8' }).split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** Pids of the QEMUs started with LAB_RUN_TAG=tag (every QEMU without a tag). */
export const qemuPids = (tag?: string) => pgrep(tag ? `qemu-system-(x86_64|aarch64) .*-name sockmap-labs-${tag}( |$)` : 'qemu-system-(x86_64|aarch64)');

/** Pids of the warm-VM keepers (vm/keeper-main.ts, bundled as keeper.mjs) of VMs started with LAB_RUN_TAG=tag. */
export const keeperPids = (tag: string) => pgrep(`keeper\\.mjs .*/sockmap-labs-${tag}-vm-`);

/** The last lines of a run's output, to show beside a failed assertion. */
export function tail(out: string, lines = 40): string {
  return `CLI output (last ${lines} lines):\n${out.trimEnd().split('\n').slice(-lines).join('\n')}`;
}
