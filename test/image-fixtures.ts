// Small guest images that pass every check (manifest, sizes, sha256) without
// being bootable: random bytes where the kernel and root file system would be.
// For tests of verify, export, import and pull; a real image is ~320 MB.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { IMAGE_FILES, imageDigest, imageFolderName, imagesDir, MANIFEST, setCurrentImage, type ImageArch, type ImageManifest } from '../vm/image-verify.ts';

export const sha = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');

/** A small image folder in `cacheDir` (made current), with a manifest that matches its files. */
export function fakeImage(
  cacheDir: string,
  arch: ImageArch = 'amd64',
  sizes = { vmlinuz: 3000, 'initramfs.cpio.gz': 1500, 'kernel.config': 700, 'rootfs.erofs': 70_000 },
  inputsDigest = sha(Buffer.from(`inputs ${arch} ${Math.random()}`)),
) {
  const folder = imageFolderName(arch, inputsDigest);
  const dir = path.join(imagesDir(cacheDir), folder);
  fs.mkdirSync(dir, { recursive: true });
  const files = {} as ImageManifest['files'];
  for (const f of IMAGE_FILES) {
    const data = crypto.randomBytes(sizes[f]);
    fs.writeFileSync(path.join(dir, f), data);
    files[f] = { size: data.length, sha256: sha(data) };
  }
  const manifest: ImageManifest = {
    format: 1,
    arch,
    digest: imageDigest(files),
    files,
    inputsDigest,
    scriptsDigest: sha(Buffer.from('scripts')),
    kernelRelease: `6.12.117+deb12-${arch}`,
    packages: ['bash=5.2.15-2+b13', 'bpftool=7.1.0+6.1.192-2'],
    bootModules: ['virtio_blk', 'erofs'],
    erofs: '-zlz4hc',
    builtAt: new Date().toISOString(),
    buildSeconds: 1,
  };
  fs.writeFileSync(path.join(dir, MANIFEST), JSON.stringify(manifest, null, 2));
  setCurrentImage(cacheDir, arch, folder);
  return { dir, folder, manifest };
}

/** Changes one byte of `file` in place, its size unchanged. */
export function flipByte(file: string, at: number) {
  const fd = fs.openSync(file, 'r+');
  const b = Buffer.alloc(1);
  fs.readSync(fd, b, 0, 1, at);
  b[0] ^= 0xff;
  fs.writeSync(fd, b, 0, 1, at);
  fs.closeSync(fd);
}

/** What is left in a cache's images folder besides the current pointers. */
export const leftovers = (cacheDir: string) => (fs.existsSync(imagesDir(cacheDir)) ? fs.readdirSync(imagesDir(cacheDir)).filter((f) => !f.startsWith('current-')) : []);

/** Makes numbered fresh folders below the folder `root()` names (read when called: a test's beforeAll may set it). */
export function freshFolders(root: () => string): (name: string) => string {
  let n = 0;
  return (name) => {
    const d = path.join(root(), `${name}-${++n}`);
    fs.mkdirSync(d, { recursive: true });
    return d;
  };
}
