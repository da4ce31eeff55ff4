// The README's Quick start, as a new learner on Debian 12 runs it: on a fresh
// Debian 12 root (test/e2e/clean-root.ts: mmdebstrap's apt variant, Node 20 in
// /usr/local as nodejs.org ships it, a clone of this checkout), as root, run
// exactly the learner's commands, `./setup.sh` then `npm run lab 1`, and
// `npm run lab 1` once more (then `./setup.sh` again: all found done). Each
// exits 0 and leaves nothing running; lab 01
// passes both times; and set-up did the slow parts: the first run after it
// does no more work than the second (CPU time within 1.2x; wall time within
// 1.2x, with room for the ±30% one run swings on a shared machine) and builds
// nothing.
//
// What is cached between runs, and why that keeps the test honest: the
// bootstrap root (clean-root.ts), apt's downloaded .debs (a folder bound on
// the root's /var/cache/apt/archives: apt checks every cached archive against
// the signed index's hash and installs it exactly as a download) and npm's
// content cache (bound on /root/.npm/_cacache: `npm ci` checks each tarball
// against package-lock.json's integrity). Only bytes fetched from Debian's and
// npm's servers are saved, never an installed file. The guest image's own
// ~250 MB of packages are hard-linked in from this machine's image download
// cache when it has them (.ci/run's own image build fills it, on the same
// download code; each file is the exact name_version_arch.deb apt verified when
// it fetched it, and the build picks them by that name, as a learner's second
// build would): CI time, not a different path. CLEAN_ROOM_FRESH_DOWNLOADS=1
// turns the seeding off (the build downloads them in the root).
//
// Time, measured on the 2-core machine shared with other jobs (load 12-30):
// 13-14 min, set-up 12 min of it (the image build ~4.5-5.5 min, the guest
// build of the lab programs ~4.5-5.5 min, npm ci 20-40 s, apt ~30 s), each
// lab run 16-23 s, set-up again 2 s; a cold bootstrap adds ~2 min. On an idle
// machine the issue's figures (set-up and a lab: 2 min 15 s, lab programs
// ~30 s) suggest 4-5 min. The closing log line gives each part's time.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { placesFrom } from '../../core/config.ts';
import { imagesDir } from '../../vm/image-verify.ts';
import { addUser, cleanRootUnavailable, makeCleanRoot, runInRoot, type CleanRoot, type RunResult } from './clean-root.ts';

const skip = cleanRootUnavailable() ?? (process.arch === 'x64' ? undefined : 'the clean root is amd64 (x86_64 hosts only)');
if (skip) console.warn(`clean-room test skipped: ${skip}`);

const testCache = path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'sockmap-labs-test');
const binds = () => {
  const apt = path.join(testCache, 'apt-archives');
  const npm = path.join(testCache, 'npm-cacache');
  fs.mkdirSync(path.join(apt, 'partial'), { recursive: true });
  fs.mkdirSync(npm, { recursive: true });
  return [
    { host: apt, inRoot: '/var/cache/apt/archives' },
    { host: npm, inRoot: '/root/.npm/_cacache' },
  ];
};

/** Hard-links this machine's downloaded image packages into the root's cache (see above); how many. */
function seedImageDebs(root: CleanRoot): number {
  if (process.env.CLEAN_ROOM_FRESH_DOWNLOADS === '1') return 0;
  const from = path.join(imagesDir(placesFrom().cacheDir), 'debs', 'amd64');
  if (!fs.existsSync(from)) return 0;
  const to = path.join(root.dir, 'root/.cache/sockmap-labs/images/debs/amd64');
  fs.mkdirSync(to, { recursive: true });
  let n = 0;
  for (const f of fs.readdirSync(from)) {
    if (!f.endsWith('.deb')) continue;
    try {
      fs.linkSync(path.join(from, f), path.join(to, f));
    } catch {
      fs.copyFileSync(path.join(from, f), path.join(to, f)); // another file system
    }
    n++;
  }
  return n;
}

const strip = (s: string) => s.replace(/\x1b\[[0-9;]*[A-Za-z]/g, '');
const tailOf = (r: RunResult, n = 40) => `exit ${r.code}${r.timedOut ? ' (timed out)' : ''} after ${(r.ms / 1000).toFixed(1)} s; last ${n} lines:\n${strip(r.out).trimEnd().split('\n').slice(-n).join('\n')}`;
const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/** The learner's guest image in the root: its folder (arch-inputs digest) and image digest, for comparing with another build. */
function imageInRoot(root: CleanRoot): { folder: string; digest: string } | undefined {
  const images = path.join(root.dir, 'root/.cache/sockmap-labs/images');
  try {
    const folder = fs.readFileSync(path.join(images, 'current-amd64'), 'utf8').trim();
    const manifest = JSON.parse(fs.readFileSync(path.join(images, folder, 'manifest.json'), 'utf8')) as { digest: string };
    return { folder, digest: manifest.digest };
  } catch {
    return undefined;
  }
}

describe.skipIf(!!skip)("the README's learner commands on a fresh Debian 12 root", () => {
  let root: CleanRoot;
  const times: string[] = [];
  beforeAll(async () => {
    root = await makeCleanRoot({ log: (l) => console.log(l) });
    times.push(`root ${secs(root.bootstrap.ms)} (${root.bootstrap.cached ? 'cached bootstrap' : 'bootstrapped now'})`);
  }, 15 * 60_000);
  afterAll(() => {
    root?.remove();
    console.log(`clean room times: ${times.join(', ')}`);
  });

  const learner = (cmd: string, timeoutMs: number) => runInRoot(root, cmd, { binds: binds(), timeoutMs });

  it('./setup.sh as a user who is not root: the one sudo line, with everything it will need, and nothing else done', async () => {
    // A copy of the checkout in the user's home (root's is not theirs to read); the root's own stays untouched.
    await addUser(root, 'learner');
    const copy = await runInRoot(root, 'cp -r . /home/learner/sockmap-labs && chown -R learner: /home/learner/sockmap-labs', { timeoutMs: 60_000 });
    expect(copy.code, tailOf(copy)).toBe(0);
    const r = await runInRoot(root, './setup.sh', { user: 'learner', cwd: '/home/learner/sockmap-labs', timeoutMs: 60_000 });
    const out = strip(r.out);
    expect(r.code, tailOf(r)).toBe(1);
    const sudo = out.split('\n').filter((l) => /\bsudo\b/.test(l));
    expect(sudo, out).toEqual(['    sudo apt-get update && sudo apt-get install -y --no-install-recommends qemu-system-x86 erofs-utils kmod xz-utils']);
    expect(out).not.toContain('installing npm dependencies');
    expect(fs.existsSync(path.join(root.dir, 'home/learner/sockmap-labs/node_modules'))).toBe(false);
  }, 120_000);

  it(
    './setup.sh, then npm run lab 1 twice: each exits 0, lab 01 passes, the first run is no slower than the second',
    async () => {
      const seeded = seedImageDebs(root);
      console.log(`clean room: ${seeded ? `${seeded} image packages hard-linked in from this machine's download cache` : "the image's packages are downloaded in the root"}`);
      const setup = await learner('./setup.sh', 25 * 60_000);
      times.push(`./setup.sh ${secs(setup.ms)}`);
      const image = imageInRoot(root);
      console.log(`clean room: ./setup.sh exit ${setup.code} in ${secs(setup.ms)}; guest image ${image ? `${image.folder}, image digest ${image.digest}` : 'none'}`);
      console.log(`clean room: ./setup.sh output:\n${strip(setup.out).trimEnd()}`);
      expect(setup.code, tailOf(setup)).toBe(0);
      expect(setup.leftover, 'set-up left processes running').toEqual([]);
      expect(image, 'set-up made no guest image').toBeDefined();
      // Reproducible (issue 20): the same inputs built on this machine (.ci/run's `npm run image build`, setup's)
      // and in the clean root give the same bytes, so an image digest means the same thing on every machine.
      const here = path.join(imagesDir(placesFrom().cacheDir), image!.folder, 'manifest.json');
      if (fs.existsSync(here)) {
        const digestHere = (JSON.parse(fs.readFileSync(here, 'utf8')) as { digest: string }).digest;
        console.log(`clean room: this machine's build of ${image!.folder}: image digest ${digestHere}`);
        expect(image!.digest, `the clean root built ${image!.folder} as ${image!.digest}, this machine as ${digestHere}`).toBe(digestHere);
      } else console.log(`clean room: this machine has no build of ${image!.folder} to compare the digest with`);

      const first = await learner('npm run lab 1', 5 * 60_000);
      times.push(`first npm run lab 1 ${secs(first.ms)}`);
      expect(first.code, tailOf(first)).toBe(0);
      expect(strip(first.out), tailOf(first)).toMatch(/✔ PASS Lab 01 /);
      expect(first.leftover, 'lab 1 left processes running').toEqual([]);

      const second = await learner('npm run lab 1', 5 * 60_000);
      times.push(`second npm run lab 1 ${secs(second.ms)}`);
      expect(second.code, tailOf(second)).toBe(0);
      expect(strip(second.out), tailOf(second)).toMatch(/✔ PASS Lab 01 /);
      expect(second.leftover, 'lab 1 left processes running').toEqual([]);

      const cpu = (r: RunResult) => (r.cpuMs === undefined ? '?' : secs(r.cpuMs));
      console.log(
        `clean room: first npm run lab 1 ${secs(first.ms)} (CPU ${cpu(first)}), second ${secs(second.ms)} (CPU ${cpu(second)}): ` +
          `${(first.ms / second.ms).toFixed(2)}x wall, ${first.cpuMs && second.cpuMs ? (first.cpuMs / second.cpuMs).toFixed(2) : '?'}x CPU`,
      );
      console.log(`clean room: first npm run lab 1:\n${strip(first.out).trimEnd()}\n\nclean room: second npm run lab 1:\n${strip(second.out).trimEnd()}`);
      // Set-up did the one-time work: the first run builds nothing in the guest,
      expect(strip(first.out)).not.toContain('building the lab programs in the guest');
      // and does no more work than the second: CPU time (user + system, QEMU's included),
      // which the other jobs of a shared machine stretch far less than the wall time,
      expect(first.cpuMs, `first run's CPU ${cpu(first)}, second's ${cpu(second)}`).toBeLessThanOrEqual(1.2 * second.cpuMs! + 500);
      // and the wait: 1.2x, with room for the ±30% one run of a few seconds swings here.
      expect(first.ms, `first run ${secs(first.ms)}, second ${secs(second.ms)}`).toBeLessThanOrEqual(1.2 * 1.3 * second.ms);

      // Set-up again: every part is found done, nothing is installed, built or booted.
      const again = await learner('./setup.sh', 5 * 60_000);
      times.push(`./setup.sh again ${secs(again.ms)}`);
      const said = strip(again.out);
      expect(again.code, tailOf(again)).toBe(0);
      expect(said).toContain('==> system packages: all present');
      expect(said).toContain('==> guest image: present');
      expect(said).toContain('==> lab programs: built');
      expect(said).not.toMatch(/installing|building|starting qemu/);
      expect(again.leftover).toEqual([]);
    },
    40 * 60_000,
  );
});
