// The `image` command of runner/cli.ts: the guest image (vm/image.ts) built
// from Debian packages, moved between machines as one file, listed, checked.
// The CLI adds it with one line: addImageCommand(program).
import path from 'node:path';
import { Command, Option } from 'commander';
import { buildConfig, type Config } from '../core/config.ts';
import { UserError } from '../core/errors.ts';
import { exitCodeFor } from '../core/exit.ts';
import { catchSignals } from '../core/signals.ts';
import { buildImage, describeImages, resolveInputs, scriptsDigest, sweepStale } from '../vm/image.ts';
import { chooseReference, defaultRepository, parseRepository, pullImage } from '../vm/image-pull.ts';
import { exportImage, importImage } from '../vm/image-transfer.ts';
import { buildFix, currentImageFolder, hostArch, IMAGE_ARCHES, imagesDir, verifyImage, type ImageArch } from '../vm/image-verify.ts';
import { prepareImage } from '../vm/session.ts';
import { sessionUi } from './run-labs.ts';
import { colorWanted, paint, spinner } from './style.ts';

const IMAGE_HELP = `
Examples:
  npm run image build                     build the guest image for this machine (amd64 here) from Debian 12 packages
  npm run image build -- --arch arm64     …for an arm64 guest (sudo dpkg --add-architecture arm64 && sudo apt-get update first)
  npm run image export class.tar          the image as one file, for USB sticks
  npm run image import /media/usb/class.tar
  npm run image pull                      download the published image for this checkout's inputs (else the newest one)
  npm run image pull -- --arch arm64 --digest sha256:…   …a pinned one, for an arm64 guest
  npm run image list                      images in the cache: arch, size, digest, which one boots
  npm run image verify                    hash every file of the current image again
  npm run image prepare                   boot the image once and build the lab programs in it (./setup.sh does)

The image lives in <cache>/images/<arch>-<inputs digest>/: rootfs.erofs (the
root file system, read-only, lz4hc), vmlinuz, initramfs.cpio.gz and
manifest.json (package versions, each file's size and sha256). A build with
unchanged inputs (package versions from apt, vm/guest/image-init, the build
script) does nothing. A corrupt, truncated or wrong-architecture image is
never booted: the error names the command that fixes it.

"pull" fetches an image a release published (an OCI artifact on
ghcr.io, package.json's sockmapLabs.imageRepository): by default the one
tagged <arch>-<inputs digest> (apt tells the inputs; without apt,
<arch>-latest). The download is checked against the registry's manifest
(size, sha256), then imported exactly as "import" does.

Exit status: 0 done, 2 bad input or a bad image (the message says the fix), 130 interrupted.`;

/** Step lines and finer progress: a spinner on a terminal, plain lines (steps only) otherwise. */
async function makeUi(cfg: Config) {
  const tty = !!process.stdout.isTTY && !cfg.ci;
  const p = paint(colorWanted());
  if (!tty) {
    return { tty, step: (l: string) => console.log(l), progress: (_l: string) => {}, done: () => {}, fail: () => {}, p };
  }
  const s = await spinner('');
  let current = '';
  return {
    tty,
    step: (l: string) => {
      if (current) s.stopAndPersist({ symbol: p.green('✔'), text: current });
      current = l;
      s.start(l);
    },
    progress: (l: string) => {
      s.text = `${current} — ${l}`;
    },
    done: () => {
      if (current) s.stopAndPersist({ symbol: p.green('✔'), text: current });
      else s.stop();
      current = '';
    },
    fail: () => {
      if (current) s.stopAndPersist({ symbol: p.red('✖'), text: current });
      else s.stop();
      current = '';
    },
    p,
  };
}

/** Runs `work` with Ctrl-C and SIGTERM aborting its signal; an interrupted run exits 130 (143), its temporary files gone. */
async function interruptible(cfg: Config, work: (signal: AbortSignal, ui: Awaited<ReturnType<typeof makeUi>>) => Promise<void>): Promise<void> {
  const ui = await makeUi(cfg);
  const signals = catchSignals();
  try {
    await work(signals.signal, ui);
    ui.done();
  } catch (e) {
    ui.fail();
    const sig = signals.interrupted();
    if (!sig) throw e;
    console.error(`${sig === 'SIGINT' ? 'Ctrl-C' : sig}: stopped; nothing half-made is left in the cache`);
    process.exitCode = exitCodeFor(sig);
  } finally {
    signals.dispose();
  }
}

const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;
const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/** A download's progress: a bar in the spinner on a terminal (10 updates a second), otherwise a plain line at each quarter. */
export function downloadProgress(ui: { tty: boolean; progress: (l: string) => void }, print: (l: string) => void = console.log) {
  const t0 = Date.now();
  let shown = 0;
  let quarter = 0;
  return (got: number, total: number) => {
    const now = Date.now();
    const rate = got / Math.max(0.001, (now - t0) / 1000);
    const pct = total ? Math.floor((100 * got) / total) : 100;
    if (ui.tty) {
      if (now - shown < 100 && got < total) return;
      shown = now;
      const full = Math.round((24 * pct) / 100);
      ui.progress(`[${'█'.repeat(full)}${'░'.repeat(24 - full)}] ${pct}% ${mb(got)} of ${mb(total)}, ${mb(rate)}/s`);
      return;
    }
    const q = total ? Math.floor((4 * got) / total) : 4;
    if (q <= quarter) return;
    quarter = q;
    print(`  ${q * 25}%: ${mb(got)} of ${mb(total)}, ${mb(rate)}/s`);
  };
}

function archOf(o: { arch?: string }): ImageArch {
  if (o.arch) return o.arch as ImageArch;
  const a = hostArch();
  if (!a) throw new UserError(`this machine (${process.arch}) is neither amd64 nor arm64: say which guest to build`, 'npm run image build -- --arch amd64');
  return a;
}

const archOption = () => new Option('-a, --arch <arch>', 'the guest architecture (default: this machine\'s)').choices([...IMAGE_ARCHES]);

export function addImageCommand(program: Command): Command {
  const image = program.command('image').description('the guest image: build it from Debian packages, export and import it as one file, list and verify it').addHelpText('after', IMAGE_HELP);

  image
    .command('build')
    .description('build the guest image from Debian 12 packages (nothing to do when its inputs did not change)')
    .addOption(archOption())
    .option('--force', 'build even when the image for these inputs is there')
    .action(async (o) => {
      const cfg = buildConfig();
      const arch = archOf(o);
      await interruptible(cfg, async (signal, ui) => {
        const r = await buildImage({ arch, cacheDir: cfg.places.cacheDir, log: ui.step, progress: ui.progress, signal, force: !!o.force });
        ui.done();
        const m = r.manifest;
        if (!r.built) {
          console.log(`the ${arch} guest image for these inputs is already built: ${r.dir} (nothing to do, ${r.seconds.toFixed(1)} s)`);
          return;
        }
        console.log(
          `built the ${arch} guest image in ${r.seconds.toFixed(0)} s: ${r.dir}\n` +
            `  rootfs.erofs ${mb(m.files['rootfs.erofs'].size)}, vmlinuz ${mb(m.files.vmlinuz.size)}, initramfs ${mb(m.files['initramfs.cpio.gz'].size)}; ` +
            `kernel ${m.kernelRelease}, ${m.packages.length} packages`,
        );
      });
    });

  image
    .command('export')
    .description('write the current guest image to one file (to copy to other machines)')
    .argument('<file>', 'the file to write')
    .addOption(archOption())
    .action(async (file: string, o) => {
      const cfg = buildConfig();
      const arch = archOf(o);
      await interruptible(cfg, async (signal, ui) => {
        const t0 = Date.now();
        const r = await exportImage({ cacheDir: cfg.places.cacheDir, arch, file, signal, log: ui.step });
        ui.done();
        console.log(`exported the ${arch} guest image (${r.manifest.digest.slice(0, 12)}, ${mb(r.bytes)}) to ${path.resolve(file)} in ${secs(Date.now() - t0)}`);
        console.log(`on each machine: npm run image import ${path.basename(file)}`);
      });
    });

  image
    .command('import')
    .description('add a guest image from a file made by "image export"; checked in full before it is used')
    .argument('<file>', 'the exported image file')
    .addOption(new Option('-a, --arch <arch>', 'refuse the file unless its image is for this architecture').choices([...IMAGE_ARCHES]))
    .action(async (file: string, o) => {
      const cfg = buildConfig();
      await interruptible(cfg, async (signal, ui) => {
        sweepStale(cfg.places.cacheDir);
        const t0 = Date.now();
        const r = await importImage({ cacheDir: cfg.places.cacheDir, file, arch: o.arch, signal, log: ui.step });
        ui.done();
        const m = r.manifest;
        console.log(
          `${r.added ? 'imported' : 'already in the cache:'} the ${m.arch} guest image ${path.basename(r.dir)} (kernel ${m.kernelRelease}, ${mb(m.files['rootfs.erofs'].size)}) in ${secs(Date.now() - t0)}; ${m.arch} VMs boot it now`,
        );
        const host = hostArch();
        if (host && host !== m.arch) console.log(`note: this machine is ${host}; an ${m.arch} guest runs here only under emulation`);
      });
    });

  image
    .command('pull')
    .description('download a published guest image (an OCI artifact a release put on ghcr.io) and import it; checked in full before it is used')
    .addOption(archOption())
    .addOption(new Option('--digest <sha256>', 'the manifest digest of the image to pull (pins one image)').conflicts('ref'))
    .option('--ref <tag>', "the tag to pull, e.g. amd64-latest (default: <arch>-<this checkout's inputs digest>)")
    .option('--repository <name>', "where images are published (default: package.json's sockmapLabs.imageRepository)")
    .option('--registry <host>', 'another registry for that repository: a host (a mirror), or http://HOST:PORT for one without TLS')
    .action(async (o) => {
      const cfg = buildConfig();
      const { cacheDir } = cfg.places;
      const arch = archOf(o);
      const repository = parseRepository(o.repository ?? defaultRepository(), o.registry);
      await interruptible(cfg, async (signal, ui) => {
        sweepStale(cacheDir);
        if (!o.digest && !o.ref) ui.step(`finding this checkout's ${arch} image inputs (apt)`);
        const choice = await chooseReference({ arch, cacheDir, digest: o.digest, ref: o.ref, resolve: resolveInputs, signal });
        if (choice.note) {
          ui.done();
          console.log(`note: ${choice.note}`);
        }
        const r = await pullImage({ cacheDir, arch, repository, choice, signal, log: ui.step, onProgress: downloadProgress(ui) });
        ui.done();
        const m = r.manifest;
        console.log(
          r.downloaded
            ? `pulled the ${arch} guest image ${path.basename(r.dir)} (kernel ${m.kernelRelease}, ${mb(m.files['rootfs.erofs'].size)}) from ${repository.display} in ${r.seconds.toFixed(1)} s; ${arch} VMs boot it now`
            : `an ${arch} guest image for the same inputs is in the cache already, sound: ${path.basename(r.dir)} (nothing downloaded); ${arch} VMs boot it`,
        );
        if (r.downloaded) console.log(`this very image elsewhere: npm run image pull --${arch === hostArch() ? '' : ` --arch ${arch}`} --digest ${r.published.manifestDigest}`);
        const host = hostArch();
        if (host && host !== arch) console.log(`note: this machine is ${host}; an ${arch} guest runs here only under emulation`);
      });
    });

  image
    .command('prepare')
    .description("do the first lab run's one-time work now: boot the image once, build the lab programs in the guest, stop (nothing to do when done)")
    .addOption(archOption())
    .addHelpText('after', '\n./setup.sh runs it last, so that the first npm run lab is as quick as the next. Again after a change to bpf/ or a new image: once.')
    .action(async (o) => {
      const cfg = buildConfig({ rootfs: 'image', arch: o.arch });
      const arch = cfg.machine.arch;
      const tty = !!process.stdout.isTTY && !cfg.ci;
      const ui = sessionUi({ tty, notice: (l) => console.log(`» ${l}`), what: 'the build' });
      const t0 = Date.now();
      const r = await prepareImage(cfg, ui);
      if (r.interrupted) {
        console.error(`${r.interrupted === 'SIGINT' ? 'Ctrl-C' : r.interrupted}: stopped the VM; the lab programs are not built (the first lab run builds them, or run this again)`);
        process.exit(exitCodeFor(r.interrupted));
      }
      console.log(
        r.done === 'ready'
          ? `the ${arch} guest image is prepared: its lab programs for this checkout are built (nothing to do)`
          : `prepared the ${arch} guest image in ${secs(Date.now() - t0)}: the lab programs are built; lab runs start without building`,
      );
    });

  image
    .command('list', { isDefault: true })
    .description('the images in the cache: arch, size, digest, which one boots, which one matches the current inputs')
    .action(async () => {
      const cfg = buildConfig();
      const { cacheDir } = cfg.places;
      sweepStale(cacheDir);
      const rows = describeImages(cacheDir);
      if (!rows.length) throw new UserError(`no guest images in ${imagesDir(cacheDir)}`, `npm run image build   (or: npm run image import FILE)`);
      const p = paint(colorWanted());
      // Which folder the current inputs name, per arch (apt, a few seconds; unknown without apt).
      const wanted = new Map<string, string>();
      const arches = [...new Set(rows.map((r) => r.manifest?.arch).filter((a): a is ImageArch => !!a))];
      for (const a of arches) {
        try {
          wanted.set(a, (await resolveInputs(a, cacheDir)).folder);
        } catch (e) {
          wanted.set(a, `? (${(e as Error).message.split(':')[0]})`);
        }
      }
      const scripts = scriptsDigest();
      for (const r of rows) {
        const m = r.manifest;
        const arch = (m?.arch ?? r.folder.split('-')[0]) as ImageArch;
        const marks: string[] = [];
        if (currentImageFolder(cacheDir, arch) === r.folder) marks.push(p.bold('boots'));
        const w = wanted.get(arch);
        if (w === r.folder) marks.push(p.green('matches the inputs'));
        else if (w?.startsWith('?')) marks.push(p.dim(`inputs unknown ${w.slice(2)}`));
        else if (m) marks.push(p.yellow(`inputs changed: ${buildFix(arch)}`));
        if (m && m.scriptsDigest !== scripts) marks.push(p.yellow('built from another image-init or build script'));
        console.log(
          m
            ? `${r.folder}  ${m.arch.padEnd(5)}  ${mb(r.bytes).padStart(9)}  digest ${m.digest.slice(0, 12)}  kernel ${m.kernelRelease}  built ${m.builtAt.slice(0, 16).replace('T', ' ')}  ${marks.join(', ')}`
            : `${r.folder}  ${p.red('unusable')}: ${r.problem}`,
        );
      }
      console.log(p.dim(`in ${imagesDir(cacheDir)}`));
    });

  image
    .command('verify')
    .description('hash every file of the current image (all images with --all) against its manifest')
    .addOption(archOption())
    .option('--all', 'every image in the cache')
    .action(async (o) => {
      const cfg = buildConfig();
      const { cacheDir } = cfg.places;
      await interruptible(cfg, async (signal, ui) => {
        const folders = o.all
          ? describeImages(cacheDir).map((r) => ({ folder: r.folder, arch: (r.manifest?.arch ?? r.folder.split('-')[0]) as ImageArch }))
          : [{ folder: currentImageFolder(cacheDir, archOf(o)), arch: archOf(o) }];
        const bad: string[] = [];
        for (const { folder, arch } of folders) {
          if (!folder) throw new UserError(`no ${arch} guest image in ${imagesDir(cacheDir)}`, `${buildFix(arch)}   (or: npm run image import FILE)`);
          const t0 = Date.now();
          ui.step(`checking ${folder}`);
          try {
            const { manifest } = await verifyImage(path.join(imagesDir(cacheDir), folder), { arch, full: true, signal });
            ui.done();
            console.log(`${folder}: sound (${manifest.arch}, digest ${manifest.digest.slice(0, 12)}, hashed in ${secs(Date.now() - t0)})`);
          } catch (e) {
            if (!(e instanceof UserError) || folders.length === 1) throw e;
            ui.fail();
            console.log(`${folder}: ${e.message}`);
            bad.push(folder);
          }
        }
        if (bad.length) throw new UserError(`${bad.length} of ${folders.length} guest images are unusable: ${bad.join(', ')}`, 'npm run image build   (or: npm run image import FILE)');
      });
    });

  return image;
}
