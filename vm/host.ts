// The `host` backend: no VM. Steps run on the current kernel as root, for quick
// iteration on a disposable machine (a CI runner, a container). The host's own
// mounts, interfaces, cgroups and pins are never touched or seen changed:
//
//   start()  One HOLDER process per run: `unshare --mount --net --pid --fork
//            --kill-child --propagation private` runs a small bash script that
//            becomes pid 1 of a new pid namespace, in a new mount namespace
//            (private: nothing propagates to or from the host) and a new network
//            namespace. The script makes the world a step expects, as the VM's
//            init does and as `ip netns exec` would for /sys:
//              /proc          a proc for the pid namespace;
//              /sys           a fresh sysfs, describing the run's netns;
//              /sys/fs/bpf    a private bpffs ($PIN lives here);
//              /run           a private tmpfs: $STATE, and /run/netns, so a
//                             lab's `ip netns add A` lands in the run's own
//                             /run and `ip netns list` on the host never sees it;
//              /sys/fs/cgroup the run's own cgroup v2: a cgroup named after the
//                             run (sockmap-labs-host-<tag or pid>) at the root of
//                             the cgroup2 hierarchy, bind-mounted here, so a
//                             lab's `mkdir /sys/fs/cgroup/lab04` makes a child of
//                             it. The holder lives in it (see "stale" below).
//            and `lo` up. It prints "ready <its host pid>", then reads its
//            stdin until the runner's end of that pipe closes.
//   exec()   Each step: `nsenter --target <holder> --mount --net --pid -- bash -c
//            CMD`, in a process group of its own (a timeout or Ctrl-C signals
//            the group). Every step enters the SAME namespaces, so pins made by
//            one step are seen by the next, and so are netns, cgroups and
//            background processes. The checkout is at its host path (the
//            mount namespace starts as a copy of the host's, so it must not be
//            under /run); /tmp and every other file are the host's, writable
//            (a VM shares the host's root read-only): labs write under $STATE.
//   stop()   Closes the holder's stdin (on Ctrl-C, on SIGTERM, or when this
//            process dies even by SIGKILL, the pipe closes too): pid 1 exits, so
//            the kernel kills every process of the run (the pid namespace dies
//            with its init); with the last process the mount namespace and every
//            mount in it go (bpffs and its pins, /run with /run/netns and $STATE),
//            then the network namespaces. A holder that does not go gets
//            SIGTERM, then SIGKILL (stopGroup). Then the run's cgroup tree is
//            removed, from a short-lived private mount of cgroup2 (BPF programs
//            attached to those cgroups go with them).
//   stale    A runner killed outright cannot remove its cgroup; it is left
//            empty, and the next host run removes every sockmap-labs-host-*
//            cgroup that holds no process (a live run's holder is in its own).
// Two host runs at once do not meet: each has its own netns names, pins and cgroups.
//
// Why a holder rather than `ip netns add` + `ip netns exec` per step: `ip netns
// exec` makes a new mount namespace for each command and remounts /sys in it,
// so a step could see neither the run's bpffs nor its cgroup2, and the pins of
// one step would be gone for the next.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import zlib from 'node:zlib';
import { UserError } from '../core/errors.ts';
import { guestPathVar, sharedCheckoutPaths } from '../core/guest.ts';
import { projectRoot } from '../core/paths.ts';
import { signalGroup, stopGroup } from '../core/process-group.ts';
import { shq } from '../core/shell.ts';
import { which } from '../core/which.ts';
import type { Backend, BackendInfo, ExecOptions, ExecResult } from './backend.ts';
import { parseConfig } from './kernel.ts';
import type { Check } from './preflight.ts';
import { HOST_TOOLS, requireTools } from './tools.ts';


/** PATH for the holder and the cleanup: the user's, plus the sbin folders which() looks in too (ip, mount). */
const hostPath = () => [process.env.PATH, '/usr/local/sbin', '/usr/sbin', '/sbin'].filter(Boolean).join(':');

/** Where the host's kernel config may be: the first that exists is read. */
const configFiles = (release: string) => [`/boot/config-${release}`, '/proc/config.gz', `/lib/modules/${release}/config`, `/lib/modules/${release}/build/.config`];

/**
 * The running kernel's config: /boot/config-<release>, /proc/config.gz (when
 * built with IKCONFIG_PROC), or the modules folder's copy; undefined when none
 * exists (then needs.config cannot be checked, and doctor says so). An option
 * built as a module (=m) counts only when this host has modules for the kernel
 * (/lib/modules/<release>): without them modprobe cannot load it.
 */
export function readHostConfig(release = os.release()): Map<string, string> | undefined {
  const file = hostConfigFile(release);
  if (!file) return undefined;
  const raw = fs.readFileSync(file);
  const config = parseConfig((file.endsWith('.gz') ? zlib.gunzipSync(raw) : raw).toString('utf8'));
  if (!fs.existsSync(`/lib/modules/${release}`)) for (const [k, v] of config) if (v === 'm') config.delete(k);
  return config;
}

/** The file readHostConfig reads, or undefined. */
export function hostConfigFile(release = os.release()): string | undefined {
  return configFiles(release).find((f) => fs.existsSync(f));
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
      if (child.pid && signalGroup(child.pid, 'SIGTERM')) setTimeout(() => signalGroup(child.pid!, 'SIGKILL'), 300).unref();
    };
    const timer = opts.timeoutMs
      ? setTimeout(() => {
          timedOut = true;
          kill();
        }, opts.timeoutMs)
      : undefined;
    if (opts.signal?.aborted) kill();
    else opts.signal?.addEventListener('abort', kill, { once: true });
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

/** What the holder could not do, by the stage its script names on failure, and the fix for it. */
const STAGE_FIX: Record<string, { what: string; fix: string }> = {
  unshare: {
    what: "cannot make the run's mount, network and pid namespaces",
    fix: 'run it as root with CAP_SYS_ADMIN (a container needs --privileged), or use the VM backend: drop --backend host',
  },
  proc: { what: 'cannot mount a proc for the run', fix: 'in a container: run it --privileged; or drop --backend host' },
  sysfs: { what: 'cannot mount a sysfs for the run', fix: 'in a container: run it --privileged; or drop --backend host' },
  bpffs: {
    what: 'cannot mount a private bpffs on /sys/fs/bpf',
    fix: 'the host kernel needs CONFIG_BPF_SYSCALL, and a container --privileged; or drop --backend host (the VM has its own bpffs)',
  },
  run: { what: 'cannot mount a private tmpfs on /run', fix: 'in a container: run it --privileged; or drop --backend host' },
  cgroup2: {
    what: 'cannot mount cgroup2',
    fix: 'the host kernel needs CONFIG_CGROUPS (cgroup v2 exists beside v1 hierarchies), and a container --privileged; or drop --backend host',
  },
  cgroup: {
    what: "cannot make the run's cgroup at the root of the cgroup2 hierarchy",
    fix: 'run as root, outside a read-only cgroup delegation; or drop --backend host',
  },
  lo: { what: "cannot bring up the run's loopback", fix: 'check `ip link` works as root; or drop --backend host' },
};

/** A refusal of the host backend: the stage that failed (a STAGE_FIX key), the message, its fix. */
export class HostRefusal extends UserError {
  constructor(
    readonly stage: string,
    message: string,
  ) {
    const f = STAGE_FIX[stage] ?? STAGE_FIX.unshare;
    super(`the host backend ${f.what}: ${message}`, f.fix);
  }
}

/** The refusal for a holder that ended before it was ready: what failed, in the kernel's (or mount's) words. */
function holderFailure(stderr: string): HostRefusal {
  const m = /^holder-fail\t(\w+)\t([\s\S]*)$/m.exec(stderr);
  const said = (m ? m[2] : stderr.replace(/^unshare: /gm, '')).trim().replace(/\s*\n\s*/g, '; ') || 'no message';
  return new HostRefusal(m?.[1] ?? 'unshare', said);
}

/** The holder's script (see the header): pid 1 of the run's namespaces until its stdin closes. */
function holderScript(cgroup: string, stateDir: string): string {
  const cg = shq(cgroup);
  return `
fail() { printf 'holder-fail\\t%s\\t%s\\n' "$1" "$2" >&2; exit 1; }
read -r hostpid _ < /proc/self/stat
umount -l /proc 2>/dev/null
out=$(mount -t proc -o nosuid,nodev,noexec proc /proc 2>&1) || fail proc "$out"
umount -l /sys 2>/dev/null
out=$(mount -t sysfs -o nosuid,nodev,noexec sysfs /sys 2>&1) || fail sysfs "$out"
out=$(mount -t bpf -o mode=0700 bpf /sys/fs/bpf 2>&1) || fail bpffs "$out"
out=$(mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run 2>&1) || fail run "$out"
mkdir /run/.cgroup2
out=$(mount -t cgroup2 cgroup2 /run/.cgroup2 2>&1) || fail cgroup2 "$out"
for d in /run/.cgroup2/sockmap-labs-host-*/; do
  [ -d "$d" ] && grep -qx 'populated 0' "$d/cgroup.events" 2>/dev/null && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
done
# Made and joined at once; a sweep by another run starting just then may take it between the two: again.
for try in 1 2 3; do
  out=$(mkdir /run/.cgroup2/${cg} 2>&1) || fail cgroup "$out"
  echo $$ 2>/dev/null > /run/.cgroup2/${cg}/cgroup.procs && break
  [ $try = 3 ] && fail cgroup "cannot move into /${cgroup}"
done
out=$(mount --bind /run/.cgroup2/${cg} /sys/fs/cgroup 2>&1) || fail cgroup "$out"
umount /run/.cgroup2 && rmdir /run/.cgroup2
out=$(ip link set lo up 2>&1) || fail lo "$out"
mkdir -p ${shq(stateDir)}
trap 'exit 0' TERM INT HUP
echo "ready $hostpid"
while read -r _; do :; done
exit 0
`;
}

/** Removes the run's cgroup tree (its processes are gone by then), from a private cgroup2 mount. */
function removeCgroupScript(cgroup: string): string {
  const cg = `/run/.cgroup2/${shq(cgroup)}`;
  return `
mount -t tmpfs tmpfs /run && mkdir /run/.cgroup2 && mount -t cgroup2 cgroup2 /run/.cgroup2 || exit 3
[ -d ${cg} ] || exit 0
echo 1 > ${cg}/cgroup.kill 2>/dev/null
for _ in $(seq 50); do
  find ${cg} -depth -type d -exec rmdir {} + 2>/dev/null
  [ -d ${cg} ] || exit 0
  sleep 0.1
done
echo "still there: $(cd ${cg} && find . -type d | tr '\\n' ' ')" >&2
exit 1
`;
}

export interface HostBackendOptions {
  /** LAB_RUN_TAG (config.hooks.runTag): names the run's cgroup, so a test finds exactly its own. */
  runTag?: string;
}

export class HostBackend implements Backend {
  readonly name = 'host' as const;
  readonly paths = sharedCheckoutPaths(projectRoot, '/run/sockmap-labs/state');
  /** The run's name: its cgroup is /sockmap-labs-host-<tag or pid> in the cgroup2 hierarchy. */
  readonly id: string;
  private holder?: ChildProcess;
  private holderGone?: Promise<void>;
  /** The holder's pid on the host: what steps enter. */
  private nsPid?: number;
  /** Why the holder ended while the run still needed it. */
  private lost?: string;
  /** unshare and nsenter, found on the user's PATH once (steps get the guest PATH). */
  private bin?: { unshare: string; nsenter: string };

  constructor(o: HostBackendOptions = {}) {
    this.id = `sockmap-labs-host-${(o.runTag ?? String(process.pid)).replace(/[^\w.-]/g, '_')}`;
  }

  async start(signal?: AbortSignal): Promise<BackendInfo> {
    if (process.getuid?.() !== 0)
      throw new UserError('the host backend runs lab steps as root, and you are not root', 'sudo -E npm run lab -- <lab> --backend host   (or use the default VM backend)');
    requireTools(HOST_TOOLS);
    if (projectRoot === '/run' || projectRoot.startsWith('/run/'))
      throw new UserError(`the checkout is under /run (${projectRoot}), which the host backend replaces with a private tmpfs`, 'move the checkout elsewhere, or use the VM backend (drop --backend host)');
    this.bin = { unshare: which('unshare')!, nsenter: which('nsenter')! };
    try {
      this.nsPid = await this.startHolder(this.bin.unshare, signal);
    } catch (e) {
      await this.stop().catch(() => {});
      throw e;
    }
    return { backend: 'host', kernelRelease: os.release(), accel: 'none' };
  }

  /** Starts the holder; resolves with its host pid once its namespaces are ready. */
  private startHolder(unshare: string, signal?: AbortSignal): Promise<number> {
    const argv = ['--mount', '--net', '--pid', '--fork', '--kill-child', '--propagation', 'private', '--', 'bash', '-c', holderScript(this.id, this.paths.state)];
    // stdin stays open: its end (stop(), or this process's death) ends the holder.
    const child = spawn(unshare, argv, { stdio: ['pipe', 'pipe', 'pipe'], detached: true, env: { ...process.env, PATH: hostPath() } });
    this.holder = child;
    this.holderGone = new Promise((r) => child.once('close', () => r()));
    child.stdin!.on('error', () => {}); // EPIPE once it is gone
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8');
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (d: string) => (stderr += d));
    return new Promise<number>((resolve, reject) => {
      let settled = false;
      const timer = setTimeout(() => done(new UserError(`the host backend's namespaces were not ready within 15 s${stderr ? `: ${stderr.trim()}` : ''}`)), 15_000);
      const onAbort = () => done(new Error('interrupted'));
      const done = (r: number | Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        if (typeof r !== 'number') return reject(r);
        child.once('close', (code, sig) => {
          if (this.holder === child) this.lost = `the host backend's namespace holder ended (${sig ?? `exit ${code}`})${stderr.trim() ? `: ${stderr.trim()}` : ''}`;
        });
        resolve(r);
      };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      child.stdout!.on('data', (d: string) => {
        stdout += d;
        const m = /^ready (\d+)$/m.exec(stdout);
        if (m) done(Number(m[1]));
      });
      child.once('error', (e) => done(new HostRefusal('unshare', `cannot start unshare: ${e.message}`)));
      child.once('close', () => done(holderFailure(stderr)));
    });
  }

  /** nsenter into the run's namespaces: the argv before the command. */
  private enter(): string[] {
    if (!this.nsPid || !this.bin) throw new Error(this.lost ?? 'the host backend is not started');
    return [this.bin.nsenter, `--target=${this.nsPid}`, '--mount', '--net', '--pid', '--'];
  }

  exec(command: string, opts?: ExecOptions): Promise<ExecResult> {
    try {
      return runLocal([...this.enter(), 'bash', '-c', command], opts);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  async shell(): Promise<number> {
    const [bin, ...args] = this.enter();
    return new Promise((resolve) => {
      const p = spawn(bin, [...args, 'bash', '-i'], { stdio: 'inherit', env: { ...process.env, PATH: guestPathVar(this.paths) } });
      p.once('exit', (c) => resolve(c ?? 1));
    });
  }

  health(): string | undefined {
    return this.lost;
  }

  async stop(): Promise<void> {
    const holder = this.holder;
    if (!holder) return;
    this.holder = undefined;
    this.nsPid = undefined;
    // EOF ends the holder; with it (pid 1) go every process, mount and netns of the run.
    holder.stdin?.end();
    const gone = await Promise.race([this.holderGone!.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 2000).unref())]);
    if (!gone && holder.pid) await stopGroup(holder.pid, 1000);
    const r = await runLocal([this.bin?.unshare ?? 'unshare', '--mount', '--propagation', 'private', '--', 'bash', '-c', removeCgroupScript(this.id)], { timeoutMs: 15_000, env: { PATH: hostPath() } });
    if (r.code !== 0 && r.code !== 3)
      throw new UserError(
        `the host backend could not remove its cgroup ${this.id}: ${r.stderr.trim() || `exit ${r.code}`}`,
        `the next --backend host run removes it once it is empty; or: sudo unshare -m sh -c 'mount -t cgroup2 none /mnt && find /mnt/${this.id} -depth -type d -exec rmdir {} +'`,
      );
  }
}

/** Which doctor check a failed holder stage belongs to. */
const STAGE_CHECK: Record<string, number> = { unshare: 0, proc: 0, sysfs: 0, run: 0, lo: 0, bpffs: 1, cgroup2: 2, cgroup: 2 };

/**
 * What the host kernel offers the host backend, measured: a run's namespaces
 * made for real (private bpffs, cgroup2, /run), a cgroup made in it, a map and
 * a SOCKMAP created and pinned, then all of it removed. For `doctor --backend host`.
 */
export async function probeHost(runTag?: string): Promise<Check[]> {
  const names = ['host namespaces', 'private bpffs', 'private cgroup2', 'bpf() syscall', 'SOCKMAP'];
  const notChecked = (i: number, why: string): Check => ({ name: names[i], level: 'warn', detail: `not checked: ${why}` });
  if (process.getuid?.() !== 0) return names.map((_, i) => notChecked(i, 'needs root (sudo -E npm run doctor -- --backend host)'));
  const b = new HostBackend({ runTag: runTag ?? `doctor-${process.pid}` });
  try {
    await b.start();
  } catch (e) {
    if (!(e instanceof UserError)) throw e;
    if (!(e instanceof HostRefusal)) return names.map((_, i) => notChecked(i, e.message));
    const at = STAGE_CHECK[e.stage] ?? 0;
    return names.map((n, i): Check =>
      i < at
        ? { name: n, level: 'ok', detail: 'made' }
        : i === at
          ? { name: n, level: 'fail', detail: e.message.replace(/^the host backend /, ''), fix: e.fix }
          : notChecked(i, 'the check above failed'),
    );
  }
  const said = (r: ExecResult) => (r.stderr || r.stdout).trim().replace(/\s*\n\s*/g, '; ') || `exit ${r.code}`;
  try {
    const checks: Check[] = [
      { name: names[0], level: 'ok', detail: 'a private mount, network and pid namespace per run (unshare, entered with nsenter)' },
      { name: names[1], level: 'ok', detail: 'mounted on /sys/fs/bpf inside the run only' },
    ];
    const cg = await b.exec('mkdir /sys/fs/cgroup/probe && test -e /sys/fs/cgroup/probe/cgroup.procs && rmdir /sys/fs/cgroup/probe');
    checks.push(
      cg.code === 0
        ? { name: names[2], level: 'ok', detail: "the run's own cgroup v2 on /sys/fs/cgroup; labs can make cgroups in it" }
        : { name: names[2], level: 'fail', detail: `mounted, but no cgroup can be made in it: ${said(cg)}`, fix: 'run as root outside a read-only cgroup delegation; or drop --backend host' },
    );
    const map = await b.exec('bpftool map create /sys/fs/bpf/probe_array type array key 4 value 4 entries 1 name probe_array && ls /sys/fs/bpf/probe_array');
    checks.push(
      map.code === 0
        ? { name: names[3], level: 'ok', detail: 'works: a map was created and pinned' }
        : {
            name: names[3],
            level: 'fail',
            detail: `refused: ${said(map)}`,
            fix: 'the host kernel needs CONFIG_BPF_SYSCALL, and root with CAP_BPF/CAP_SYS_ADMIN (not a seccomp-filtered container); or drop --backend host',
          },
    );
    if (map.code !== 0) checks.push(notChecked(4, 'the bpf() syscall does not work'));
    else {
      const sock = await b.exec('bpftool map create /sys/fs/bpf/probe_sockmap type sockmap key 4 value 8 entries 1 name probe_sockmap');
      checks.push(
        sock.code === 0
          ? { name: names[4], level: 'ok', detail: 'a SOCKMAP can be created' }
          : { name: names[4], level: 'fail', detail: `refused: ${said(sock)}`, fix: 'the host kernel needs CONFIG_NET_SOCK_MSG (4.14+); or drop --backend host (the VM has it)' },
      );
    }
    return checks;
  } finally {
    await b.stop();
  }
}
