// Where sockmap-labs keeps what it downloads or builds once and reuses:
// kernels, initramfs images, the KVM probe verdict.
import os from 'node:os';
import path from 'node:path';

export function cacheDir(): string {
  if (process.env.LAB_CACHE_DIR) return path.resolve(process.env.LAB_CACHE_DIR);
  const base = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(base, 'sockmap-labs');
}

export const kernelsDir = () => path.join(cacheDir(), 'kernels');
export const initramfsDir = () => path.join(cacheDir(), 'initramfs');

/** The checkout this code runs from (the folder holding package.json). */
export const projectRoot = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
