// A real guest image: built from Debian 12 packages for amd64 into a cache of
// its own (packages already downloaded into the default cache are reused),
// then looked at from outside (the erofs mounted as root, its programs run in
// a chroot: clang compiles the project's BPF programs and helpers), booted
// under QEMU with the project share and the step agent on its virtio-serial
// port, and built again (nothing to do). Skipped where apt cannot resolve
// Debian 12's packages or the build tools are missing.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { projectRoot } from '../../core/paths.ts';
import { buildImage, GUEST_PACKAGES, resolveInputs, type BuildResult } from '../../vm/image.ts';
import { openImage, verifyImage } from '../../vm/image-verify.ts';
import { readKernelRelease } from '../../vm/kernel.ts';
import { buildQemuArgs, QBOOT } from '../../vm/qemu-args.ts';
import { QemuProcess } from '../../vm/qemu-process.ts';
import { connectAgent } from '../../vm/serial.ts';
import { cli } from './cli-helpers.ts';
import { defaultCacheTwin, seededCache } from './image-helpers.ts';

const has = (tool: string) => spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;
const missing = ['apt-get', 'dpkg-deb', 'mkfs.erofs', 'depmod', 'xz', 'cpio'].filter((t) => !has(t));
const asRoot = process.getuid?.() === 0;
const canBoot = has('qemu-system-x86_64');

const cache = seededCache('amd64');
let resolvable = missing.length === 0;
beforeAll(async () => {
  if (!resolvable) return;
  try {
    await resolveInputs('amd64', cache);
  } catch (e) {
    resolvable = false;
    console.warn(`skipping the image build: ${(e as Error).message}`);
  }
}, 60_000);

describe.skipIf(missing.length > 0 || process.arch !== 'x64')(`npm run image build (amd64)${missing.length ? ` — missing ${missing.join(', ')}` : ''}`, () => {
  let first: BuildResult;
  const lines: string[] = [];

  beforeAll(async () => {
    if (!resolvable) return;
    first = await buildImage({ arch: 'amd64', cacheDir: cache, log: (l) => lines.push(l) });
    console.log(`image build: ${first.seconds.toFixed(1)} s, rootfs.erofs ${(first.manifest.files['rootfs.erofs'].size / 1e6).toFixed(1)} MB`);
  }, 900_000);

  it('builds the boot pieces and a manifest naming every package version', async (ctx) => {
    if (!resolvable) ctx.skip();
    expect(first.built).toBe(true);
    expect(path.basename(first.dir)).toBe(`amd64-${first.manifest.inputsDigest.slice(0, 16)}`);
    expect(fs.readdirSync(first.dir).sort()).toEqual(['initramfs.cpio.gz', 'kernel.config', 'manifest.json', 'rootfs.erofs', 'verified.json', 'vmlinuz']);
    expect(fs.readFileSync(path.join(first.dir, 'kernel.config'), 'utf8')).toMatch(/^CONFIG_NET_SOCK_MSG=y$/m);
    const m = first.manifest;
    expect(m.arch).toBe('amd64');
    expect(readKernelRelease(path.join(first.dir, 'vmlinuz'))).toBe(m.kernelRelease);
    expect(m.kernelRelease).toMatch(/^6\.12\.\d+.*-amd64$/);
    for (const p of GUEST_PACKAGES) expect(m.packages.some((id) => id.startsWith(`${p}=`))).toBe(true);
    expect(m.packages.some((id) => id.startsWith(`linux-image-${m.kernelRelease}=`))).toBe(true);
    // install-time machinery the kernel package depends on is left out
    expect(m.packages.some((id) => /^(initramfs-tools|udev|usrmerge|perl)=/.test(id))).toBe(false);
    expect(lines.some((l) => l.startsWith('compressing the root file system'))).toBe(true);
  });

  it("has the same bytes as the default cache's image of the same inputs, when there is one (a reproducible build)", (ctx) => {
    if (!resolvable) ctx.skip();
    const twin = defaultCacheTwin(first.manifest, path.basename(first.dir));
    if (!twin) ctx.skip();
    expect(first.manifest.files).toEqual(twin!.files);
    expect(first.manifest.digest).toBe(twin!.digest);
  });

  it('puts the image-init, the static busybox and the boot modules (plain .ko, in order) in the initramfs', (ctx) => {
    if (!resolvable) ctx.skip();
    const list = execFileSync('sh', ['-c', 'gzip -dc "$1" | cpio --quiet -it', 'sh', path.join(first.dir, 'initramfs.cpio.gz')], { encoding: 'utf8' }).split('\n');
    expect(list).toEqual(expect.arrayContaining(['init', 'bin/busybox', 'dev/console', 'modules/chains', 'modules/erofs.ko', 'modules/virtio_blk.ko', 'modules/9p.ko', 'modules/overlay.ko']));
    const chains = execFileSync('sh', ['-c', 'gzip -dc "$1" | cpio --quiet -i --to-stdout modules/chains', 'sh', path.join(first.dir, 'initramfs.cpio.gz')], { encoding: 'utf8' })
      .trim()
      .split('\n')
      .map((l) => l.split(' '));
    // Chains load side by side: together they are the manifest's modules, each once, each chain dependencies first.
    expect(chains.flat()).toEqual(first.manifest.bootModules);
    const fs1 = chains.find((c) => c.includes('erofs'))!;
    expect(fs1.indexOf('crc32c_generic')).toBeLessThan(fs1.indexOf('libcrc32c'));
    expect(fs1.indexOf('libcrc32c')).toBeLessThan(fs1.indexOf('erofs'));
    expect(chains.find((c) => c.includes('9p'))!.indexOf('9pnet')).toBeLessThan(chains.find((c) => c.includes('9p'))!.indexOf('9p'));
    const init = execFileSync('sh', ['-c', 'gzip -dc "$1" | cpio --quiet -i --to-stdout init', 'sh', path.join(first.dir, 'initramfs.cpio.gz')]);
    expect(init).toEqual(fs.readFileSync(path.join(projectRoot, 'vm/guest/image-init')));
  });

  describe.runIf(asRoot)('the root file system, mounted read-only (as root)', () => {
    const mnt = fs.mkdtempSync(path.join(os.tmpdir(), 'sockmap-labs-image-mnt-'));
    const mounted: string[] = [];
    const mount = (...args: string[]) => {
      execFileSync('mount', args);
      mounted.unshift(args[args.length - 1]);
    };
    const inImage = (script: string) => execFileSync('chroot', [mnt, '/bin/bash', '-c', script], { encoding: 'utf8', env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/root' } });

    beforeAll(() => {
      if (!resolvable) return;
      mount('-o', 'loop,ro', '-t', 'erofs', path.join(first.dir, 'rootfs.erofs'), mnt);
      mount('-t', 'tmpfs', 'tmpfs', path.join(mnt, 'tmp'));
      mount('--bind', '-o', 'ro', projectRoot, path.join(mnt, 'mnt'));
    });
    afterAll(() => {
      for (const m of mounted) spawnSync('umount', [m]);
      fs.rmSync(mnt, { recursive: true, force: true });
    });

    it('has merged /usr, bpftool, clang, busybox, bash-static, the kernel modules (indexed) and our init', (ctx) => {
      if (!resolvable) ctx.skip();
      for (const l of ['bin', 'sbin', 'lib', 'lib64']) expect(fs.readlinkSync(path.join(mnt, l))).toBe(`usr/${l}`);
      for (const f of ['usr/sbin/bpftool', 'usr/bin/clang', 'usr/bin/busybox', 'usr/bin/bash-static', 'usr/bin/ncat', 'usr/bin/socat', 'usr/bin/sockperf', 'usr/bin/strace', 'usr/bin/make'])
        expect(fs.existsSync(path.join(mnt, f)), f).toBe(true);
      const mods = path.join(mnt, 'usr/lib/modules', first.manifest.kernelRelease);
      expect(fs.readFileSync(path.join(mods, 'modules.dep'), 'utf8')).toContain('kernel/net/vmw_vsock/vsock_loopback.ko.xz:');
      expect(fs.existsSync(path.join(mnt, 'boot', `config-${first.manifest.kernelRelease}`))).toBe(true);
      expect(fs.existsSync(path.join(mnt, 'boot', `vmlinuz-${first.manifest.kernelRelease}`))).toBe(false);
      expect(fs.readFileSync(path.join(mnt, 'usr/lib/sockmap-labs/image-init'))).toEqual(fs.readFileSync(path.join(projectRoot, 'vm/guest/image-init')));
      expect(fs.readlinkSync(path.join(mnt, 'var/run'))).toBe('/run');
    });

    it("runs its programs without their maintainer scripts having run", (ctx) => {
      if (!resolvable) ctx.skip();
      const out = inImage('bpftool version; clang --version; busybox | head -1; awk -W version 2>&1 | head -1; nc --version 2>&1; id; ip -V; modprobe --version; sh -c "echo dash ok"');
      expect(out).toMatch(/bpftool v7/);
      expect(out).toMatch(/clang version 14/);
      expect(out).toMatch(/BusyBox v1\.35/);
      expect(out).toMatch(/mawk/);
      expect(out).toMatch(/Ncat: Version/);
      expect(out).toMatch(/uid=0\(root\) gid=0\(root\)/);
      expect(out).toMatch(/dash ok/);
    });

    it("compiles the project's BPF programs and C helpers with its own clang", (ctx) => {
      if (!resolvable) ctx.skip();
      const flags = fs.readFileSync(path.join(projectRoot, 'bpf/Makefile'), 'utf8').match(/^BPF_CFLAGS := (.*)$/m)![1].replace('$(ARCH_INC)', '/usr/include/x86_64-linux-gnu');
      const out = inImage(
        `set -e; cd /mnt/bpf; for p in progs/*.bpf.c; do clang ${flags} -Werror -c $p -o /tmp/$(basename $p .c).o; done; ` +
          `for h in helpers/*.c; do cc -O2 -Wall -Werror -o /tmp/$(basename $h .c) $h -lbpf; done; /tmp/socklab --help 2>&1 | head -1; ls /tmp | wc -l`,
      );
      expect(out).toMatch(/usage: socklab/);
      const progs = fs.readdirSync(path.join(projectRoot, 'bpf/progs')).filter((f) => f.endsWith('.bpf.c')).length;
      const helpers = fs.readdirSync(path.join(projectRoot, 'bpf/helpers')).filter((f) => f.endsWith('.c')).length;
      expect(Number(out.trim().split('\n').pop())).toBe(progs + helpers);
    });
  });

  describe.runIf(canBoot)('booted under QEMU', () => {
    it('answers the KVM probe at once (sml.probe=1)', async (ctx) => {
      if (!resolvable) ctx.skip();
      const img = await openImage(cache, 'amd64');
      const log = path.join(cache, 'probe.log');
      const q = new QemuProcess(
        [
          ...buildQemuArgs({ kernelImage: img.kernel, kernelRelease: img.manifest.kernelRelease, initramfs: img.initramfs, accel: 'tcg', memoryMb: 256, cpus: 1, shares: {}, bios: QBOOT, append: ['sml.probe=1'] }),
          '-drive',
          `file=${img.rootfs},if=virtio,format=raw,readonly=on`,
        ],
        log,
      );
      try {
        expect(await q.waitFor('sml-init: PROBE-OK', 60_000)).toBe('marker');
      } finally {
        await q.stop();
      }
    }, 90_000);

    it('boots into the image, serves the step agent, and runs real bpf() calls in it', async (ctx) => {
      if (!resolvable) ctx.skip();
      execFileSync('make', ['-s', '-C', path.join(projectRoot, 'bpf')]);
      const img = await openImage(cache, 'amd64');
      const vmDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sockmap-labs-image-vm-'));
      const serial = { agentSocket: path.join(vmDir, 'agent.sock'), shellSocket: path.join(vmDir, 'shell.sock') };
      const t0 = Date.now();
      const q = new QemuProcess(
        [
          ...buildQemuArgs({ kernelImage: img.kernel, kernelRelease: img.manifest.kernelRelease, initramfs: img.initramfs, accel: 'tcg', memoryMb: 1024, cpus: 2, shares: { project: projectRoot }, serial, bios: QBOOT }),
          '-drive',
          `file=${img.rootfs},if=virtio,format=raw,readonly=on`,
        ],
        path.join(vmDir, 'console.log'),
      );
      try {
        expect(await q.waitFor('sml-image: READY', 120_000)).toBe('marker');
        const ready = Date.now() - t0;
        expect(await q.waitFor('sml-stage2: AGENT-READY', 60_000)).toBe('marker');
        console.log(`image boot: READY after ${(ready / 1000).toFixed(1)} s, AGENT-READY after ${((Date.now() - t0) / 1000).toFixed(1)} s (TCG)`);
        const link = await connectAgent(serial.agentSocket, { deadlineMs: 30_000 });
        try {
          const run = async (c: string) => {
            const r = await link.agent.exec(c, {});
            expect(r.code, `${c}: ${r.stdout}${r.stderr}`).toBe(0);
            return r.stdout;
          };
          expect(await run('findmnt -n -o FSTYPE,OPTIONS /')).toMatch(/^erofs\s+ro,/);
          expect(await run('findmnt -rn -o TARGET,FSTYPE | sort')).toMatch(/\/etc overlay[\s\S]*\/run\/sockmap-labs\/project 9p[\s\S]*\/sys\/fs\/bpf bpf[\s\S]*\/sys\/fs\/cgroup cgroup2[\s\S]*\/tmp tmpfs/);
          expect(await run('uname -r')).toBe(`${img.manifest.kernelRelease}\n`);
          await run('touch /etc/x /var/x /root/x /tmp/x /home/x');
          await run('mkdir -p /sys/fs/bpf/t && bpftool map create /sys/fs/bpf/t/m type sockmap key 4 value 4 entries 2 name m && bpftool map show pinned /sys/fs/bpf/t/m | grep -q sockmap');
          await run('modprobe vsock_loopback && grep -q vsock_loopback /proc/modules');
          expect(await run('! touch /usr/x 2>&1; true')).toMatch(/Read-only file system/);
        } finally {
          link.close();
        }
      } finally {
        await q.stop();
        fs.rmSync(vmDir, { recursive: true, force: true });
      }
    }, 240_000);
  });

  it('does nothing on a second build with the same inputs (npm run image build)', async (ctx) => {
    if (!resolvable) ctx.skip();
    const before = fs.statSync(path.join(first.dir, 'rootfs.erofs'));
    const t0 = Date.now();
    const r = await cli(['image', 'build'], { LAB_CACHE_DIR: cache }).done;
    expect(r.code, r.out).toBe(0);
    expect(r.out).toContain(`the amd64 guest image for these inputs is already built: ${first.dir} (nothing to do`);
    expect(Date.now() - t0).toBeLessThan(30_000);
    const after = fs.statSync(path.join(first.dir, 'rootfs.erofs'));
    expect(after.mtimeMs).toBe(before.mtimeMs);
    expect(after.ino).toBe(before.ino);
    expect((await verifyImage(first.dir, { arch: 'amd64' })).how).toBe('stamp');
  }, 120_000);
});
