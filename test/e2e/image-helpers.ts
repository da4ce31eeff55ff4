// What the image e2e tests share: a cache of their own, seeded with the packages
// the default cache already downloaded (so a build there needs no network).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll } from 'vitest';
import { placesFrom } from '../../core/config.ts';
import { imagesDir, readManifest, type ImageArch, type ImageManifest } from '../../vm/image-verify.ts';

/** A fresh cache folder, removed after the test file, holding copies of the default cache's .debs for `arch`. */
export function seededCache(arch: ImageArch): string {
  const cache = fs.mkdtempSync(path.join(os.tmpdir(), `sockmap-labs-image-e2e-${arch}-`));
  afterAll(() => fs.rmSync(cache, { recursive: true, force: true }));
  const debs = path.join(imagesDir(placesFrom().cacheDir), 'debs', arch);
  if (fs.existsSync(debs)) {
    const to = path.join(imagesDir(cache), 'debs', arch);
    fs.mkdirSync(to, { recursive: true });
    for (const f of fs.readdirSync(debs)) if (f.endsWith('.deb')) fs.copyFileSync(path.join(debs, f), path.join(to, f));
  }
  return cache;
}

/**
 * The manifest of the default cache's image with the same folder name (the same inputs) as `built`, when there is one
 * (setup and .ci/run build the amd64 one there): a build reproduces it byte for byte (test/e2e/image-repro.test.ts).
 */
export function defaultCacheTwin(built: ImageManifest, folder: string): ImageManifest | undefined {
  const dir = path.join(imagesDir(placesFrom().cacheDir), folder);
  if (!fs.existsSync(dir)) return undefined;
  try {
    return readManifest(dir, built.arch);
  } catch {
    return undefined;
  }
}
