// npm run bench [-- --runs N]: how fast the runner gets a learner to a checked
// step, in the default mode (the guest image) and the host-root mode, against
// the floor, all in one run.
//
//   floor      raw QEMU + our busybox init on the same kernel (init prints a marker, powers off)
//   cold       the backend's start() until the guest answers: the guest image over
//              virtio-serial, and the host root over SSH (fresh keys, sshd)
//   step       one trivial step (`true`) on a running image VM, through the step agent
//   lab 01     every step of lab 01 on a running image VM, checks included
//   re-run     lab 01 cold (boot + lab + stop) against warm (attach + lab + detach), image
//   cli        the same as a learner types it, `npm run lab 1 -- --quiet`: cold in the
//              image mode and the host-root mode, warm (image), and cold with
//              `--backend vng` when vng is on PATH; each as a multiple of the floor
//   image      the guest image's compressed size, its recorded build time, an export
//              and an import of it (into a scratch cache)
import os from 'node:os';
import path from 'node:path';
import { parseArgsOrExit, wholeFlag } from '../core/args.ts';
import { buildConfig } from '../core/config.ts';
import { which } from '../core/which.ts';
import { chooseAccel } from '../vm/accel.ts';
import type { Backend } from '../vm/backend.ts';
import { buildGuestPrograms } from '../vm/build.ts';
import { exportImage, importImage } from '../vm/image-transfer.ts';
import { imageChoice } from '../vm/preflight.ts';
import { ensureInitramfs } from '../vm/initramfs.ts';
import { buildQemuArgs, QBOOT } from '../vm/qemu-args.ts';
import { QemuProcess } from '../vm/qemu-process.ts';
import { bootBackend, kernelChoice, warmStore } from '../vm/session.ts';
import { fanOut, runLab } from '../runner/executor.ts';
import { discoverLabs, loadLab } from '../runner/labs.ts';
import { vmDown, vmUp } from '../runner/vm-commands.ts';
import { AttachedBackend } from '../vm/warm.ts';
import fs from 'node:fs';
import { spawnSync } from 'node:child_process';

const { values } = parseArgsOrExit({ options: { runs: { type: 'string', default: '3' }, steps: { type: 'string', default: '20' }, help: { type: 'boolean', short: 'h' } } }, 'npm run bench -- --help');
if (values.help) {
  console.log('usage: npm run bench [-- --runs N --steps M]\n  N cold boots (default 3), M warm trivial steps (default 20)');
  process.exit(0);
}
const runs = wholeFlag('runs', values.runs, 1, 1000, 'npm run bench -- --help');
const stepRuns = wholeFlag('steps', values.steps, 1, 100000, 'npm run bench -- --help');

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

const cfg = buildConfig();
const hostCfg = buildConfig({ rootfs: 'host' });
const kernel = kernelChoice(hostCfg).kernel!;
const { path: initrd } = await ensureInitramfs(kernel, cfg.places.cacheDir);
const { accel } = await chooseAccel(kernel, initrd, cfg.machine.accel, cfg.places.cacheDir);
// The image and its kernel as a run resolves them (the check included).
const imageRun = await imageChoice(cfg.places.cacheDir, cfg.machine.arch);
if (!imageRun.kernel) throw imageRun.problem;
const image = imageRun.image!;
const imageKernel = imageRun.kernel;
/** A cold VM as `npm run lab` boots it: the guest image (its programs built in the guest by now), or the host root. */
const coldVm = () => bootBackend(cfg, imageKernel, () => {}, { backend: 'qemu', image });
const coldHostRootVm = () => bootBackend(hostCfg, kernel, () => {}, { backend: 'qemu' });
console.log(`kernel ${kernel.release} (image: ${image.manifest.kernelRelease}, ${image.manifest.digest.slice(0, 12)}), accel ${accel}, ${os.cpus().length} host cores, ${runs} runs\n`);

// 1. The floor: QEMU to our init, nothing else.
const floor: number[] = [];
for (let i = 0; i < runs; i++) {
  const log = path.join(os.tmpdir(), `sockmap-labs-bench-${process.pid}.log`);
  const t = Date.now();
  const q = new QemuProcess(
    buildQemuArgs({ kernelImage: kernel.image, kernelRelease: kernel.release, initramfs: initrd, accel, memoryMb: 1024, cpus: 2, shares: {}, append: ['sml.probe=1'], bios: fs.existsSync(QBOOT) ? QBOOT : undefined }),
    log,
  );
  const r = await q.waitFor('sml-init: PROBE-OK', 120_000);
  floor.push(Date.now() - t);
  await q.stop(500);
  fs.rmSync(log, { force: true });
  if (r !== 'marker') throw new Error(`floor boot failed: ${r}`);
}

// 2. Cold start until the guest answers (image, then host root), then 3. steps and 4. a whole lab on the last image VM.
await buildGuestPrograms();
const coldHostRoot: number[] = [];
for (let i = 0; i < runs; i++) {
  const b = await coldHostRootVm();
  const t = Date.now();
  try {
    await b.start();
    coldHostRoot.push(Date.now() - t);
  } finally {
    await b.stop();
  }
}
// A first image VM builds the lab programs in the guest when bpf/ changed; not what is measured here.
const first = await coldVm();
await first.start();
await first.stop();
const cold: number[] = [];
const steps: number[] = [];
let labMs = 0;
const quiet = fanOut([]);
for (let i = 0; i < runs; i++) {
  const b = await coldVm();
  const t = Date.now();
  try {
    await b.start();
    cold.push(Date.now() - t);
    if (i === runs - 1) {
      for (let s = 0; s < stepRuns; s++) {
        const r = await b.exec('true', { timeoutMs: 10_000 });
        if (r.code !== 0) throw new Error('trivial step failed');
        steps.push(r.durationMs);
      }
      const lab = loadLab(discoverLabs(cfg.places.labsDir)[0]);
      const info = { kernelRelease: image.manifest.kernelRelease };
      const tl = Date.now();
      const res = await runLab(lab, b, quiet, info);
      labMs = Date.now() - tl;
      if (res.status !== 'passed') throw new Error(`lab ${lab.id} did not pass in the benchmark`);
    }
  } finally {
    await b.stop();
  }
}

// 5. A whole lab, cold against warm, as `npm run lab 1` does either way.
const labRef = discoverLabs(cfg.places.labsDir)[0];
/** Wall time of start + lab 01 + stop on a backend made by `make` (booted, or attached). */
async function timeLab(make: () => Backend | Promise<Backend>, what: string): Promise<number> {
  const t = Date.now();
  const b = await make();
  try {
    await b.start();
    const r = await runLab(loadLab(labRef), b, quiet, { kernelRelease: image.manifest.kernelRelease });
    if (r.status !== 'passed') throw new Error(`${what} lab run failed`);
  } finally {
    await b.stop();
  }
  return Date.now() - t;
}
const coldLab: number[] = [];
for (let i = 0; i < runs; i++) coldLab.push(await timeLab(coldVm, 'cold'));
process.env.LAB_VM_DIR = fs.mkdtempSync(path.join(os.tmpdir(), 'sockmap-labs-bench-'));
const warmCfg = buildConfig();
const warmLab: number[] = [];
const cliCold: number[] = [];
const cliColdHostRoot: number[] = [];
const cliWarm: number[] = [];
/** `npm run lab 1` as a learner runs it; its wall time. */
function cliLab(extra: string[]): number {
  const t = Date.now();
  const r = spawnSync('npm', ['run', '-s', 'lab', '1', '--', '--quiet', ...extra], { encoding: 'utf8', env: { ...process.env, CI: '1', LAB_STATE_HOME: process.env.LAB_VM_DIR } }); // progress is not the learner's
  if (r.status !== 0) throw new Error(`npm run lab 1 failed (exit ${r.status}):\n${r.stdout}${r.stderr}`);
  return Date.now() - t;
}
for (let i = 0; i < runs; i++) {
  cliCold.push(cliLab(['--no-warm']));
  cliColdHostRoot.push(cliLab(['--no-warm', '--rootfs', 'host']));
}
const vngCold: number[] = [];
if (which('vng')) for (let i = 0; i < runs; i++) vngCold.push(cliLab(['--no-warm', '--backend', 'vng']));
try {
  const state = await vmUp(warmCfg);
  // vm up ran in this process: let its connection to the guest's agent close
  // before spawnSync blocks the event loop (QEMU serves one client at a time).
  await new Promise((r) => setTimeout(r, 1500));
  for (let i = 0; i < runs; i++) cliWarm.push(cliLab([]));
  for (let i = 0; i < runs; i++) warmLab.push(await timeLab(() => new AttachedBackend(state, warmStore(warmCfg)), 'warm'));
} finally {
  await vmDown(warmCfg);
  fs.rmSync(process.env.LAB_VM_DIR, { recursive: true, force: true });
}

// 6. The image itself: its size, its build time (as recorded), an export and an import.
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'sockmap-labs-bench-image-'));
let exportMs = 0;
let importMs = 0;
let exportBytes = 0;
try {
  const file = path.join(scratch, 'image.tar');
  let t = Date.now();
  exportBytes = (await exportImage({ cacheDir: cfg.places.cacheDir, arch: cfg.machine.arch, file })).bytes;
  exportMs = Date.now() - t;
  t = Date.now();
  await importImage({ cacheDir: path.join(scratch, 'cache'), file });
  importMs = Date.now() - t;
} finally {
  fs.rmSync(scratch, { recursive: true, force: true });
}
const m = image.manifest;
const mb = (n: number) => `${(n / 1e6).toFixed(0)} MB`;
const ofFloor = (xs: number[]) => `${(median(xs) / median(floor)).toFixed(2)}× the floor`;

const rows: [string, string, string][] = [
  ['floor: QEMU + busybox init', fmt(median(floor)), floor.map(fmt).join(', ')],
  ['cold: image, start to agent', fmt(median(cold)), `${cold.map(fmt).join(', ')}; ${ofFloor(cold)}`],
  ['cold: host root, start to SSH', fmt(median(coldHostRoot)), `${coldHostRoot.map(fmt).join(', ')}; ${ofFloor(coldHostRoot)}`],
  ['warm: trivial step', `${median(steps)} ms`, `min ${Math.min(...steps)} ms, max ${Math.max(...steps)} ms, n=${steps.length}`],
  ['warm: lab 01, all steps', fmt(labMs), ''],
  ['lab 01 cold: boot+lab+stop', fmt(median(coldLab)), coldLab.map(fmt).join(', ')],
  ['lab 01 warm: attach+lab', fmt(median(warmLab)), warmLab.map(fmt).join(', ')],
  ['warm re-run speed-up', `${(median(coldLab) / median(warmLab)).toFixed(1)}×`, ''],
  ['npm run lab 1, cold (image)', fmt(median(cliCold)), `${cliCold.map(fmt).join(', ')}; ${ofFloor(cliCold)} (goal ≤ 1.6×)`],
  ['npm run lab 1, cold, host root', fmt(median(cliColdHostRoot)), `${cliColdHostRoot.map(fmt).join(', ')}; ${ofFloor(cliColdHostRoot)}`],
  ['npm run lab 1, warm VM (image)', fmt(median(cliWarm)), cliWarm.map(fmt).join(', ')],
  ['speed-up as typed', `${(median(cliCold) / median(cliWarm)).toFixed(1)}×`, 'cold image / warm (goal ≥ 5×)'],
  vngCold.length
    ? ['npm run lab 1, cold, vng', fmt(median(vngCold)), `${vngCold.map(fmt).join(', ')}; ${(median(vngCold) / median(cliCold)).toFixed(1)}× the qemu backend`]
    : ['npm run lab 1, cold, vng', 'skipped', 'vng is not on PATH (pip install virtme-ng)'],
  ['image: rootfs.erofs', mb(m.files['rootfs.erofs'].size), `${m.arch}, ${m.erofs}; whole image ${mb(Object.values(m.files).reduce((a, f) => a + f.size, 0))}, export file ${mb(exportBytes)}`],
  ['image: build (recorded)', `${m.buildSeconds.toFixed(0)} s`, `${m.builtAt}, ${m.packages.length} packages, download not included`],
  ['image: export / import', `${fmt(exportMs)} / ${fmt(importMs)}`, 'one file, to and from a scratch cache (file in the page cache)'],
];
for (const [name, value, detail] of rows) console.log(`${name.padEnd(30)} ${value.padStart(9)}   ${detail}`);
console.log('\nreference (prototype, TCG): 4 s to busybox init, 11.1 s to a working sshd');
