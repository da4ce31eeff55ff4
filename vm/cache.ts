// Where sockmap-labs keeps what it downloads or builds once and reuses:
// kernels, initramfs images, the KVM probe verdict.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export function cacheDir(): string {
  if (process.env.LAB_CACHE_DIR) return path.resolve(process.env.LAB_CACHE_DIR);
  const base = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(base, 'sockmap-labs');
}

export const kernelsDir = () => path.join(cacheDir(), 'kernels');
export const initramfsDir = () => path.join(cacheDir(), 'initramfs');

/**
 * The checkout this code runs from: the nearest folder above this module that
 * holds package.json (vm/ when run from source, build/cli/ when bundled).
 */
export const projectRoot = (() => {
  let dir = path.dirname(new URL(import.meta.url).pathname);
  while (!fs.existsSync(path.join(dir, 'package.json')) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  return dir;
})();
