// Fresh esbuild bundles of the project's entry points, in build/cli/.
//
// Loading ~60 TypeScript modules through tsx's loader hooks costs over a second
// on every start, which a warm-VM re-run (1.5 s of real work) cannot afford; a
// bundle loads in a tenth of that. It is rebuilt (~0.3 s) whenever a source
// file is newer than it, so an edited checkout never runs stale code. Two
// entries use it: the CLI (runner/launch.mjs) and the warm VM's keeper
// process (vm/warm.ts).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The checkout: the nearest folder above this file (or the bundle it is in) with package.json. */
function findRoot() {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!fs.existsSync(path.join(dir, 'package.json')) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  return dir;
}

const SOURCES = ['core', 'runner', 'vm', 'bench'];

/** The newest mtime of the sources (and of the lock file: new dependencies). */
function newestSource(root) {
  let newest = fs.statSync(path.join(root, 'package-lock.json'), { throwIfNoEntry: false })?.mtimeMs ?? 0;
  const walk = (dir) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.(ts|mjs|json)$/.test(e.name)) newest = Math.max(newest, fs.statSync(p).mtimeMs);
    }
  };
  for (const d of SOURCES) if (fs.existsSync(path.join(root, d))) walk(path.join(root, d));
  return newest;
}

/**
 * The path of build/cli/NAME.mjs, a bundle of ENTRY (relative to the checkout),
 * built first when a source is newer than it.
 */
export async function freshBundle(name, entry) {
  const root = findRoot();
  const bundle = path.join(root, 'build', 'cli', `${name}.mjs`);
  const built = fs.statSync(bundle, { throwIfNoEntry: false })?.mtimeMs ?? -1;
  if (built >= newestSource(root)) return bundle;
  const { build } = await import('esbuild');
  // Stamped with the time the build started: a source saved while it ran is newer, and rebuilds next time.
  const started = new Date();
  // Written beside and renamed: two runs starting at once never read half a file.
  const tmp = `${bundle}.${process.pid}.tmp`;
  await build({
    entryPoints: [path.join(root, entry)],
    outfile: tmp,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    // The libraries go in too: one file loads ~0.1 s faster than Node resolving
    // dozens of small packages. Not these: ssh2 has optional native parts, and
    // zx and esbuild are loaded only when needed (a kernel fetch, a rebuild).
    external: ['ssh2', 'zx', 'esbuild'],
    // CommonJS packages in an ES module bundle still call require() for Node's own modules.
    banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
    logLevel: 'error',
  });
  fs.utimesSync(tmp, started, started);
  fs.renameSync(tmp, bundle);
  return bundle;
}
