// Files a command writes for the user (reports, matrix pages, exported images,
// kits): checked before any work starts, written so that a failure leaves
// nothing behind and never replaces something that is not a regular file.
//
// The rule (README "Bad input"): an output is a writable regular file, or a new
// file in an existing, writable folder. A folder, a device, a FIFO, a socket,
// or anything under /proc, /sys or /dev is refused. Missing folders are
// created only for a relative path that stays inside the folder the command
// was started from (e.g. `--reporter junit=results/junit.xml`): that is the
// user clearly asking for them. An absolute or `..` path with a missing
// folder is refused, with `mkdir -p` as the fix.
import fs from 'node:fs';
import path from 'node:path';
import { UserError } from './errors.ts';

/** The folder the user typed the command in: npm runs scripts in the package root, and says where it was started in INIT_CWD. */
export function userCwd(): string {
  const init = process.env.INIT_CWD;
  return init && path.isAbsolute(init) && isDir(init) ? init : process.cwd();
}

function isDir(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** File-system magic numbers of the kernel's virtual file systems (statfs f_type). */
const VIRTUAL_FS = new Map<number, string>([
  [0x9fa0, '/proc'],
  [0x62656572, 'sysfs'],
  [0x1cd1, 'devpts'],
  [0x64626720, 'debugfs'],
  [0x74726163, 'tracefs'],
  [0x63677270, 'cgroup2'],
  [0xcafe4a11, 'bpffs'],
]);

function kindOf(st: fs.Stats): string | undefined {
  if (st.isFile()) return undefined;
  if (st.isDirectory()) return 'a folder';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isFIFO()) return 'a FIFO (named pipe)';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

function virtualFs(p: string): string | undefined {
  const real = (() => {
    try {
      return fs.realpathSync(p);
    } catch {
      return p;
    }
  })();
  if (/^\/(proc|sys|dev)(\/|$)/.test(real)) return real.split('/')[1] === 'proc' ? '/proc' : `/${real.split('/')[1]}`;
  try {
    return VIRTUAL_FS.get(fs.statfsSync(real).type);
  } catch {
    return undefined;
  }
}

export interface OutputOptions {
  /** How the message names the file: "--output", "--reporter junit=FILE", "the export file". */
  what: string;
  /** A file name to suggest when the user named a folder (e.g. "results.xml"). */
  suggest?: string;
  /** Create missing folders even for an absolute path (only where the user clearly asked, e.g. a kit's own target folder). */
  createDirs?: boolean;
}

/**
 * Checks a path the user gave for a file this command will write, and returns
 * it absolute (relative paths are taken from the user's folder, INIT_CWD under
 * npm). Throws a UserError naming the value and the fix unless the path is a
 * writable regular file (a symlink to one is followed), or a new file in an
 * existing writable folder (or in missing folders it may create: see above).
 * Creates nothing: missing folders are made by writeOutputFile/prepareOutputDir.
 */
export function checkOutputFile(given: string, o: OutputOptions): string {
  if (given === undefined || given === null || given.trim() === '') throw new UserError(`${o.what} is empty: it needs a file name`, `name a file, e.g. ${o.suggest ?? 'out.txt'}`);
  if (given.includes('\0')) throw new UserError(`${o.what} "${given}" holds a NUL byte`, 'name a plain file');
  const cwd = userCwd();
  // "out/" names a folder: path.resolve would quietly drop the slash and write a file called "out".
  if (/[/\\]$/.test(given) && !fs.existsSync(given)) throw new UserError(`${o.what} "${given}" names a folder, not a file`, `name a file in it: ${path.join(given, o.suggest ?? 'out.txt')}`);
  let file = path.resolve(cwd, given);
  const fix = `name a regular file in a folder you can write, e.g. ${o.suggest ?? path.basename(file)}`;
  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENAMETOOLONG') throw new UserError(`${o.what} "${given}": the name is too long for the file system`, 'use a shorter name');
    if (code === 'ENOTDIR') throw new UserError(`${o.what} "${given}": a part of the path is a file, not a folder`, fix);
    if (code === 'ELOOP') throw new UserError(`${o.what} "${given}": a symbolic link loop`, fix);
    if (code !== 'ENOENT') throw new UserError(`${o.what} "${given}" cannot be checked: ${(e as Error).message}`, fix);
  }
  const virt = virtualFs(st ? file : nearestExisting(path.dirname(file)));
  if (virt) throw new UserError(`${o.what} "${given}" is in ${virt}, the kernel's own file system: a report cannot go there`, fix);
  if (st) {
    const kind = kindOf(st);
    if (kind) {
      const suggestion = st.isDirectory() && o.suggest ? `name a file in it: ${path.join(given, o.suggest)}` : fix;
      throw new UserError(`${o.what} "${given}" is ${kind}, not a regular file: it will not be written or replaced`, suggestion);
    }
    file = fs.realpathSync(file);
    try {
      fs.accessSync(file, fs.constants.W_OK);
    } catch (e) {
      throw new UserError(`${o.what} "${given}" cannot be written (${(e as NodeJS.ErrnoException).code})`, fix);
    }
    return file;
  }
  const dir = path.dirname(file);
  if (!isDir(dir)) {
    const existing = nearestExisting(dir);
    if (!isDir(existing)) throw new UserError(`${o.what} "${given}": ${existing} is not a folder`, fix);
    const insideCwd = !path.isAbsolute(given) && !path.relative(cwd, dir).startsWith('..');
    if (!(insideCwd || o.createDirs)) throw new UserError(`${o.what} "${given}": the folder ${dir} does not exist`, `create it first (mkdir -p ${dir}), or name a file in an existing folder`);
    writableDir(existing, given, o, fix);
    return file;
  }
  writableDir(dir, given, o, fix);
  return file;
}

function nearestExisting(dir: string): string {
  while (!fs.existsSync(dir) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  return dir;
}

function writableDir(dir: string, given: string, o: OutputOptions, fix: string) {
  try {
    fs.accessSync(dir, fs.constants.W_OK | fs.constants.X_OK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'EROFS' ? 'is on a read-only file system' : 'is not writable';
    throw new UserError(`${o.what} "${given}": the folder ${dir} ${why}`, fix);
  }
}

/** Makes the missing folders of a checked output file (checkOutputFile allowed them). */
export function prepareOutputDir(file: string, what: string): void {
  try {
    fs.mkdirSync(path.dirname(file), { recursive: true });
  } catch (e) {
    throw writeError(e, file, what);
  }
}

/** A write that failed, as the one line a user needs. */
export function writeError(e: unknown, file: string, what: string): UserError {
  const err = e as NodeJS.ErrnoException;
  const reason: Record<string, string> = {
    ENOSPC: 'the disk is full',
    EDQUOT: 'the disk quota is used up',
    EROFS: 'the file system is read-only',
    EACCES: 'permission denied',
    EPERM: 'permission denied',
    EISDIR: 'it is a folder',
    ENOENT: 'its folder does not exist',
    ENOTDIR: 'a part of the path is not a folder',
    ENAMETOOLONG: 'the name is too long',
    EIO: 'an I/O error',
    EFBIG: 'the file is too large for the file system',
  };
  const why = (err?.code && reason[err.code]) ?? err?.message ?? String(e);
  return new UserError(`cannot write ${what} ${file}: ${why}${err?.code ? ` (${err.code})` : ''}; nothing was written`, err?.code === 'ENOSPC' ? 'free some space, or name a file on another disk' : 'name a regular file in a folder you can write');
}

/** A temporary name beside `file`, in the same folder (so a rename is atomic), hidden from ls. */
export function partialName(file: string): string {
  return path.join(path.dirname(file), `.${path.basename(file)}.partial-${process.pid}`);
}

/**
 * Moves a finished temporary file into place, unless `file` became something
 * other than a regular file meanwhile (then the temporary file is removed and
 * the target left as it is).
 */
export function commitOutput(tmp: string, file: string, what: string): void {
  try {
    const st = fs.lstatSync(file, { throwIfNoEntry: false });
    const kind = st && !st.isSymbolicLink() ? kindOf(st) : undefined;
    if (kind) throw new UserError(`${what} ${file} is now ${kind}: it was not replaced; nothing was written`, 'name a regular file');
    // A symlink to a regular file: write through it (rename would replace the link).
    const target = st?.isSymbolicLink() ? fs.realpathSync(file) : file;
    fs.renameSync(tmp, target);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    if (e instanceof UserError) throw e;
    throw writeError(e, file, what);
  }
}

/**
 * Writes `data` to a checked output file: into a temporary file beside it,
 * flushed, then renamed over it. A failure (a full disk, say) removes the
 * temporary file, leaves an existing file as it was, and throws a UserError.
 * `append` adds to an existing file in place instead (e.g. GitHub's job summary).
 */
export function writeOutputFile(file: string, data: string | Uint8Array, what: string, o: { append?: boolean } = {}): void {
  prepareOutputDir(file, what);
  if (o.append) {
    try {
      fs.appendFileSync(file, data);
    } catch (e) {
      throw writeError(e, file, what);
    }
    return;
  }
  const tmp = partialName(file);
  try {
    const fd = fs.openSync(tmp, 'wx');
    try {
      fs.writeFileSync(fd, data);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw writeError(e, file, what);
  }
  commitOutput(tmp, file, what);
}
