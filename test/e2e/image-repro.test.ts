// The guest image build is reproducible (issue 20): the same inputs give the
// same bytes wherever they are built, so `image verify --rebuild` can check an
// image against a build made here. Two builds of the amd64 inputs are compared:
//   - the one `npm run image build` made in the default cache (setup.sh and
//     .ci/run make it: on disk, umask 022) when it is there for these inputs,
//     else one made here into a cache under os.tmpdir();
//   - one made by `image verify --rebuild`'s code (compareWithLocalBuild) on a
//     tmpfs (/dev/shm) when there is one, with umask 077 and another TMPDIR,
//     HOME, locale and time zone.
// Both use the default cache's downloaded packages (no copy; no download when
// it has them), so where setup built the image (CI) this costs one build.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { placesFrom } from '../../core/config.ts';
import { UserError } from '../../core/errors.ts';
import { buildImage, compareWithLocalBuild, imageUuid, resolveInputs, type ImageInputs, type LocalBuildComparison } from '../../vm/image.ts';
import { imagesDir, MANIFEST, verifyImage } from '../../vm/image-verify.ts';
import { cli } from './cli-helpers.ts';

const has = (tool: string) => spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;
const missing = ['apt-get', 'dpkg-deb', 'mkfs.erofs', 'depmod', 'xz'].filter((t) => !has(t));
const defaultCache = placesFrom().cacheDir;
const debsDir = path.join(imagesDir(defaultCache), 'debs', 'amd64');

const made: string[] = [];
const scratch = (base: string) => {
  const d = fs.mkdtempSync(path.join(base, 'sockmap-labs-image-repro-'));
  made.push(d);
  return d;
};
afterAll(() => {
  for (const d of made) fs.rmSync(d, { recursive: true, force: true });
});

/** Runs `f` with another umask, TMPDIR, HOME, locale and time zone, as another machine or user would have. */
async function elsewhere<T>(f: () => Promise<T>): Promise<T> {
  const keys = ['TMPDIR', 'HOME', 'LANG', 'LC_ALL', 'TZ'] as const;
  const saved = Object.fromEntries(keys.map((k) => [k, process.env[k]]));
  const tmp = scratch(os.tmpdir());
  Object.assign(process.env, { TMPDIR: tmp, HOME: tmp, LANG: 'de_DE.UTF-8', LC_ALL: 'de_DE.UTF-8', TZ: 'Pacific/Chatham' });
  const umask = process.umask(0o077);
  try {
    return await f();
  } finally {
    process.umask(umask);
    for (const k of keys) {
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
    }
  }
}

describe.skipIf(missing.length > 0 || process.arch !== 'x64')(`the amd64 image build is reproducible${missing.length ? ` — missing ${missing.join(', ')}` : ''}`, () => {
  let inputs: ImageInputs | undefined;
  let reference: string;
  let c: LocalBuildComparison;

  beforeAll(async () => {
    try {
      inputs = await resolveInputs('amd64', defaultCache);
    } catch (e) {
      console.warn(`skipping: ${(e as Error).message}`);
      return;
    }
    const t0 = Date.now();
    reference = path.join(imagesDir(defaultCache), inputs.folder);
    let first = "npm run image build's, in the default cache";
    try {
      await verifyImage(reference, { arch: 'amd64', full: true });
    } catch {
      const r = await buildImage({ arch: 'amd64', cacheDir: scratch(os.tmpdir()), log: () => {}, debsDir });
      reference = r.dir;
      first = `built in ${os.tmpdir()} in ${r.seconds.toFixed(0)} s`;
    }
    const shm = fs.existsSync('/dev/shm') && fs.statSync('/dev/shm').isDirectory() ? '/dev/shm' : os.tmpdir();
    const t1 = Date.now();
    c = await elsewhere(() => compareWithLocalBuild({ dir: reference, arch: 'amd64', cacheDir: defaultCache, log: () => {}, scratchIn: scratch(shm) }));
    console.log(
      `image repro: first image ${first}; second built in ${shm} (umask 077) in ${((Date.now() - t1) / 1000).toFixed(0)} s; ` +
        `digests ${c.image.digest.slice(0, 16)} and ${c.local.digest.slice(0, 16)}; ${((Date.now() - t0) / 1000).toFixed(0)} s in all`,
    );
  }, 1_200_000);

  it('gives the same bytes built in two places (another file system, umask, TMPDIR, HOME, locale, time zone)', (ctx) => {
    if (!inputs) ctx.skip();
    expect(c.local.inputsDigest).toBe(inputs!.inputsDigest);
    expect(c.image.inputsDigest).toBe(inputs!.inputsDigest);
    expect(c.differing, `these differ between ${reference} and a build on ${made.join(', ')}: compare them with dump.erofs -s, or mount both and diff`).toEqual([]);
    expect(c.local.digest).toBe(c.image.digest);
  });

  it('records the time stamp and UUID it used, both derived from the inputs', (ctx) => {
    if (!inputs) ctx.skip();
    const m = c.local;
    expect(m.sourceDateEpoch).toBe(c.image.sourceDateEpoch);
    // The newest package's date: after Debian 12's release, not in the future.
    expect(m.sourceDateEpoch!).toBeGreaterThan(Date.UTC(2023, 5, 10) / 1000);
    expect(m.sourceDateEpoch!).toBeLessThanOrEqual(Date.now() / 1000);
    expect(m.erofs.split(' ')).toEqual(expect.arrayContaining([`-T${m.sourceDateEpoch}`, `-U${imageUuid(m.inputsDigest)}`, '--all-root', '-x-1']));
    if (has('dump.erofs')) {
      const sb = execFileSync('dump.erofs', ['-s', path.join(reference, 'rootfs.erofs')], { encoding: 'utf8' });
      expect(sb).toContain(imageUuid(m.inputsDigest));
    }
    if (process.getuid?.() === 0) {
      // Every file, folder and link carries that one time, and root's owner.
      const mnt = scratch(os.tmpdir());
      execFileSync('mount', ['-o', 'loop,ro', '-t', 'erofs', path.join(reference, 'rootfs.erofs'), mnt]);
      try {
        const seen = new Set(execFileSync('find', [mnt, '-printf', '%T@ %U:%G\\n'], { encoding: 'utf8', maxBuffer: 1 << 26 }).trim().split('\n'));
        expect([...seen]).toEqual([`${m.sourceDateEpoch}.0000000000 0:0`]);
      } finally {
        spawnSync('umount', [mnt]);
      }
    }
    // The scratch build is gone.
    for (const d of made) expect(fs.readdirSync(d).filter((n) => n.startsWith('.build'))).toEqual([]);
  });

  it('refuses to compare an image of other inputs, naming what differs (no build)', async (ctx) => {
    if (!inputs) ctx.skip();
    const dir = path.join(scratch(os.tmpdir()), 'amd64-0000000000000000');
    fs.mkdirSync(dir);
    const m = { ...c.image, inputsDigest: '0'.repeat(64), packages: c.image.packages.map((p) => (p.startsWith('bash=') ? 'bash=4.9-1' : p)) };
    fs.writeFileSync(path.join(dir, MANIFEST), JSON.stringify(m));
    const e = await compareWithLocalBuild({ dir, arch: 'amd64', cacheDir: defaultCache, log: () => {} }).catch((x) => x);
    expect(e).toBeInstanceOf(UserError);
    expect(e.message).toMatch(/was built from other inputs than this machine resolves .*it has bash=4\.9-1, apt here offers \S+/);
  }, 120_000);

  it('npm run image verify -- --rebuild --all is a usage error', async () => {
    const r = await cli(['image', 'verify', '--rebuild', '--all'], { LAB_CACHE_DIR: scratch(os.tmpdir()) }).done;
    expect(r.code).toBe(2);
    expect(r.out).toMatch(/--rebuild checks one image/);
    expect(r.out).not.toMatch(/\n\s+at /);
  }, 60_000);
});
