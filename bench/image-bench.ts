// npx tsx bench/image-bench.ts [-- --build] [--runs N] [--arch amd64|arm64]:
// the guest image's figures.
//
//   build        --build: a full build into a scratch cache, the download cache
//                copied in (so: unpack, depmod, initramfs, mkfs.erofs, hashes;
//                no network); else the build time the manifest recorded
//   no-op build  `image build` again with unchanged inputs (apt resolves the versions)
//   sizes        rootfs.erofs, vmlinuz, initramfs, and the export file
//   export       the current image to one file (a full hash first)
//   import       that file into a scratch cache (unpack + hash + rename)
//   check        a boot's check of the image: the stamp (cheap), and a full hash
//   boot         QEMU (TCG or KVM as LAB_ACCEL says; TCG here) to "sml-image: READY",
//                and with the project share and the serial transport to
//                "sml-stage2: AGENT-READY" (amd64 only)
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgsOrExit, wholeFlag } from '../core/args.ts';
import { buildConfig } from '../core/config.ts';
import { projectRoot } from '../core/paths.ts';
import { buildImage } from '../vm/image.ts';
import { exportImage, importImage } from '../vm/image-transfer.ts';
import { hostArch, imagesDir, openImage, verifyImage, type ImageArch } from '../vm/image-verify.ts';
import { buildQemuArgs, QBOOT } from '../vm/qemu-args.ts';
import { QemuProcess } from '../vm/qemu-process.ts';

const { values } = parseArgsOrExit({ options: { build: { type: 'boolean' }, runs: { type: 'string', default: '3' }, arch: { type: 'string' }, help: { type: 'boolean', short: 'h' } } }, 'npm run bench:image -- --help');
if (values.help) {
  console.log('usage: npm run bench:image -- [--build] [--runs N] [--arch amd64|arm64]\n  --build: time a full build (in a scratch cache); N boots (default 3)');
  process.exit(0);
}
const arch = (values.arch ?? hostArch() ?? 'amd64') as ImageArch;
const runs = wholeFlag('runs', values.runs, 1, 1000, 'npm run bench:image -- --help');
const cfg = buildConfig();
const { cacheDir } = cfg.places;
const rows: [string, string, string][] = [];
const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'sockmap-labs-image-bench-'));

try {
  if (values.build) {
    const debs = path.join(imagesDir(cacheDir), 'debs', arch);
    const to = path.join(imagesDir(scratch), 'debs', arch);
    fs.mkdirSync(to, { recursive: true });
    if (fs.existsSync(debs)) for (const f of fs.readdirSync(debs)) fs.copyFileSync(path.join(debs, f), path.join(to, f));
    const stages: [string, number][] = [];
    const t = Date.now();
    const r = await buildImage({ arch, cacheDir: scratch, log: (l) => stages.push([l, Date.now() - t]) });
    rows.push(['build (scratch cache)', s(r.seconds * 1000), stages.map(([l, at], i) => `${l.split(' (')[0].split(';')[0]} ${s((stages[i + 1]?.[1] ?? r.seconds * 1000) - at)}`).join('; ')]);
  }
  const img = await openImage(values.build ? scratch : cacheDir, arch);
  const home = values.build ? scratch : cacheDir;
  if (!values.build) rows.push(['build (as recorded)', `${img.manifest.buildSeconds.toFixed(1)} s`, `${img.manifest.builtAt}, ${img.manifest.packages.length} packages`]);
  const t1 = Date.now();
  const again = await buildImage({ arch, cacheDir: home, log: () => {} });
  rows.push(['no-op build', s(Date.now() - t1), again.built ? 'BUILT AGAIN (inputs changed?)' : 'apt resolves the versions, the image checks out']);
  const m = img.manifest;
  rows.push(['rootfs.erofs', mb(m.files['rootfs.erofs'].size), m.erofs]);
  rows.push(['vmlinuz + initramfs', mb(m.files.vmlinuz.size + m.files['initramfs.cpio.gz'].size), `kernel ${m.kernelRelease}, ${m.bootModules.length} boot modules`]);

  const file = path.join(scratch, 'export.tar');
  const t2 = Date.now();
  const ex = await exportImage({ cacheDir: home, arch, file });
  rows.push(['export', s(Date.now() - t2), `${mb(ex.bytes)} file (full hash first)`]);
  const into = fs.mkdtempSync(path.join(scratch, 'import-'));
  const t3 = Date.now();
  await importImage({ cacheDir: into, file });
  rows.push(['import', s(Date.now() - t3), 'unpack, hash as written, rename into place (file in the page cache)']);

  const t4 = Date.now();
  await verifyImage(img.dir, { arch });
  const stamp = Date.now() - t4;
  const t5 = Date.now();
  await verifyImage(img.dir, { arch, full: true });
  rows.push(['check before a boot', `${stamp} ms`, `the stamp; a full hash takes ${s(Date.now() - t5)}`]);

  if (arch === 'amd64' && process.arch === 'x64') {
    for (const withShare of [false, true]) {
      const times: number[] = [];
      const agent: number[] = [];
      for (let i = 0; i < runs; i++) {
        const dir = fs.mkdtempSync(path.join(scratch, 'vm-'));
        const serial = withShare ? { agentSocket: path.join(dir, 'a.sock'), shellSocket: path.join(dir, 's.sock') } : undefined;
        const t = Date.now();
        const q = new QemuProcess(
          [
            ...buildQemuArgs({
              kernelImage: img.kernel,
              kernelRelease: m.kernelRelease,
              initramfs: img.initramfs,
              accel: cfg.machine.accel === 'kvm' ? 'kvm' : 'tcg',
              memoryMb: 1024,
              cpus: 2,
              shares: withShare ? { project: projectRoot } : {},
              serial,
              bios: fs.existsSync(QBOOT) ? QBOOT : undefined,
            }),
            '-drive',
            `file=${img.rootfs},if=virtio,format=raw,readonly=on`,
          ],
          path.join(dir, 'console.log'),
        );
        try {
          if ((await q.waitFor('sml-image: READY', 120_000)) !== 'marker') throw new Error(`no READY: ${fs.readFileSync(path.join(dir, 'console.log'), 'utf8').slice(-800)}`);
          times.push(Date.now() - t);
          if (withShare) {
            if ((await q.waitFor('sml-stage2: AGENT-READY', 60_000)) !== 'marker') throw new Error('no AGENT-READY');
            agent.push(Date.now() - t);
          }
        } finally {
          await q.stop(500);
        }
      }
      rows.push([withShare ? 'boot: READY, with share' : 'boot: READY, bare', s(median(times)), `median of ${runs}: ${times.map(s).join(', ')}`]);
      if (withShare) rows.push(['boot: AGENT-READY', s(median(agent)), `median of ${runs}: ${agent.map(s).join(', ')} (serial transport)`]);
    }
  }
} finally {
  fs.rmSync(scratch, { recursive: true, force: true });
}

console.log(`guest image ${arch}, ${os.cpus().length} host cores\n`);
for (const [name, value, detail] of rows) console.log(`${name.padEnd(26)} ${value.padStart(9)}   ${detail}`);
