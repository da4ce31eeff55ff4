import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildConfig } from '../core/config.ts';
import { UserError } from '../core/errors.ts';
import { kernelChoice } from '../vm/session.ts';
import { userErrorOf } from './user-error.ts';
import {
  BASE_CONFIG,
  bootKernels,
  cachedKernels,
  compareVersions,
  describeKernel,
  FETCH_KERNEL_FIX,
  missingConfig,
  parseConfig,
  readConfig,
  readKernelRelease,
  resolveKernel,
} from '../vm/kernel.ts';

/** A file with just enough of an x86 boot header for readKernelRelease. */
function bzImage(release: string, banner = `${release} (x@y) #1 SMP PREEMPT_DYNAMIC Debian`): Buffer {
  const buf = Buffer.alloc(0x600);
  buf.write('HdrS', 0x202, 'latin1');
  const at = 0x400;
  buf.writeUInt16LE(at - 0x200, 0x20e);
  buf.write(`${banner}\0`, at, 'latin1');
  return buf;
}

function writeFile(file: string, data: string | Buffer): string {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, data);
  return file;
}

/** <root>/boot/vmlinuz-<release> and, unless told not to, <root>/lib/modules/<release>. */
function kernelTree(root: string, release: string, o: { modules?: boolean; config?: boolean } = {}): string {
  const image = writeFile(path.join(root, 'boot', `vmlinuz-${release}`), bzImage(release));
  if (o.modules !== false) fs.mkdirSync(path.join(root, 'lib/modules', release), { recursive: true });
  if (o.config) writeFile(path.join(root, 'boot', `config-${release}`), 'CONFIG_BPF_SYSCALL=y\n');
  return image;
}


let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sml-kernel-test-'));
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('readKernelRelease', () => {
  it('reads the release out of a bzImage header', () => {
    const f = writeFile(path.join(tmp, 'read/vmlinuz'), bzImage('6.12.1-test'));
    expect(readKernelRelease(f)).toBe('6.12.1-test');
  });

  it('keeps a Debian-style release with + and -', () => {
    const f = writeFile(path.join(tmp, 'read/vmlinuz-deb'), bzImage('6.12.117+deb12-amd64'));
    expect(readKernelRelease(f)).toBe('6.12.117+deb12-amd64');
  });

  it('stops at a NUL when the banner is the release alone', () => {
    const f = writeFile(path.join(tmp, 'read/vmlinuz-nul'), bzImage('5.15.0', '5.15.0'));
    expect(readKernelRelease(f)).toBe('5.15.0');
  });

  it('rejects a file that is not a kernel, with a fix', () => {
    const f = writeFile(path.join(tmp, 'read/not-a-kernel'), Buffer.from('#!/bin/sh\necho hello\n'.repeat(100)));
    const err = userErrorOf(() => readKernelRelease(f));
    expect(err.message).toContain(f);
    expect(err.message).toMatch(/not a bootable x86 kernel/);
    expect(err.fix).toBeTruthy();
    expect(err.fix).toContain(FETCH_KERNEL_FIX);
  });

  it('rejects an empty file', () => {
    const f = writeFile(path.join(tmp, 'read/empty'), '');
    const err = userErrorOf(() => readKernelRelease(f));
    expect(err.message).toMatch(/not a bootable x86 kernel/);
  });

  it('rejects a header whose version string is not a version', () => {
    const f = writeFile(path.join(tmp, 'read/garbage-version'), bzImage('x', 'garbage text'));
    const err = userErrorOf(() => readKernelRelease(f));
    expect(err.message).toMatch(/cannot read the version/);
  });

  it('reports a missing file as a UserError with the fetch command', () => {
    const f = path.join(tmp, 'read/does-not-exist');
    const err = userErrorOf(() => readKernelRelease(f));
    expect(err.message).toContain('does not exist');
    expect(err.message).toContain(f);
    expect(err.fix).toBe(FETCH_KERNEL_FIX);
  });
});

describe('parseConfig and missingConfig', () => {
  const text = [
    '#',
    '# Automatically generated file; DO NOT EDIT.',
    'CONFIG_BPF_SYSCALL=y',
    'CONFIG_NET_9P=m',
    '# CONFIG_NET_SOCK_MSG is not set',
    'CONFIG_LOCALVERSION=""',
    'CONFIG_HZ=250',
    'CONFIG_CMDLINE="a=b c"',
    '',
  ].join('\n');

  it('maps option names (without CONFIG_) to their values', () => {
    const c = parseConfig(text);
    expect(c.get('BPF_SYSCALL')).toBe('y');
    expect(c.get('NET_9P')).toBe('m');
    expect(c.get('HZ')).toBe('250');
    expect(c.get('LOCALVERSION')).toBe('""');
    expect(c.get('CMDLINE')).toBe('"a=b c"');
    expect(c.has('NET_SOCK_MSG')).toBe(false);
    expect(c.size).toBe(5);
  });

  it('counts y and m as present, "is not set", absent and other values as missing', () => {
    const c = parseConfig(text);
    expect(missingConfig(c, ['BPF_SYSCALL', 'NET_9P', 'NET_SOCK_MSG', 'HZ', 'NOT_THERE'])).toEqual(['NET_SOCK_MSG', 'HZ', 'NOT_THERE']);
  });

  it('accepts names with the CONFIG_ prefix', () => {
    const c = parseConfig(text);
    expect(missingConfig(c, ['CONFIG_BPF_SYSCALL', 'CONFIG_NET_SOCK_MSG'])).toEqual(['CONFIG_NET_SOCK_MSG']);
  });

  it('finds nothing missing when all are there', () => {
    expect(missingConfig(parseConfig(text), ['BPF_SYSCALL', 'NET_9P'])).toEqual([]);
    expect(missingConfig(parseConfig(''), [])).toEqual([]);
  });

  it('readConfig is undefined without a config path', () => {
    expect(readConfig({ image: '/x', release: '1.0', modulesDir: '/m', source: 'option' })).toBeUndefined();
  });
});

describe('compareVersions', () => {
  it('compares a distribution release with a plain version', () => {
    expect(compareVersions('6.12.117+deb12-amd64', '5.15')).toBe(1);
    expect(compareVersions('5.15', '6.12.117+deb12-amd64')).toBe(-1);
    expect(compareVersions('6.12.117+deb12-amd64', '6.12')).toBe(1);
  });

  it('treats a missing component as 0', () => {
    expect(compareVersions('6.4', '6.4.0')).toBe(0);
    expect(compareVersions('6.4.0', '6.4')).toBe(0);
  });

  it('compares numerically, not as text', () => {
    expect(compareVersions('5.9', '5.10')).toBe(-1);
    expect(compareVersions('5.10', '5.9')).toBe(1);
    expect(compareVersions('6.10.0-1-amd64', '6.9.12-amd64')).toBe(1);
  });

  it('ignores the suffix after the numbers', () => {
    expect(compareVersions('6.1.0-rc1', '6.1')).toBe(0);
    expect(compareVersions('4.18', '4.18')).toBe(0);
  });
});

describe('describeKernel', () => {
  it('finds <root>/lib/modules/<release> and config-<release> beside <root>/boot/vmlinuz-<release>', () => {
    const root = path.join(tmp, 'describe/unpacked');
    const image = kernelTree(root, '6.1.2-desc', { config: true });
    const k = describeKernel(image, 'option', path.join(tmp, 'describe/no-lib-modules'));
    expect(k).toEqual({
      image,
      release: '6.1.2-desc',
      modulesDir: path.join(root, 'lib/modules/6.1.2-desc'),
      configPath: path.join(root, 'boot/config-6.1.2-desc'),
      source: 'option',
    });
  });

  it('makes a relative image path absolute', () => {
    const root = path.join(tmp, 'describe/relative');
    const image = kernelTree(root, '6.1.3-rel');
    const k = describeKernel(path.relative(process.cwd(), image), 'env', path.join(tmp, 'describe/no-lib-modules'));
    expect(k.image).toBe(image);
    expect(k.source).toBe('env');
  });

  it('falls back to libModules, and to a config in the modules folder', () => {
    const root = path.join(tmp, 'describe/split');
    const image = kernelTree(root, '6.1.4-split', { modules: false });
    const libModules = path.join(tmp, 'describe/split-lib-modules');
    writeFile(path.join(libModules, '6.1.4-split/config'), 'CONFIG_BPF_SYSCALL=y\n');
    const k = describeKernel(image, 'boot', libModules);
    expect(k.modulesDir).toBe(path.join(libModules, '6.1.4-split'));
    expect(k.configPath).toBe(path.join(libModules, '6.1.4-split/config'));
  });

  it('has no configPath when there is no config anywhere', () => {
    const root = path.join(tmp, 'describe/noconfig');
    const image = kernelTree(root, '6.1.5-noconfig');
    expect(describeKernel(image, 'option', path.join(tmp, 'describe/no-lib-modules')).configPath).toBeUndefined();
  });

  it('throws a UserError when the modules are nowhere', () => {
    const root = path.join(tmp, 'describe/nomodules');
    const image = kernelTree(root, '6.1.6-nomod', { modules: false });
    const err = userErrorOf(() => describeKernel(image, 'option', path.join(tmp, 'describe/no-lib-modules')));
    expect(err.message).toMatch(/no modules directory/);
    expect(err.message).toContain(path.join(root, 'lib/modules/6.1.6-nomod'));
    expect(err.fix).toContain(FETCH_KERNEL_FIX);
  });
});

describe('cachedKernels and bootKernels', () => {
  it('lists cached kernels newest first, by version not by text', () => {
    const cache = path.join(tmp, 'lists/cache');
    kernelTree(path.join(cache, 'linux-image-6.9.1'), '6.9.1');
    kernelTree(path.join(cache, 'linux-image-6.10.0'), '6.10.0');
    kernelTree(path.join(cache, 'linux-image-5.15.0'), '5.15.0');
    fs.mkdirSync(path.join(cache, 'no-boot-folder'), { recursive: true });
    expect(cachedKernels(cache).map((p) => path.basename(p))).toEqual(['vmlinuz-6.10.0', 'vmlinuz-6.9.1', 'vmlinuz-5.15.0']);
    expect(cachedKernels(path.join(tmp, 'lists/no-cache'))).toEqual([]);
  });

  it('lists only /boot kernels whose modules exist, newest first', () => {
    const boot = path.join(tmp, 'lists/boot');
    const libModules = path.join(tmp, 'lists/lib-modules');
    for (const r of ['6.1.0', '6.2.0', '5.10.0']) writeFile(path.join(boot, `vmlinuz-${r}`), bzImage(r));
    writeFile(path.join(boot, 'config-6.1.0'), '');
    fs.mkdirSync(path.join(libModules, '6.1.0'), { recursive: true });
    fs.mkdirSync(path.join(libModules, '5.10.0'), { recursive: true });
    expect(bootKernels(boot, libModules)).toEqual([path.join(boot, 'vmlinuz-6.1.0'), path.join(boot, 'vmlinuz-5.10.0')]);
    expect(bootKernels(path.join(tmp, 'lists/no-boot'), libModules)).toEqual([]);
  });
});

describe('resolveKernel', () => {
  let base: string;
  let explicit: string;
  let fromEnv: string;
  let cache: string;
  let bootDir: string;
  let libModules: string;

  beforeAll(() => {
    base = path.join(tmp, 'resolve');
    explicit = kernelTree(path.join(base, 'explicit'), '6.6.1-explicit');
    fromEnv = kernelTree(path.join(base, 'env'), '6.6.2-env');
    cache = path.join(base, 'cache');
    kernelTree(path.join(cache, 'linux-image-6.6.3-cache'), '6.6.3-cache');
    kernelTree(path.join(cache, 'linux-image-5.4.0-old'), '5.4.0-old');
    // A /boot whose modules are only under libModules (the usual host layout).
    bootDir = path.join(base, 'host/boot');
    libModules = path.join(base, 'host-lib-modules');
    writeFile(path.join(bootDir, 'vmlinuz-6.6.4-boot'), bzImage('6.6.4-boot'));
    writeFile(path.join(bootDir, 'vmlinuz-6.7.0-nomodules'), bzImage('6.7.0-nomodules'));
    fs.mkdirSync(path.join(libModules, '6.6.4-boot'), { recursive: true });
  });

  const none = () => path.join(base, 'nothing-here');

  it('prefers an explicit path over everything', () => {
    const k = resolveKernel({ explicit, cache, bootDir, libModules });
    expect(k.source).toBe('option');
    expect(k.image).toBe(explicit);
    expect(k.release).toBe('6.6.1-explicit');
  });

  it('LAB_KERNEL from the environment comes the same way, marked as such', () => {
    const k = resolveKernel({ explicit: buildConfig({}, { LAB_KERNEL: fromEnv }).machine.kernels[0], source: 'env', cache, bootDir, libModules });
    expect(k.source).toBe('env');
    expect(k.release).toBe('6.6.2-env');
    expect(k.modulesDir).toBe(path.join(base, 'env/lib/modules/6.6.2-env'));
  });

  it('then the newest cached kernel', () => {
    const k = resolveKernel({ cache, bootDir, libModules });
    expect(k.source).toBe('cache');
    expect(k.release).toBe('6.6.3-cache');
    expect(k.modulesDir).toBe(path.join(cache, 'linux-image-6.6.3-cache/lib/modules/6.6.3-cache'));
  });

  it('then the newest /boot kernel that has modules', () => {
    const k = resolveKernel({ cache: none(), bootDir, libModules });
    expect(k.source).toBe('boot');
    expect(k.release).toBe('6.6.4-boot');
    expect(k.image).toBe(path.join(bootDir, 'vmlinuz-6.6.4-boot'));
    expect(k.modulesDir).toBe(path.join(libModules, '6.6.4-boot'));
  });

  it('throws a UserError naming the fetch command when there is no kernel anywhere', () => {
    const err = userErrorOf(() => resolveKernel({ cache: none(), bootDir: none(), libModules: none() }));
    expect(err.message).toMatch(/no guest kernel found/);
    expect(err.fix).toContain('npm run kernels -- fetch');
  });

  it('an explicit path that does not exist is an error, not a fallback', () => {
    const err = userErrorOf(() => resolveKernel({ explicit: path.join(base, 'missing/vmlinuz'), cache, bootDir, libModules }));
    expect(err.message).toContain('does not exist');
  });
});

describe('the real cached kernel, when there is one', () => {
  let kernel: ReturnType<typeof resolveKernel> | undefined;
  try {
    kernel = kernelChoice(buildConfig()).kernel;
  } catch {
    kernel = undefined;
  }
  it.skipIf(!kernel?.configPath)('has every option the labs need', () => {
    const config = readConfig(kernel!)!;
    expect(missingConfig(config, BASE_CONFIG)).toEqual([]);
  });
});
