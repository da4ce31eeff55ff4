// Faults and bad input: each ends with a clear message, a non-zero exit code,
// and no QEMU left running. Every VM here carries a tag of its own, so the
// check sees exactly the QEMUs this test started.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildConfig, placesFrom } from '../../core/config.ts';
import { kernelChoice } from '../../vm/session.ts';
import { cli, fixtures, qemuPids, root, waitForOutput, tail, type CliRun } from './cli-helpers.ts';

const faults = path.join(root, 'test/fixtures/faults');
const badLabs = path.join(root, 'test/fixtures/bad-labs');
const VM_MS = 240_000;
let n = 0;
function pgrep(pattern: string): string[] {
  try {
    return execFileSync('pgrep', ['-f', pattern], { encoding: 'utf8' }).split('\n').filter(Boolean);
  } catch {
    return []; // pgrep exits 1 when nothing matches
  }
}

/** The tagged QEMUs once there is one (or none after a minute): a VM that is booting. */
async function untilQemu(tag: string): Promise<number[]> {
  const end = Date.now() + 60_000;
  while (qemuPids(tag).length === 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
  return qemuPids(tag);
}

/** A fresh tag per run, and the env that applies it. */
function tagged(env: Record<string, string> = {}) {
  const tag = `fault${process.pid}x${++n}`;
  return { tag, env: { LAB_RUN_TAG: tag, ...env } };
}
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sockmap-labs-faults-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('the machine fails under a step', () => {
  it(
    'guest kernel panic mid-step: the step fails naming the panic; no QEMU left',
    async () => {
      const { tag, env } = tagged({ LABS_DIR: faults });
      const { code, out } = await cli(['lab', 'panic'], env).done;
      expect(out).toContain('the machine died during this step: Kernel panic - not syncing');
      expect(out).toContain('✖ FAIL Lab 01 Kernel panic mid-step');
      expect(code, tail(out)).toBe(1);
      expect(qemuPids(tag)).toEqual([]);
    },
    VM_MS,
  );

  it(
    'QEMU killed mid-step: the step fails saying QEMU was killed',
    async () => {
      const { tag, env } = tagged({ LABS_DIR: fixtures });
      const run = cli(['lab', 'slow'], env);
      await waitForOutput(run, '│ sleeping', 180_000);
      const [pid] = qemuPids(tag);
      process.kill(pid, 'SIGKILL');
      const { code, out } = await run.done;
      expect(out).toContain('the machine died during this step: QEMU exited (killed by SIGKILL)');
      expect(code, tail(out)).toBe(1);
      expect(qemuPids(tag)).toEqual([]);
    },
    VM_MS,
  );

  it(
    'SSH connection dropped mid-step: the step fails saying so, and the VM is stopped',
    async () => {
      const { tag, env } = tagged({ LABS_DIR: faults, LAB_TRANSPORT: 'ssh' });
      const { code, out } = await cli(['lab', 'ssh-drop'], env).done;
      expect(out).toContain('the SSH connection to the guest was lost');
      expect(code, tail(out)).toBe(1);
      expect(qemuPids(tag)).toEqual([]);
    },
    VM_MS,
  );

  it(
    "the step agent's virtio-serial session dropped mid-step (the guest image): the step fails saying so, and the VM is stopped",
    async () => {
      const { tag, env } = tagged({ LABS_DIR: faults });
      const { code, out } = await cli(['lab', 'agent-drop'], env).done;
      expect(out).toContain("the connection to the guest's step agent was lost");
      expect(code, tail(out)).toBe(1);
      expect(qemuPids(tag)).toEqual([]);
    },
    VM_MS,
  );
});

describe('the machine never comes up', () => {
  it(
    'a guest that panics at boot (no init): a clear error with the console tail',
    async () => {
      const { tag, env } = tagged({ LAB_KERNEL_APPEND: 'rdinit=/nonexistent' });
      const { code, out } = await cli(['lab', '1'], env).done;
      expect(out).toContain('error: the VM did not boot: Kernel panic - not syncing');
      expect(out).toMatch(/│ .*(VFS|init)/); // the console's last lines
      expect(out).toContain('fix:   read the console log: build/logs/console-');
      expect(code, tail(out)).toBe(2);
      expect(qemuPids(tag)).toEqual([]);
    },
    VM_MS,
  );

  it(
    'a kernel that never reaches init: the boot deadline fires, with the console tail',
    async () => {
      // A kernel image cut in half: its header is fine, its payload is not.
      const k = kernelChoice(buildConfig()).kernel!;
      const root2 = path.join(tmp, 'halfkernel');
      fs.mkdirSync(path.join(root2, 'boot'), { recursive: true });
      fs.mkdirSync(path.join(root2, 'lib/modules'), { recursive: true });
      const image = path.join(root2, 'boot', `vmlinuz-${k.release}`);
      const bytes = fs.readFileSync(k.image);
      fs.writeFileSync(image, bytes.subarray(0, Math.floor(bytes.length / 2)));
      fs.copyFileSync(k.configPath!, path.join(root2, 'boot', `config-${k.release}`));
      fs.symlinkSync(k.modulesDir, path.join(root2, 'lib/modules', k.release));
      const { tag, env } = tagged({ LAB_BOOT_TIMEOUT: '25' });
      const { code, out } = await cli(['lab', '1', '--kernel', image], env).done;
      expect(out).toMatch(/error: the VM did not boot: (no sshd within 25 s|QEMU exited)/);
      expect(code, tail(out)).toBe(2);
      expect(qemuPids(tag)).toEqual([]);
    },
    VM_MS,
  );

  it(
    'the forwarded port is taken: the runner takes another one and the lab passes',
    async () => {
      const server = net.createServer().listen(0, '127.0.0.1');
      await new Promise((r) => server.once('listening', r));
      const port = (server.address() as net.AddressInfo).port;
      try {
        const { tag, env } = tagged({ LAB_SSH_PORT: String(port), LAB_TRANSPORT: 'ssh' });
        const { code, out } = await cli(['lab', '1', '--quiet'], env).done;
        expect(out).toContain(`port ${port} on 127.0.0.1 was taken; trying another`);
        expect(out).toContain('✔ PASS Lab 01');
        expect(code, tail(out)).toBe(0);
        expect(qemuPids(tag)).toEqual([]);
      } finally {
        server.close();
      }
    },
    VM_MS,
  );
});

describe('signals at each phase', () => {
  // Ctrl-C (SIGINT) and SIGTERM take the same path; each is tested at each phase.
  const SIGNALS = [
    { sig: 'SIGINT', code: 130, says: 'Ctrl-C' },
    { sig: 'SIGTERM', code: 143, says: 'SIGTERM' },
  ] as const;

  /** Signals a lab run that reached its phase: it says it stops the step and the VM, exits `code`, and leaves no QEMU. */
  async function stopsCleanly(run: CliRun, tag: string, { sig, code: want, says }: (typeof SIGNALS)[number]) {
    run.child.kill(sig);
    const { code, out } = await run.done;
    expect(out).toContain(`${says}: stopping the step and the VM`);
    expect(code, tail(out)).toBe(want);
    expect(qemuPids(tag)).toEqual([]);
  }

  it.each(SIGNALS)(
    '$sig while building the BPF objects on the host (--rootfs host): exit $code, nothing left',
    async ({ sig, code: want }) => {
      // A make that takes its time, so the signal lands during the build.
      const bin = path.join(tmp, `slowmake-${sig}`);
      fs.mkdirSync(bin, { recursive: true });
      fs.writeFileSync(path.join(bin, 'make'), '#!/bin/sh\necho building >&2\nsleep 30\nexec /usr/bin/make "$@"\n', { mode: 0o755 });
      const { tag, env } = tagged({ PATH: `${bin}:${process.env.PATH}` });
      const run = cli(['lab', '1', '--rootfs', 'host'], env);
      await new Promise((r) => setTimeout(r, 4000));
      run.child.kill(sig);
      const { code } = await run.done;
      expect(code, tail(run.output())).toBe(want);
      expect(qemuPids(tag)).toEqual([]);
      expect(pgrep(`${bin}/make`)).toEqual([]);
    },
    60_000,
  );

  it.each(SIGNALS)(
    '$sig while the guest image builds its lab programs: exit $code, no QEMU and no half-built folder left',
    async ({ sig, code: want }) => {
      // A cache of its own that has the images but no programs built yet: the guest builds them.
      const cache = fs.mkdtempSync(path.join(tmp, 'guest-build-'));
      fs.symlinkSync(path.join(placesFrom().cacheDir, 'images'), path.join(cache, 'images'));
      for (const f of ['kvm-probe.json']) if (fs.existsSync(path.join(placesFrom().cacheDir, f))) fs.copyFileSync(path.join(placesFrom().cacheDir, f), path.join(cache, f));
      const { tag, env } = tagged({ LAB_CACHE_DIR: cache });
      const run = cli(['lab', '1'], env);
      await waitForOutput(run, 'building the lab programs in the guest', 60_000);
      await new Promise((r) => setTimeout(r, 8000));
      run.child.kill(sig);
      const { code } = await run.done;
      expect(code, tail(run.output())).toBe(want);
      expect(qemuPids(tag)).toEqual([]);
      expect(fs.readdirSync(path.join(cache, 'guest-build'))).toEqual([]);
    },
    VM_MS,
  );

  it.each(SIGNALS)(
    '$sig while the VM boots: exit $code, no QEMU left',
    async (signal) => {
      const { tag, env } = tagged();
      const run = cli(['lab', '1'], env);
      expect(await untilQemu(tag)).toHaveLength(1);
      await stopsCleanly(run, tag, signal);
    },
    VM_MS,
  );

  it(
    "stdout's reader goes away (`npm run lab 1 | head -1`): the run stops as on SIGPIPE, exit 141, no QEMU and no VM folder left",
    async () => {
      const { tag, env } = tagged({ LABS_DIR: fixtures });
      const run = cli(['lab', 'slow'], env);
      // The reader closes its end at once: the CLI's next line meets EPIPE (before, during or right after the boot).
      run.child.stdout!.destroy();
      const { code, out } = await run.done;
      expect(out, tail(out)).not.toContain('EPIPE');
      expect(code, tail(out)).toBe(141);
      expect(qemuPids(tag)).toEqual([]);
      expect(fs.readdirSync(os.tmpdir()).filter((n) => n.startsWith(`sockmap-labs-${tag}-vm-`))).toEqual([]);
    },
    VM_MS,
  );

  it.each(SIGNALS)(
    '$sig during a step: the step and the VM stop, exit $code, no QEMU left',
    async (signal) => {
      const { tag, env } = tagged({ LABS_DIR: fixtures });
      const run = cli(['lab', 'slow'], env);
      await waitForOutput(run, '│ sleeping', 180_000);
      expect(qemuPids(tag)).toHaveLength(1);
      await stopsCleanly(run, tag, signal);
    },
    VM_MS,
  );

  it.each(SIGNALS)(
    '$sig during the teardown: the cleanup is cut short, exit $code, no QEMU left',
    async ({ sig, code: want }) => {
      const { tag, env } = tagged({ LABS_DIR: faults });
      // Another lab after it (skipped: it needs a newer kernel): the last lab on a
      // throw-away VM has no teardown, the VM goes with what it would clean.
      const run = cli(['lab', 'slow-cleanup', 'newer-kernel'], env);
      await waitForOutput(run, '✔ PASS', 180_000);
      await new Promise((r) => setTimeout(r, 1500));
      const t = Date.now();
      run.child.kill(sig);
      const { code } = await run.done;
      expect(Date.now() - t).toBeLessThan(25_000);
      expect(code, tail(run.output())).toBe(want);
      expect(qemuPids(tag)).toEqual([]);
    },
    VM_MS,
  );

  it.each(SIGNALS)(
    '$sig while `vm up` boots the warm VM: exit $code, no QEMU and no state left',
    async ({ sig, code: want }) => {
      const vmDir = fs.mkdtempSync(path.join(tmp, 'vm-up-'));
      const { tag, env } = tagged({ LAB_VM_DIR: vmDir });
      const run = cli(['vm', 'up'], env);
      expect(await untilQemu(tag)).toHaveLength(1);
      run.child.kill(sig);
      const { code, out } = await run.done;
      expect(code, tail(out)).toBe(want);
      expect(out).toContain('no warm VM is up');
      expect(qemuPids(tag)).toEqual([]);
      expect((await cli(['vm', 'status'], env).done).out).toContain('no warm VM');
    },
    VM_MS,
  );
});

describe('bad input and kernels', () => {
  it('a malformed lab file names file and line, no stack trace', async () => {
    const { code, out } = await cli(['lab', 'bad-yaml'], { LABS_DIR: badLabs }).done;
    expect(code, tail(out)).toBe(2);
    expect(out).toMatch(/01-bad-yaml\/lab\.yaml:\d+: /);
    expect(out).not.toMatch(/\n\s+at .*\.ts:\d+/);
  });

  it('a regex that does not compile names file and line', async () => {
    const { code, out } = await cli(['lab', 'bad-regex'], { LABS_DIR: badLabs }).done;
    expect(code, tail(out)).toBe(2);
    expect(out).toMatch(/02-bad-regex\/lab\.yaml:7: steps\.0\.expect\.stdout\.matches: bad regular expression/);
  });

  it('a kernel without the required CONFIG_ options is refused before booting', async () => {
    const k = kernelChoice(buildConfig()).kernel!;
    const r2 = path.join(tmp, 'noconfig');
    fs.mkdirSync(path.join(r2, 'boot'), { recursive: true });
    fs.mkdirSync(path.join(r2, 'lib/modules'), { recursive: true });
    fs.symlinkSync(k.image, path.join(r2, 'boot', `vmlinuz-${k.release}`));
    fs.symlinkSync(k.modulesDir, path.join(r2, 'lib/modules', k.release));
    const config = fs.readFileSync(k.configPath!, 'utf8').replace(/^CONFIG_NET_SOCK_MSG=y$/m, '# CONFIG_NET_SOCK_MSG is not set');
    fs.writeFileSync(path.join(r2, 'boot', `config-${k.release}`), config);
    const { code, out } = await cli(['lab', '1', '--kernel', path.join(r2, 'boot', `vmlinuz-${k.release}`)]).done;
    expect(code, tail(out)).toBe(2);
    expect(out).toContain('lacks CONFIG_NET_SOCK_MSG');
    expect(out).toContain('npm run kernels -- fetch');
  });

  it(
    'a lab needing a newer kernel is skipped with the reason, not failed',
    async () => {
      const { code, out } = await cli(['lab', 'newer-kernel'], { LABS_DIR: faults }).done;
      expect(out).toMatch(/– SKIP Lab 03 Needs a kernel from the future: needs kernel 99\.0 or newer; this one is 6\./);
      expect(code, tail(out)).toBe(0);
    },
    VM_MS,
  );

  it.runIf(process.getuid?.() === 0)('a read-only cache folder is refused before booting, with the fix', async () => {
    const ro = path.join(tmp, 'rocache');
    fs.mkdirSync(ro);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs', ro]);
    try {
      const { code, out } = await cli(['lab', '1'], { LAB_CACHE_DIR: ro }).done;
      expect(code, tail(out)).toBe(2);
      expect(out).toContain(`${ro} is not writable`);
      expect(out).toContain('export LAB_CACHE_DIR=');
    } finally {
      execFileSync('umount', [ro]);
    }
  });
});

describe('security', () => {
  it.each(['image', 'host'])(
    'no lab can write to the host through the shares (--rootfs %s); the guest image listens on no port, the host root only on 127.0.0.1 for SSH',
    async (rootfs) => {
      const { tag, env } = tagged({ LABS_DIR: faults });
      const run = cli(['lab', 'host-readonly', '--quiet', '--rootfs', rootfs], env);
      await waitForOutput(run, 'qemu ready in', 180_000);
      const [pid] = qemuPids(tag);
      const listening = execFileSync('ss', ['-Hlnp'], { encoding: 'utf8' })
        .split('\n')
        .filter((l) => l.includes(`pid=${pid},`) && !l.startsWith('u_str'));
      if (rootfs === 'image') expect(listening).toEqual([]);
      else {
        // QEMU's SSH forward, on 127.0.0.1 only.
        expect(listening.length).toBeGreaterThan(0);
        for (const l of listening) expect(l).toMatch(/\s127\.0\.0\.1:\d+\s/);
      }
      const { code, out } = await run.done;
      expect(out).toContain('✔ PASS Lab 02 The host stays read-only');
      expect(code, tail(out)).toBe(0);
      expect(fs.existsSync(path.join(faults, '02-host-readonly/written-by-guest'))).toBe(false);
      expect(fs.existsSync('/usr/written-by-guest')).toBe(false);
    },
    VM_MS,
  );

  it.each(['image', 'host'])(
    'a throw-away VM (--rootfs %s) leaves no folder behind: no keys, no sockets',
    async (rootfs) => {
      const { tag, env } = tagged();
      const run = cli(['lab', '1', '--quiet', '--no-warm', '--rootfs', rootfs], env);
      await waitForOutput(run, 'qemu ready in', 180_000);
      const ours = () => fs.readdirSync(os.tmpdir()).filter((f) => f.startsWith(`sockmap-labs-${tag}-vm-`));
      // While the VM runs its keys (host root, SSH) or QEMU's sockets (the image, virtio-serial) exist, private to us…
      expect(ours()).toHaveLength(1);
      const dir = path.join(os.tmpdir(), ours()[0]);
      expect(fs.statSync(dir).mode & 0o777).toBe(0o700);
      if (rootfs === 'host') expect(fs.statSync(path.join(dir, 'id_ed25519')).mode & 0o777).toBe(0o600);
      else expect(fs.readdirSync(dir).sort()).toEqual(['agent.sock', 'guest', 'shell.sock']);
      const { code } = await run.done;
      expect(code, tail(run.output())).toBe(0);
      // …and after it, nothing.
      expect(ours()).toEqual([]);
    },
    VM_MS,
  );
});
