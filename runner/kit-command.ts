// The `kit` command of runner/cli.ts (npm run kit -- DIR): a classroom kit for
// installing and running the labs with no network (runner/kit.ts).
import { Command, Option } from 'commander';
import { buildConfig } from '../core/config.ts';
import { exitCodeFor } from '../core/exit.ts';
import { catchSignals } from '../core/signals.ts';
import { IMAGE_ARCHES, type ImageArch } from '../vm/image-verify.ts';
import { kitSize, makeKit } from './kit.ts';

const KIT_HELP = `
Examples:
  npm run kit -- /media/$USER/STICK          a kit on a mounted stick (the folder is made if the stick is there)
  npm run kit -- /media/$USER/STICK --build  …building a guest image the cache lacks first (arm64 on x86: ~6 min)
  npm run kit -- ./class-kit --arch amd64    a kit for PCs only (no Apple-silicon Macs)

What it writes (about 1 GB), then OFFLINE.md there says what to do on each laptop, in order:
  OFFLINE.md, kit.json          the steps with this kit's file names; what the kit holds
  sockmap-labs.tar.gz           the project, as committed (git archive HEAD; uncommitted changes are not in it)
  images/                       the amd64 and arm64 guest images (npm run image import FILE)
  npm-cache/                    every npm package for Linux x64/arm64 and macOS arm64/x64 (npm ci --offline --cache)
  node/                         Node 20 for those four, npm, and install-node.sh (from the npm registry)
  debs/debian12-{amd64,arm64}/  QEMU for Debian 12 and what it needs beyond a minimal Debian 12

Making a kit needs the network (the npm registry, Debian's mirror) and both guest
images in the cache (npm run image build; -- --arch arm64 after
sudo dpkg --add-architecture arm64 && sudo apt-get update). QEMU for macOS
(Homebrew) cannot be put in a kit: OFFLINE.md says so.

Run it again on the same folder to update the kit: what is there and sound is
kept, the rest written. Nothing in the folder that the kit did not write is
touched.

Exit status: 0 done, 2 bad input (the message says the fix), 130 interrupted.`;

export function addKitCommand(program: Command): Command {
  return program
    .command('kit')
    .description('write a classroom kit (both guest images, the project, its npm packages, Node and QEMU) into a folder, for installs with no network')
    .argument('<dir>', 'the folder to write the kit into, e.g. /media/$USER/STICK')
    .addOption(new Option('-a, --arch <arch>', 'only this guest architecture\'s image (default: both)').choices([...IMAGE_ARCHES]))
    .option('--build', 'build a guest image the cache does not have (else the kit stops and says how)')
    .option('--no-check', 'skip the offline npm installs the kit checks itself with (one per platform, ~1 min)')
    .addHelpText('after', KIT_HELP)
    .action(async (dir: string, o: { arch?: ImageArch; build?: boolean; check: boolean }) => {
      const cfg = buildConfig();
      const signals = catchSignals();
      const t0 = Date.now();
      const log = (l: string) => console.log(`[${((Date.now() - t0) / 1000).toFixed(0).padStart(4)} s] ${l}`);
      try {
        const r = await makeKit({ dir, cacheDir: cfg.places.cacheDir, arches: o.arch ? [o.arch] : [...IMAGE_ARCHES], build: !!o.build, check: o.check, log, signal: signals.signal });
        const k = r.record;
        const d = dir.startsWith('/') ? dir : undefined;
        console.log(
          `kit ready in ${d ?? dir}: ${kitSize(r.bytes)} (${r.written} files written, ${r.kept} kept${r.removed.length ? `, ${r.removed.length} of an earlier kit removed` : ''}) in ${((Date.now() - t0) / 1000).toFixed(0)} s`,
        );
        console.log(`  commit ${k.commit.slice(0, 12)}${k.dirty.length ? ` (uncommitted changes in ${k.dirty.length} files are NOT in the kit)` : ''}; images ${Object.keys(k.images).join(', ')}; ${k.npm.packages} npm packages (offline install checked: ${k.npm.checked.join(', ') || 'no'})`);
        if (k.node) console.log(`  Node ${[...new Set(Object.values(k.node.version))].join(', ')} for ${Object.keys(k.node.version).join(', ')}; npm ${k.node.npm}`);
        for (const m of k.missing) console.log(`  not in the kit: ${m}`);
        console.log(`next: read OFFLINE.md in the kit (the steps on each laptop, in order)`);
      } catch (e) {
        const sig = signals.interrupted();
        if (!sig) throw e;
        console.error(`${sig === 'SIGINT' ? 'Ctrl-C' : sig}: stopped; the kit keeps what was finished (no half-written files); run the same command again to finish it`);
        process.exitCode = exitCodeFor(sig);
      } finally {
        signals.dispose();
      }
    });
}
