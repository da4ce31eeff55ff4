// A guest image is checked before it is ever booted: its manifest parses,
// its architecture is the one asked for, and every file has the size and
// sha256 the manifest records. Hashing ~300 MB costs seconds, so the full
// check runs when an image is built or imported (and on `npm run image
// verify`), and records a stamp — each file's size, mtime, ctime and inode as
// they were when they hashed right. A boot compares the stamp (a few stat
// calls) and hashes again only when it no longer matches.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { GUEST_ARCHES, hostArch, type GuestArch } from '../core/arch.ts';
import { UserError } from '../core/errors.ts';

export { hostArch };
export const IMAGE_ARCHES = GUEST_ARCHES;
export type ImageArch = GuestArch;

/** The files of an image folder besides its manifest, in the order an export writes them (kernel.config: the kernel's build config, for the host's checks of what labs need). */
export const IMAGE_FILES = ['vmlinuz', 'initramfs.cpio.gz', 'kernel.config', 'rootfs.erofs'] as const;
export type ImageFile = (typeof IMAGE_FILES)[number];
export const MANIFEST = 'manifest.json';
/** The stamp of the last full check (not part of the image: never exported). */
export const STAMP = 'verified.json';

export const MANIFEST_FORMAT = 1;

export interface ImageManifest {
  format: 1;
  arch: ImageArch;
  /** sha256 of the three files' "sha256  name" lines: one value naming the image's bytes. */
  digest: string;
  /** Each file's size and sha256. */
  files: Record<ImageFile, { size: number; sha256: string }>;
  /** What the image was built from (arch, package versions, init, build script); the folder is named after its first 16 digits. */
  inputsDigest: string;
  /** sha256 of vm/guest/image-init and the build scripts alone: a boot can tell, without apt, that the checkout's init changed. */
  scriptsDigest: string;
  kernelRelease: string;
  /** name=version, sorted; the kernel package among them. */
  packages: string[];
  /** The modules the initramfs loads, in order. */
  bootModules: string[];
  /** mkfs.erofs options the root was made with. */
  erofs: string;
  /** The one time stamp of every file in the root (the newest package file's; mkfs.erofs -T): absent in images built before builds were reproducible. */
  sourceDateEpoch?: number;
  builtAt: string;
  buildSeconds: number;
}

/** The commands that fix a bad image, for every message below. */
export const buildFix = (arch: ImageArch) => `npm run image build${arch === hostArch() ? '' : ` -- --arch ${arch}`}`;
const fixFor = (arch: ImageArch) => `${buildFix(arch)}   (or, from an instructor's file: npm run image import FILE)`;

export function isImageArch(a: string): a is ImageArch {
  return (IMAGE_ARCHES as readonly string[]).includes(a);
}

/** sha256 of a file, streamed. */
export async function sha256File(file: string, signal?: AbortSignal): Promise<string> {
  const hash = crypto.createHash('sha256');
  const fd = await fs.promises.open(file, 'r');
  try {
    const buf = Buffer.alloc(1 << 20);
    for (;;) {
      signal?.throwIfAborted();
      const { bytesRead } = await fd.read(buf, 0, buf.length, null);
      if (!bytesRead) break;
      hash.update(buf.subarray(0, bytesRead));
    }
  } finally {
    await fd.close();
  }
  return hash.digest('hex');
}

/** The manifest's `digest`: one hash over the files' hashes. */
export function imageDigest(files: ImageManifest['files']): string {
  return crypto
    .createHash('sha256')
    .update(IMAGE_FILES.map((f) => `${files[f].sha256}  ${f}\n`).join(''))
    .digest('hex');
}

const HEX64 = /^[0-9a-f]{64}$/;

/** Reads and checks the shape of `dir`'s manifest; anything wrong is a UserError naming the fix. */
export function readManifest(dir: string, arch?: ImageArch): ImageManifest {
  const file = path.join(dir, MANIFEST);
  const fix = fixFor(arch ?? hostArch() ?? 'amd64');
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    throw new UserError(`the guest image in ${dir} has no ${MANIFEST}: it is incomplete`, fix);
  }
  let m: ImageManifest;
  try {
    m = JSON.parse(text);
  } catch (e) {
    throw new UserError(`the guest image in ${dir} is corrupt (${MANIFEST} does not parse: ${(e as Error).message})`, fix);
  }
  if (typeof m !== 'object' || m === null) throw new UserError(`the guest image in ${dir} is corrupt (${MANIFEST} is not an object)`, fix);
  if (m.format !== MANIFEST_FORMAT)
    throw new UserError(`the guest image in ${dir} has manifest format ${JSON.stringify(m.format)}; this checkout reads format ${MANIFEST_FORMAT}`, fix);
  const bad = (what: string) => new UserError(`the guest image in ${dir} is corrupt (${MANIFEST}: ${what})`, fix);
  if (!isImageArch(String(m.arch))) throw bad(`unknown arch ${JSON.stringify(m.arch)}`);
  if (typeof m.files !== 'object' || m.files === null) throw bad('no files');
  for (const f of IMAGE_FILES) {
    const e = m.files[f];
    if (!e || !Number.isSafeInteger(e.size) || e.size < 0 || !HEX64.test(String(e.sha256))) throw bad(`no valid size and sha256 for ${f}`);
  }
  if (m.digest !== imageDigest(m.files)) throw bad('its digest does not match its files');
  if (!HEX64.test(String(m.inputsDigest))) throw bad('no inputsDigest');
  if (typeof m.kernelRelease !== 'string' || !m.kernelRelease) throw bad('no kernelRelease');
  return m;
}

/** Throws the wrong-architecture error when `m` is not for `arch`. */
export function requireArch(m: ImageManifest, arch: ImageArch, where: string, wanted = `this guest is ${arch}: it cannot boot`): void {
  if (m.arch !== arch)
    throw new UserError(
      `the guest image ${where} is for ${m.arch}, but ${wanted}`,
      `${buildFix(arch)}   (or import an ${arch} image: npm run image import FILE)`,
    );
}

interface FileStamp {
  size: number;
  mtimeMs: number;
  ctimeMs: number;
  ino: number;
  dev: number;
}

type Stamp = { digest: string; verifiedAt: string; files: Record<string, FileStamp> };

function statStamp(file: string): FileStamp | undefined {
  try {
    const s = fs.statSync(file);
    return { size: s.size, mtimeMs: s.mtimeMs, ctimeMs: s.ctimeMs, ino: s.ino, dev: s.dev };
  } catch {
    return undefined;
  }
}

const sameStamp = (a?: FileStamp, b?: FileStamp) =>
  !!a && !!b && a.size === b.size && a.mtimeMs === b.mtimeMs && a.ctimeMs === b.ctimeMs && a.ino === b.ino && a.dev === b.dev;

/** True when the last full check's stamp still describes every file of the image (the manifest included). */
function stampHolds(dir: string, m: ImageManifest): boolean {
  let stamp: Stamp;
  try {
    stamp = JSON.parse(fs.readFileSync(path.join(dir, STAMP), 'utf8'));
  } catch {
    return false;
  }
  if (stamp.digest !== m.digest) return false;
  return [MANIFEST, ...IMAGE_FILES].every((f) => sameStamp(stamp.files?.[f], statStamp(path.join(dir, f))));
}

function writeStamp(dir: string, m: ImageManifest): void {
  const files: Record<string, FileStamp> = {};
  for (const f of [MANIFEST, ...IMAGE_FILES]) files[f] = statStamp(path.join(dir, f))!;
  const stamp: Stamp = { digest: m.digest, verifiedAt: new Date().toISOString(), files };
  const tmp = path.join(dir, `${STAMP}.${process.pid}.tmp`);
  try {
    fs.writeFileSync(tmp, JSON.stringify(stamp, null, 2) + '\n');
    fs.renameSync(tmp, path.join(dir, STAMP));
  } catch {
    // A read-only cache (an image on a shared or read-only disk) is still
    // bootable: it is just hashed again next time.
    fs.rmSync(tmp, { force: true });
  }
}

/**
 * Records that `dir`'s files were hashed and match `m` (an import hashes them
 * as it writes them): the stamp a later boot trusts. Throws if `hashes` do not
 * match the manifest, so nothing is ever stamped unchecked.
 */
export function recordHashed(dir: string, m: ImageManifest, hashes: Record<string, string>): void {
  for (const f of IMAGE_FILES) if (hashes[f] !== m.files[f].sha256) throw new Error(`recordHashed: ${f} does not match the manifest`);
  writeStamp(dir, m);
}

export interface VerifyOptions {
  /** The guest architecture the image must be for. */
  arch: ImageArch;
  /** Hash every file even when the stamp matches (build, import, `image verify`). */
  full?: boolean;
  signal?: AbortSignal;
  /** Told before a full hash starts (it takes seconds). */
  onHash?: (why: string) => void;
}

/**
 * Checks the image in `dir` before it is used: manifest, architecture, and
 * every file's size and sha256 (or the stamp of the last check that hashed
 * them). Returns the manifest; throws a UserError naming the fix otherwise.
 * `how` tells whether the files were hashed now or the stamp vouched for them.
 */
export async function verifyImage(dir: string, o: VerifyOptions): Promise<{ manifest: ImageManifest; how: 'hashed' | 'stamp' }> {
  const m = readManifest(dir, o.arch);
  requireArch(m, o.arch, `in ${dir}`);
  const corrupt = (what: string) =>
    new UserError(`the guest image in ${dir} is corrupt (${what}); it will not be booted`, `${fixFor(o.arch)}; the image is rebuilt or replaced in place`);
  for (const f of IMAGE_FILES) {
    const st = statStamp(path.join(dir, f));
    if (!st) throw corrupt(`${f} is missing`);
    if (st.size !== m.files[f].size) throw corrupt(`${f}: ${st.size} bytes, the manifest says ${m.files[f].size}${st.size < m.files[f].size ? ': truncated' : ''}`);
  }
  if (!o.full && stampHolds(dir, m)) return { manifest: m, how: 'stamp' };
  o.onHash?.(o.full ? 'checking every file of the guest image (sha256)' : 'the guest image changed since its last check: checking its files (sha256)');
  for (const f of IMAGE_FILES) {
    const sum = await sha256File(path.join(dir, f), o.signal);
    if (sum !== m.files[f].sha256) throw corrupt(`${f}: sha256 mismatch`);
  }
  writeStamp(dir, m);
  return { manifest: m, how: 'hashed' };
}

/** The cache's folder of images. */
export const imagesDir = (cacheDir: string) => path.join(cacheDir, 'images');

const gbOrMb = (n: number) => (n >= 1e9 ? `${(n / 1e9).toFixed(1)} GB` : `${(n / 1e6).toFixed(1)} MB`);

/** Stops `doing` (a build, a pull) with the fix when `dir`'s disk has less than `bytes` free; free space that cannot be read passes. */
export function requireFreeSpace(dir: string, bytes: number, doing: string): void {
  let free: number;
  try {
    const s = fs.statfsSync(dir);
    free = s.bavail * s.bsize;
  } catch {
    return;
  }
  if (free < bytes) throw new UserError(`${doing} needs about ${gbOrMb(bytes)} free in ${dir}; there are ${gbOrMb(free)}`, 'free some space, or set LAB_CACHE_DIR to a folder on a bigger disk');
}

/** An image's folder name: its arch and the first 16 hex digits of its inputs digest. */
export const imageFolderName = (arch: ImageArch, inputsDigest: string) => `${arch}-${inputsDigest.slice(0, 16)}`;

const currentFile = (cacheDir: string, arch: ImageArch) => path.join(imagesDir(cacheDir), `current-${arch}`);

/** Makes `folder` the image a boot of `arch` uses (build and import do). */
export function setCurrentImage(cacheDir: string, arch: ImageArch, folder: string): void {
  const file = currentFile(cacheDir, arch);
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, folder + '\n');
  fs.renameSync(tmp, file);
}

/** Image folders in the cache (complete or not), by name. */
export function listImageFolders(cacheDir: string): string[] {
  const dir = imagesDir(cacheDir);
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((n) => /^(amd64|arm64)-[0-9a-f]{16}$/.test(n) && fs.statSync(path.join(dir, n)).isDirectory())
    .sort();
}

/**
 * Removes the other images of `arch` (an older build, an earlier import): one
 * image per architecture stays, ~320 MB each. A VM still running from a removed
 * image keeps its open file. Returns the folders removed.
 */
export function removeOtherImages(cacheDir: string, arch: ImageArch, keep: string): string[] {
  const gone = listImageFolders(cacheDir).filter((n) => n.startsWith(`${arch}-`) && n !== keep);
  for (const n of gone) fs.rmSync(path.join(imagesDir(cacheDir), n), { recursive: true, force: true });
  return gone;
}

/** The folder a boot of `arch` would use: the one build or import made current, else the newest one of that arch. */
export function currentImageFolder(cacheDir: string, arch: ImageArch): string | undefined {
  try {
    const name = fs.readFileSync(currentFile(cacheDir, arch), 'utf8').trim();
    if (name && fs.existsSync(path.join(imagesDir(cacheDir), name))) return name;
  } catch {
    /* none recorded */
  }
  const mine = listImageFolders(cacheDir).filter((n) => n.startsWith(`${arch}-`));
  const mtime = (n: string) => fs.statSync(path.join(imagesDir(cacheDir), n)).mtimeMs;
  return mine.sort((a, b) => mtime(b) - mtime(a))[0];
}

/** What a boot needs from an image. */
export interface GuestImage {
  dir: string;
  manifest: ImageManifest;
  rootfs: string;
  kernel: string;
  initramfs: string;
  /** The kernel's build config (CONFIG_…=y lines). */
  config: string;
}

/**
 * The guest image a boot of `arch` uses, checked (stamp, or a full hash when
 * the stamp no longer holds). A missing, corrupt or wrong-architecture image
 * is a UserError with the fixing command: it is never booted.
 */
export async function openImage(cacheDir: string, arch: ImageArch, o: Omit<VerifyOptions, 'arch' | 'full'> = {}): Promise<GuestImage> {
  const name = currentImageFolder(cacheDir, arch);
  if (!name) throw new UserError(`no ${arch} guest image in ${imagesDir(cacheDir)}`, fixFor(arch));
  const dir = path.join(imagesDir(cacheDir), name);
  const { manifest } = await verifyImage(dir, { ...o, arch });
  const at = (f: ImageFile) => path.join(dir, f);
  return { dir, manifest, rootfs: at('rootfs.erofs'), kernel: at('vmlinuz'), initramfs: at('initramfs.cpio.gz'), config: at('kernel.config') };
}
