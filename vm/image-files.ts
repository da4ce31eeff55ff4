// The two archive formats the guest image needs, written (and read) by Node
// itself, so neither building an initramfs nor moving an image between
// machines needs a host cpio, tar or busybox:
//
//   cpio "newc"  the initramfs the kernel unpacks (no compression here: the
//                caller gzips it with zlib)
//   ustar        `npm run image export FILE` / `import FILE`: one folder of
//                regular files, streamed in 1 MiB chunks and hashed on the way
//
// Only what these uses need: cpio of directories, regular files, symlinks and
// device nodes; ustar of one folder of regular files (names under 100 bytes,
// sizes below 8 GiB). The ustar reader checks each header's checksum and
// insists on the end-of-archive blocks: a truncated or damaged file is an
// error, never a shorter image.
import crypto from 'node:crypto';
import fs from 'node:fs';

/** One member of a cpio archive. `mode` holds the file type bits (0o100644, 0o040755, …). */
export interface CpioEntry {
  name: string;
  mode: number;
  data?: Buffer;
  /** Device nodes: [major, minor]. */
  rdev?: [number, number];
  uid?: number;
  gid?: number;
  mtime?: number;
}

export const S_IFDIR = 0o040000;
export const S_IFREG = 0o100000;
export const S_IFLNK = 0o120000;
export const S_IFCHR = 0o020000;

const pad4 = (n: number) => (4 - (n % 4)) % 4;
const hex8 = (n: number) => (n >>> 0).toString(16).padStart(8, '0');

/** A cpio "newc" (SVR4, no CRC) archive of `entries`, in their order, with its trailer. */
export function cpioNewc(entries: CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  let ino = 1;
  const member = (e: CpioEntry) => {
    const data = e.data ?? Buffer.alloc(0);
    const name = Buffer.from(`${e.name}\0`);
    const [rmaj, rmin] = e.rdev ?? [0, 0];
    const header =
      '070701' +
      [ino++, e.mode, e.uid ?? 0, e.gid ?? 0, (e.mode & 0o170000) === S_IFDIR ? 2 : 1, e.mtime ?? 0, data.length, 0, 0, rmaj, rmin, name.length, 0].map(hex8).join('');
    parts.push(Buffer.from(header, 'latin1'), name, Buffer.alloc(pad4(110 + name.length)), data, Buffer.alloc(pad4(data.length)));
  };
  for (const e of entries) member(e);
  member({ name: 'TRAILER!!!', mode: 0 });
  return Buffer.concat(parts);
}

// ---- ustar ---------------------------------------------------------------

const BLOCK = 512;
const CHUNK = 1 << 20;

function octal(n: number, width: number): string {
  return n.toString(8).padStart(width - 1, '0') + '\0';
}

function tarHeader(name: string, size: number, mode: number, type: '0' | '5', mtime: number): Buffer {
  if (Buffer.byteLength(name) > 99) throw new Error(`tar member name too long: ${name}`);
  const h = Buffer.alloc(BLOCK);
  h.write(name, 0, 100, 'utf8');
  h.write(octal(mode, 8), 100, 'latin1');
  h.write(octal(0, 8), 108, 'latin1'); // uid
  h.write(octal(0, 8), 116, 'latin1'); // gid
  h.write(octal(size, 12), 124, 'latin1');
  h.write(octal(Math.floor(mtime), 12), 136, 'latin1');
  h.write('        ', 148, 'latin1'); // checksum field counts as spaces
  h.write(type, 156, 'latin1');
  h.write('ustar\0', 257, 'latin1');
  h.write('00', 263, 'latin1');
  h.write('root', 265, 'latin1');
  h.write('root', 297, 'latin1');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(octal(sum, 7) + ' ', 148, 'latin1');
  return h;
}

function headerChecksumOk(h: Buffer): boolean {
  const stored = parseInt(h.toString('latin1', 148, 156).replace(/[\0 ]/g, ''), 8);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i];
  return stored === sum;
}

async function writeAll(fd: fs.promises.FileHandle, buf: Buffer) {
  let off = 0;
  while (off < buf.length) off += (await fd.write(buf, off, buf.length - off)).bytesWritten;
}

/**
 * Writes a ustar archive at `out`: the folder `folder/` and, in it, each file
 * of `files` (name → host path), in that order. Checks `signal` between chunks.
 * Every entry carries the one time `mtime` (seconds), not the clock's or the
 * files' own: the same files give the same archive bytes on any machine, so a
 * re-export or re-push of an image is the same blob.
 */
export async function writeTar(out: string, folder: string, files: [name: string, file: string][], signal?: AbortSignal, mtime = 0): Promise<void> {
  const fd = await fs.promises.open(out, 'w');
  try {
    await writeAll(fd, tarHeader(`${folder}/`, 0, 0o755, '5', mtime));
    const buf = Buffer.alloc(CHUNK);
    for (const [name, file] of files) {
      const src = await fs.promises.open(file, 'r');
      try {
        const { size } = await src.stat();
        await writeAll(fd, tarHeader(`${folder}/${name}`, size, 0o644, '0', mtime));
        let left = size;
        while (left > 0) {
          signal?.throwIfAborted();
          const { bytesRead } = await src.read(buf, 0, Math.min(CHUNK, left), size - left);
          if (bytesRead === 0) throw new Error(`${file} shrank while it was being archived`);
          await writeAll(fd, buf.subarray(0, bytesRead));
          left -= bytesRead;
        }
        if (size % BLOCK) await writeAll(fd, Buffer.alloc(BLOCK - (size % BLOCK)));
      } finally {
        await src.close();
      }
    }
    await writeAll(fd, Buffer.alloc(BLOCK * 2)); // end of archive
  } finally {
    await fd.close();
  }
}

/** What was wrong with an archive, for the caller's message. */
export class TarError extends Error {}

export interface TarMember {
  /** The name below the archive's one folder. */
  name: string;
  size: number;
  /** sha256 of the bytes written, hex. */
  sha256: string;
}

/**
 * Unpacks a ustar archive of one folder of regular files into `dest` (which
 * must exist), hashing each file as it is written. Returns the folder's name
 * and its files. Throws TarError when the archive is truncated, a header is
 * damaged, or a member is not a plain file of that one folder; `accept`
 * refuses names the caller does not expect (before a byte of them is written),
 * and `onMember` can stop it early (an export's manifest comes first).
 */
export async function readTar(
  file: string,
  dest: string,
  accept: (name: string) => boolean,
  o: { signal?: AbortSignal; /** Called as each file is complete (it may throw to stop the unpacking). */ onMember?: (m: TarMember, folder: string) => void } = {},
): Promise<{ folder: string; members: TarMember[] }> {
  const { signal } = o;
  const fd = await fs.promises.open(file, 'r');
  const total = (await fd.stat()).size;
  let pos = 0;
  const block = Buffer.alloc(BLOCK);
  const readBlock = async (what: string) => {
    const { bytesRead } = await fd.read(block, 0, BLOCK, pos);
    if (bytesRead < BLOCK) throw new TarError(`it ends early, ${what} (at byte ${pos} of ${total}): the file is truncated`);
    pos += BLOCK;
  };
  let folder: string | undefined;
  const members: TarMember[] = [];
  try {
    for (;;) {
      signal?.throwIfAborted();
      await readBlock('where the next file should start');
      if (block.every((b) => b === 0)) {
        await readBlock('inside its end-of-archive marker');
        if (!block.every((b) => b === 0)) throw new TarError(`a damaged end-of-archive marker at byte ${pos - BLOCK}`);
        break;
      }
      if (!headerChecksumOk(block)) throw new TarError(`a damaged header at byte ${pos - BLOCK} (checksum mismatch)`);
      const rawName = block.toString('utf8', 0, 100).replace(/\0.*$/s, '');
      const prefix = block.toString('latin1', 257, 262) === 'ustar' ? block.toString('utf8', 345, 500).replace(/\0.*$/s, '') : '';
      const name = prefix ? `${prefix}/${rawName}` : rawName;
      const type = block.toString('latin1', 156, 157);
      const size = parseInt(block.toString('latin1', 124, 136).replace(/[\0 ]/g, '') || '0', 8);
      if (!Number.isFinite(size) || size < 0) throw new TarError(`a damaged size field for ${name}`);
      const parts = name.replace(/\/$/, '').split('/');
      if (parts.some((p) => p === '' || p === '.' || p === '..')) throw new TarError(`an unsafe member name: ${JSON.stringify(name)}`);
      if (type === '5') {
        if (parts.length !== 1 || folder !== undefined) throw new TarError(`an unexpected folder ${name}`);
        folder = parts[0];
        continue;
      }
      if (type !== '0' && type !== '\0') throw new TarError(`a member that is not a plain file: ${name} (type ${JSON.stringify(type)})`);
      if (parts.length !== 2 || (folder !== undefined && parts[0] !== folder)) throw new TarError(`a file outside the image folder: ${name}`);
      folder ??= parts[0];
      const base = parts[1];
      if (!accept(base)) throw new TarError(`a file an image does not have: ${name}`);
      if (members.some((m) => m.name === base)) throw new TarError(`${name} twice`);
      const out = await fs.promises.open(`${dest}/${base}`, 'wx', 0o644);
      const hash = crypto.createHash('sha256');
      try {
        const buf = Buffer.alloc(CHUNK);
        let left = size;
        while (left > 0) {
          signal?.throwIfAborted();
          const { bytesRead } = await fd.read(buf, 0, Math.min(CHUNK, left), pos);
          if (bytesRead === 0) throw new TarError(`it ends early, inside ${name} (${size - left} of ${size} bytes; the file has ${total}): the file is truncated`);
          const chunk = buf.subarray(0, bytesRead);
          hash.update(chunk);
          await writeAll(out, chunk);
          pos += bytesRead;
          left -= bytesRead;
        }
      } finally {
        await out.close();
      }
      pos += (BLOCK - (size % BLOCK)) % BLOCK;
      const member = { name: base, size, sha256: hash.digest('hex') };
      members.push(member);
      o.onMember?.(member, folder);
    }
  } finally {
    await fd.close();
  }
  if (folder === undefined) throw new TarError('no image folder in it');
  return { folder, members };
}
