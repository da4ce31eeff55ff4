// OFFLINE.md, the classroom kit's plain-text guide: the offline steps in order,
// with this kit's own file names (runner/kit.ts writes it last, from kit.json).
import { SETUP_PACKAGES } from './kit-debs.ts';
import type { KitRecord } from './kit.ts';

export function offlineGuide(k: KitRecord): string {
  const img = (a: 'amd64' | 'arm64') => (k.images[a] ? `KIT/${k.images[a]!.file}` : `(not in this kit: ${a === 'arm64' ? 'npm run image build -- --arch arm64' : 'npm run image build'} on the instructor's machine, then npm run kit again)`);
  const node = k.node ? `Node ${Object.values(k.node.version).join(' / ')} and npm ${k.node.npm}` : 'no Node (see "Not in this kit")';
  const lines = [
    'sockmap-labs classroom kit: installing with no network',
    '=======================================================',
    '',
    `Made ${k.made.slice(0, 16).replace('T', ' ')} UTC from commit ${k.commit.slice(0, 12)}.`,
    ...(k.dirty.length ? [`The checkout had uncommitted changes then (${k.dirty.join(', ')}); they are NOT in this kit.`] : []),
    `Holds: the project, the guest images (${Object.keys(k.images).join(', ')}), its npm packages for`,
    `Linux x64/arm64 and macOS arm64/x64, ${node},`,
    `and QEMU for Debian 12 (${Object.keys(k.debs).join(', ') || 'none'}).`,
    '',
    'Below, KIT is the folder of this file on the stick, e.g. /media/$USER/STICK',
    '(Linux) or /Volumes/STICK (macOS). On each laptop, in this order:',
    '',
    '1. Node.js 20 (skip if `node --version` prints v20 or newer)',
    '',
    '       sh KIT/node/install-node.sh',
    '',
    '   As root it installs into /usr/local; otherwise into ~/.local (then, if it',
    '   says so: export PATH="$HOME/.local/bin:$PATH", and add that line to',
    '   ~/.profile). It picks the file for this laptop (Linux x86_64/aarch64,',
    '   macOS arm64/x86_64) from KIT/node/: the official Node binaries as the npm',
    '   registry publishes them, and npm.',
    '',
    '2. QEMU',
    '',
    '   Debian 12 on a PC (amd64):',
    '       sudo apt-get install KIT/debs/debian12-amd64/*.deb',
    '   Debian 12 on arm64:',
    '       sudo apt-get install KIT/debs/debian12-arm64/*.deb',
    '   These are QEMU and every package it needs beyond a minimal Debian 12;',
    '   apt installs them from the files, with no network.',
    '',
    '   macOS: `brew install qemu`. It needs network: do it before class (this',
    '   kit cannot carry Homebrew\'s packages). Other Linux systems: their own',
    '   QEMU package, also before class (Fedora: sudo dnf install',
    '   qemu-system-x86, qemu-system-aarch64 on arm64). Ubuntu and other Debian',
    `   relatives: sudo apt-get install ${SETUP_PACKAGES.amd64.join(' ')}`,
    '   (qemu-system-arm for qemu-system-x86 on arm64), before class: ./setup.sh',
    '   asks for these and would go to the network for any that is missing.',
    '',
    '3. The project',
    '',
    '       tar -xzf KIT/sockmap-labs.tar.gz -C ~',
    '       cd ~/sockmap-labs',
    '',
    '4. Its npm packages, from the kit',
    '',
    '       npm ci --offline --cache KIT/npm-cache',
    '',
    '   npm writes to the cache it reads: from a read-only stick, copy the folder',
    '   first (cp -R KIT/npm-cache ~/npm-cache) and name the copy. Warnings about',
    '   optional native add-ons that cannot be built offline are harmless: the',
    '   project does not need them.',
    '',
    '5. The guest image for this laptop',
    '',
    '   PCs and Intel Macs (x86_64), Linux or macOS:',
    `       npm run image import ${img('amd64')}`,
    '   Apple-silicon Macs (M1 and later) and arm64 Linux:',
    `       npm run image import ${img('arm64')}`,
    '   (`uname -m` says which: x86_64, or arm64/aarch64.)',
    '',
    '6. Set-up',
    '',
    '       ./setup.sh',
    '',
    '   It finds QEMU, the packages and the image in place and downloads nothing.',
    '',
    '7. The first lab',
    '',
    '       npm run lab 1',
    '',
    'Done: the labs need no network from here on.',
    '',
  ];
  if (k.missing.length) {
    lines.push('Not in this kit (the instructor adds these by hand, or the laptops get them before class)', '-----------------------------------------------------------------------------------------', '');
    for (const m of k.missing) lines.push(...wrap(`- ${m}`, 78, '  '), '');
  }
  lines.push(
    'For the instructor',
    '------------------',
    '',
    'Remake or update the kit from a checkout with `npm run kit -- KIT`: files',
    'already there and sound are kept, changed ones written again. What the kit',
    'holds, with versions and sizes, is in KIT/kit.json.',
    '',
  );
  return lines.join('\n');
}

function wrap(text: string, width: number, indent: string): string[] {
  const out: string[] = [];
  let line = '';
  for (const w of text.split(' ')) {
    if (line && line.length + 1 + w.length > width) {
      out.push(line);
      line = indent + w;
    } else line = line ? `${line} ${w}` : w;
  }
  if (line) out.push(line);
  return out;
}
