// Every lab on the guest image (`--rootfs image`): the image's own programs, its
// kernel, the step agent over virtio-serial, no sshd and no network device.
// Uses the image in the default cache (`.ci/run` builds it: `npm run image build`).
import { describe, expect, it } from 'vitest';
import { placesFrom } from '../../core/config.ts';
import { currentImageFolder, hostArch } from '../../vm/image-verify.ts';
import { cli, qemuPids, tail } from './cli-helpers.ts';

const arch = hostArch();
const image = arch && currentImageFolder(placesFrom().cacheDir, arch);
if (!image) console.warn('image e2e skipped: no guest image in the cache (npm run image build)');

describe.skipIf(!image)('--rootfs image', () => {
  it(
    'every lab passes with its solutions, booted from the guest image over the serial transport; nothing is left running',
    async () => {
      const tag = `image${process.pid}`;
      const { code, out } = await cli(['lab', 'all', '--quiet', '--solutions', '--rootfs', 'image', '--no-warm'], { LAB_RUN_TAG: tag }).done;
      expect(out).toMatch(/» qemu ready in [\d.]+ s: kernel 6\.12\S*, accel (tcg|kvm)/);
      expect(out).not.toMatch(/✖ FAIL/);
      expect(out).toMatch(/✔ PASS Lab 11 /);
      expect(code, tail(out)).toBe(0);
      expect(qemuPids(tag)).toEqual([]);
    },
    600_000,
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
