// `--backend host` for real, as root: every lab on the host kernel, each lab
// passed or skipped with its reason; then nothing of the run is left on the
// host — no netns, no mount, no pin, no cgroup, no BPF object, no process —
// after a whole run, and after Ctrl-C in the middle of one. And the refusals:
// a host without unshare, and one where root lacks CAP_SYS_ADMIN (a plain
// container), each stop with the reason and the fix, exit 2.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cli, root, tail, testStateHome, waitForOutput } from './cli-helpers.ts';

const asRoot = process.getuid?.() === 0;
const labCount = fs.readdirSync(path.join(root, 'labs')).filter((d) => /^\d\d-/.test(d)).length;

function run(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    return '';
  }
}

/** Directories below `dir`, to `depth` levels, as paths relative to it. */
function dirsBelow(dir: string, depth: number): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string, left: number) => {
    let entries: fs.Dirent[] = [];
    try {
      entries = fs.readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (!e.isDirectory()) continue;
      out.push(`${rel}${e.name}`);
      if (left > 1) walk(path.join(d, e.name), `${rel}${e.name}/`, left - 1);
    }
  };
  walk(dir, '', depth);
  return out.sort();
}

/** The whole cgroup v2 tree (from a private mount, so the host's mounts stay as they are), a few levels deep. */
const cgroup2Tree = () =>
  run('unshare', ['--mount', '--propagation', 'private', '--', 'sh', '-c', 'mount -t tmpfs t /run && mkdir /run/cg && mount -t cgroup2 none /run/cg && cd /run/cg && find . -mindepth 1 -maxdepth 3 -type d | sort'])
    .split('\n')
    .filter(Boolean);

/** cgroup v1 directories a run could have made (its own name, or a lab's labNN). */
const cgroup1Ours = () => {
  const v1 = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => / - cgroup /.test(l)).map((l) => l.split(' ')[4]);
  return v1.flatMap((m) => dirsBelow(m, 4).filter((d) => /(^|\/)(sockmap-labs[^/]*|lab\d\d)$/.test(d)).map((d) => `${m}/${d}`));
};

/** Live BPF map and program ids (a run's must all be freed after it). */
const bpfIds = () => {
  const ids = (what: string) => {
    try {
      return (JSON.parse(run('bpftool', ['-j', what, 'list']) || '[]') as { id: number }[]).map((o) => `${what} ${o.id}`);
    } catch {
      return [];
    }
  };
  return [...ids('map'), ...ids('prog')];
};

/** Pids of processes that carry the run's tag in their environment (every process a run starts inherits it). */
function taggedPids(tag: string): number[] {
  const needle = Buffer.from(`LAB_RUN_TAG=${tag}\0`);
  const pids: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    try {
      if (fs.readFileSync(`/proc/${d}/environ`).includes(needle)) pids.push(Number(d));
    } catch {
      /* gone meanwhile */
    }
  }
  return pids;
}

interface HostView {
  mounts: string[];
  netns: string;
  runNetns: string[];
  bpffs: string[];
  cgroup2: string[];
  cgroup1: string[];
}

/** What the host shows of itself: its mounts, netns, pins and cgroups. */
function hostView(): HostView {
  return {
    mounts: fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter(Boolean).sort(),
    netns: run('ip', ['netns', 'list']),
    runNetns: fs.existsSync('/run/netns') ? fs.readdirSync('/run/netns').sort() : [],
    bpffs: run('find', ['/sys/fs/bpf']).split('\n').filter(Boolean).sort(),
    cgroup2: cgroup2Tree(),
    cgroup1: cgroup1Ours(),
  };
}

/** Polls `probe` until it holds (BPF objects and cgroups are freed a moment after the last user). */
async function eventually<T>(probe: () => T, ok: (v: T) => boolean, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  let v = probe();
  while (!ok(v) && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 200));
    v = probe();
  }
  return v;
}

/** Asserts the host looks as `before`, with no BPF object of the run and no process of `tag` left. */
async function expectNothingLeft(before: HostView, bpfBefore: string[], tag: string, out: string) {
  expect(taggedPids(tag), `processes of the run left:\n${tail(out, 10)}`).toEqual([]);
  expect(hostView(), tail(out, 20)).toEqual(before);
  const leaked = await eventually(
    () => bpfIds().filter((id) => !bpfBefore.includes(id)),
    (l) => l.length === 0,
  );
  expect(leaked, 'BPF maps or programs of the run still loaded').toEqual([]);
}

const newTag = (what: string) => `hostbe-${what}-${process.pid}-${Date.now().toString(36)}`;

describe.runIf(asRoot)('--backend host', () => {
  it('runs every lab on the host kernel: each passes or is skipped with its reason, and nothing of the run is left', { timeout: 600_000 }, async () => {
    const before = hostView();
    const bpfBefore = bpfIds();
    const tag = newTag('all');
    const { code, out } = await cli(['lab', 'all', '--solutions', '--backend', 'host', '--quiet'], { LAB_RUN_TAG: tag }).done;
    expect(out, tail(out)).toMatch(/host ready in [\d.]+ s: kernel \S+, accel none/);
    const passed = out.match(/^✔ PASS Lab \d\d /gm) ?? [];
    const skipped = out.match(/^– SKIP Lab \d\d .*$/gm) ?? [];
    expect(passed.length + skipped.length, tail(out)).toBe(labCount);
    // A skipped lab or step always says why: a kernel too old, or an option it lacks.
    for (const s of out.match(/– SKIP.*$/gm) ?? []) expect(s).toMatch(/– SKIP (Lab \d\d .*: )?(needs kernel \S+ or newer|kernel \S+ lacks CONFIG_\w+)/);
    expect(out).not.toMatch(/✖ FAIL/);
    expect(code, tail(out)).toBe(0);
    await expectNothingLeft(before, bpfBefore, tag, out);
  });

  it('Ctrl-C in the middle of a lab stops it, exit 130, and leaves nothing: the run was never visible on the host', { timeout: 180_000 }, async () => {
    const before = hostView();
    const bpfBefore = bpfIds();
    const tag = newTag('sigint');
    // Lab 10 has everything at once: two netns and a veth, a cgroup with a
    // sock_ops program, pins, and a sockperf server running in the background.
    const r = cli(['lab', '10', '--backend', 'host', '--quiet'], { LAB_RUN_TAG: tag });
    await waitForOutput(r, 'step 5/', 120_000);
    await new Promise((res) => setTimeout(res, 1000));
    // Mid-run: the run has processes and its own cgroup, yet the host's mounts, netns and pins look as before.
    expect(taggedPids(tag).length, tail(r.output())).toBeGreaterThan(0);
    const during = hostView();
    expect(during.cgroup2.filter((d) => !before.cgroup2.includes(d)).some((d) => /^\.\/sockmap-labs-host-[^/]+\/lab10$/.test(d)), JSON.stringify(during.cgroup2)).toBe(true);
    expect({ ...during, cgroup2: before.cgroup2 }).toEqual(before);
    r.child.kill('SIGINT');
    const { code, out } = await r.done;
    expect(out).toContain('Ctrl-C: stopping');
    expect(code, tail(out)).toBe(130);
    await expectNothingLeft(before, bpfBefore, tag, out);
  });

  describe('refuses with the reason and the fix (exit 2)', () => {
    // A PATH with every program of /usr/bin but unshare and nsenter: a host without util-linux's.
    const bare = fs.mkdtempSync(path.join(os.tmpdir(), 'sockmap-labs-no-unshare-'));
    afterAll(() => fs.rmSync(bare, { recursive: true, force: true }));

    it('on a host without unshare', { timeout: 120_000 }, async () => {
      for (const f of fs.readdirSync('/usr/bin')) if (f !== 'unshare' && f !== 'nsenter') fs.symlinkSync(path.join('/usr/bin', f), path.join(bare, f));
      const { code, out } = await cli(['lab', '1', '--backend', 'host'], { PATH: bare }).done;
      expect(out, tail(out)).toMatch(/error: missing programs: unshare \(.*\), nsenter \(/);
      expect(out).toContain('fix:   sudo apt-get install -y util-linux');
      expect(out).not.toMatch(/\n\s+at .*:\d+/);
      expect(code, tail(out)).toBe(2);
    });

    it('as root without CAP_SYS_ADMIN (a plain container)', { timeout: 120_000 }, async () => {
      const before = hostView();
      // As cli() starts the CLI, under setpriv: root, but the capability gone from the bounding set.
      const child = spawn('setpriv', ['--bounding-set=-sys_admin', '--inh-caps=-sys_admin', '--', process.execPath, 'runner/launch.mjs', 'lab', '1', '--backend', 'host'], {
        cwd: root,
        env: { ...process.env, CI: '1', NO_COLOR: '1', LAB_STATE_HOME: testStateHome },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      child.stdout.on('data', (d) => (out += d));
      child.stderr.on('data', (d) => (out += d));
      const code = await new Promise<number | null>((res) => child.once('close', res));
      expect(out, tail(out)).toMatch(/error: the host backend cannot make the run's mount, network and pid namespaces: .*Operation not permitted/);
      expect(out).toMatch(/fix: +run it as root with CAP_SYS_ADMIN \(a container needs --privileged\)/);
      expect(code, tail(out)).toBe(2);
      expect(hostView()).toEqual(before);
    });
  });
});
