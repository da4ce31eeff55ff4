// `npm run image push` against the registry in this process (test/fake-registry.ts):
// small images (test/image-fixtures.ts) pushed with credentials, then pulled
// back by `image pull` (its arch tags, and the index under a named tag) into
// fresh caches: the layout push writes is the one pull reads. Credentials go
// only to the token endpoint and never into a message. No VM, no network.
// (test/e2e/registry.test.ts does the same with Debian's docker-registry.)
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { registryCredentialsFrom } from '../core/config.ts';
import { projectRoot } from '../core/paths.ts';
import { parseRepository, pullImage } from '../vm/image-pull.ts';
import { parseAnnotations, parsePushTarget, pushImages, type PushTarget } from '../vm/image-push.ts';
import { openImage, type ImageManifest } from '../vm/image-verify.ts';
import { FakeRegistry } from './fake-registry.ts';
import { fakeImage, freshFolders, leftovers } from './image-fixtures.ts';
import { userErrorOf, userErrorOfAsync } from './user-error.ts';

const SECRET = 's3cret-token-value';
const creds = { user: 'maintainer', password: SECRET };

let tmp: string;
let reg: FakeRegistry;
/** One cache holding a fake image of each arch, as the release's push job has them. */
let cache: string;
const images = {} as Record<'amd64' | 'arm64', ImageManifest>;
const fresh = freshFolders(() => tmp);
const target = (tags: string[] = []): PushTarget => ({ repository: parseRepository(`${reg.url}/${reg.name}`), tags });

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sml-push-test-'));
  reg = await new FakeRegistry().start();
  cache = fresh('cache');
  images.amd64 = fakeImage(cache, 'amd64').manifest;
  images.arm64 = fakeImage(cache, 'arm64').manifest;
});

afterAll(async () => {
  await reg?.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

beforeEach(() => {
  reg.pushUser = creds;
});

describe('pushImages', () => {
  it('pushes both arches and an index; image pull reads every tag of it; credentials go only to the token endpoint', async () => {
    const lines: string[] = [];
    const progress: number[] = [];
    const r = await pushImages({ cacheDir: cache, arches: ['amd64', 'arm64'], target: target(['v1', 'latest']), annotations: { 'org.opencontainers.image.revision': 'abc' }, credentials: creds, log: (l) => lines.push(l), onProgress: (s) => progress.push(s) });
    expect(r.arches.map((a) => [a.arch, a.tags, a.uploaded])).toEqual([
      ['amd64', [`amd64-${images.amd64.inputsDigest}`, 'amd64-latest'], true],
      ['arm64', [`arm64-${images.arm64.inputsDigest}`, 'arm64-latest'], true],
    ]);
    expect(r.index?.tags).toEqual(['v1', 'latest']);
    expect(progress.at(-1)).toBe(r.arches[1].layer.size);
    expect(lines.join('\n')).not.toContain(SECRET);
    expect(leftovers(cache).sort()).toEqual([`amd64-${images.amd64.inputsDigest.slice(0, 16)}`, `arm64-${images.arm64.inputsDigest.slice(0, 16)}`]);

    // The token endpoint got the credentials (Basic); the registry only tokens; the storage nothing.
    expect(reg.tokenAuth).toContain(`Basic ${Buffer.from(`maintainer:${SECRET}`).toString('base64')}`);
    expect(reg.requests.filter((q) => q.authorization?.startsWith('Basic') && !q.url.startsWith('/token'))).toEqual([]);
    expect(reg.storage.every((q) => !q.authorization)).toBe(true);

    // Pulled back, anonymously, by each tag pull asks for: the same images.
    const repo = parseRepository(`${reg.url}/${reg.name}`);
    for (const [arch, ref] of [
      ['amd64', `amd64-${images.amd64.inputsDigest}`],
      ['arm64', 'arm64-latest'],
      ['arm64', 'v1'],
      ['amd64', 'latest'],
      ['amd64', r.arches[0].manifestDigest],
    ] as const) {
      const to = fresh('pulled');
      const got = await pullImage({ cacheDir: to, arch, repository: repo, choice: { ref, why: 'test' } });
      expect(got.published.manifestDigest).toBe(r.arches.find((a) => a.arch === arch)!.manifestDigest);
      expect(got.published).toMatchObject({ arch, inputsDigest: images[arch].inputsDigest, imageDigest: images[arch].digest });
      expect((await openImage(to, arch)).manifest.digest).toBe(images[arch].digest);
    }
  });

  it('a blob the registry has is not uploaded again (HEAD)', async () => {
    const posts = () => reg.requests.filter((q) => q.method === 'POST').length;
    await pushImages({ cacheDir: cache, arches: ['amd64'], target: target(), credentials: creds });
    const before = posts();
    await pushImages({ cacheDir: cache, arches: ['amd64'], target: target(), credentials: creds });
    // The empty config is there: only the export (whose archive header holds the time of the export) is sent.
    expect(posts() - before).toBeLessThanOrEqual(1);
    expect(reg.requests.some((q) => q.method === 'HEAD')).toBe(true);
  });

  it('without credentials, or with wrong ones: says which variables, never the password', async () => {
    const none = await userErrorOfAsync(pushImages({ cacheDir: cache, arches: ['amd64'], target: target() }));
    expect(none.message).toMatch(/^127\.0\.0\.1:\d+\/class\/sockmap-labs-image takes no push without credentials \(HTTP 401/);
    expect(none.fix).toMatch(/^set LAB_REGISTRY_USER and LAB_REGISTRY_PASSWORD/);
    const wrong = await userErrorOfAsync(pushImages({ cacheDir: cache, arches: ['amd64'], target: target(), credentials: { user: 'maintainer', password: `${SECRET}-old` } }));
    expect(wrong.message).toMatch(/refuses the credentials in LAB_REGISTRY_USER and LAB_REGISTRY_PASSWORD for 127\.0\.0\.1:\d+\/class\/sockmap-labs-image \(HTTP 401/);
    expect(`${wrong.message}${wrong.fix}`).not.toContain(SECRET);
    expect(leftovers(cache).filter((f) => f.startsWith('.'))).toEqual([]);
  });

  it('no image of an arch: refused before anything is sent', async () => {
    const empty = fresh('empty');
    const n = reg.requests.length;
    const e = await userErrorOfAsync(pushImages({ cacheDir: empty, arches: ['amd64'], target: target(), credentials: creds }));
    expect(e.message).toMatch(/^no amd64 guest image to push in /);
    expect(reg.requests.length).toBe(n);
  });
});

describe('what to push, and as whom', () => {
  it('push references', () => {
    expect(parsePushTarget('ghcr.io/o/img')).toEqual({ repository: { base: 'https://ghcr.io', name: 'o/img', display: 'ghcr.io/o/img' }, tags: [] });
    expect(parsePushTarget('ghcr.io/o/img:v1.0,latest').tags).toEqual(['v1.0', 'latest']);
    expect(parsePushTarget('localhost:5000/img:v1')).toMatchObject({ repository: { base: 'https://localhost:5000', name: 'img' }, tags: ['v1'] });
    expect(parsePushTarget('http://127.0.0.1:5000/a/b:x')).toMatchObject({ repository: { base: 'http://127.0.0.1:5000', name: 'a/b' }, tags: ['x'] });
    expect(userErrorOf(() => parsePushTarget('img:v1')).message).toBe('bad push reference "img:v1": it names no registry');
    expect(userErrorOf(() => parsePushTarget('ghcr.io/o/img@sha256:ab')).message).toMatch(/not a digest/);
    expect(userErrorOf(() => parsePushTarget('ghcr.io/o/img:bad/tag')).message).toMatch(/is not a repository name|bad tag/);
    expect(userErrorOf(() => parsePushTarget('ghcr.io/o/img:.x')).message).toBe('bad tag ".x" in "ghcr.io/o/img:.x": letters, digits, . _ - (not first), at most 128');
    expect(userErrorOf(() => parsePushTarget('http://10.1.2.3:5000/img')).message).toMatch(/credentials would cross the network unprotected/);
    expect(parsePushTarget('http://10.1.2.3:5000/img', { plainHttp: true }).repository.base).toBe('http://10.1.2.3:5000');
    expect(userErrorOf(() => parsePushTarget('not a host!/img')).message).toMatch(/^bad image repository "not a host!\/img"/);
  });

  it('annotations', () => {
    expect(parseAnnotations(['a.b=c=d', 'x='])).toEqual({ 'a.b': 'c=d', x: '' });
    expect(userErrorOf(() => parseAnnotations(['novalue'])).message).toBe('bad --annotation "novalue": not KEY=VALUE');
    expect(userErrorOf(() => parseAnnotations(['org.sockmap-labs.image.arch=arm64'])).message).toMatch(/is set by the push itself/);
  });

  it('credentials from LAB_REGISTRY_USER and LAB_REGISTRY_PASSWORD: both or neither, never echoed', () => {
    expect(registryCredentialsFrom({})).toBeUndefined();
    expect(registryCredentialsFrom({ LAB_REGISTRY_USER: 'u', LAB_REGISTRY_PASSWORD: SECRET })).toEqual({ user: 'u', password: SECRET });
    const noUser = userErrorOf(() => registryCredentialsFrom({ LAB_REGISTRY_PASSWORD: SECRET }));
    expect(noUser.message).toBe('LAB_REGISTRY_PASSWORD is set but LAB_REGISTRY_USER is not: a registry needs both');
    expect(userErrorOf(() => registryCredentialsFrom({ LAB_REGISTRY_USER: 'u' })).message).toMatch(/LAB_REGISTRY_PASSWORD is empty/);
    expect(userErrorOf(() => registryCredentialsFrom({ LAB_REGISTRY_USER: 'a:b', LAB_REGISTRY_PASSWORD: SECRET })).message).not.toContain(SECRET);
  });
});

describe('npm run image push (the CLI)', () => {
  function cli(args: string[], env: Record<string, string>) {
    const child = spawn(process.execPath, ['--import', 'tsx', 'runner/cli.ts', 'image', 'push', ...args], {
      cwd: projectRoot,
      env: { ...process.env, CI: '1', NO_COLOR: '1', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    return new Promise<{ code: number | null; out: string }>((r) => child.on('close', (code) => r({ code, out })));
  }

  it('pushes with progress lines and says how to pull it; the password is nowhere in the output; a second push uploads nothing', async () => {
    // A registry of its own: the other tests pushed these images to `reg` already, and an export of the same
    // image is the same bytes (one time stamp in the tar), so there it would be "already there".
    const own = await new FakeRegistry().start();
    own.pushUser = creds;
    try {
      const env = { LAB_CACHE_DIR: cache, LAB_REGISTRY_USER: 'maintainer', LAB_REGISTRY_PASSWORD: SECRET };
      const first = await cli([`${own.url}/${own.name}:cli`, '--arch', 'all'], env);
      expect(first.out).toMatch(/^ {2}100%: 0\.1 MB of 0\.1 MB, /m);
      expect(first.out).not.toContain('already there');
      expect(first.code).toBe(0);
      const again = await cli([`${own.url}/${own.name}:cli`, '--arch', 'all'], env);
      expect(again.out).toMatch(/^pushed the amd64 guest image [0-9a-f]{12} \(0\.1 MB, already there\)/m);
      expect(again.out).not.toMatch(/^ {2}\d+%: /m);
      expect(again.code).toBe(0);
    } finally {
      await own.close();
    }
    const { code, out } = await cli([`${reg.url}/${reg.name}:cli`, '--arch', 'all'], { LAB_CACHE_DIR: cache, LAB_REGISTRY_USER: 'maintainer', LAB_REGISTRY_PASSWORD: SECRET });
    expect(out).toMatch(/^pushed the arm64 guest image [0-9a-f]{12} \(0\.1 MB(, already there)?\) to 127\.0\.0\.1:\d+\/class\/sockmap-labs-image as arm64-[0-9a-f]{64}, arm64-latest$/m);
    expect(out).toMatch(/^ {2}pull it: npm run image pull -- --repository http:\/\/127\.0\.0\.1:\d+\/class\/sockmap-labs-image --arch arm64 --digest sha256:[0-9a-f]{64}$/m);
    expect(out).toMatch(/^index of amd64, arm64 as cli: sha256:[0-9a-f]{64}$/m);
    expect(out).toContain('note: the credentials go to 127.0.0.1');
    expect(out).not.toContain(SECRET);
    expect(code).toBe(0);
  });

  it('exits 2 with one error and its fix: no image, bad reference, half the credentials', async () => {
    for (const [args, env, first] of [
      [[`${reg.url}/${reg.name}`], { LAB_CACHE_DIR: fresh('empty') }, /^error: no amd64 guest image to push in /m],
      [['img:v1'], { LAB_CACHE_DIR: cache }, /^error: bad push reference "img:v1": it names no registry$/m],
      [[`${reg.url}/${reg.name}`], { LAB_CACHE_DIR: cache, LAB_REGISTRY_PASSWORD: SECRET }, /^error: LAB_REGISTRY_PASSWORD is set but LAB_REGISTRY_USER is not/m],
    ] as const) {
      const { code, out } = await cli([...args], { LAB_REGISTRY_USER: '', LAB_REGISTRY_PASSWORD: '', ...env });
      expect(out).toMatch(first);
      expect(out).not.toMatch(/^\s+at /m);
      expect(out).not.toContain(SECRET);
      expect(code).toBe(2);
    }
  });
});
