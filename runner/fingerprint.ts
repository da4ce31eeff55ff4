// What a run ran on, recorded in every report so that two runs of a class can
// be compared and one can be run again: the runner (package.json's version and
// the checkout's commit), the backend, the guest's architecture, its kernel,
// the accelerator, and the guest image's digest when the machine booted it.
// Built once per machine by the command (run-labs, matrix) and handed to the
// reporters with the machine; no reporter works it out again.
import fs from 'node:fs';
import { hostArch } from '../core/arch.ts';
import path from 'node:path';
import { projectRoot } from '../core/paths.ts';

export interface RunFingerprint {
  /** package.json's version, and the checkout's commit (12 hex) when it is a git checkout: "0.1.0 (d9fc38b1a2c3)". */
  runner: string;
  /** qemu, vng or host. */
  backend: string;
  /** The guest's architecture, as Debian names it (amd64, arm64). */
  arch: string;
  /** `uname -r` of the kernel the steps ran on. */
  kernelRelease: string;
  /** kvm, tcg, hvf, or none (host backend). */
  accel: string;
  /** sha256 (hex) of the guest image the machine booted; absent when the guest ran on the host's root. */
  imageDigest?: string;
}

/**
 * What a started machine tells about itself: vm/backend.ts's BackendInfo,
 * spelled out here so this compiles whether or not BackendInfo has `arch` and
 * `imageDigest` yet.
 */
export interface MachineFacts {
  backend: string;
  kernelRelease: string;
  accel: string;
  arch?: string;
  imageDigest?: string;
}

/** Shown where a run booted no guest image. */
export const NO_IMAGE = 'none (host root)';

const HEX_ID = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/;

function readText(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

/**
 * The commit a checkout is at, read from its .git folder (no git process):
 * HEAD, then the branch's loose ref or its line in packed-refs. A worktree's
 * `.git` file ("gitdir: …") and its `commondir` are followed. Undefined when
 * `root` is not a git checkout or the ref cannot be read (a branch with no
 * commit yet).
 */
export function gitCommit(root: string): string | undefined {
  const dotGit = path.join(root, '.git');
  let gitDir = dotGit;
  try {
    if (fs.statSync(dotGit).isFile()) {
      const m = /^gitdir:\s*(.+?)\s*$/m.exec(readText(dotGit) ?? '');
      if (!m) return undefined;
      gitDir = path.resolve(root, m[1]);
    }
  } catch {
    return undefined;
  }
  const common = readText(path.join(gitDir, 'commondir'))?.trim();
  const commonDir = common ? path.resolve(gitDir, common) : gitDir;

  let packed: Map<string, string> | undefined;
  const packedRef = (ref: string) => {
    if (!packed) {
      packed = new Map();
      for (const line of (readText(path.join(commonDir, 'packed-refs')) ?? '').split('\n')) {
        // "# pack-refs with: …" heads the file; "^<id>" lines peel the tag above them.
        if (!line || line.startsWith('#') || line.startsWith('^')) continue;
        const [id, name] = line.trim().split(/\s+/, 2);
        if (name) packed.set(name, id);
      }
    }
    return packed.get(ref);
  };

  let content = readText(path.join(gitDir, 'HEAD'))?.trim();
  // A symbolic ref may point at another one; a few hops are plenty.
  for (let hops = 0; content !== undefined && hops < 5; hops++) {
    if (HEX_ID.test(content)) return content;
    const m = /^ref:\s*(refs\/\S+)$/.exec(content);
    if (!m || m[1].split('/').includes('..')) return undefined;
    const ref = m[1];
    content = (readText(path.join(gitDir, ref)) ?? readText(path.join(commonDir, ref)))?.trim() ?? packedRef(ref);
  }
  return undefined;
}

/** "0.1.0 (d9fc38b1a2c3)": package.json's version and, in a git checkout, its commit. */
export function runnerVersion(root: string = projectRoot): string {
  let version = 'unknown';
  try {
    const v = (JSON.parse(readText(path.join(root, 'package.json')) ?? '{}') as { version?: unknown }).version;
    if (typeof v === 'string' && v) version = v;
  } catch {
    /* an unreadable package.json leaves "unknown" */
  }
  const commit = gitCommit(root);
  return commit ? `${version} (${commit.slice(0, 12)})` : version;
}

/** The fingerprint of a started machine; `runner` is runnerVersion(), read once per command. */
export function fingerprintOf(info: MachineFacts, runner: string): RunFingerprint {
  return {
    runner,
    backend: info.backend,
    arch: info.arch || hostArch() || process.arch,
    kernelRelease: info.kernelRelease,
    accel: info.accel,
    ...(info.imageDigest ? { imageDigest: info.imageDigest } : {}),
  };
}

/** The image as reports show it: the digest (shortened to 12 hex and "…" with `short`), or that there was none. */
export function imageText(f: RunFingerprint, short = false): string {
  if (!f.imageDigest) return NO_IMAGE;
  return short && f.imageDigest.length > 12 ? `${f.imageDigest.slice(0, 12)}…` : f.imageDigest;
}

/** One line: "runner 0.1.0 (d9fc38b1a2c3) · qemu · amd64 · kernel 6.12.117+deb12-amd64 · tcg · image 3f2a1b4c5d6e…". */
export function fingerprintLine(f: RunFingerprint): string {
  return [`runner ${f.runner}`, f.backend, f.arch, `kernel ${f.kernelRelease}`, f.accel, `image ${imageText(f, true)}`].join(' · ');
}

/** The fingerprint as JUnit <property> name/value pairs. */
export function fingerprintProperties(f: RunFingerprint): [string, string][] {
  return [
    ['sockmap-labs.runner', f.runner],
    ['sockmap-labs.backend', f.backend],
    ['sockmap-labs.arch', f.arch],
    ['sockmap-labs.kernel', f.kernelRelease],
    ['sockmap-labs.accel', f.accel],
    ['sockmap-labs.image', imageText(f)],
  ];
}

/** The distinct fingerprints among these, in order (a run on several kernels has one per machine). */
export function distinctFingerprints(list: (RunFingerprint | undefined)[]): RunFingerprint[] {
  const seen = new Map<string, RunFingerprint>();
  for (const f of list) if (f) seen.set(fingerprintLine(f) + '\n' + (f.imageDigest ?? ''), f);
  return [...seen.values()];
}
