import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildConfig } from '../core/config.ts';
import { UserError } from '../core/errors.ts';
import { BOOT_MODULES, ensureInitramfs, findStaticBusybox, resolveBootModules } from '../vm/initramfs.ts';
import type { Kernel } from '../vm/kernel.ts';
import { kernelChoice } from '../vm/session.ts';

/** File names inside an initramfs. */
const listInitramfs = (file: string) => execFileSync('sh', ['-c', 'gzip -dc "$1" | cpio --quiet -it', 'sh', file], { encoding: 'utf8' }).split('\n').filter(Boolean);

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sml-initramfs-test-'));
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

function caught(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error('expected an error, nothing was thrown');
}

// modules.dep as depmod writes it: "module: deps", deps in the order modprobe
// unloads them (the last one is loaded first).
const MODULES_DEP = [
  'kernel/fs/netfs/netfs.ko.xz:',
  'kernel/net/9p/9pnet.ko.xz:',
  'kernel/net/9p/9pnet_virtio.ko.xz: kernel/net/9p/9pnet.ko.xz kernel/drivers/virtio/virtio_ring.ko.zst',
  'kernel/fs/9p/9p.ko.xz: kernel/net/9p/9pnet.ko.xz kernel/fs/netfs/netfs.ko.xz',
  'kernel/fs/overlayfs/overlay.ko.gz:',
  'kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko',
  'kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko',
  'kernel/net/core/failover.ko:',
  'kernel/drivers/virtio/virtio_ring.ko.zst:',
  'kernel/drivers/misc/with-dash.ko.xz: kernel/drivers/misc/not-indexed.ko.xz',
  '',
].join('\n');

// As in Debian's 6.12: virtio and virtio_pci built in.
const MODULES_BUILTIN = ['kernel/drivers/virtio/virtio_ring.ko', 'kernel/drivers/virtio/virtio_pci.ko', 'kernel/fs/ext4/ext4.ko', ''].join('\n');

function modulesDir(name: string, builtin = true): string {
  const dir = path.join(tmp, name);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'modules.dep'), MODULES_DEP);
  if (builtin) fs.writeFileSync(path.join(dir, 'modules.builtin'), MODULES_BUILTIN);
  return dir;
}

describe('resolveBootModules', () => {
  it('lists the boot modules with their dependencies first, built-in ones left out', () => {
    const dir = modulesDir('mods');
    const mods = resolveBootModules(dir);
    expect(mods.map((m) => m.name)).toEqual(['netfs', '9pnet', '9pnet_virtio', '9p', 'overlay', 'failover', 'net_failover', 'virtio_net']);
    expect(mods.find((m) => m.name === '9p')!.file).toBe(path.join(dir, 'kernel/fs/9p/9p.ko.xz'));
    expect(mods.find((m) => m.name === 'overlay')!.file).toBe(path.join(dir, 'kernel/fs/overlayfs/overlay.ko.gz'));
    expect(mods.find((m) => m.name === 'virtio_net')!.file).toBe(path.join(dir, 'kernel/drivers/net/virtio_net.ko'));
    expect(mods.some((m) => m.name === 'virtio_ring')).toBe(false);
  });

  it('puts every module after its dependencies, once each', () => {
    const dir = modulesDir('mods-order');
    const names = resolveBootModules(dir, ['virtio_net', '9p', '9pnet_virtio']).map((m) => m.name);
    expect(new Set(names).size).toBe(names.length);
    const before = (a: string, b: string) => expect(names.indexOf(a), `${a} before ${b}`).toBeLessThan(names.indexOf(b));
    before('failover', 'net_failover');
    before('net_failover', 'virtio_net');
    before('9pnet', '9p');
    before('netfs', '9p');
    before('9pnet', '9pnet_virtio');
  });

  it('includes a module without modules.builtin', () => {
    const dir = modulesDir('mods-no-builtin', false);
    const names = resolveBootModules(dir, ['9pnet_virtio']).map((m) => m.name);
    expect(names).toEqual(['virtio_ring', '9pnet', '9pnet_virtio']);
  });

  it('drops a wanted module that is built in', () => {
    expect(resolveBootModules(modulesDir('mods-builtin'), ['virtio_ring', 'ext4'])).toEqual([]);
  });

  it('treats - and _ in module names alike', () => {
    const dir = modulesDir('mods-dash');
    const err = caught(() => resolveBootModules(dir, ['with_dash']));
    // with-dash is found under its underscore name; its dependency is not indexed.
    expect(err).toBeInstanceOf(UserError);
    expect((err as UserError).message).toContain('not_indexed');
  });

  it('a missing module is a UserError naming it', () => {
    const dir = modulesDir('mods-missing');
    const err = caught(() => resolveBootModules(dir, ['9p', 'vsock']));
    expect(err).toBeInstanceOf(UserError);
    expect((err as UserError).message).toContain('vsock');
    expect((err as UserError).fix).toContain('npm run kernels -- fetch');
  });

  it('a missing modules.dep is a UserError', () => {
    const dir = path.join(tmp, 'mods-empty');
    fs.mkdirSync(dir, { recursive: true });
    const err = caught(() => resolveBootModules(dir));
    expect(err).toBeInstanceOf(UserError);
    expect((err as UserError).message).toContain('modules.dep');
  });

  it('wants the modules the init script loads', () => {
    expect(BOOT_MODULES).toEqual(expect.arrayContaining(['9p', '9pnet_virtio', 'virtio_net']));
  });
});

describe('findStaticBusybox', () => {
  function elf(name: string, interp?: string): string {
    const head = Buffer.alloc(4096);
    head.write('\x7fELF', 0, 'latin1');
    if (interp) head.write(`${interp}\0`, 0x238, 'latin1');
    const file = path.join(tmp, 'busybox', name);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, Buffer.concat([head, Buffer.from('BusyBox v1.36.1 multi-call binary.\0')]));
    return file;
  }

  it('rejects a dynamic busybox and takes the next, static one', () => {
    const dynamic = elf('dynamic', '/lib64/ld-linux-x86-64.so.2');
    const stat = elf('static');
    expect(findStaticBusybox([path.join(tmp, 'busybox/missing'), dynamic, stat])).toBe(stat);
  });

  it('takes the first static one', () => {
    const a = elf('static-a');
    const b = elf('static-b');
    expect(findStaticBusybox([a, b])).toBe(a);
  });

  it('without a static busybox, a UserError with the install command', () => {
    const dynamic = elf('dynamic-only', '/lib64/ld-linux-x86-64.so.2');
    const err = caught(() => findStaticBusybox([dynamic, path.join(tmp, 'busybox/missing')]));
    expect(err).toBeInstanceOf(UserError);
    expect((err as UserError).fix).toContain('busybox-static');
  });
});

// The real build, only where the cached kernel and a static busybox exist.
let kernel: Kernel | undefined;
try {
  kernel = kernelChoice(buildConfig()).kernel;
  findStaticBusybox(['/bin/busybox']);
} catch {
  kernel = undefined;
}

describe('ensureInitramfs with the real kernel', () => {
  it.skipIf(!kernel)(
    'builds an image with init, busybox and the boot modules, then reuses it',
    async () => {
      const cacheDir = path.join(tmp, 'cache');
      const outDir = path.join(cacheDir, 'initramfs');
      const first = await ensureInitramfs(kernel!, cacheDir);
      expect(first.built).toBe(true);
      expect(path.dirname(first.path)).toBe(outDir);
      expect(path.basename(first.path)).toMatch(new RegExp(`^${kernel!.release.replace(/[.+]/g, '\\$&')}-[0-9a-f]{16}\\.cpio\\.gz$`));
      expect(fs.readdirSync(outDir)).toEqual([path.basename(first.path)]); // no .tmp left behind

      const files = listInitramfs(first.path);
      for (const f of ['init', 'bin/busybox', 'modules/order', 'modules/9p.ko', 'modules/9pnet_virtio.ko', 'modules/virtio_net.ko'])
        expect(files).toContain(f);

      // modules/order names every module in the image, in load order.
      const order = execFileSync('sh', ['-c', 'gzip -dc "$1" | cpio --quiet -i --to-stdout modules/order', 'sh', first.path], { encoding: 'utf8' });
      const names = order.split('\n').filter(Boolean);
      expect(names).toEqual(resolveBootModules(kernel!.modulesDir).map((m) => m.name));
      for (const n of names) expect(files).toContain(`modules/${n}.ko`);
      expect(names.indexOf('9pnet')).toBeLessThan(names.indexOf('9p'));

      // The modules are stored decompressed.
      const ko = execFileSync('sh', ['-c', 'gzip -dc "$1" | cpio --quiet -i --to-stdout modules/9p.ko | head -c 4', 'sh', first.path]);
      expect(ko.toString('latin1')).toBe('\x7fELF');

      const second = await ensureInitramfs(kernel!, cacheDir);
      expect(second).toEqual({ path: first.path, built: false });
    },
    180_000,
  );
});
