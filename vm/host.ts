// The `host` backend: no VM. Steps run on the current kernel as root, for quick
// iteration on a disposable machine. Every step runs inside a network namespace
// made for this run, so a lab never touches the host's interfaces; it is
// deleted at stop().
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import zlib from 'node:zlib';
import { UserError } from '../core/errors.ts';
import { PIN_ROOT, sharedCheckoutPaths } from '../core/guest.ts';
import { projectRoot } from '../core/paths.ts';
import { signalGroup } from '../core/process-group.ts';
import { shq } from '../core/shell.ts';
import type { Backend, BackendInfo, ExecOptions, ExecResult } from './backend.ts';
import { parseConfig } from './kernel.ts';
import { requireTools } from './tools.ts';

/** The running kernel's config: /boot/config-<release> or /proc/config.gz. */
export function readHostConfig(release = os.release()): Map<string, string> | undefined {
  const boot = `/boot/config-${release}`;
  if (fs.existsSync(boot)) return parseConfig(fs.readFileSync(boot, 'utf8'));
  if (fs.existsSync('/proc/config.gz')) return parseConfig(zlib.gunzipSync(fs.readFileSync('/proc/config.gz')).toString('utf8'));
  return undefined;
}

function runLocal(argv: string[], opts: ExecOptions = {}): Promise<ExecResult> {
  const started = Date.now();
  return new Promise((resolve) => {
    // Own process group, so a timeout or Ctrl-C kills everything the step started.
    const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], detached: true, env: { ...process.env, ...opts.env } });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (d: string) => {
      stdout += d;
      opts.onStdout?.(d);
    });
    child.stderr.on('data', (d: string) => {
      stderr += d;
      opts.onStderr?.(d);
    });
    const kill = () => {
      if (signalGroup(child.pid!, 'SIGTERM')) setTimeout(() => signalGroup(child.pid!, 'SIGKILL'), 300).unref();
    };
    const timer = opts.timeoutMs
      ? setTimeout(() => {
          timedOut = true;
          kill();
        }, opts.timeoutMs)
      : undefined;
    opts.signal?.addEventListener('abort', kill, { once: true });
    child.once('error', (e) => {
      stderr += e.message;
    });
    child.once('close', (code) => {
      if (timer) clearTimeout(timer);
      opts.signal?.removeEventListener('abort', kill);
      resolve({ code: timedOut ? null : code, stdout, stderr, timedOut, durationMs: Date.now() - started });
    });
  });
}

export class HostBackend implements Backend {
  readonly name = 'host' as const;
  readonly paths = sharedCheckoutPaths(projectRoot, '/run/sockmap-labs/state');
  readonly netns = `sockmap-labs-${process.pid}`;
  private started = false;

  async start(): Promise<BackendInfo> {
    if (process.getuid?.() !== 0)
      throw new UserError('the host backend runs lab steps as root, and you are not root', 'sudo -E npm run lab -- <lab> --backend host   (or use the default VM backend)');
    requireTools([{ bin: 'ip', pkg: 'iproute2', why: 'makes the network namespace the steps run in' }]);
    const r = await runLocal(['bash', '-c', `ip netns add ${this.netns} && ip -n ${this.netns} link set lo up && mkdir -p ${PIN_ROOT} ${this.paths.state}`]);
    if (r.code !== 0) throw new UserError(`cannot create network namespace ${this.netns}: ${r.stderr.trim()}`);
    this.started = true;
    return { backend: 'host', kernelRelease: os.release(), accel: 'none' };
  }

  exec(command: string, opts?: ExecOptions): Promise<ExecResult> {
    return runLocal(['ip', 'netns', 'exec', this.netns, 'bash', '-c', command], opts);
  }

  async shell(): Promise<number> {
    return new Promise((resolve) => {
      const p = spawn('ip', ['netns', 'exec', this.netns, 'bash', '-i'], { stdio: 'inherit' });
      p.once('exit', (c) => resolve(c ?? 1));
    });
  }

  async stop(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    await runLocal(['bash', '-c', `ip netns del ${shq(this.netns)} 2>/dev/null; rmdir ${PIN_ROOT} ${this.paths.state} 2>/dev/null; true`]);
  }
}
