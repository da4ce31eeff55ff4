// `npm run image pull` against an OCI registry in this process (test/fake-registry.ts):
// small exported images (test/image-fixtures.ts) published as the release
// workflow publishes them, pulled into fresh caches. No VM, no network.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { projectRoot } from '../core/paths.ts';
import { downloadProgress } from '../runner/image-command.ts';
import { describeImages, sweepStale } from '../vm/image.ts';
import {
  ANNOTATION_ARCH,
  ANNOTATION_INPUTS,
  chooseReference,
  defaultRepository,
  IMAGE_ARTIFACT_TYPE,
  IMAGE_LAYER_TYPE,
  normalizeDigest,
  parseChallenge,
  parseRepository,
  pullImage,
  type Choice,
  type Repository,
} from '../vm/image-pull.ts';
import { exportImage } from '../vm/image-transfer.ts';
import { buildFix, currentImageFolder, imagesDir, openImage, type ImageArch, type ImageManifest } from '../vm/image-verify.ts';
import { FakeRegistry } from './fake-registry.ts';
import { fakeImage, freshFolders, leftovers } from './image-fixtures.ts';
import { userErrorOf, userErrorOfAsync } from './user-error.ts';

let tmp: string;
let reg: FakeRegistry;
let repo: Repository;
/** Exported fake images, one per arch, and what the registry holds of them. */
const exported = {} as Record<ImageArch, { file: string; manifest: ImageManifest; manifestDigest: string; size: number }>;

const fresh = freshFolders(() => tmp);

/** The inputs tag the release workflow pushes. */
const inputsTag = (arch: ImageArch) => `${arch}-${exported[arch].manifest.inputsDigest}`;
const byTag = (ref: string): Choice => ({ ref, why: 'test' });
/** What chooseReference gives when apt names these inputs. */
const forInputs = (arch: ImageArch, inputsDigest = exported[arch].manifest.inputsDigest): Choice => ({ ref: `${arch}-${inputsDigest}`, why: 'test', inputsDigest });

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sml-pull-test-'));
  reg = await new FakeRegistry().start();
  repo = parseRepository(`${reg.url}/${reg.name}`);
  for (const arch of ['amd64', 'arm64'] as const) {
    const from = fresh('build');
    const { manifest } = fakeImage(from, arch);
    const file = path.join(fresh('export'), `sockmap-labs-image-${arch}.tar`);
    await exportImage({ cacheDir: from, arch, file });
    exported[arch] = { file, manifest, manifestDigest: '', size: fs.statSync(file).size };
  }
  // As the workflow publishes: amd64 only (the registry "without arm64"), by inputs and as latest.
  const a = reg.publishFile(exported.amd64.file, [inputsTag('amd64'), 'amd64-latest'], FakeRegistry.annotations(exported.amd64.manifest));
  exported.amd64.manifestDigest = a.manifestDigest;
});

afterAll(async () => {
  await reg?.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

beforeEach(() => {
  reg.fault = undefined;
  reg.privateRepo = false;
});

describe('pullImage', () => {
  it('pulls the image for the current inputs, answering the token challenge; openImage and image list see it', async () => {
    const cache = fresh('cache');
    const before = reg.requests.length;
    const tokensBefore = reg.tokens.length;
    const seen: [number, number][] = [];
    const lines: string[] = [];
    const r = await pullImage({ cacheDir: cache, arch: 'amd64', repository: repo, choice: forInputs('amd64'), log: (l) => lines.push(l), onProgress: (g, t) => seen.push([g, t]) });
    expect(r.downloaded).toBe(true);
    expect(r.published.manifestDigest).toBe(exported.amd64.manifestDigest);
    expect(r.manifest.digest).toBe(exported.amd64.manifest.digest);
    expect(seen.at(-1)).toEqual([exported.amd64.size, exported.amd64.size]);
    expect(lines).toContain('downloading the amd64 image (0.1 MB)');
    // the challenge: a 401 first, one anonymous token for the pull scope, then every request with it
    const mine = reg.requests.slice(before);
    expect(mine[0].authorization).toBeUndefined();
    expect(mine[1].url).toBe(`/token?service=fake-registry&scope=${encodeURIComponent(`repository:${reg.name}:pull`)}`);
    expect(reg.tokens.length).toBe(tokensBefore + 1);
    for (const q of mine.slice(2)) expect(q.authorization).toBe(`Bearer ${reg.tokens.at(-1)}`);
    // the blob came from the storage it redirected to, which never saw the token
    expect(reg.storage.at(-1)!.url).toBe(`/store/${r.published.layer.digest.replace(':', '/')}?signature=fake`);
    expect(reg.storage.at(-1)!.authorization).toBeUndefined();
    // in place, current, its stamp made: a boot opens it without hashing
    const img = await openImage(cache, 'amd64', { onHash: () => expect.unreachable('hashed again') });
    expect(img.dir).toBe(r.dir);
    expect(img.manifest.inputsDigest).toBe(exported.amd64.manifest.inputsDigest);
    expect(describeImages(cache).map((d) => [d.folder, d.manifest?.digest])).toEqual([[path.basename(r.dir), exported.amd64.manifest.digest]]);
    expect(leftovers(cache)).toEqual([path.basename(r.dir)]);

    // again: the image for these inputs is there; only the manifest is asked for
    const storageBefore = reg.storage.length;
    const again = await pullImage({ cacheDir: cache, arch: 'amd64', repository: repo, choice: forInputs('amd64') });
    expect(again.downloaded).toBe(false);
    expect(reg.storage.length).toBe(storageBefore);
    expect(leftovers(cache)).toEqual([path.basename(r.dir)]);
  });

  it('pulls by manifest digest and by tag, replacing an older image of the arch', async () => {
    const cache = fresh('cache');
    const old = fakeImage(cache, 'amd64');
    const r = await pullImage({ cacheDir: cache, arch: 'amd64', repository: repo, choice: { ref: exported.amd64.manifestDigest, why: 'test' } });
    expect(r.downloaded).toBe(true);
    expect(fs.existsSync(old.dir)).toBe(false);
    expect(currentImageFolder(cache, 'amd64')).toBe(path.basename(r.dir));
    const other = fresh('cache');
    expect((await pullImage({ cacheDir: other, arch: 'amd64', repository: repo, choice: byTag('amd64-latest') })).manifest.digest).toBe(exported.amd64.manifest.digest);
  });

  it('an image built here from the same inputs does for a tag, not for a --digest pin', async () => {
    const cache = fresh('cache');
    const local = fakeImage(cache, 'amd64', undefined, exported.amd64.manifest.inputsDigest);
    expect(local.manifest.digest).not.toBe(exported.amd64.manifest.digest); // other bytes
    const byInputs = await pullImage({ cacheDir: cache, arch: 'amd64', repository: repo, choice: forInputs('amd64') });
    expect(byInputs.downloaded).toBe(false);
    expect(byInputs.manifest.digest).toBe(local.manifest.digest);
    const pinned = await pullImage({ cacheDir: cache, arch: 'amd64', repository: repo, choice: { ref: exported.amd64.manifestDigest, why: 'test' } });
    expect(pinned.downloaded).toBe(true);
    expect(pinned.manifest.digest).toBe(exported.amd64.manifest.digest);
    expect((await openImage(cache, 'amd64')).manifest.digest).toBe(exported.amd64.manifest.digest);
    expect(leftovers(cache)).toEqual([local.folder]);
  });

  describe('a bad download is refused, and leaves nothing in the cache', () => {
    it.each([
      ['flip', /hashes to sha256:[0-9a-f]{64}: sha256 mismatch, refused and deleted; nothing was imported/],
      ['broken', /broke off after 0\.0 MB of 0\.1 MB \(.+\); nothing was imported/],
      ['short', /ended after \d+ of \d+ bytes: truncated; nothing was imported/],
      ['long', /is longer than the \d+ bytes its manifest says: refused/],
    ] as const)('%s', async (fault, message) => {
      reg.fault = fault;
      const cache = fresh('cache');
      const e = await userErrorOfAsync(pullImage({ cacheDir: cache, arch: 'amd64', repository: repo, choice: forInputs('amd64') }));
      expect(e.message).toMatch(message);
      expect(e.fix).toContain('npm run image pull');
      expect(leftovers(cache)).toEqual([]);
      expect(currentImageFolder(cache, 'amd64')).toBeUndefined();
    });

    it('a download that stalls is stopped', async () => {
      reg.fault = 'hold';
      const cache = fresh('cache');
      const e = await userErrorOfAsync(pullImage({ cacheDir: cache, arch: 'amd64', repository: repo, choice: forInputs('amd64'), stallMs: 1000 }));
      expect(e.message).toMatch(/stalled: nothing for 1 s after 0\.0 MB of 0\.1 MB; nothing was imported/);
      expect(leftovers(cache)).toEqual([]);
    });

    it('Ctrl-C in the middle: the partial file goes', async () => {
      reg.fault = 'hold';
      const cache = fresh('cache');
      const ctl = new AbortController();
      let partial = '';
      const p = pullImage({
        cacheDir: cache,
        arch: 'amd64',
        repository: repo,
        choice: forInputs('amd64'),
        signal: ctl.signal,
        onProgress: (got) => {
          if (got > 0 && !ctl.signal.aborted) {
            partial = leftovers(cache).join();
            ctl.abort();
          }
        },
      });
      await expect(p).rejects.toThrow(/abort/i);
      expect(partial).toMatch(/^\.download-\d+-[0-9a-f]{8}$/);
      expect(leftovers(cache)).toEqual([]);
    });

    it('an image whose file is sound but whose inputs are not those of its tag (mis-tagged)', async () => {
      // the amd64 export under the tag of other amd64 inputs, without annotations: only the import can tell
      const r = new FakeRegistry();
      await r.start();
      try {
        const cache = fresh('cache');
        r.publishFile(exported.amd64.file, [`amd64-${'0'.repeat(64)}`]);
        const e = await userErrorOfAsync(pullImage({ cacheDir: cache, arch: 'amd64', repository: parseRepository(`${r.url}/${r.name}`), choice: byTag(`amd64-${'0'.repeat(64)}`) }));
        expect(e.message).toMatch(/was built from other inputs \([0-9a-f]{16}\) than it is published as \(0{16}\); nothing was imported/);
        expect(leftovers(cache)).toEqual([]);
      } finally {
        await r.close();
      }
    });
  });

  it('no image for these inputs: says so, and names the build (and the newest published one)', async () => {
    const cache = fresh('cache');
    const e = await userErrorOfAsync(pullImage({ cacheDir: cache, arch: 'amd64', repository: repo, choice: forInputs('amd64', 'ab'.repeat(32)) }));
    expect(e.message).toBe(
      `no amd64 guest image for this checkout's inputs (amd64-abababababababab) is published in ${repo.display}: the package versions apt offers here, or vm/guest/image-init, differ from those of every published image`,
    );
    expect(e.fix).toContain(buildFix('amd64'));
    expect(e.fix).toContain('npm run image pull -- --ref amd64-latest');
    expect(leftovers(cache)).toEqual([]);
  });

  it('a registry without the arch: says which it has, and how to build the one wanted', async () => {
    const e = await userErrorOfAsync(pullImage({ cacheDir: fresh('cache'), arch: 'arm64', repository: repo, choice: forInputs('arm64') }));
    expect(e.message).toBe(`${repo.display} has no arm64 guest image at all (only amd64)`);
    expect(e.fix).toContain('npm run image build -- --arch arm64');
    const e2 = await userErrorOfAsync(pullImage({ cacheDir: fresh('cache'), arch: 'arm64', repository: repo, choice: byTag('arm64-latest') }));
    expect(e2.message).toContain('has no arm64 guest image at all');
  });

  it('an unknown tag or digest, an unknown repository', async () => {
    const e = await userErrorOfAsync(pullImage({ cacheDir: fresh('cache'), arch: 'amd64', repository: repo, choice: byTag('amd64-nope') }));
    expect(e.message).toBe(`${repo.display} has no tag amd64-nope (MANIFEST_UNKNOWN: manifest unknown)`);
    expect(e.fix).toMatch(/^npm run image pull -- --ref amd64-latest/);
    const d = `sha256:${'1'.repeat(64)}`;
    expect((await userErrorOfAsync(pullImage({ cacheDir: fresh('cache'), arch: 'amd64', repository: repo, choice: byTag(d) }))).message).toContain(`has no manifest ${d}`);
    const elsewhere = parseRepository(`${reg.url}/someone/else`);
    const e3 = await userErrorOfAsync(pullImage({ cacheDir: fresh('cache'), arch: 'amd64', repository: elsewhere, choice: byTag('amd64-latest') }));
    expect(e3.message).toMatch(/someone\/else does not exist \(NAME_UNKNOWN/);
    expect(e3.fix).toContain('--repository');
  });

  it('a private repository (no anonymous token)', async () => {
    const r = new FakeRegistry();
    await r.start();
    r.privateRepo = true;
    try {
      const e = await userErrorOfAsync(pullImage({ cacheDir: fresh('cache'), arch: 'amd64', repository: parseRepository(`${r.url}/${r.name}`), choice: byTag('amd64-latest') }));
      expect(e.message).toMatch(/gives no anonymous pull token \(HTTP 401 UNAUTHORIZED: authentication required\): it does not exist, or it is not public/);
    } finally {
      await r.close();
    }
  });

  it('a wrong-arch manifest is refused before its file is downloaded', async () => {
    const r = new FakeRegistry();
    await r.start();
    try {
      // the amd64 image, mis-published as arm64-latest, its annotation telling the truth
      r.publishFile(exported.amd64.file, ['arm64-latest'], FakeRegistry.annotations(exported.amd64.manifest));
      const cache = fresh('cache');
      const e = await userErrorOfAsync(pullImage({ cacheDir: cache, arch: 'arm64', repository: parseRepository(`${r.url}/${r.name}`), choice: byTag('arm64-latest') }));
      expect(e.message).toBe(`the guest image ${r.url.replace('http://', '')}/${r.name}:arm64-latest is for amd64, but this pull is for arm64 (--arch); nothing was downloaded`);
      expect(e.fix).toContain('npm run image build -- --arch arm64');
      expect(r.storage).toEqual([]);
      expect(leftovers(cache)).toEqual([]);
    } finally {
      await r.close();
    }
  });

  it('a wrong-arch image without annotations is refused by the import, from its own manifest', async () => {
    const r = new FakeRegistry();
    await r.start();
    try {
      r.publishFile(exported.amd64.file, ['arm64-latest']);
      const cache = fresh('cache');
      const e = await userErrorOfAsync(pullImage({ cacheDir: cache, arch: 'arm64', repository: parseRepository(`${r.url}/${r.name}`), choice: byTag('arm64-latest') }));
      expect(e.message).toMatch(/^the guest image in 127\.0\.0\.1:\d+\/class\/sockmap-labs-image@sha256:[0-9a-f]{64} is for amd64, but --arch asks for arm64; nothing was imported$/);
      expect(leftovers(cache)).toEqual([]);
      expect(currentImageFolder(cache, 'arm64')).toBeUndefined();
    } finally {
      await r.close();
    }
  });

  it('an index: the entry for the arch, or which arches it has', async () => {
    const r = new FakeRegistry();
    await r.start();
    try {
      const a = r.publishFile(exported.amd64.file, [], FakeRegistry.annotations(exported.amd64.manifest));
      const b = r.publishFile(exported.arm64.file, [], FakeRegistry.annotations(exported.arm64.manifest));
      r.publishIndex([{ digest: a.manifestDigest, arch: 'amd64' }], ['only-amd64']);
      r.publishIndex([{ digest: a.manifestDigest, arch: 'amd64' }, { digest: b.manifestDigest, arch: 'arm64' }], ['both']);
      const there = parseRepository(`${r.url}/${r.name}`);
      const e = await userErrorOfAsync(pullImage({ cacheDir: fresh('cache'), arch: 'arm64', repository: there, choice: byTag('only-amd64') }));
      expect(e.message).toMatch(/:only-amd64 holds no arm64 guest image \(its index has: amd64\)$/);
      const cache = fresh('cache');
      const got = await pullImage({ cacheDir: cache, arch: 'arm64', repository: there, choice: byTag('both') });
      expect(got.manifest.arch).toBe('arm64');
      expect(got.published.manifestDigest).toBe(b.manifestDigest);
      expect((await openImage(cache, 'arm64')).manifest.digest).toBe(exported.arm64.manifest.digest);
    } finally {
      await r.close();
    }
  });

  it('a manifest that does not hash to the digest asked for is refused', async () => {
    const r = new FakeRegistry();
    await r.start();
    try {
      const { manifestDigest } = r.publishFile(exported.amd64.file, []);
      r.replaceManifest(manifestDigest, Buffer.from('{"schemaVersion":2,"layers":[]}'));
      const e = await userErrorOfAsync(pullImage({ cacheDir: fresh('cache'), arch: 'amd64', repository: parseRepository(`${r.url}/${r.name}`), choice: { ref: manifestDigest, why: 'test' } }));
      expect(e.message).toMatch(new RegExp(`answered a manifest that hashes to sha256:[0-9a-f]{64}, not ${manifestDigest}: it is damaged or not the one asked for; nothing was pulled`));
    } finally {
      await r.close();
    }
  });

  it('a registry that cannot be reached', async () => {
    const s = http.createServer();
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    const port = (s.address() as AddressInfo).port;
    await new Promise((r) => s.close(r));
    const e = await userErrorOfAsync(pullImage({ cacheDir: fresh('cache'), arch: 'amd64', repository: parseRepository(`http://127.0.0.1:${port}/a/b`), choice: byTag('amd64-latest') }));
    expect(e.message).toBe(`cannot reach 127.0.0.1:${port} (ECONNREFUSED) fetching the manifest amd64-latest`);
    expect(e.fix).toContain('check the network');
    expect(e.fix).toContain('npm run image import FILE');
  });

  it('sweepStale removes the partial file of a pull that was killed', () => {
    const cache = fresh('cache');
    fs.mkdirSync(imagesDir(cache), { recursive: true });
    const dead = path.join(imagesDir(cache), `.download-${2 ** 22 + 12_345}-0a1b2c3d`);
    const mine = path.join(imagesDir(cache), `.download-${process.pid}-0a1b2c3d`);
    fs.writeFileSync(dead, 'partial');
    fs.writeFileSync(mine, 'partial');
    sweepStale(cache);
    expect(fs.existsSync(dead)).toBe(false);
    expect(fs.existsSync(mine)).toBe(true);
  });
});

describe('which image, and where', () => {
  const cacheDir = '/nonexistent';
  it('the current inputs, when apt can tell them', async () => {
    const c = await chooseReference({ arch: 'amd64', cacheDir, resolve: async () => ({ inputsDigest: 'cd'.repeat(32) }) });
    expect(c).toEqual({ ref: `amd64-${'cd'.repeat(32)}`, why: 'the image the current inputs name', inputsDigest: 'cd'.repeat(32) });
  });

  it('<arch>-latest, and says so, when apt cannot', async () => {
    const c = await chooseReference({
      arch: 'arm64',
      cacheDir,
      resolve: async () => {
        throw Object.assign(new Error('spawn apt-get ENOENT'), { code: 'ENOENT' });
      },
    });
    expect(c.ref).toBe('arm64-latest');
    expect(c.inputsDigest).toBeUndefined();
    expect(c.note).toBe("apt cannot tell this checkout's image inputs here (spawn apt-get ENOENT): pulling the newest published arm64 image, arm64-latest, instead");
  });

  it('--digest and --ref', async () => {
    const never = async () => expect.unreachable('asked apt');
    expect((await chooseReference({ arch: 'amd64', cacheDir, digest: 'AB'.repeat(32), resolve: never })).ref).toBe(`sha256:${'ab'.repeat(32)}`);
    expect((await chooseReference({ arch: 'amd64', cacheDir, ref: 'amd64-latest', resolve: never })).ref).toBe('amd64-latest');
    await expect(chooseReference({ arch: 'amd64', cacheDir, ref: 'no/tag', resolve: never })).rejects.toThrow(/bad --ref "no\/tag"/);
    expect(() => normalizeDigest('sha256:123')).toThrow(/sha256: and 64 hex digits/);
    await expect(chooseReference({ arch: 'amd64', cacheDir, ref: 'x', digest: 'ab'.repeat(32), resolve: never })).rejects.toThrow(/give one/);
  });

  it('repositories, registries and challenges', () => {
    expect(parseRepository('ghcr.io/owner/sockmap-labs-image')).toEqual({ base: 'https://ghcr.io', name: 'owner/sockmap-labs-image', display: 'ghcr.io/owner/sockmap-labs-image' });
    expect(parseRepository('ghcr.io/owner/img', 'http://127.0.0.1:5000')).toEqual({ base: 'http://127.0.0.1:5000', name: 'owner/img', display: '127.0.0.1:5000/owner/img' });
    expect(parseRepository('localhost:5000/img').base).toBe('https://localhost:5000');
    expect(parseRepository('owner/img', 'mirror.example')).toMatchObject({ base: 'https://mirror.example', name: 'owner/img' });
    expect(() => parseRepository('owner/img')).toThrow(/names no registry/);
    expect(() => parseRepository('ghcr.io/Owner/img')).toThrow(/not a repository name/);
    expect(defaultRepository()).toBe(JSON.parse(fs.readFileSync(path.join(projectRoot, 'package.json'), 'utf8')).sockmapLabs.imageRepository);
    expect(parseChallenge('Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:o/n:pull"')).toEqual({ scheme: 'bearer', realm: 'https://ghcr.io/token', service: 'ghcr.io', scope: 'repository:o/n:pull' });
    expect(parseChallenge('Basic realm="x"')).toEqual({ scheme: 'basic', realm: 'x' });
    expect(parseChallenge('Negotiate abc')).toBeUndefined();
  });

  it('a bad registry host is one line naming it, not "Invalid URL"', () => {
    for (const r of ['not a host!', 'http://', 'ghcr.io:99999', 'user@ghcr.io', 'ghcr.io/x', 'https://a_b.example', '-x.example', ''])
      expect(userErrorOf(() => parseRepository('owner/img', r)).message).toBe(`bad --registry ${JSON.stringify(r)}: not a host`);
    expect(userErrorOf(() => parseRepository('not a host!/img')).message).toMatch(/^bad image repository "not a host!\/img": /);
    expect(parseRepository('owner/img', '[::1]:5000').base).toBe('https://[::1]:5000');
    expect(parseRepository('owner/img', 'GHCR.io').display).toBe('ghcr.io/owner/img');
  });

  it('plain HTTP: to this machine only, unless --plain-http', () => {
    for (const h of ['127.0.0.1:5000', '127.8.9.10', 'localhost:5000', '[::1]:5000']) expect(parseRepository(`http://${h}/img`).base).toBe(`http://${h.toLowerCase()}`);
    const e = userErrorOf(() => parseRepository('owner/img', 'http://mirror.lan:5000'));
    expect(e.message).toBe('"http://mirror.lan:5000" asks for plain HTTP to mirror.lan:5000, which is not this machine: the image\'s manifest would cross the network unprotected');
    expect(e.fix).toMatch(/^use https:\/\/mirror\.lan:5000 .*add --plain-http/);
    expect(userErrorOf(() => parseRepository('http://10.0.0.1/img', undefined, { push: true })).message).toMatch(/manifest and your registry credentials would cross/);
    expect(parseRepository('owner/img', 'http://mirror.lan:5000', { plainHttp: true }).base).toBe('http://mirror.lan:5000');
    // 127.0.0.1.example.com is not loopback
    expect(() => parseRepository('http://127.0.0.1.example.com/img')).toThrow(/not this machine/);
  });

  it('the release workflow publishes with npm run image push (no oras), where pull looks', () => {
    const wf = fs.readFileSync(path.join(projectRoot, '.github/workflows/image-release.yml'), 'utf8');
    for (const s of ['npm run --silent image push -- "$REPO:$tags" --arch all', 'LAB_REGISTRY_USER: ${{ github.actor }}', 'LAB_REGISTRY_PASSWORD: ${{ secrets.GITHUB_TOKEN }}', 'packages: write', 'sockmapLabs.imageRepository'])
      expect(wf).toContain(s);
    expect(wf).not.toMatch(/\boras\b/);
    expect(defaultRepository()).toMatch(/^ghcr\.io\/[a-z0-9-]+\/sockmap-labs-image$/);
  });

  it('progress: a bar on a terminal, a line a quarter otherwise', () => {
    const texts: string[] = [];
    const bar = downloadProgress({ tty: true, progress: (l) => texts.push(l) });
    bar(0, 1e8);
    bar(1e8, 1e8);
    expect(texts.at(-1)).toMatch(/^\[█{24}\] 100% 100\.0 MB of 100\.0 MB, [\d.]+ MB\/s$/);
    const lines: string[] = [];
    const plain = downloadProgress({ tty: false, progress: () => expect.unreachable('no spinner') }, (l) => lines.push(l));
    for (let got = 0; got <= 1e8; got += 1e6) plain(got, 1e8);
    expect(lines.map((l) => l.split(':')[0].trim())).toEqual(['25%', '50%', '75%', '100%']);
  });
});

describe('npm run image pull (the CLI)', () => {
  /** Runs the CLI from its sources (not the bundle other sessions share), with the fake registry answering in this process. */
  function cli(args: string[], cache: string) {
    const child = spawn(process.execPath, ['--import', 'tsx', 'runner/cli.ts', 'image', 'pull', '--registry', reg.url, '--repository', reg.name, ...args], {
      cwd: projectRoot,
      env: { ...process.env, CI: '1', NO_COLOR: '1', LAB_CACHE_DIR: cache },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const done = new Promise<{ code: number | null; out: string }>((r) => child.on('close', (code) => r({ code, out })));
    return { child, done, out: () => out };
  }

  it('pulls, with plain progress lines, and says how to pin it', async () => {
    const cache = fresh('cache');
    const { code, out } = await cli(['--ref', 'amd64-latest'], cache).done;
    expect(out).toMatch(/^asking 127\.0\.0\.1:\d+\/class\/sockmap-labs-image for amd64-latest \(the tag --ref names\)$/m);
    expect(out).toMatch(/^ {2}100%: 0\.1 MB of 0\.1 MB, /m);
    expect(out).toMatch(/^unpacking 127\.0\.0\.1:\d+\/class\/sockmap-labs-image@sha256:[0-9a-f]{64}$/m);
    expect(out).toMatch(/^pulled the amd64 guest image amd64-[0-9a-f]{16} \(kernel 6\.12\.117\+deb12-amd64, 0\.1 MB\) from 127\.0\.0\.1:\d+\/class\/sockmap-labs-image in [\d.]+ s; amd64 VMs boot it now$/m);
    expect(out).toContain(`this very image elsewhere: npm run image pull -- --digest ${exported.amd64.manifestDigest}`);
    expect(code).toBe(0);
    expect(currentImageFolder(cache, 'amd64')).toMatch(/^amd64-/);
  });

  it('exits 2 with the fix when there is nothing to pull', async () => {
    const { code, out } = await cli(['--arch', 'arm64', '--ref', 'arm64-latest'], fresh('cache')).done;
    expect(out).toMatch(/^error: 127\.0\.0\.1:\d+\/class\/sockmap-labs-image has no arm64 guest image at all \(only amd64\)$/m);
    expect(out).toMatch(/^fix: {3}build it here: npm run image build -- --arch arm64/m);
    expect(code).toBe(2);
  });

  it('Ctrl-C during the download: exit 130, nothing left behind', async () => {
    reg.fault = 'hold';
    const cache = fresh('cache');
    const run = cli(['--ref', 'amd64-latest'], cache);
    const end = Date.now() + 20_000;
    while (!leftovers(cache).some((f) => f.startsWith('.download-'))) {
      if (Date.now() > end || run.child.exitCode !== null) throw new Error(`no download started:\n${run.out()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    run.child.kill('SIGINT');
    const { code, out } = await run.done;
    expect(out).toContain('Ctrl-C: stopped; nothing half-made is left in the cache');
    expect(code).toBe(130);
    expect(leftovers(cache)).toEqual([]);
  });
});
