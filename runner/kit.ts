// `npm run kit -- DIR`: what a class needs to install and run the labs with no
// network, written into DIR (a USB stick):
//
//   OFFLINE.md                 the steps, in order, with this kit's file names
//   kit.json                   what the kit holds (commit, versions, each file's size), for re-runs
//   sockmap-labs.tar.gz        the project: the committed checkout (git archive HEAD)
//   images/                    both guest images, as `npm run image export` writes them
//   npm-cache/                 every npm package of package-lock.json, every class platform's (npm ci --offline --cache)
//   node/                      Node 20 for Linux x64/arm64 and macOS arm64/x64, npm, install-node.sh
//   debs/debian12-<arch>/      QEMU for Debian 12 laptops and what it needs beyond a minimal Debian 12
//
// Safe with DIR: a file, a device or a virtual file system is refused; a
// missing DIR is made only when its parent exists (a stick not mounted is an
// error, not a folder on the root disk); the kit's own names must be free or
// the kit's (kit.json says which files it wrote); nothing else in DIR is
// touched. Each file is written beside its place and renamed in. Run again,
// it keeps what is there and sound (size and time as kit.json recorded them),
// writes what is missing or changed, and removes only files an earlier run
// wrote that this kit no longer holds.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { UserError } from '../core/errors.ts';
import { partialName } from '../core/output-file.ts';
import { projectRoot } from '../core/paths.ts';
import { buildImage } from '../vm/image.ts';
import { exportImage } from '../vm/image-transfer.ts';
import { buildFix, currentImageFolder, hostArch, imagesDir, readManifest, requireFreeSpace, type ImageArch } from '../vm/image-verify.ts';
import { debsUnavailable, fetchDebs, SETUP_PACKAGES } from './kit-debs.ts';
import { checkOfflineInstalls, fillNpmCache, installNodeScript, lockSpecs, newestMajor, packInto, PLATFORMS, platformName, type Platform } from './kit-npm.ts';
import { offlineGuide } from './kit-guide.ts';

const run = promisify(execFile);

export const KIT_FILE = 'kit.json';
/** The names the kit writes at the top of DIR. */
export const KIT_NAMES = ['OFFLINE.md', KIT_FILE, 'sockmap-labs.tar.gz', 'images', 'npm-cache', 'node', 'debs'] as const;
const NODE_MAJOR = 20;
const NPM_MAJOR = 10;

interface Recorded {
  size: number;
  mtimeMs: number;
}

export interface KitRecord {
  format: 1;
  /** false while the kit is being made (a run stopped half-way leaves it so; the next run finishes it). */
  complete: boolean;
  made: string;
  commit: string;
  /** Uncommitted changes in the checkout the kit was made from (not in the kit). */
  dirty: string[];
  images: Partial<Record<ImageArch, { file: string; digest: string; kernel: string }>>;
  node?: { version: Record<string, string>; npm: string; files: Record<string, string> };
  npm: { lockSha: string; packages: number; checked: string[]; note?: string };
  debs: Partial<Record<ImageArch, { packages: string[]; base: number }>>;
  /** Every file the kit wrote, relative to DIR (not the npm cache's: npm's own layout). */
  files: Record<string, Recorded>;
  /** Where a part could not be made here, and what the instructor adds by hand. */
  missing: string[];
}

export interface KitOptions {
  dir: string;
  cacheDir: string;
  arches: ImageArch[];
  /** Build a guest image that is not in the cache (else: stop and say how). */
  build: boolean;
  /** Check the offline installs on every platform (npm ci --offline --os --cpu). */
  check: boolean;
  log: (l: string) => void;
  signal?: AbortSignal;
}

const mb = (n: number) => (n >= 1e9 ? `${(n / 1e9).toFixed(2)} GB` : `${(n / 1e6).toFixed(1)} MB`);
const VIRTUAL = ['/proc', '/sys', '/dev', '/run'];

/** DIR checked, and made when only DIR itself is missing; returns its real path and what it holds already. */
export function prepareKitDir(given: string, cwd = process.env.INIT_CWD || process.cwd()): { dir: string; existing: string[]; previous?: KitRecord } {
  if (!given.trim()) throw new UserError('the kit folder is empty ("")', 'npm run kit -- /media/$USER/STICK   (a folder on the stick)');
  const dir = path.resolve(cwd, given);
  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new UserError(`cannot use ${dir} for the kit: ${(e as Error).message}`, 'name a folder you can write');
  }
  const real = st ? fs.realpathSync(dir) : dir;
  if (VIRTUAL.some((v) => real === v || real.startsWith(`${v}/`))) throw new UserError(`${real} is on a kernel file system, not a disk`, 'npm run kit -- /media/$USER/STICK   (a folder on the stick)');
  if (st && !st.isDirectory()) throw new UserError(`${dir} is ${st.isFile() ? 'a file' : 'not a folder'}: the kit is a folder of files`, `name a folder (it is made if its parent exists): npm run kit -- ${path.join(path.dirname(dir), 'sockmap-labs-kit')}`);
  if (!st) {
    const parent = path.dirname(dir);
    if (!fs.existsSync(parent) || !fs.statSync(parent).isDirectory())
      throw new UserError(`the folder ${parent} does not exist (is the stick mounted?)`, `mount the stick, or make the folder first: mkdir -p ${parent}`);
    try {
      fs.mkdirSync(dir);
    } catch (e) {
      throw new UserError(`cannot make ${dir}: ${(e as Error).message}`, 'name a folder on a disk you can write');
    }
    return { dir, existing: [] };
  }
  try {
    fs.accessSync(real, fs.constants.W_OK);
  } catch {
    throw new UserError(`${real} is not writable`, 'mount the stick writable, or name a folder you can write');
  }
  const existing = fs.readdirSync(real).sort();
  let previous: KitRecord | undefined;
  if (existing.includes(KIT_FILE)) {
    try {
      previous = JSON.parse(fs.readFileSync(path.join(real, KIT_FILE), 'utf8')) as KitRecord;
      if (previous.format !== 1 || typeof previous.files !== 'object') throw new Error('not a kit record');
    } catch (e) {
      throw new UserError(`${path.join(real, KIT_FILE)} is not a kit record (${(e as Error).message})`, `move it away, or name another folder: npm run kit -- ${path.join(real, 'sockmap-labs-kit')}`);
    }
  } else {
    // Not a kit: the kit's names must be free (never a user's file or folder replaced, nor mixed into).
    const taken = existing.filter((n) => (KIT_NAMES as readonly string[]).includes(n));
    if (taken.length)
      throw new UserError(`${real} holds ${taken.join(', ')} and no ${KIT_FILE}: they are not a kit's, and the kit would write there`, `name an empty folder: npm run kit -- ${path.join(real, 'sockmap-labs-kit')}`);
  }
  return { dir: real, existing, previous };
}

/** The files that differ from HEAD, untracked ones too (a kit holds HEAD, not them). */
async function uncommitted(signal?: AbortSignal): Promise<string[]> {
  const out = (await run('git', ['-C', projectRoot, 'status', '--porcelain'], { signal })).stdout;
  return out.split('\n').filter(Boolean).map((l) => l.slice(3));
}

async function headCommit(signal?: AbortSignal): Promise<string> {
  try {
    return (await run('git', ['-C', projectRoot, 'rev-parse', 'HEAD'], { signal })).stdout.trim();
  } catch {
    throw new UserError(`${projectRoot} is not a git checkout: the kit holds the committed project (git archive HEAD)`, 'make the kit from a git clone of the project');
  }
}

/** A file of the kit: kept when kit.json recorded it as it is, else made by `make(tmp)` beside it and renamed in. */
class KitFiles {
  readonly files: Record<string, Recorded> = {};
  written = 0;
  kept = 0;
  constructor(
    readonly dir: string,
    readonly previous: Record<string, Recorded>,
  ) {}

  /** Is `rel` there as an earlier run left it? */
  intact(rel: string): boolean {
    const was = this.previous[rel];
    const full = path.join(this.dir, rel);
    try {
      const st = fs.lstatSync(full);
      return !!was && st.isFile() && st.size === was.size && Math.abs(st.mtimeMs - was.mtimeMs) < 2000;
    } catch {
      return false;
    }
  }

  /** Records `rel` as the kit's; `written`: something else (apt's copy) just wrote it. */
  keep(rel: string, written = false): void {
    const st = fs.statSync(path.join(this.dir, rel));
    this.files[rel] = { size: st.size, mtimeMs: st.mtimeMs };
    if (written) this.written++;
    else this.kept++;
  }

  async put(rel: string, make: (tmp: string) => Promise<void> | void): Promise<void> {
    const full = path.join(this.dir, rel);
    fs.mkdirSync(path.dirname(full), { recursive: true });
    let st: fs.Stats | undefined;
    try {
      st = fs.lstatSync(full);
    } catch {
      /* new */
    }
    if (st && !st.isFile()) throw new UserError(`${full} is not a regular file: the kit will not replace it`, `move it away, then run the kit again`);
    const tmp = partialName(full);
    try {
      await make(tmp);
      fs.renameSync(tmp, full);
    } catch (e) {
      fs.rmSync(tmp, { force: true });
      const err = e as NodeJS.ErrnoException;
      if (err.code === 'ENOSPC') throw new UserError(`the disk of ${this.dir} is full: ${rel} could not be written (nothing half-written is left)`, 'use a bigger stick (see the size the kit needs in the first lines), or free some space on it');
      throw e;
    }
    const now = fs.statSync(full);
    this.files[rel] = { size: now.size, mtimeMs: now.mtimeMs };
    this.written++;
  }

  /** A small text file: kept when it holds `text` already. */
  async putText(rel: string, text: string, mode = 0o644): Promise<void> {
    try {
      if (this.previous[rel] && fs.lstatSync(path.join(this.dir, rel)).isFile() && fs.readFileSync(path.join(this.dir, rel), 'utf8') === text) return this.keep(rel);
    } catch {
      /* written below */
    }
    await this.put(rel, (tmp) => fs.writeFileSync(tmp, text, { mode }));
  }

  /** Files an earlier run wrote that this kit does not hold; removed when still as written (never a user's). */
  stale(): string[] {
    const gone: string[] = [];
    for (const [rel, was] of Object.entries(this.previous)) {
      if (this.files[rel]) continue;
      const full = path.join(this.dir, rel);
      try {
        const st = fs.lstatSync(full);
        if (st.isFile() && st.size === was.size) {
          fs.rmSync(full);
          gone.push(rel);
        }
      } catch {
        /* already gone */
      }
    }
    return gone;
  }
}

/** The apparent size of everything under `p`. */
function sizeOf(p: string): number {
  const st = fs.lstatSync(p);
  if (!st.isDirectory()) return st.size;
  let n = 0;
  for (const e of fs.readdirSync(p)) n += sizeOf(path.join(p, e));
  return n;
}

export interface KitResult {
  record: KitRecord;
  bytes: number;
  written: number;
  kept: number;
  removed: string[];
}

export async function makeKit(o: KitOptions): Promise<KitResult> {
  const { log, signal } = o;
  const prep = prepareKitDir(o.dir);
  const dir = prep.dir;
  const prev = prep.previous;
  if (prev)
    log(
      `${dir} holds a kit ${prev.complete === false ? 'an earlier run stopped making' : 'made'} ${prev.made.slice(0, 16).replace('T', ' ')} from ${prev.commit.slice(0, 12)}: ${prev.complete === false ? 'finishing' : 'updating'} it (what is there and sound is kept)`,
    );
  const others = prep.existing.filter((n) => !(KIT_NAMES as readonly string[]).includes(n));
  if (others.length) log(`${dir} also holds ${others.length} other entr${others.length === 1 ? 'y' : 'ies'}, left alone: ${others.slice(0, 8).join(', ')}${others.length > 8 ? ', …' : ''}`);

  // Everything that can stop the kit is checked before anything is written.
  const commit = await headCommit(signal);
  const dirty = await uncommitted(signal);
  const missingImages = o.arches.filter((a) => !currentImageFolder(o.cacheDir, a));
  if (missingImages.length && !o.build) {
    const a = missingImages[0];
    const prepare = a === 'arm64' && hostArch() !== 'arm64' ? 'sudo dpkg --add-architecture arm64 && sudo apt-get update && ' : '';
    throw new UserError(
      `there is no ${missingImages.join(' or ')} guest image in ${imagesDir(o.cacheDir)} to put in the kit`,
      `${prepare}${buildFix(a)}   (or: npm run kit -- ${dir} --build, which builds it, ~6 min; or --arch ${o.arches.find((x) => x !== a) ?? 'amd64'} for a kit without it)`,
    );
  }
  const lockText = fs.readFileSync(path.join(projectRoot, 'package-lock.json'), 'utf8');
  const lockSha = (await run('sha256sum', [path.join(projectRoot, 'package-lock.json')])).stdout.split(' ')[0];
  requireFreeSpace(dir, 1.3e9 - (prev ? sizeOfKit(dir) : 0), 'the kit');

  const files = new KitFiles(dir, prev?.files ?? {});
  const record: KitRecord = { format: 1, complete: false, made: new Date().toISOString(), commit, dirty, images: {}, npm: { lockSha, packages: 0, checked: [] }, debs: {}, files: files.files, missing: [] };
  // kit.json after each part: a run stopped half-way (Ctrl-C, a full stick, no network) is finished by the next one.
  const kitFile = path.join(dir, KIT_FILE);
  const save = () => {
    const text = JSON.stringify(record.complete ? record : { ...record, files: { ...prev?.files, ...files.files } }, null, 2) + '\n';
    const tmp = partialName(kitFile);
    fs.writeFileSync(tmp, text);
    fs.renameSync(tmp, kitFile);
  };
  // (First saved once the project is written: a record naming this commit must not vouch for an older archive.)
  if (dirty.length) log(`note: the checkout has uncommitted changes (${dirty.length} file${dirty.length === 1 ? '' : 's'}: ${dirty.slice(0, 5).join(', ')}${dirty.length > 5 ? ', …' : ''}); the kit holds the last commit, ${commit.slice(0, 12)}, without them`);

  // 1. The project.
  const projectFile = 'sockmap-labs.tar.gz';
  if (prev?.commit === commit && files.intact(projectFile)) files.keep(projectFile);
  else {
    log(`project: ${projectFile} (git archive ${commit.slice(0, 12)})`);
    await files.put(projectFile, (tmp) => run('git', ['-C', projectRoot, 'archive', '--format=tar.gz', '--prefix=sockmap-labs/', '-o', tmp, commit], { signal }).then(() => {}));
  }

  save();

  // 2. The guest images.
  for (const arch of o.arches) {
    if (!currentImageFolder(o.cacheDir, arch)) {
      log(`image ${arch}: building it (${buildFix(arch)}: Debian packages, unpacked, mkfs.erofs; ~6 min here)`);
      await buildImage({ arch, cacheDir: o.cacheDir, log: (l) => log(`image ${arch}: ${l}`), signal });
    }
    const folder = currentImageFolder(o.cacheDir, arch)!;
    const m = readManifest(path.join(imagesDir(o.cacheDir), folder));
    const rel = `images/sockmap-labs-image-${folder}.tar`;
    if (prev?.images?.[arch]?.digest === m.digest && prev.images[arch]!.file === rel && files.intact(rel)) files.keep(rel);
    else {
      log(`image ${arch}: exporting ${folder} (digest ${m.digest.slice(0, 12)}) to ${rel}`);
      await files.put(rel, async (tmp) => {
        await exportImage({ cacheDir: o.cacheDir, arch, file: tmp, signal, log: (l) => log(`image ${arch}: ${l.replace(tmp, rel)}`) });
      });
    }
    record.images[arch] = { file: rel, digest: m.digest, kernel: m.kernelRelease };
  }

  save();

  // 3. npm packages, every class platform's.
  const cacheDir = path.join(dir, 'npm-cache');
  const { specs } = lockSpecs(lockText);
  log(`npm packages: ${specs.length} of package-lock.json's for ${PLATFORMS.map(platformName).join(', ')} (other platforms' binaries left out)`);
  const added = await fillNpmCache({ cacheDir, specs, log, signal });
  record.npm.packages = specs.length;
  if (!o.check) record.npm.note = 'not checked (--no-check)';
  else if (!added && prev?.npm?.lockSha === lockSha && prev.npm.checked?.length) {
    record.npm.checked = prev.npm.checked;
    record.npm.note = prev.npm.note;
    log(`npm packages: all in the kit already, checked by an earlier run for ${prev.npm.checked.join(', ')}`);
  } else {
    const c = await checkOfflineInstalls({ cacheDir, projectDir: projectRoot, log, signal });
    if (c.failed.length)
      throw new UserError(
        `an offline install from the kit's npm cache failed for ${c.failed.map((f) => f.platform).join(', ')}`,
        'run the kit again (it adds what is missing); if it fails again, report it with these lines',
        c.failed.map((f) => `${f.platform}:\n${f.out}`).join('\n'),
      );
    record.npm.checked = c.checked;
    record.npm.note = c.note;
    if (c.note) log(`note: ${c.note}`);
  }

  save();

  // 4. Node and npm.
  try {
    const version: Record<string, string> = {};
    const nodeFiles: Record<string, string> = {};
    // The four side by side (each ~40 MB from the registry).
    const packed = await Promise.all(
      PLATFORMS.map(async (p) => {
        const v = await newestMajor(p.nodePackage, NODE_MAJOR, signal);
        const rel = `node/${p.nodePackage}-${v}.tgz`;
        if (!files.intact(rel)) {
          log(`node: ${p.nodePackage}@${v} (Node ${v} for ${platformName(p)}, from the npm registry)`);
          await putPacked(files, rel, `${p.nodePackage}@${v}`, signal);
        } else files.keep(rel);
        version[platformName(p)] = v;
        nodeFiles[platformName(p)] = rel;
        return { platform: p, file: path.basename(rel), version: v };
      }),
    );
    const npmV = await newestMajor('npm', NPM_MAJOR, signal);
    const npmRel = `node/npm-${npmV}.tgz`;
    if (!files.intact(npmRel)) {
      log(`node: npm@${npmV}`);
      await putPacked(files, npmRel, `npm@${npmV}`, signal);
    } else files.keep(npmRel);
    await files.putText('node/install-node.sh', installNodeScript(packed, path.basename(npmRel)), 0o755);
    record.node = { version, npm: npmV, files: nodeFiles };
  } catch (e) {
    if (e instanceof UserError || signal?.aborted) throw e;
    const why = (e as Error).message.split('\n')[0];
    log(`note: Node could not be fetched from the npm registry (${why}): the kit has no Node`);
    record.missing.push(`Node ${NODE_MAJOR}: the npm registry could not be reached when the kit was made (${why}); put nodejs.org's installers for the class's laptops in node/ by hand`);
  }

  save();

  // 5. QEMU for Debian 12 laptops.
  const noDebs = debsUnavailable();
  if (noDebs) {
    log(`note: no QEMU debs: ${noDebs}`);
    record.missing.push(`QEMU for Debian 12: ${noDebs}; make the kit on a Debian machine, or install QEMU on the laptops before class`);
  } else {
    const arches = ['amd64', 'arm64'] as const;
    const got = await Promise.all(
      arches.map((arch) => fetchDebs({ arch, packages: SETUP_PACKAGES[arch], dir: path.join(dir, `debs/debian12-${arch}`), stateDir: path.join(o.cacheDir, 'kit-apt', arch), log, signal })),
    );
    arches.forEach((arch, i) => {
      for (const d of got[i].debs) files.keep(`debs/debian12-${arch}/${d.file}`, got[i].copied.includes(d.file));
      record.debs[arch] = { packages: got[i].debs.map((d) => `${d.pkg}=${d.version}`), base: got[i].baseCount };
    });
  }
  record.missing.push(
    'QEMU for macOS: Homebrew bottles cannot be fetched here; each Mac needs `brew install qemu` while it has network (before class)',
    'QEMU for other Linux distributions (Ubuntu, Fedora, Arch): their own packages, installed while they have network (sudo apt-get install qemu-system-x86 / sudo dnf install qemu-system-x86, qemu-system-aarch64 on arm64)',
  );

  // 6. The guide and the record.
  await files.putText('OFFLINE.md', offlineGuide(record));
  const removed = files.stale();
  record.complete = true;
  save();
  return { record, bytes: sizeOfKit(dir), written: files.written, kept: files.kept, removed };
}

/** The size of the kit's own entries in `dir`. */
export function sizeOfKit(dir: string): number {
  let n = 0;
  for (const name of KIT_NAMES) if (fs.existsSync(path.join(dir, name))) n += sizeOf(path.join(dir, name));
  return n;
}

async function putPacked(files: KitFiles, rel: string, spec: string, signal?: AbortSignal): Promise<void> {
  await files.put(rel, async (tmp) => {
    const scratch = fs.mkdtempSync(path.join(path.dirname(tmp), '.pack-'));
    try {
      const name = await packInto(scratch, spec, signal);
      fs.renameSync(path.join(scratch, name), tmp);
    } finally {
      fs.rmSync(scratch, { recursive: true, force: true });
    }
  });
}

export { mb as kitSize };
