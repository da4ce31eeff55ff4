// The classroom kit (npm run kit -- DIR), end to end: a kit made here, from the
// cached guest images (the arm64 one built first when the cache lacks it), then,
// in a fresh Debian 12 root with no network at all (unshare --net: loopback
// only), a learner's install from the kit alone, step by step as its
// OFFLINE.md gives them: Node from the kit, QEMU from its debs, the project,
// npm ci --offline from its npm cache, the image import, ./setup.sh, and
// npm run lab 1, which must pass.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { placesFrom } from '../../core/config.ts';
import { currentImageFolder } from '../../vm/image-verify.ts';
import type { KitRecord } from '../../runner/kit.ts';
import { cli } from './cli-helpers.ts';
import { cleanRootUnavailable, makeCleanRoot, runInRoot, type CleanRoot } from './clean-root.ts';

const has = (tool: string) => spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;
const arm64Apt = spawnSync('dpkg', ['--print-foreign-architectures'], { encoding: 'utf8' }).stdout?.split('\n').includes('arm64');
const cache = placesFrom().cacheDir;
const why =
  cleanRootUnavailable() ??
  (!currentImageFolder(cache, 'amd64') ? 'no amd64 guest image in the cache (npm run image build)' : undefined) ??
  (!currentImageFolder(cache, 'arm64') && !(arm64Apt && has('mkfs.erofs')) ? 'no arm64 guest image and no way to build one (dpkg --add-architecture arm64, erofs-utils)' : undefined);
if (why) console.warn(`kit e2e skipped: ${why}`);

const STICK = '/media/stick';
const secs = (ms: number) => `${(ms / 1000).toFixed(0)} s`;

describe.skipIf(!!why)('the classroom kit, made here and installed from in a fresh Debian 12 root with no network', () => {
  const parent = fs.mkdtempSync(path.join(os.tmpdir(), 'sockmap-labs-kit-e2e-'));
  // KIT_E2E_DIR: a kit folder kept between runs (the kit command updates it), for working on this test.
  const kit = process.env.KIT_E2E_DIR ? path.resolve(process.env.KIT_E2E_DIR) : path.join(parent, 'stick');
  let made: { code: number | null; out: string };
  let record: KitRecord;
  let guide: string;
  let root: CleanRoot | undefined;
  afterAll(() => {
    root?.remove();
    fs.rmSync(parent, { recursive: true, force: true });
  });

  beforeAll(async () => {
    const armBuilt = !!currentImageFolder(cache, 'arm64');
    const t0 = Date.now();
    // --build: CI's cache has no arm64 image (its own test builds one in a cache of its own); ~6 min here.
    made = await cli(['kit', kit, '--build']).done;
    console.log(`kit made in ${secs(Date.now() - t0)}${armBuilt ? '' : ' (the arm64 image built first)'}:\n${made.out.split('\n').slice(-6).join('\n')}`);
    if (made.code === 0) {
      record = JSON.parse(fs.readFileSync(path.join(kit, 'kit.json'), 'utf8'));
      guide = fs.readFileSync(path.join(kit, 'OFFLINE.md'), 'utf8');
    }
  }, 20 * 60_000);

  it('holds both images, the project, every platform\'s npm packages (checked offline), Node for four platforms and QEMU debs for Debian 12', () => {
    expect(made.code, made.out).toBe(0);
    expect(made.out).toMatch(/kit ready in .*: [\d.]+ (MB|GB)/);
    for (const a of ['amd64', 'arm64'] as const) {
      expect(record.images[a]?.file).toMatch(new RegExp(`^images/sockmap-labs-image-${a}-[0-9a-f]{16}\\.tar$`));
      expect(fs.statSync(path.join(kit, record.images[a]!.file)).size).toBeGreaterThan(100e6);
      expect(guide).toContain(`npm run image import KIT/${record.images[a]!.file}`);
      expect(record.debs[a]?.packages.some((p) => p.startsWith(a === 'amd64' ? 'qemu-system-x86=' : 'qemu-system-arm='))).toBe(true);
      expect(fs.readdirSync(path.join(kit, `debs/debian12-${a}`)).filter((f) => f.endsWith('.deb'))).toHaveLength(record.debs[a]!.packages.length);
    }
    expect(record.npm.checked.sort()).toEqual(['darwin-arm64', 'darwin-x64', 'linux-arm64', 'linux-x64']);
    expect(Object.keys(record.node?.version ?? {}).sort()).toEqual(['darwin-arm64', 'darwin-x64', 'linux-arm64', 'linux-x64']);
    expect(fs.existsSync(path.join(kit, 'sockmap-labs.tar.gz'))).toBe(true);
    // Nothing half-written left beside the files.
    const partial = spawnSync('find', [kit, '-name', '*.partial-*'], { encoding: 'utf8' }).stdout.trim();
    expect(partial).toBe('');
  });

  it('refuses a kit folder that is a file, and one whose kit names belong to something else; a re-run keeps what is there', async () => {
    const file = path.join(parent, 'a-file');
    fs.writeFileSync(file, 'mine');
    const r1 = await cli(['kit', file]).done;
    expect(r1.code).toBe(2);
    expect(r1.out).toMatch(/error: .*a-file is a file/);
    expect(fs.readFileSync(file, 'utf8')).toBe('mine');
    const other = path.join(parent, 'other');
    fs.mkdirSync(path.join(other, 'images'), { recursive: true });
    const r2 = await cli(['kit', other]).done;
    expect(r2.code).toBe(2);
    expect(r2.out).toMatch(/holds images and no kit\.json/);
    const r3 = await cli(['kit', path.join(parent, 'not-mounted', 'kit')]).done;
    expect(r3.code).toBe(2);
    expect(r3.out).toMatch(/does not exist \(is the stick mounted\?\)/);
    expect(fs.existsSync(path.join(parent, 'not-mounted'))).toBe(false);
    for (const r of [r1, r2, r3]) expect(r.out).not.toMatch(/\n\s+at /);
  }, 60_000);

  it(
    'installs from the kit alone with no network (Node, QEMU debs, npm ci --offline, image import, ./setup.sh) and passes npm run lab 1',
    async () => {
      expect(made.code, made.out).toBe(0);
      const t0 = Date.now();
      root = await makeCleanRoot({ checkout: false, node: false, log: () => {} });
      const amd64Image = `${STICK}/${record.images.amd64!.file}`;
      // The steps of OFFLINE.md for a Debian 12 PC, KIT being the stick.
      const steps = [
        'sh KIT/node/install-node.sh',
        'sudo apt-get install KIT/debs/debian12-amd64/*.deb',
        'tar -xzf KIT/sockmap-labs.tar.gz -C ~',
        'cd ~/sockmap-labs',
        'npm ci --offline --cache KIT/npm-cache',
        `npm run image import KIT/${record.images.amd64!.file}`,
        './setup.sh',
        'npm run lab 1',
      ];
      for (const s of steps) expect(guide).toContain(`       ${s}\n`);
      const script = [
        'set -ex',
        ...steps.map((s) =>
          s
            .replaceAll('KIT', STICK)
            // root in the fresh root: no sudo there; -y as a learner would answer yes.
            .replace('sudo apt-get install', 'apt-get install -y'),
        ),
      ].join('\n');
      expect(script).toContain(amd64Image);
      const r = await runInRoot(root, script, {
        offline: true,
        cwd: '/root',
        // Writable, as a stick is: npm writes to the cache it reads (OFFLINE.md says to copy it from a read-only one).
        binds: [{ host: kit, inRoot: STICK }],
        timeoutMs: 25 * 60_000,
      });
      console.log(`fresh root made in ${secs(root.bootstrap.ms)} (bootstrap ${root.bootstrap.cached ? 'cached' : 'made'}); the offline install and lab 1 took ${secs(r.ms)}; in all ${secs(Date.now() - t0)}`);
      expect(r.code, r.out.slice(-4000)).toBe(0);
      expect(r.out).toMatch(/installed: v20\./);
      expect(r.out).toMatch(/imported the amd64 guest image/);
      expect(r.out).toMatch(/guest image: present/);
      expect(r.out).toMatch(/PASS Lab 01 /);
      expect(r.out).toMatch(/system packages: all present/);
      expect(r.leftover).toEqual([]);
    },
    30 * 60_000,
  );
});
