// The classroom kit's QEMU for Debian 12 laptops: the .deb files of QEMU and
// every package it needs beyond a minimal Debian 12 (what `mmdebstrap
// --variant=apt` installs: the Essential and Priority: required packages, and
// apt), for one architecture, so `sudo apt-get install ./debs/debian12-amd64/*.deb`
// installs it with no network.
//
// apt runs with a private state (its own sources, lists, archives and a dpkg
// status file of its own, under the cache), never the host's: the host's apt
// state is not touched, and the kit's debs do not depend on what this machine
// has installed, nor on its architecture or release. Two status files: an empty
// one to learn which packages a minimal Debian 12 has (apt resolves the
// required set as a fresh bootstrap would), then that set marked installed, so
// the download is exactly what such a machine lacks.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { partialName } from '../core/output-file.ts';
import { BUILD_TOOLS } from '../vm/image.ts';
import type { ImageArch } from '../vm/image-verify.ts';

const run = promisify(execFile);

/**
 * What ./setup.sh asks a Debian 12 laptop for, per its own architecture: QEMU
 * for a guest of the same architecture, and what an image build runs
 * (vm/image.ts BUILD_TOOLS: setup.sh asks for them too, so without them it
 * would go to the network). test/kit.test.ts keeps this list and setup.sh's
 * the same.
 */
export const SETUP_PACKAGES: Record<ImageArch, string[]> = {
  amd64: ['qemu-system-x86', ...new Set(BUILD_TOOLS.map(([, pkg]) => pkg))],
  arm64: ['qemu-system-arm', ...new Set(BUILD_TOOLS.map(([, pkg]) => pkg))],
};

export const DEBIAN12_SOURCES = [
  'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main',
  'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm-updates main',
  'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security bookworm-security main',
];
const KEYRING = '/usr/share/keyrings/debian-archive-keyring.gpg';

/** Why debs cannot be fetched on this machine, or undefined when they can. */
export function debsUnavailable(): string | undefined {
  for (const [tool, where] of [
    ['apt-get', '/usr/bin/apt-get'],
    ['apt-cache', '/usr/bin/apt-cache'],
  ])
    if (!fs.existsSync(where)) return `${tool} is missing (the debs are fetched with apt, on a Debian or Ubuntu machine)`;
  if (!fs.existsSync(KEYRING)) return `Debian's archive keyring ${KEYRING} is missing (sudo apt-get install debian-archive-keyring)`;
  return undefined;
}

export interface Deb {
  pkg: string;
  version: string;
  arch: string;
  /** The name apt gives the file in its archives (an epoch's ':' is '%3a'). */
  file: string;
}

/** The packages an `apt-get -s install` would unpack ("Inst name (version ... [arch])" lines). */
export function parseSimulated(out: string): Deb[] {
  const debs: Deb[] = [];
  for (const m of out.matchAll(/^Inst (\S+) (?:\[[^\]]*\] )?\((\S+) [^\n]*?\[(\S+)\]\)/gm)) {
    const [, pkg, version, arch] = m;
    debs.push({ pkg: pkg.replace(/:\S+$/, ''), version, arch, file: `${pkg.replace(/:\S+$/, '')}_${version.replace(/:/g, '%3a')}_${arch}.deb` });
  }
  return debs;
}

/** Splits a Packages (or dumpavail) text into stanzas, keyed by "name version arch". */
function stanzas(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const s of text.split(/\n\n+/)) {
    const name = /^Package: (\S+)/m.exec(s)?.[1];
    const version = /^Version: (\S+)/m.exec(s)?.[1];
    const arch = /^Architecture: (\S+)/m.exec(s)?.[1];
    if (name && version && arch) out.set(`${name} ${version} ${arch}`, s.trim());
  }
  return out;
}

export interface DebsResult {
  debs: Deb[];
  /** The packages a minimal Debian 12 has (not in the kit). */
  baseCount: number;
  dir: string;
  /** The files copied into `dir` this time (the others were there already). */
  copied: string[];
}

/**
 * Fetches into `dir` the .deb files a minimal Debian 12 `arch` machine lacks to
 * install `packages`; files already there with the size apt expects are kept.
 * `stateDir` keeps apt's private lists and downloads between runs.
 */
export async function fetchDebs(o: { arch: ImageArch; packages: string[]; dir: string; stateDir: string; log: (l: string) => void; signal?: AbortSignal }): Promise<DebsResult> {
  const s = o.stateDir;
  for (const d of ['lists/partial', 'archives/partial', 'apt.conf.d', 'preferences.d', 'sources.list.d']) fs.mkdirSync(path.join(s, d), { recursive: true });
  fs.writeFileSync(path.join(s, 'sources.list'), DEBIAN12_SOURCES.join('\n') + '\n');
  fs.writeFileSync(path.join(s, 'status-empty'), '');
  const opts = (status: string) =>
    [
      `Dir::State=${s}`,
      `Dir::State::Lists=${s}/lists`,
      `Dir::State::status=${s}/${status}`,
      `Dir::Cache=${s}`,
      `Dir::Cache::archives=${s}/archives`,
      `Dir::Etc::SourceList=${s}/sources.list`,
      `Dir::Etc::SourceParts=${s}/sources.list.d`,
      `Dir::Etc::Preferences=${s}/preferences`,
      `Dir::Etc::PreferencesParts=${s}/preferences.d`,
      `Dir::Etc::Parts=${s}/apt.conf.d`,
      `APT::Architecture=${o.arch}`,
      `APT::Architectures::=${o.arch}`,
      'APT::Install-Recommends=0',
      'APT::Install-Suggests=0',
      'Debug::NoLocking=1',
      'Acquire::Languages=none',
    ].flatMap((x) => ['-o', x]);
  // APT_CONFIG: not the host's apt.conf either.
  const env = { ...process.env, APT_CONFIG: '/dev/null', LC_ALL: 'C', DEBIAN_FRONTEND: 'noninteractive' };
  const apt = async (tool: 'apt-get' | 'apt-cache', status: string, args: string[]) =>
    (await run(tool, [...opts(status), ...args], { env, signal: o.signal, maxBuffer: 512 * 1024 * 1024 })).stdout;

  o.log(`debs ${o.arch}: reading Debian 12's package lists (apt update, private state in ${s})`);
  await apt('apt-get', 'status-empty', ['-qq', 'update']);
  const avail = await apt('apt-cache', 'status-empty', ['dumpavail']);
  const all = stanzas(avail);
  const required = new Set<string>(['apt']);
  for (const st of all.values()) if (/^(Priority: required|Essential: yes)$/m.test(st)) required.add(/^Package: (\S+)/m.exec(st)![1]);
  // The minimal system as apt resolves it from nothing (as a bootstrap does).
  const base = parseSimulated(await apt('apt-get', 'status-empty', ['-s', '-y', 'install', ...required]));
  const status = base
    .map((d) => all.get(`${d.pkg} ${d.version} ${d.arch}`))
    .filter((st): st is string => !!st)
    .map((st) => st.replace(/^(Package: .*)$/m, '$1\nStatus: install ok installed'))
    .join('\n\n');
  fs.writeFileSync(path.join(s, 'status-minimal'), status + '\n');

  const debs = parseSimulated(await apt('apt-get', 'status-minimal', ['-s', '-y', 'install', ...o.packages]));
  o.log(`debs ${o.arch}: ${debs.length} packages beyond a minimal Debian 12 (${base.length} packages): downloading what is not in ${s}/archives yet`);
  await apt('apt-get', 'status-minimal', ['-qq', '-y', '-d', 'install', ...o.packages]);

  fs.mkdirSync(o.dir, { recursive: true });
  const copied: string[] = [];
  for (const d of debs) {
    const from = path.join(s, 'archives', d.file);
    if (!fs.existsSync(from)) throw new Error(`apt downloaded no ${d.file} into ${path.dirname(from)}`);
    const to = path.join(o.dir, d.file);
    const size = fs.statSync(from).size;
    if (fs.existsSync(to) && fs.statSync(to).isFile() && fs.statSync(to).size === size) continue;
    const tmp = partialName(to);
    try {
      fs.copyFileSync(from, tmp);
      fs.renameSync(tmp, to);
      copied.push(d.file);
    } finally {
      fs.rmSync(tmp, { force: true });
    }
  }
  return { debs, baseCount: base.length, dir: o.dir, copied };
}
