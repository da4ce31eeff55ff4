// The configuration: built once from flags and environment, every value checked
// where it is built (a bad one is a UserError, which the CLI turns into exit 2).
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildConfig, placesFrom } from '../core/config.ts';
import { projectRoot } from '../core/paths.ts';
import { userErrorOf as refused } from './user-error.ts';

describe('buildConfig', () => {
  it('defaults: qemu, the default kernel, auto accelerator, 1 GiB, warm allowed, timeouts scaled later', () => {
    const c = buildConfig({}, {});
    expect(c.machine).toMatchObject({ backend: 'qemu', kernels: [], kernelSource: 'default', accel: 'auto', memoryMb: 1024, warm: true, timeoutScale: undefined });
    expect(c.hooks).toEqual({ runTag: undefined, sshPort: undefined, kernelAppend: [], bootTimeoutMs: undefined, stepAgent: true });
    expect(c.places.labsDir).toBe(path.join(projectRoot, 'labs'));
  });

  it('--kernel wins over LAB_KERNEL; LAB_KERNEL is used alone, and says where it came from', () => {
    expect(buildConfig({ kernel: ['/a', '/b'] }, { LAB_KERNEL: '/env' }).machine).toMatchObject({ kernels: ['/a', '/b'], kernelSource: 'option' });
    expect(buildConfig({}, { LAB_KERNEL: '/env' }).machine).toMatchObject({ kernels: ['/env'], kernelSource: 'env' });
  });

  it('reads the accelerator from LAB_ACCEL, in any case', () => {
    expect(buildConfig({}, { LAB_ACCEL: 'TCG' }).machine.accel).toBe('tcg');
    expect(refused(() => buildConfig({}, { LAB_ACCEL: 'xen' })).message).toMatch(/LAB_ACCEL "xen" is not one of auto, kvm, hvf, tcg/);
  });

  it('boots the guest image over virtio-serial by default; the host root over ssh unless LAB_TRANSPORT asks for serial', () => {
    expect(buildConfig({}, {}).machine).toMatchObject({ rootfs: 'image', transport: 'serial' });
    expect(buildConfig({ rootfs: 'host' }, {}).machine).toMatchObject({ rootfs: 'host', transport: 'ssh' });
    expect(buildConfig({ rootfs: 'host' }, { LAB_TRANSPORT: 'serial' }).machine.transport).toBe('serial');
    expect(refused(() => buildConfig({}, { LAB_TRANSPORT: 'vsock' })).message).toMatch(/LAB_TRANSPORT "vsock" is not one of ssh, serial/);
    expect(refused(() => buildConfig({ rootfs: 'image' }, { LAB_TRANSPORT: 'ssh' })).message).toMatch(/guest image has no SSH server/);
  });

  it('takes the host root when asked for something only it has: a kernel of ones own, SSH, another backend', () => {
    expect(buildConfig({ kernel: '/boot/vmlinuz-6.1' }, {}).machine.rootfs).toBe('host');
    expect(buildConfig({}, { LAB_KERNEL: '/boot/vmlinuz-6.1' }).machine.rootfs).toBe('host');
    expect(buildConfig({}, { LAB_TRANSPORT: 'ssh' }).machine).toMatchObject({ rootfs: 'host', transport: 'ssh' });
    expect(buildConfig({ backend: 'vng' }, {}).machine.rootfs).toBe('host');
    expect(buildConfig({ backend: 'host' }, {}).machine.rootfs).toBe('host');
  });

  it("picks the guest's architecture from --arch, then LAB_ARCH, else the host's; another than the host's needs the image", () => {
    const host = process.arch === 'arm64' ? 'arm64' : 'amd64';
    const other = host === 'amd64' ? 'arm64' : 'amd64';
    expect(buildConfig({}, {}).machine.arch).toBe(host);
    expect(buildConfig({}, { LAB_ARCH: other }).machine.arch).toBe(other);
    expect(buildConfig({ arch: host }, { LAB_ARCH: other }).machine.arch).toBe(host);
    expect(refused(() => buildConfig({ arch: 'riscv64' }, {})).message).toMatch(/--arch "riscv64" is not one of amd64, arm64/);
    expect(refused(() => buildConfig({}, { LAB_ARCH: 'x86' })).message).toMatch(/LAB_ARCH "x86" is not one of amd64, arm64/);
    const e = refused(() => buildConfig({ arch: other, rootfs: 'host' }, {}));
    expect(e.message).toMatch(new RegExp(`an ${other} guest needs the guest image`));
    expect(e.fix).toContain(`npm run image build -- --arch ${other}`);
    expect(refused(() => buildConfig({ arch: other, backend: 'host' }, {})).message).toMatch(/--backend host runs on this machine's own/);
  });

  it('refuses a backend it does not know', () => {
    const e = refused(() => buildConfig({ backend: 'xyz' }, {}));
    expect(e.message).toMatch(/backend "xyz" is not one of qemu, vng, host/);
    expect(e.fix).toContain('--backend qemu');
  });

  it.each(['abc', '', '12.5', '-1', '100', '999999', '1e3'])('refuses --memory %j with the range it takes', (m) => {
    expect(refused(() => buildConfig({ memory: m }, {})).message).toMatch(/--memory \(MiB\) must be a whole number from 256 to 65536/);
  });

  it('takes --memory as a number of MiB', () => {
    expect(buildConfig({ memory: '2048' }, {}).machine.memoryMb).toBe(2048);
  });

  it.each(['0', 'x', '-2', 'Infinity'])('refuses --timeout-scale %j', (t) => {
    expect(refused(() => buildConfig({ timeoutScale: t }, {})).message).toMatch(/--timeout-scale must be a number from 0.001 to 100/);
  });

  it('takes a fractional --timeout-scale (tests shrink timeouts with it)', () => {
    expect(buildConfig({ timeoutScale: '0.002' }, {}).machine.timeoutScale).toBe(0.002);
  });

  it('keeps the test hooks apart, and checks them too', () => {
    const c = buildConfig({}, { LAB_RUN_TAG: 't1', LAB_SSH_PORT: '2222', LAB_KERNEL_APPEND: ' a=1  b ', LAB_BOOT_TIMEOUT: '25', LAB_STEP_AGENT: '0' });
    expect(c.hooks).toEqual({ runTag: 't1', sshPort: 2222, kernelAppend: ['a=1', 'b'], bootTimeoutMs: 25_000, stepAgent: false });
    expect(refused(() => buildConfig({}, { LAB_SSH_PORT: '70000' })).message).toMatch(/LAB_SSH_PORT/);
    expect(refused(() => buildConfig({}, { LAB_BOOT_TIMEOUT: 'soon' })).message).toMatch(/LAB_BOOT_TIMEOUT/);
  });

  it('--no-warm and --solutions come through; CI is noticed', () => {
    const c = buildConfig({ warm: false, solutions: true }, { CI: 'true' });
    expect([c.machine.warm, c.solutions, c.ci]).toEqual([false, true, true]);
  });
});

describe('placesFrom', () => {
  it('progress lives in the XDG state folder, or LAB_STATE_HOME', () => {
    expect(placesFrom({ HOME: '/h', XDG_STATE_HOME: '/x' }).progressFile).toBe('/x/sockmap-labs/progress.json');
    expect(placesFrom({ LAB_STATE_HOME: '/t', XDG_STATE_HOME: '/x' }).progressFile).toBe('/t/sockmap-labs/progress.json');
  });

  it('the cache is LAB_CACHE_DIR, else XDG_CACHE_HOME/sockmap-labs; the warm VM lives in it unless LAB_VM_DIR says', () => {
    expect(placesFrom({ XDG_CACHE_HOME: '/c' })).toMatchObject({ cacheDir: '/c/sockmap-labs', warmDir: '/c/sockmap-labs/vm' });
    expect(placesFrom({ LAB_CACHE_DIR: '/lc', XDG_CACHE_HOME: '/c', LAB_VM_DIR: '/v' })).toMatchObject({ cacheDir: '/lc', warmDir: '/v' });
  });

  it('LABS_DIR points at another folder of labs (tests use fixtures)', () => {
    expect(placesFrom({ LABS_DIR: '/fixtures' }).labsDir).toBe('/fixtures');
  });
});
