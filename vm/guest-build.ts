// The lab programs of a guest-image VM (BPF objects, helpers, the step agent),
// built in the guest by the image's own toolchain and kept on the host by
// content hash, so the host needs no compiler, and an arm64 guest gets arm64
// programs linked against the image's C library and libbpf.
//
// The key: sha256 of the image's digest (its clang, libbpf and libc) and every
// file bpf/Makefile builds from. The programs for a key live in
// <cache>/guest-build/<arch>-<key>/; a VM whose key is there gets that folder
// shared read-only and builds nothing. Otherwise the VM gets a fresh writable
// folder of its own, its second stage (vm/guest/stage2.sh) runs `make -C bpf`
// into it before it serves the runner (once per change to bpf/: about a minute
// under TCG), and the host renames the folder into place once the guest says
// the build is done. Two first runs at once each build in their own folder;
// the first to finish wins, the other's folder goes with its VM.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { projectRoot } from '../core/paths.ts';

/** The kernel command line word that asks stage2.sh to build, with the key it writes once done. */
export const BUILD_KEY_WORD = 'sml.buildkey';
/** The 9p tag of the build folder's share, mounted at GuestPaths.build. */
export const BUILD_SHARE_TAG = 'build';
/** The file stage2.sh writes into the folder when the build is complete: the key. */
const KEY_FILE = 'key';

/** What bpf/Makefile reads: everything under bpf/ and the step agent's source. */
function buildInputs(): string[] {
  const files: string[] = [];
  const walk = (rel: string) => {
    for (const e of fs.readdirSync(path.join(projectRoot, rel), { withFileTypes: true })) {
      const r = `${rel}/${e.name}`;
      if (e.isDirectory()) walk(r);
      else if (e.isFile()) files.push(r);
    }
  };
  walk('bpf');
  files.push('vm/guest/step-agent.c');
  return files.sort();
}

/** The key of the programs this checkout builds with this image: 16 hex digits. */
export function guestBuildKey(imageDigest: string): string {
  const h = crypto.createHash('sha256').update(`image ${imageDigest}\n`);
  for (const f of buildInputs()) h.update(`${f}\0`).update(fs.readFileSync(path.join(projectRoot, f))).update('\0');
  return h.digest('hex').slice(0, 16);
}

const buildsDir = (cacheDir: string) => path.join(cacheDir, 'guest-build');

export interface GuestBuild {
  key: string;
  /** The host folder the guest sees at GuestPaths.build. */
  dir: string;
  /** true: the guest builds into `dir` as it boots (the share is writable). */
  building: boolean;
  /** After the guest said the build is done: puts `dir` in place for the next VMs; returns where the programs now are. */
  keep(): string;
  /** Removes `dir` if it was not kept (a VM that stopped before its build was done). */
  discard(): void;
}

/** Are the programs this checkout builds with this image there (a boot builds nothing)? */
export function guestBuildReady(cacheDir: string, arch: string, imageDigest: string): boolean {
  const key = guestBuildKey(imageDigest);
  return readKey(path.join(buildsDir(cacheDir), `${arch}-${key}`)) === key;
}

/** The programs for this key, or a fresh folder for the guest to build them in. */
export function prepareGuestBuild(cacheDir: string, arch: string, imageDigest: string): GuestBuild {
  const key = guestBuildKey(imageDigest);
  const root = buildsDir(cacheDir);
  const final = path.join(root, `${arch}-${key}`);
  if (readKey(final) === key) return { key, dir: final, building: false, keep: () => final, discard: () => {} };
  fs.mkdirSync(root, { recursive: true });
  sweep(root, arch, key);
  const dir = fs.mkdtempSync(path.join(root, `.new-${arch}-${key}-${process.pid}-`));
  return {
    key,
    dir,
    building: true,
    keep() {
      if (readKey(dir) !== key) throw new Error(`the guest said it built the lab programs, but ${dir} has no key`);
      if (readKey(final) === key) return final; // another run finished first: use ours until the VM stops
      fs.rmSync(final, { recursive: true, force: true });
      // QEMU holds the share by its open folder: the running guest keeps its view.
      fs.renameSync(dir, final);
      return final;
    },
    discard() {
      // Kept: renamed away, nothing here. Not kept, or another run's was: this VM's own copy goes.
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

function readKey(dir: string): string | undefined {
  try {
    return fs.readFileSync(path.join(dir, KEY_FILE), 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** How many other keys' programs to keep per arch (a warm VM or another checkout may still use them). */
const KEEP_OTHER_KEYS = 3;

/** Removes folders left by builds whose run is gone, and this arch's programs for all but the newest other keys. */
function sweep(root: string, arch: string, key: string): void {
  const others: { name: string; mtime: number }[] = [];
  for (const name of fs.readdirSync(root)) {
    const unfinished = /^\.new-[a-z0-9]+-[0-9a-f]+-(\d+)-/.exec(name);
    if (unfinished) {
      if (!pidAlive(Number(unfinished[1]))) fs.rmSync(path.join(root, name), { recursive: true, force: true });
    } else if (name.startsWith(`${arch}-`) && name !== `${arch}-${key}`) others.push({ name, mtime: fs.statSync(path.join(root, name)).mtimeMs });
  }
  others.sort((a, b) => b.mtime - a.mtime);
  for (const o of others.slice(KEEP_OTHER_KEYS)) fs.rmSync(path.join(root, o.name), { recursive: true, force: true });
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
