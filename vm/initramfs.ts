// Builds the VM's initramfs: a static busybox, our init script, and the few
// modules needed before the host's root can be mounted over 9p (plus
// virtio_net, so stage 2 need not search for it). Cached by a hash of
// everything that goes in, so a rebuild happens only when an input changes.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { UserError } from '../core/errors.ts';
import { projectRoot } from '../core/paths.ts';
import type { Kernel } from './kernel.ts';

/** Modules the init script loads, in this order (their dependencies are added first; built-in ones are left out: virtio_pci is built into Debian's 6.12, a module in its 6.1). */
export const BOOT_MODULES = ['virtio_pci', 'netfs', '9pnet', '9pnet_virtio', '9p', 'overlay', 'virtio_net'];

const INIT_SCRIPT = path.join(projectRoot, 'vm/guest/init');

const BUSYBOX_CANDIDATES = ['/bin/busybox', '/usr/bin/busybox'];

/** A static busybox: the initramfs has no C library for a dynamic one. */
export function findStaticBusybox(candidates = BUSYBOX_CANDIDATES): string {
  for (const p of candidates) {
    if (!fs.existsSync(p)) continue;
    // A dynamic ELF names its loader (PT_INTERP) near the start of the file.
    const head = fs.readFileSync(p).subarray(0, 8192).toString('latin1');
    if (!head.includes('/ld-linux')) return p;
  }
  throw new UserError('no static busybox found (the VM initramfs needs one)', 'sudo apt-get install -y busybox-static');
}

interface ModuleFile {
  name: string;
  /** Path of the (maybe compressed) .ko on the host. */
  file: string;
}

/**
 * The boot modules plus their dependencies, dependencies first, read from the
 * kernel's modules.dep. Modules built into the kernel are left out.
 */
export function resolveBootModules(modulesDir: string, wanted = BOOT_MODULES): ModuleFile[] {
  const depFile = path.join(modulesDir, 'modules.dep');
  if (!fs.existsSync(depFile))
    throw new UserError(`${depFile} is missing: the kernel's modules are not indexed`, `depmod -b <root> <release>, or fetch the kernel again: npm run kernels -- fetch`);
  const deps = new Map<string, { file: string; deps: string[] }>();
  const nameOf = (rel: string) => path.basename(rel).replace(/\.ko(\.(xz|gz|zst))?$/, '').replace(/-/g, '_');
  for (const line of fs.readFileSync(depFile, 'utf8').split('\n')) {
    const [mod, rest] = line.split(':');
    if (!mod || rest === undefined) continue;
    deps.set(nameOf(mod), { file: mod, deps: rest.trim().split(/\s+/).filter(Boolean).map(nameOf) });
  }
  const builtinFile = path.join(modulesDir, 'modules.builtin');
  const builtin = new Set(fs.existsSync(builtinFile) ? fs.readFileSync(builtinFile, 'utf8').split('\n').map(nameOf) : []);
  const out: ModuleFile[] = [];
  const seen = new Set<string>();
  const visit = (name: string) => {
    if (seen.has(name)) return;
    seen.add(name);
    if (builtin.has(name)) return;
    const entry = deps.get(name);
    if (!entry) throw new UserError(`the guest kernel has no module ${name} (needed to boot the VM)`, 'use a kernel with 9p and virtio: npm run kernels -- fetch');
    for (const d of [...entry.deps].reverse()) visit(d);
    out.push({ name, file: path.join(modulesDir, entry.file) });
  };
  for (const m of wanted.map((w) => w.replace(/-/g, '_'))) visit(m);
  return out;
}

function decompressCommand(file: string): string[] {
  if (file.endsWith('.xz')) return ['xz', '-dc'];
  if (file.endsWith('.zst')) return ['zstd', '-dc'];
  if (file.endsWith('.gz')) return ['gzip', '-dc'];
  return ['cat'];
}

function initramfsKey(kernel: Kernel, busybox: string, modules: ModuleFile[]): string {
  const h = crypto.createHash('sha256');
  h.update(kernel.release);
  h.update(fs.readFileSync(busybox));
  h.update(fs.readFileSync(INIT_SCRIPT));
  for (const m of modules) {
    h.update(m.name);
    h.update(fs.readFileSync(m.file));
  }
  return h.digest('hex').slice(0, 16);
}

/**
 * Returns the path of an initramfs for this kernel, building it if the cache
 * (its initramfs folder below cacheDir) has none.
 */
export async function ensureInitramfs(kernel: Kernel, cacheDir: string): Promise<{ path: string; built: boolean }> {
  const outDir = path.join(cacheDir, 'initramfs');
  const busybox = findStaticBusybox();
  const modules = resolveBootModules(kernel.modulesDir);
  const key = initramfsKey(kernel, busybox, modules);
  const out = path.join(outDir, `${kernel.release}-${key}.cpio.gz`);
  if (fs.existsSync(out)) return { path: out, built: false };
  const { $ } = await import('zx'); // loaded only when needed: it takes ~0.3 s
  for (const tool of ['cpio', 'gzip', ...new Set(modules.map((m) => decompressCommand(m.file)[0]))])
    if ((await $`command -v ${tool}`.nothrow().quiet()).exitCode !== 0)
      throw new UserError(`${tool} is missing (needed to build the VM initramfs)`, `sudo apt-get install -y ${tool === 'xz' ? 'xz-utils' : tool}`);
  const tree = fs.mkdtempSync(path.join(os.tmpdir(), 'sockmap-labs-initramfs-'));
  try {
    fs.mkdirSync(path.join(tree, 'bin'));
    fs.mkdirSync(path.join(tree, 'modules'));
    fs.copyFileSync(busybox, path.join(tree, 'bin/busybox'));
    fs.chmodSync(path.join(tree, 'bin/busybox'), 0o755);
    fs.copyFileSync(INIT_SCRIPT, path.join(tree, 'init'));
    fs.chmodSync(path.join(tree, 'init'), 0o755);
    for (const m of modules) {
      const [cmd, ...args] = decompressCommand(m.file);
      // Straight to a file: module bytes must not pass through a string.
      await $`${cmd} ${args} ${m.file} > ${path.join(tree, 'modules', `${m.name}.ko`)}`.quiet();
    }
    fs.writeFileSync(path.join(tree, 'modules/order'), modules.map((m) => m.name).join('\n') + '\n');
    fs.mkdirSync(outDir, { recursive: true });
    const tmpOut = `${out}.${process.pid}.tmp`;
    await $({ cwd: tree })`find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 | gzip -1 > ${tmpOut}`;
    fs.renameSync(tmpOut, out); // atomic: a concurrent build of the same key writes the same bytes
    return { path: out, built: true };
  } finally {
    fs.rmSync(tree, { recursive: true, force: true });
  }
}
