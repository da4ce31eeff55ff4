// The guest image's pieces that need no apt and no VM: the cpio writer, the
// manifest and its checks (and the stamp that makes a boot's check cheap),
// export and import. test/e2e/image-build.test.ts builds a real one.
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { cpioNewc, readTar, S_IFCHR, S_IFDIR, S_IFLNK, S_IFREG, TarError, writeTar } from '../vm/image-files.ts';
import { imageUuid, packagesEpoch, reproducibleErofsOptions, sweepStale } from '../vm/image.ts';
import { exportImage, importImage } from '../vm/image-transfer.ts';
import { buildFix, currentImageFolder, hostArch, IMAGE_FILES, imagesDir, MANIFEST, openImage, STAMP, verifyImage, type ImageArch } from '../vm/image-verify.ts';
import { fakeImage, flipByte, freshFolders, leftovers, sha } from './image-fixtures.ts';
import { userErrorOfAsync } from './user-error.ts';

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sml-image-test-'));
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

const fresh = freshFolders(() => tmp);

describe('cpioNewc', () => {
  const entries = [
    { name: 'bin', mode: S_IFDIR | 0o755 },
    { name: 'bin/busybox', mode: S_IFREG | 0o755, data: Buffer.from('#!/bin/true\n') },
    { name: 'init', mode: S_IFREG | 0o755, data: Buffer.from('odd length: 13') },
    { name: 'bin/sh', mode: S_IFLNK | 0o777, data: Buffer.from('busybox') },
    { name: 'dev', mode: S_IFDIR | 0o755 },
    { name: 'dev/console', mode: S_IFCHR | 0o600, rdev: [5, 1] as [number, number] },
    { name: 'modules', mode: S_IFDIR | 0o755 },
    { name: 'modules/order', mode: S_IFREG | 0o644, data: Buffer.alloc(4099, 7) },
  ];

  it('writes an archive cpio lists, with the names, types and modes given', () => {
    const file = path.join(fresh('cpio'), 'a.cpio');
    fs.writeFileSync(file, cpioNewc(entries));
    const names = execFileSync('cpio', ['--quiet', '-it', '-F', file], { encoding: 'utf8' }).split('\n').filter(Boolean);
    expect(names).toEqual(entries.map((e) => e.name));
    const long = execFileSync('cpio', ['--quiet', '-itv', '-F', file], { encoding: 'utf8' }).split('\n').filter(Boolean);
    const perms = Object.fromEntries(long.map((l) => [l.split(/\s+/).pop()!.replace(/ -> .*/, ''), l.split(/\s+/)[0]]));
    expect(long.find((l) => l.includes('bin/sh'))).toMatch(/^lrwxrwxrwx .* bin\/sh -> busybox$/);
    expect(perms['bin']).toBe('drwxr-xr-x');
    expect(perms['bin/busybox']).toBe('-rwxr-xr-x');
    expect(perms['modules/order']).toBe('-rw-r--r--');
    expect(long.find((l) => l.includes('dev/console'))).toMatch(/^crw------- .*\b5,\s*1\b/);
  });

  it('keeps file contents intact, whatever their length', () => {
    const dir = fresh('cpio-x');
    const file = path.join(dir, 'a.cpio');
    // Devices cannot be made without root: unpack the rest.
    fs.writeFileSync(file, cpioNewc(entries.filter((e) => (e.mode & 0o170000) !== S_IFCHR)));
    execFileSync('cpio', ['--quiet', '-id', '-F', file], { cwd: dir });
    expect(fs.readFileSync(path.join(dir, 'init'), 'utf8')).toBe('odd length: 13');
    expect(fs.readFileSync(path.join(dir, 'modules/order'))).toEqual(Buffer.alloc(4099, 7));
    expect(fs.readlinkSync(path.join(dir, 'bin/sh'))).toBe('busybox');
  });
});

describe('verifyImage', () => {
  let cache: string;
  beforeEach(() => {
    cache = fresh('cache');
  });

  it('passes a sound image, then trusts its stamp: the second check hashes nothing', async () => {
    const { dir, manifest } = fakeImage(cache);
    const hashed: string[] = [];
    const first = await verifyImage(dir, { arch: 'amd64', onHash: (w) => hashed.push(w) });
    expect(first.how).toBe('hashed');
    expect(first.manifest.digest).toBe(manifest.digest);
    expect(fs.existsSync(path.join(dir, STAMP))).toBe(true);
    const second = await verifyImage(dir, { arch: 'amd64', onHash: (w) => hashed.push(w) });
    expect(second.how).toBe('stamp');
    expect(hashed).toHaveLength(1);
    // full: hashes whatever the stamp says
    expect((await verifyImage(dir, { arch: 'amd64', full: true })).how).toBe('hashed');
  });

  it('refuses a folder with no manifest, naming the fix', async () => {
    const { dir } = fakeImage(cache);
    fs.rmSync(path.join(dir, MANIFEST));
    const e = await userErrorOfAsync(verifyImage(dir, { arch: 'amd64' }));
    expect(e.message).toContain(`has no ${MANIFEST}`);
    expect(e.fix).toContain(buildFix('amd64'));
    expect(e.fix).toContain('npm run image import FILE');
  });

  it('refuses a manifest that does not parse, or is of another format', async () => {
    const { dir } = fakeImage(cache);
    fs.writeFileSync(path.join(dir, MANIFEST), '{"format": 1, "arch": "amd64",');
    expect((await userErrorOfAsync(verifyImage(dir, { arch: 'amd64' }))).message).toMatch(/is corrupt \(manifest\.json does not parse/);
    fs.writeFileSync(path.join(dir, MANIFEST), JSON.stringify({ format: 2 }));
    expect((await userErrorOfAsync(verifyImage(dir, { arch: 'amd64' }))).message).toContain('manifest format 2');
  });

  it('refuses an image of the wrong architecture, naming both and the build for the one wanted', async () => {
    const { dir } = fakeImage(cache, 'amd64');
    const e = await userErrorOfAsync(verifyImage(dir, { arch: 'arm64' }));
    expect(e.message).toMatch(/is for amd64, but this guest is arm64/);
    expect(e.fix).toContain('npm run image build -- --arch arm64');
    expect(e.fix).toContain('npm run image import FILE');
    const other = fakeImage(fresh('cache'), 'arm64');
    const e2 = await userErrorOfAsync(verifyImage(other.dir, { arch: 'amd64' }));
    expect(e2.message).toMatch(/is for arm64, but this guest is amd64/);
    expect(e2.fix).toContain(buildFix('amd64'));
  });

  it('refuses a truncated file without hashing it', async () => {
    const { dir, manifest } = fakeImage(cache);
    await verifyImage(dir, { arch: 'amd64' });
    fs.truncateSync(path.join(dir, 'rootfs.erofs'), 1000);
    const e = await userErrorOfAsync(verifyImage(dir, { arch: 'amd64', onHash: () => expect.unreachable('hashed a truncated file') }));
    expect(e.message).toBe(
      `the guest image in ${dir} is corrupt (rootfs.erofs: 1000 bytes, the manifest says ${manifest.files['rootfs.erofs'].size}: truncated); it will not be booted`,
    );
    expect(e.fix).toContain('npm run image build');
    expect(e.fix).toContain('npm run image import FILE');
  });

  it('refuses a missing file', async () => {
    const { dir } = fakeImage(cache);
    fs.rmSync(path.join(dir, 'vmlinuz'));
    expect((await userErrorOfAsync(verifyImage(dir, { arch: 'amd64' }))).message).toContain('(vmlinuz is missing)');
  });

  it('catches a flipped byte after the stamp was made: the change breaks the stamp, the hash names the file', async () => {
    const { dir } = fakeImage(cache);
    await verifyImage(dir, { arch: 'amd64' });
    flipByte(path.join(dir, 'rootfs.erofs'), 12_345);
    const e = await userErrorOfAsync(verifyImage(dir, { arch: 'amd64' }));
    expect(e.message).toMatch(/is corrupt \(rootfs\.erofs: sha256 mismatch\); it will not be booted/);
  });

  it('catches a change even when the file keeps its size and mtime (ctime still moves)', async () => {
    const { dir } = fakeImage(cache);
    await verifyImage(dir, { arch: 'amd64' });
    const f = path.join(dir, 'initramfs.cpio.gz');
    const { atime, mtime } = fs.statSync(f);
    await new Promise((r) => setTimeout(r, 20));
    flipByte(f, 3);
    fs.utimesSync(f, atime, mtime);
    expect((await userErrorOfAsync(verifyImage(dir, { arch: 'amd64' }))).message).toContain('initramfs.cpio.gz: sha256 mismatch');
  });

  it('catches an edited manifest whose digest no longer matches its files', async () => {
    const { dir, manifest } = fakeImage(cache);
    manifest.files.vmlinuz.sha256 = '0'.repeat(64);
    fs.writeFileSync(path.join(dir, MANIFEST), JSON.stringify(manifest));
    expect((await userErrorOfAsync(verifyImage(dir, { arch: 'amd64' }))).message).toContain('its digest does not match its files');
  });
});

describe('openImage', () => {
  it('opens the current image of the arch asked for, and says how to get one when there is none', async () => {
    const cache = fresh('cache');
    const e = await userErrorOfAsync(openImage(cache, 'amd64'));
    expect(e.message).toBe(`no amd64 guest image in ${imagesDir(cache)}`);
    expect(e.fix).toContain(buildFix('amd64'));
    const { dir, folder } = fakeImage(cache, 'amd64');
    const img = await openImage(cache, 'amd64');
    expect(img.dir).toBe(dir);
    expect(img.rootfs).toBe(path.join(dir, 'rootfs.erofs'));
    expect(currentImageFolder(cache, 'amd64')).toBe(folder);
    expect((await userErrorOfAsync(openImage(cache, 'arm64'))).message).toContain('no arm64 guest image');
  });
});

describe('ustar', () => {
  it('round-trips a folder of files, and stops at a damaged header', async () => {
    const dir = fresh('tar');
    const a = crypto.randomBytes(1025);
    fs.writeFileSync(path.join(dir, 'a'), a);
    fs.writeFileSync(path.join(dir, 'b'), '');
    const file = path.join(dir, 'x.tar');
    await writeTar(file, 'folder', [
      ['a', path.join(dir, 'a')],
      ['b', path.join(dir, 'b')],
    ]);
    // GNU tar reads it
    expect(execFileSync('tar', ['-tf', file], { encoding: 'utf8' }).split('\n').filter(Boolean)).toEqual(['folder/', 'folder/a', 'folder/b']);
    const out = fresh('untar');
    const r = await readTar(file, out, () => true);
    expect(r.folder).toBe('folder');
    expect(r.members).toEqual([
      { name: 'a', size: 1025, sha256: sha(a) },
      { name: 'b', size: 0, sha256: sha(Buffer.alloc(0)) },
    ]);
    expect(fs.readFileSync(path.join(out, 'a'))).toEqual(a);
    flipByte(file, 512 + 10); // in the name of folder/a
    await expect(readTar(file, fresh('untar'), () => true)).rejects.toThrow(TarError);
  });

  it('refuses names that would leave the folder', async () => {
    const dir = fresh('tar-evil');
    fs.writeFileSync(path.join(dir, 'x'), 'x');
    const file = path.join(dir, 'evil.tar');
    execFileSync('tar', ['-cf', file, '--transform', 's,^x$,f/../../x,', '-C', dir, 'x']);
    await expect(readTar(file, fresh('untar'), () => true)).rejects.toThrow(/unsafe member name/);
  });
});

describe('export and import', () => {
  it('moves an image through one file into another cache, where it boots without hashing again', async () => {
    const from = fresh('cache');
    const { manifest, folder } = fakeImage(from);
    const file = path.join(fresh('usb'), 'class.tar');
    const ex = await exportImage({ cacheDir: from, arch: 'amd64', file });
    expect(ex.bytes).toBe(fs.statSync(file).size);
    expect(fs.readdirSync(path.dirname(file))).toEqual(['class.tar']); // no partial file left
    const to = fresh('cache');
    const r = await importImage({ cacheDir: to, file });
    expect(r.added).toBe(true);
    expect(r.manifest.digest).toBe(manifest.digest);
    expect(r.dir).toBe(path.join(imagesDir(to), folder));
    for (const f of [MANIFEST, ...IMAGE_FILES]) expect(fs.readFileSync(path.join(r.dir, f))).toEqual(fs.readFileSync(path.join(imagesDir(from), folder, f)));
    expect(currentImageFolder(to, 'amd64')).toBe(folder);
    // the import hashed every file as it wrote it: its stamp holds
    expect((await verifyImage(r.dir, { arch: 'amd64' })).how).toBe('stamp');
    expect(leftovers(to)).toEqual([folder]);
    // again: nothing new
    expect((await importImage({ cacheDir: to, file })).added).toBe(false);
    expect(leftovers(to)).toEqual([folder]);
  });

  it('replaces another build of the same inputs (other files) with the one imported', async () => {
    const from = fresh('cache');
    const { manifest, folder } = fakeImage(from);
    const file = path.join(fresh('usb'), 'class.tar');
    await exportImage({ cacheDir: from, arch: 'amd64', file });
    const to = fresh('cache');
    const local = fakeImage(to, 'amd64', undefined, manifest.inputsDigest);
    expect(local.folder).toBe(folder);
    const r = await importImage({ cacheDir: to, file });
    expect(r.added).toBe(true);
    expect((await openImage(to, 'amd64')).manifest.digest).toBe(manifest.digest);
    expect(leftovers(to)).toEqual([folder]);
  });

  it('replaces an older image of the same arch', async () => {
    const from = fresh('cache');
    const { folder } = fakeImage(from);
    const file = path.join(fresh('usb'), 'new.tar');
    await exportImage({ cacheDir: from, arch: 'amd64', file });
    const to = fresh('cache');
    const old = fakeImage(to);
    const arm = fakeImage(to, 'arm64');
    await importImage({ cacheDir: to, file });
    expect(leftovers(to).sort()).toEqual([arm.folder, folder].sort());
    expect(fs.existsSync(old.dir)).toBe(false);
  });

  describe('a damaged export file is refused, and leaves nothing in the cache', () => {
    let file: string;
    let size: number;
    let folder: string;
    beforeAll(async () => {
      const from = fresh('cache');
      folder = fakeImage(from).folder;
      file = path.join(fresh('usb'), 'class.tar');
      await exportImage({ cacheDir: from, arch: 'amd64', file });
      size = fs.statSync(file).size;
    });

    const damaged = (what: string, change: (f: string) => void) => {
      const f = path.join(fresh('usb'), `${what}.tar`);
      fs.copyFileSync(file, f);
      change(f);
      return f;
    };

    it.each([
      ['in the first header', 100, /ends early, where the next file should start|ends early/],
      ['inside the manifest', 512 * 2 + 100, /ends early, inside .*manifest\.json/],
      ['inside rootfs.erofs', -30_000, /ends early, inside .*rootfs\.erofs .*the file is truncated/],
      ['in the second end-of-archive block', -300, /ends early, inside its end-of-archive marker/],
      ['before the end-of-archive blocks', -1024, /ends early, where the next file should start/],
    ])('truncated %s', async (_what, at, message) => {
      const f = damaged('trunc', (x) => fs.truncateSync(x, at > 0 ? at : size + at));
      const to = fresh('cache');
      const e = await userErrorOfAsync(importImage({ cacheDir: to, file: f }));
      expect(e.message).toMatch(message);
      expect(e.message).toContain('nothing was imported');
      expect(e.fix).toMatch(/copy .* again from the original/);
      expect(leftovers(to)).toEqual([]);
      expect(currentImageFolder(to, 'amd64')).toBeUndefined();
    });

    it('a flipped byte in a file', async () => {
      const f = damaged('flip', (x) => flipByte(x, size - 2048 - 5000));
      const to = fresh('cache');
      const e = await userErrorOfAsync(importImage({ cacheDir: to, file: f }));
      expect(e.message).toMatch(/rootfs\.erofs: sha256 mismatch; nothing was imported/);
      expect(leftovers(to)).toEqual([]);
    });

    it('a flipped byte in a header', async () => {
      const f = damaged('hdr', (x) => flipByte(x, 512 + 130));
      const to = fresh('cache');
      expect((await userErrorOfAsync(importImage({ cacheDir: to, file: f }))).message).toMatch(/damaged header at byte 512/);
      expect(leftovers(to)).toEqual([]);
    });

    it('a file that is no export at all', async () => {
      const f = damaged('junk', (x) => fs.writeFileSync(x, crypto.randomBytes(5000)));
      const to = fresh('cache');
      expect((await userErrorOfAsync(importImage({ cacheDir: to, file: f }))).message).toMatch(/is not a sound guest image: a damaged header at byte 0/);
      expect(leftovers(to)).toEqual([]);
    });

    it('an image of another arch than --arch asks for: refused after its manifest, before its files', async () => {
      const to = fresh('cache');
      const e = await userErrorOfAsync(importImage({ cacheDir: to, file: damaged('arch', (x) => fs.truncateSync(x, 512 * 8)), arch: 'arm64' }));
      expect(e.message).toMatch(/is for amd64, but --arch asks for arm64; nothing was imported/);
      expect(e.fix).toContain('npm run image build -- --arch arm64');
      expect(leftovers(to)).toEqual([]);
    });

    it('a missing file', async () => {
      const to = fresh('cache');
      const e = await userErrorOfAsync(importImage({ cacheDir: to, file: path.join(tmp, 'no-such.tar') }));
      expect(e.message).toMatch(/does not exist/);
      expect(e.fix).toContain('npm run image export FILE');
      expect(folder).toMatch(/^amd64-/);
    });
  });

  it('export without an image says how to make one', async () => {
    const e = await userErrorOfAsync(exportImage({ cacheDir: fresh('cache'), arch: 'amd64', file: path.join(tmp, 'x.tar') }));
    expect(e.message).toContain('no amd64 guest image to export');
    expect(e.fix).toBe(buildFix('amd64'));
  });

  it('export refuses to send a corrupt image', async () => {
    const cache = fresh('cache');
    const { dir } = fakeImage(cache);
    await verifyImage(dir, { arch: 'amd64' });
    flipByte(path.join(dir, 'vmlinuz'), 0);
    const out = path.join(fresh('usb'), 'bad.tar');
    expect((await userErrorOfAsync(exportImage({ cacheDir: cache, arch: 'amd64', file: out }))).message).toContain('vmlinuz: sha256 mismatch');
    expect(fs.existsSync(out)).toBe(false);
  });
});

it('sweepStale removes the build, import and download folders of processes that are gone, and only those', () => {
  const cache = fresh('cache');
  const images = imagesDir(cache);
  const dead = 2 ** 22 + 12_345; // above pid_max's default: no such process
  const mine = [`.build-amd64-${process.pid}`, `.import-${process.pid}-00ff00ff`, `debs/arm64/.download-${process.pid}`];
  const theirs = [`.build-arm64-${dead}`, `.import-${dead}-abcdef01`, `debs/amd64/.download-${dead}`];
  const { folder } = fakeImage(cache);
  for (const d of [...mine, ...theirs]) fs.mkdirSync(path.join(images, d), { recursive: true });
  sweepStale(cache);
  for (const d of mine) expect(fs.existsSync(path.join(images, d)), d).toBe(true);
  for (const d of theirs) expect(fs.existsSync(path.join(images, d)), d).toBe(false);
  expect(fs.existsSync(path.join(images, folder))).toBe(true);
});

it('buildFix names --arch only for a guest of another arch than this machine', () => {
  const here = hostArch() ?? 'amd64';
  const there: ImageArch = here === 'amd64' ? 'arm64' : 'amd64';
  expect(buildFix(here)).toBe('npm run image build');
  expect(buildFix(there)).toBe(`npm run image build -- --arch ${there}`);
});

describe('boot modules in the initramfs', () => {
  it('lose their appended signature (the kernel then skips checking it), and an unsigned module stays as it is', async () => {
    const { withoutSignature } = await import('../vm/image.ts');
    const body = Buffer.from('\x7fELF module body');
    const sig = Buffer.alloc(37, 0xab);
    const info = Buffer.alloc(12);
    info.writeUInt32BE(sig.length, 8);
    const signed = Buffer.concat([body, sig, info, Buffer.from('~Module signature appended~\n')]);
    expect(withoutSignature(signed)).toEqual(body);
    expect(withoutSignature(body)).toEqual(body);
  });
});

describe('what makes a build reproducible', () => {
  it('imageUuid: the same for the same inputs digest, another for another, shaped as an RFC 4122 name-based UUID', () => {
    const d = 'ab'.repeat(32);
    expect(imageUuid(d)).toBe(imageUuid(d));
    expect(imageUuid(d)).not.toBe(imageUuid('cd'.repeat(32)));
    expect(imageUuid(d)).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });

  it("packagesEpoch: the newest regular file's time in whole seconds; folders and links (touched while unpacking) do not count", () => {
    const tree = fresh('tree');
    fs.mkdirSync(path.join(tree, 'usr/bin'), { recursive: true });
    fs.writeFileSync(path.join(tree, 'usr/bin/a'), 'a');
    fs.writeFileSync(path.join(tree, 'b'), 'b');
    fs.utimesSync(path.join(tree, 'usr/bin/a'), 1_700_000_000.9, 1_700_000_000.9);
    fs.utimesSync(path.join(tree, 'b'), 1_600_000_000, 1_600_000_000);
    fs.symlinkSync('b', path.join(tree, 'l'));
    expect(packagesEpoch(tree)).toBe(1_700_000_000);
    expect(() => packagesEpoch(fresh('empty'))).toThrow(/no file/);
  });

  it('mkfs.erofs gets one time, the UUID, root owners and no xattrs', () => {
    expect(reproducibleErofsOptions(1_700_000_000, 'u')).toEqual(['-T1700000000', '-Uu', '--all-root', '-x-1']);
  });
});
