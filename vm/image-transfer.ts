// Moving a guest image between machines as one file, for a classroom without
// network: `npm run image export FILE` on a machine that built it, copy FILE
// to USB sticks, `npm run image import FILE` on each learner's machine.
//
// The file is a ustar archive (vm/image-files.ts) of the image folder: the
// manifest first, then vmlinuz, the initramfs and rootfs.erofs. An import
// unpacks it into a temporary folder in the cache, hashing each file as it is
// written, checks everything against the manifest, and only then renames the
// folder into place: a truncated, damaged or foreign file leaves nothing behind.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { UserError } from '../core/errors.ts';
import { checkOutputFile, commitOutput, partialName, prepareOutputDir, writeError } from '../core/output-file.ts';
import { readTar, TarError, writeTar } from './image-files.ts';
import {
  buildFix,
  currentImageFolder,
  IMAGE_FILES,
  imageFolderName,
  imagesDir,
  MANIFEST,
  readManifest,
  recordHashed,
  removeOtherImages,
  requireArch,
  setCurrentImage,
  verifyImage,
  type ImageArch,
  type ImageManifest,
} from './image-verify.ts';

const removeQuietly = (p: string) => fs.rmSync(p, { recursive: true, force: true });

/** Writes the current `arch` image (checked in full first) to `file`, atomically. */
export async function exportImage(o: { cacheDir: string; arch: ImageArch; file: string; signal?: AbortSignal; log?: (l: string) => void }): Promise<{ manifest: ImageManifest; bytes: number; file: string }> {
  // The target first (before hashing 300 MB): a regular file or a new one in an existing folder, never a device,
  // FIFO, folder or /proc (core/output-file.ts), so nothing that is not a regular file is ever replaced.
  const out = checkOutputFile(o.file, { what: 'the export file', suggest: `sockmap-labs-image-${o.arch}.tar` });
  const folder = currentImageFolder(o.cacheDir, o.arch);
  if (!folder) throw new UserError(`no ${o.arch} guest image to export in ${imagesDir(o.cacheDir)}`, buildFix(o.arch));
  const dir = path.join(imagesDir(o.cacheDir), folder);
  const { manifest } = await verifyImage(dir, { arch: o.arch, full: true, signal: o.signal, onHash: o.log });
  const tmp = partialName(out);
  o.log?.(`writing ${out}`);
  prepareOutputDir(out, 'the export file');
  try {
    await writeTar(tmp, `sockmap-labs-image-${folder}`, [MANIFEST, ...IMAGE_FILES].map((f) => [f, path.join(dir, f)] as [string, string]), o.signal, manifest.sourceDateEpoch ?? 0);
    // Written in full and flushed before it takes the name: a full disk is an error here, never an "exported" half file.
    const fd = fs.openSync(tmp, 'r+');
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  } catch (e) {
    removeQuietly(tmp);
    if (e instanceof UserError || o.signal?.aborted) throw e;
    const err = writeError(e, out, 'the export file');
    throw new UserError(err.message, (e as NodeJS.ErrnoException).code === 'ENOSPC' ? 'free some space, or name a file on a disk with room for it (about 330 MB)' : err.fix);
  }
  commitOutput(tmp, out, 'the export file');
  return { manifest, bytes: fs.statSync(out).size, file: out };
}

export interface ImportResult {
  manifest: ImageManifest;
  dir: string;
  /** false: the same image was already in the cache. */
  added: boolean;
}

/**
 * Imports an exported image file into the cache and makes it the one boots of
 * its architecture use. `arch`, when given, is the architecture the image must
 * be for.
 */
export async function importImage(o: {
  cacheDir: string;
  file: string;
  arch?: ImageArch;
  signal?: AbortSignal;
  log?: (l: string) => void;
  /** Where the file came from, for messages, and what to do when it is bad (a pull: its registry, and pulling again). */
  source?: { name: string; fix: string };
  /** More checks of the image's manifest, run as soon as it is read, before the files behind it (a pull checks the inputs it was published for). */
  checkManifest?: (m: ImageManifest) => void;
}): Promise<ImportResult> {
  const file = path.resolve(o.file);
  if (!fs.existsSync(file) || !fs.statSync(file).isFile()) throw new UserError(`${file} does not exist (or is not a file)`, 'name the file an instructor made with: npm run image export FILE');
  const images = imagesDir(o.cacheDir);
  fs.mkdirSync(images, { recursive: true });
  const tmp = path.join(images, `.import-${process.pid}-${crypto.randomBytes(4).toString('hex')}`);
  fs.mkdirSync(tmp);
  const name = o.source?.name ?? file;
  const refetch = o.source?.fix ?? `copy ${path.basename(file)} again from the original (or export it again there: npm run image export FILE)`;
  const bad = (why: string) => new UserError(`${name} is not a sound guest image: ${why}; nothing was imported`, refetch);
  try {
    o.log?.(`unpacking ${name}`);
    // The manifest comes first: a wrong architecture or a damaged manifest
    // stops the import before the 300 MB behind it are read.
    let manifest: ImageManifest | undefined;
    const checkManifest = (folder: string) => {
      try {
        manifest = readManifest(tmp);
      } catch (e) {
        throw bad((e as Error).message.replace(/^the guest image in \S+ /, 'its manifest: '));
      }
      if (o.arch) requireArch(manifest, o.arch, `in ${name}`, `--arch asks for ${o.arch}; nothing was imported`);
      const want = `sockmap-labs-image-${imageFolderName(manifest.arch, manifest.inputsDigest)}`;
      if (folder !== want) throw bad(`its folder ${folder} does not match its manifest (${want})`);
      o.checkManifest?.(manifest);
    };
    let members;
    try {
      members = await readTar(file, tmp, (n) => n === MANIFEST || (IMAGE_FILES as readonly string[]).includes(n), {
        signal: o.signal,
        onMember: (m, folder) => {
          if (m.name === MANIFEST) checkManifest(folder);
          else if (!manifest) throw bad(`${m.name} comes before ${MANIFEST}`);
        },
      });
    } catch (e) {
      if (e instanceof TarError) throw bad(e.message);
      throw e;
    }
    for (const f of [MANIFEST, ...IMAGE_FILES]) if (!members.members.some((m) => m.name === f)) throw bad(`it has no ${f}`);
    if (!manifest) throw bad(`it has no ${MANIFEST}`);
    const folder = imageFolderName(manifest.arch, manifest.inputsDigest);
    const hashes: Record<string, string> = {};
    for (const m of members.members) {
      hashes[m.name] = m.sha256;
      const want = manifest.files[m.name as (typeof IMAGE_FILES)[number]];
      if (!want) continue;
      if (m.size !== want.size) throw bad(`${m.name}: ${m.size} bytes, its manifest says ${want.size}`);
      if (m.sha256 !== want.sha256) throw bad(`${m.name}: sha256 mismatch`);
    }
    recordHashed(tmp, manifest, hashes);
    const final = path.join(images, folder);
    let added = true;
    if (fs.existsSync(final)) {
      // The same inputs name the folder; keep it only if it holds this very
      // image (the same files), sound. Another build of the same inputs (made
      // here, or elsewhere) is replaced: the file asked for is what boots.
      try {
        added = (await verifyImage(final, { arch: manifest.arch, signal: o.signal })).manifest.digest !== manifest.digest;
      } catch (e) {
        if (o.signal?.aborted) throw e;
      }
      if (added) removeQuietly(final);
    }
    if (added) fs.renameSync(tmp, final);
    setCurrentImage(o.cacheDir, manifest.arch, folder);
    for (const n of removeOtherImages(o.cacheDir, manifest.arch, folder)) o.log?.(`removed the older image ${n}`);
    return { manifest, dir: final, added };
  } finally {
    removeQuietly(tmp);
  }
}
