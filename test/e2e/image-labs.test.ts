// Every lab on the guest image (the default, `--rootfs image`): the image's own
// programs, its kernel, the step agent over virtio-serial, no sshd and no
// network device, and lab programs built in the guest. Run with a PATH that
// holds node, npm, QEMU and coreutils only: the host needs nothing else.
// Uses the image in the default cache (`.ci/run` builds it: `npm run image build`).
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { placesFrom } from '../../core/config.ts';
import { WarmStore } from '../../vm/warm.ts';
import { currentImageFolder, hostArch } from '../../vm/image-verify.ts';
import { cli, qemuPids, tail } from './cli-helpers.ts';

/** A folder of links to node, npm, QEMU and every coreutils program: the PATH of a host with nothing else. */
function barePath(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sockmap-labs-bare-host-'));
  const link = (bin: string) => {
    const found = spawnSync('sh', ['-c', `command -v ${bin}`], { encoding: 'utf8' }).stdout.trim();
    if (found && !fs.existsSync(path.join(dir, path.basename(bin)))) fs.symlinkSync(found, path.join(dir, path.basename(bin)));
  };
  for (const bin of ['node', 'npm', 'qemu-system-x86_64', 'qemu-system-aarch64']) link(bin);
  const coreutils = execFileSync('dpkg', ['-L', 'coreutils'], { encoding: 'utf8' }).split('\n').filter((f) => /^\/(usr\/)?bin\/[^/]+$/.test(f));
  for (const f of coreutils) link(path.basename(f));
  return dir;
}

/** What a host-root lab run needs and the default mode must not: none of these may be on the bare PATH. */
const NOT_NEEDED = ['bpftool', 'clang', 'gcc', 'cc', 'make', 'ssh', 'sshd', 'ssh-keygen', 'busybox', 'cpio', 'sh', 'bash', 'ip', 'setsid'];

const arch = hostArch();
const image = arch && currentImageFolder(placesFrom().cacheDir, arch);
if (!image) console.warn('image e2e skipped: no guest image in the cache (npm run image build)');

describe.skipIf(!image)('--rootfs image', () => {
  const bare = barePath();
  afterAll(() => fs.rmSync(bare, { recursive: true, force: true }));

  it(
    'every lab passes with its solutions, on a host PATH of node, npm, QEMU and coreutils only; nothing is left running',
    async () => {
      const found = NOT_NEEDED.filter((t) => spawnSync('/bin/sh', ['-c', `command -v ${t}`], { env: { PATH: bare } }).status === 0);
      expect(found, 'the bare PATH must hold none of these').toEqual([]);
      const tag = `image${process.pid}`;
      const { code, out } = await cli(['lab', 'all', '--quiet', '--solutions', '--no-warm'], { LAB_RUN_TAG: tag, PATH: bare }).done;
      expect(out).toMatch(/» qemu ready in [\d.]+ s: kernel 6\.12\S*, accel (tcg|kvm)/);
      expect(out).toMatch(/fingerprint: runner \S+ \(\w+\) · qemu · amd64 · kernel 6\.12\S* · (tcg|kvm) · image [0-9a-f]{12}…/);
      expect(out).not.toMatch(/✖ FAIL/);
      expect(out).toMatch(/✔ PASS Lab 11 /);
      expect(code, tail(out)).toBe(0);
      expect(qemuPids(tag)).toEqual([]);
    },
    600_000,
  );

  it(
    'a warm VM of the image serves runs over virtio-serial; one whose lab programs were built from another bpf/ is passed over',
    async () => {
      const vmDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sockmap-labs-image-warm-'));
      const tag = `imagewarm${process.pid}`;
      const env = { LAB_VM_DIR: vmDir, LAB_RUN_TAG: tag };
      try {
        const up = await cli(['vm', 'up'], env).done;
        expect(up.code, tail(up.out)).toBe(0);
        expect(up.out).toContain('no keeper needed');
        const store = new WarmStore(vmDir);
        const state = store.read()!;
        expect(state.buildKey).toMatch(/^[0-9a-f]{16}$/);
        const run = await cli(['lab', '1', '--quiet'], env).done;
        expect(run.out).toContain(`using the warm VM (qemu pid ${state.pid})`);
        expect(run.out, tail(run.out)).toContain('✔ PASS Lab 01');
        // As if bpf/ had changed since the warm VM built its programs.
        store.write({ ...state, buildKey: '0000000000000000' });
        const stale = await cli(['lab', '1', '--quiet'], env).done;
        expect(stale.out).toContain('the warm VM runs lab programs built from another version of bpf/');
        expect(stale.out).not.toContain('using the warm VM');
        expect(stale.out, tail(stale.out)).toContain('✔ PASS Lab 01');
        expect(qemuPids(tag)).toEqual([state.pid]);
      } finally {
        await cli(['vm', 'down'], env).done;
        fs.rmSync(vmDir, { recursive: true, force: true });
      }
      expect(qemuPids(tag)).toEqual([]);
    },
    300_000,
  );

  it('refuses what the image cannot do, with the fix: another backend, or a --kernel', async () => {
    const vng = await cli(['lab', '1', '--rootfs', 'image', '--backend', 'vng']).done;
    expect(vng.out).toContain('--rootfs image boots the guest image with QEMU; --backend vng cannot');
    expect(vng.code).toBe(2);
    const kernel = await cli(['lab', '1', '--rootfs', 'image', '--kernel', '/boot/vmlinuz']).done;
    expect(kernel.out).toContain('it takes no --kernel');
    expect(kernel.code).toBe(2);
  });
});
