// `npm run image push` and `npm run image pull` against a real registry:
// Debian's docker-registry (distribution 2.8) on 127.0.0.1, plain HTTP, with
// its storage in a temporary folder. The cached amd64 image is pushed (per-arch
// manifest, its tags, and an index tagged v1), pulled by tag, by the index tag
// and by digest into empty caches, and booted from one of them (QEMU, TCG, to
// the step agent). Then a
// byte of the image file is changed in the registry's storage: the pull
// refuses it by its sha256 and leaves nothing in the cache. The registry is
// stopped on every path (afterAll, and at exit if the test process dies).
// Skipped without docker-registry or without a cached amd64 image.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { placesFrom } from '../../core/config.ts';
import { projectRoot } from '../../core/paths.ts';
import { currentImageFolder, imagesDir, openImage } from '../../vm/image-verify.ts';
import { buildQemuArgs, QBOOT } from '../../vm/qemu-args.ts';
import { QemuProcess } from '../../vm/qemu-process.ts';
import { connectAgent } from '../../vm/serial.ts';
import { cli, tail } from './cli-helpers.ts';

const has = (tool: string) => spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;
const hasRegistry = has('docker-registry');
const homeCache = placesFrom().cacheDir;
const hasImage = !!currentImageFolder(homeCache, 'amd64');
const NAME = 'class/sockmap-labs-image';

let tmp: string;
let store: string;
let registry: ChildProcess | undefined;
let repo: string;
const killAtExit = () => registry?.kill('SIGKILL');

/** A port nobody listens on now (the registry takes it a moment later). */
async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** A folder for one empty cache, under the test's temporary folder. */
const emptyCache = (name: string) => fs.mkdtempSync(path.join(tmp, `${name}-`));

/** Everything in a cache's images folder, recursively (what a failed pull would have left). */
function contents(cache: string): string[] {
  const dir = imagesDir(cache);
  return fs.existsSync(dir) ? (fs.readdirSync(dir, { recursive: true }) as string[]).sort() : [];
}

async function stopRegistry(): Promise<void> {
  const r = registry;
  if (!r || r.exitCode !== null || r.signalCode !== null) return;
  const exited = new Promise((res) => r.once('exit', res));
  r.kill('SIGTERM');
  const t = setTimeout(() => r.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(t);
}

describe.skipIf(!hasRegistry || !hasImage || process.arch !== 'x64' || !has('qemu-system-x86_64'))(
  `image push and pull with a real registry (docker-registry)${!hasRegistry ? ' — docker-registry is not installed' : !hasImage ? ' — no cached amd64 image (npm run image build)' : ''}`,
  () => {
    const t0 = Date.now();
    let registryLog = '';
    const local = { digest: '', folder: '' };
    let manifestDigest = '';
    let layerDigest = '';

    beforeAll(async () => {
      tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sockmap-labs-registry-e2e-'));
      store = path.join(tmp, 'store');
      fs.mkdirSync(store);
      process.once('exit', killAtExit);
      const port = await freePort();
      const config = path.join(tmp, 'config.yml');
      fs.writeFileSync(config, ['version: 0.1', 'log:', '  level: warn', 'storage:', '  filesystem:', `    rootdirectory: ${store}`, 'http:', `  addr: 127.0.0.1:${port}`, ''].join('\n'));
      registry = spawn('docker-registry', ['serve', config], { stdio: ['ignore', 'pipe', 'pipe'] });
      registry.stdout!.on('data', (d) => (registryLog += d));
      registry.stderr!.on('data', (d) => (registryLog += d));
      repo = `http://127.0.0.1:${port}/${NAME}`;
      const end = Date.now() + 20_000;
      for (;;) {
        if (registry.exitCode !== null) throw new Error(`docker-registry exited (${registry.exitCode}):\n${registryLog}`);
        const ok = await fetch(`http://127.0.0.1:${port}/v2/`).then((r) => r.ok, () => false);
        if (ok) break;
        if (Date.now() > end) throw new Error(`docker-registry did not answer on port ${port} within 20 s:\n${registryLog}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      const img = await openImage(homeCache, 'amd64');
      local.digest = img.manifest.digest;
      local.folder = currentImageFolder(homeCache, 'amd64')!;
    }, 60_000);

    afterAll(async () => {
      await stopRegistry();
      process.removeListener('exit', killAtExit);
      if (registry) expect(registry.exitCode !== null || registry.signalCode !== null, 'docker-registry is still running').toBe(true);
      if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
      console.log(`registry e2e: ${((Date.now() - t0) / 1000).toFixed(1)} s in all`);
    }, 30_000);

    it('npm run image push: the cached amd64 image, its tags, and an index tagged v1', async () => {
      const t = Date.now();
      const { code, out } = await cli(['image', 'push', `${repo}:v1`]).done;
      console.log(`push: ${((Date.now() - t) / 1000).toFixed(1)} s`);
      expect(code, tail(out)).toBe(0);
      expect(out).toContain(`pushed the amd64 guest image ${local.digest.slice(0, 12)}`);
      expect(out).toMatch(/ 100%: /);
      manifestDigest = /--digest (sha256:[0-9a-f]{64})/.exec(out)![1];
      // The work folder of the export is gone from the cache pushed from.
      expect(contents(homeCache).filter((f) => f.startsWith('.download-push-'))).toEqual([]);
      // What the registry holds: the tags, and a manifest as pull reads it.
      const tags = (await (await fetch(`${repo.replace(NAME, `v2/${NAME}`)}/tags/list`)).json()) as { tags: string[] };
      const inputs = (await openImage(homeCache, 'amd64')).manifest.inputsDigest;
      expect(tags.tags.sort()).toEqual([`amd64-${inputs}`, 'amd64-latest', 'v1']);
      const m = (await (await fetch(`${repo.replace(NAME, `v2/${NAME}`)}/manifests/${manifestDigest}`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } })).json()) as {
        artifactType: string;
        layers: { mediaType: string; digest: string }[];
        annotations: Record<string, string>;
      };
      expect(m.artifactType).toBe('application/vnd.sockmap-labs.image.v1');
      expect(m.layers.map((l) => l.mediaType)).toEqual(['application/vnd.sockmap-labs.image.v1+tar']);
      expect(m.annotations).toMatchObject({ 'org.sockmap-labs.image.arch': 'amd64', 'org.sockmap-labs.image.inputs-digest': inputs, 'org.sockmap-labs.image.digest': local.digest });
      layerDigest = m.layers[0].digest;
    }, 300_000);

    for (const how of ['tag', 'index', 'digest'] as const) {
      it(`npm run image pull by ${how} into an empty cache${how === 'digest' ? ', and it boots' : ''}`, async () => {
        expect(manifestDigest).not.toBe('');
        const cache = emptyCache(how);
        const ref = how === 'tag' ? ['--ref', 'amd64-latest'] : how === 'index' ? ['--ref', 'v1'] : ['--digest', manifestDigest];
        const t = Date.now();
        const { code, out } = await cli(['image', 'pull', '--repository', repo, ...ref], { LAB_CACHE_DIR: cache }).done;
        console.log(`pull by ${how}: ${((Date.now() - t) / 1000).toFixed(1)} s`);
        expect(code, tail(out)).toBe(0);
        expect(out).toContain(`pulled the amd64 guest image ${local.folder}`);
        expect(out).toContain(`--digest ${manifestDigest}`);
        const pulled = await openImage(cache, 'amd64');
        expect(pulled.manifest.digest).toBe(local.digest);
        expect(contents(cache).filter((f) => f.startsWith('.'))).toEqual([]);
        if (how !== 'digest') return;
        // The smallest boot there is: the pulled kernel, initramfs and erofs
        // root under QEMU (TCG) until the step agent answers, then a real
        // sockmap in its kernel. (`npm run lab 1` on an empty cache first
        // builds the lab programs in the guest: ~1 min alone, 6 min on this
        // shared machine; the image e2e tests run the labs on the image.)
        execFileSync('make', ['-s', '-C', path.join(projectRoot, 'bpf')]); // the step agent, served from the project share
        const vmDir = fs.mkdtempSync(path.join(tmp, 'vm-'));
        const serial = { agentSocket: path.join(vmDir, 'agent.sock'), shellSocket: path.join(vmDir, 'shell.sock') };
        const b = Date.now();
        // prettier-ignore
        const q = new QemuProcess([
          ...buildQemuArgs({ kernelImage: pulled.kernel, kernelRelease: pulled.manifest.kernelRelease, initramfs: pulled.initramfs, accel: 'tcg', memoryMb: 1024, cpus: 2, shares: { project: projectRoot }, serial, bios: QBOOT }),
          '-drive', `file=${pulled.rootfs},if=virtio,format=raw,readonly=on`,
        ], path.join(vmDir, 'console.log'));
        try {
          expect(await q.waitFor('sml-stage2: AGENT-READY', 180_000)).toBe('marker');
          const link = await connectAgent(serial.agentSocket, { deadlineMs: 60_000 });
          try {
            const run = async (c: string) => {
              const r = await link.agent.exec(c, {});
              expect(r.code, `${c}: ${r.stdout}${r.stderr}`).toBe(0);
              return r.stdout;
            };
            expect(await run('uname -r')).toBe(`${pulled.manifest.kernelRelease}\n`);
            expect(await run('findmnt -n -o FSTYPE /')).toBe('erofs\n');
            await run('mkdir -p /sys/fs/bpf/t && bpftool map create /sys/fs/bpf/t/m type sockmap key 4 value 4 entries 2 name m && bpftool map show pinned /sys/fs/bpf/t/m | grep -q sockmap');
          } finally {
            link.close();
          }
        } finally {
          await q.stop();
        }
        console.log(`boot of the pulled image to the step agent, and a sockmap in it: ${((Date.now() - b) / 1000).toFixed(1)} s (TCG)`);
      }, 300_000);
    }

    it('a blob changed in the registry is refused by its digest; the cache keeps nothing of it', async () => {
      expect(layerDigest).toMatch(/^sha256:/);
      const hex = layerDigest.slice(7);
      const data = path.join(store, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data');
      const fd = fs.openSync(data, 'r+');
      try {
        const at = Math.floor(fs.fstatSync(fd).size / 2);
        const b = Buffer.alloc(1);
        fs.readSync(fd, b, 0, 1, at);
        b[0] ^= 0xff;
        fs.writeSync(fd, b, 0, 1, at);
      } finally {
        fs.closeSync(fd);
      }
      for (const ref of [['--digest', manifestDigest], ['--ref', 'amd64-latest']]) {
        const cache = emptyCache('tampered');
        const { code, out } = await cli(['image', 'pull', '--repository', repo, ...ref], { LAB_CACHE_DIR: cache }).done;
        expect(code, tail(out)).toBe(2);
        expect(out).toMatch(new RegExp(`error: the download of 127\\.0\\.0\\.1:\\d+/${NAME}@${layerDigest} hashes to sha256:[0-9a-f]{64}: sha256 mismatch, refused and deleted; nothing was imported`));
        expect(out).not.toMatch(/^\s+at /m);
        expect(contents(cache)).toEqual([]);
        expect(currentImageFolder(cache, 'amd64')).toBeUndefined();
      }
    }, 300_000);
  },
);
