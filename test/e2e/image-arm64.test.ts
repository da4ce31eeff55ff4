// The arm64 guest image, built on this x86_64 machine (no arm64 code runs to
// build it), booted in qemu-system-aarch64 under TCG until its init has
// mounted the erofs root from virtio-blk, then labs 01-04, 07 and 11 run on it
// with `--arch arm64` (its lab programs built in the arm64 guest). All eleven
// pass there too (`npm run lab all -- --solutions --arch arm64`, ~3.5 min under
// TCG); the test runs these six to keep .ci/run under its 30 minutes.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildImage, resolveInputs, type BuildResult } from '../../vm/image.ts';
import { openImage } from '../../vm/image-verify.ts';
import { cli, qemuPids, tail } from './cli-helpers.ts';
import { defaultCacheTwin, seededCache } from './image-helpers.ts';

const has = (tool: string) => spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;
const arm64Apt = spawnSync('dpkg', ['--print-foreign-architectures'], { encoding: 'utf8' }).stdout?.split('\n').includes('arm64');
const missing = [...['apt-get', 'dpkg-deb', 'mkfs.erofs', 'depmod', 'xz', 'qemu-system-aarch64'].filter((t) => !has(t)), ...(arm64Apt ? [] : ['dpkg arm64 architecture'])];
if (missing.length) console.warn(`arm64 image e2e skipped: missing ${missing.join(', ')} (.ci/run sets them up)`);

describe.skipIf(missing.length > 0)('the arm64 guest image', () => {
  const cache = seededCache('arm64');
  let built: BuildResult;

  beforeAll(async () => {
    await resolveInputs('arm64', cache);
    built = await buildImage({ arch: 'arm64', cacheDir: cache, log: () => {} });
  }, 900_000);

  it('is built for arm64: an arm64 kernel and busybox, and a manifest that says so', async () => {
    expect(built.manifest.arch).toBe('arm64');
    expect(built.manifest.kernelRelease).toMatch(/^6\.12\.\d+.*-arm64$/);
    const file = (f: string) => spawnSync('file', ['-b', f], { encoding: 'utf8' }).stdout;
    if (has('file')) expect(file(path.join(built.dir, 'vmlinuz'))).toMatch(/ARM64|aarch64/i);
    const img = await openImage(cache, 'arm64');
    expect(img.dir).toBe(built.dir);
  });

  it("has the same bytes as the default cache's arm64 image of the same inputs, when there is one (a reproducible build)", (ctx) => {
    const twin = defaultCacheTwin(built.manifest, path.basename(built.dir));
    if (!twin) ctx.skip();
    expect(built.manifest.digest).toBe(twin!.digest);
  });

  it('is never taken for an amd64 guest: the refusal names the fix', async () => {
    await expect(openImage(cache, 'amd64')).rejects.toThrow(/no amd64 guest image/);
  });

  it(
    'boots in qemu-system-aarch64 (TCG): the kernel, its initramfs modules and the erofs root on virtio-blk',
    async () => {
      const img = await openImage(cache, 'arm64');
      // prettier-ignore
      const q = spawn('qemu-system-aarch64', [
        '-nodefaults', '-no-user-config', '-nographic', '-no-reboot', '-machine', 'virt', '-accel', 'tcg,thread=multi',
        '-cpu', 'max,pauth-impdef=on', '-m', '1024', '-smp', '2', '-kernel', img.kernel, '-initrd', img.initramfs,
        '-append', 'console=ttyAMA0 quiet panic=-1', '-serial', 'stdio',
        '-drive', `file=${img.rootfs},if=virtio,format=raw,readonly=on`,
      ], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      const seen = new Promise<string>((resolve) => {
        const look = (d: Buffer) => {
          out += d.toString('latin1');
          const m = /sml-image: READY|sml-init: FAILED[^\n]*/.exec(out);
          if (m) resolve(m[0]);
        };
        q.stdout.on('data', look);
        q.stderr.on('data', look);
        q.once('exit', () => resolve(`QEMU exited:\n${out.slice(-2000)}`));
      });
      try {
        const marker = await Promise.race([seen, new Promise<string>((r) => setTimeout(() => r(`no marker in 150 s:\n${out.slice(-2000)}`), 150_000))]);
        expect(marker).toBe('sml-image: READY');
      } finally {
        q.kill('SIGKILL');
      }
    },
    180_000,
  );

  it(
    'runs labs 01-04, 07 and 11 with their solutions in the arm64 guest (--arch arm64, TCG): programs built in the guest, nothing left running',
    async () => {
      const tag = `arm64labs${process.pid}`;
      const { code, out } = await cli(['lab', '1', '2', '3', '4', '7', '11', '--quiet', '--solutions', '--arch', 'arm64', '--no-warm'], { LAB_CACHE_DIR: cache, LAB_RUN_TAG: tag }).done;
      expect(out).toContain('building the lab programs in the guest first');
      expect(out).toMatch(/» qemu ready in [\d.]+ s: kernel 6\.12\S*-arm64, accel tcg/);
      expect(out).toMatch(/fingerprint: runner \S+ \(\w+\) · qemu · arm64 · kernel 6\.12\S*-arm64 · tcg · image [0-9a-f]{12}…/);
      for (const lab of ['01', '02', '03', '04', '07', '11']) expect(out).toMatch(new RegExp(`✔ PASS Lab ${lab} `));
      expect(out).not.toMatch(/✖ FAIL/);
      expect(code, tail(out)).toBe(0);
      expect(qemuPids(tag)).toEqual([]);
    },
    1_200_000,
  );
});
