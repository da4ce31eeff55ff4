// `npm run image push REF`: guest images from the cache, pushed to an OCI
// registry in exactly the layout `npm run image pull` (vm/image-pull.ts)
// reads; the release workflow (.github/workflows/image-release.yml) runs it.
//
// For each architecture: the file `npm run image export` writes is the one
// layer (IMAGE_LAYER_TYPE) of an OCI image manifest whose config is the
// empty descriptor, annotated with the image's arch, inputs digest and image
// digest (pull refuses a wrong arch before the download from these), and
// tagged `<arch>-<inputs digest>` (what pull asks for by default) and
// `<arch>-latest` (its fallback without apt). When REF names tags, an OCI
// index over the pushed arches goes under each: `image pull --ref TAG` picks
// the entry for its arch.
//
// The distribution API with Node's fetch, through the Registry of
// image-pull.ts (the same challenge handling, with credentials from
// LAB_REGISTRY_USER and LAB_REGISTRY_PASSWORD): HEAD skips a blob the
// registry has already, else POST opens an upload and one PUT sends the blob
// with its digest (the registry checks it); then the manifest is PUT under
// each tag and its digest checked against the one the registry computed.
// The export is written to a folder in the cache named as sweepStale
// (vm/image.ts) expects, removed on every path.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { UserError } from '../core/errors.ts';
import {
  ANNOTATION_ARCH,
  ANNOTATION_IMAGE_DIGEST,
  ANNOTATION_INPUTS,
  DIGEST,
  IMAGE_ARTIFACT_TYPE,
  IMAGE_LAYER_TYPE,
  MEDIA,
  parseRepository,
  Registry,
  registryError,
  STALL_MS,
  TAG,
  type Credentials,
  type Repository,
  type Watchdog,
} from './image-pull.ts';
import { exportImage } from './image-transfer.ts';
import { buildFix, currentImageFolder, imagesDir, requireFreeSpace, sha256File, type ImageArch, type ImageManifest } from './image-verify.ts';

/** The empty config of an artifact manifest (`{}`), as OCI 1.1 defines it. */
const EMPTY_CONFIG = Buffer.from('{}');
const EMPTY_TYPE = 'application/vnd.oci.empty.v1+json';
const sha256 = (b: Buffer) => `sha256:${crypto.createHash('sha256').update(b).digest('hex')}`;
const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;
const CHUNK = 1 << 20;

/** Where a push goes: a repository, and the tags its index takes (none: arch tags only). */
export interface PushTarget {
  repository: Repository;
  tags: string[];
}

/**
 * `REGISTRY/NAME[:TAG[,TAG…]]` (or `http://127.0.0.1:5000/NAME:TAG` for a
 * registry on this machine without TLS) as a PushTarget.
 */
export function parsePushTarget(ref: string, o: { plainHttp?: boolean } = {}): PushTarget {
  const fix = 'name it as REGISTRY/NAME[:TAG], e.g. npm run image push -- ghcr.io/OWNER/sockmap-labs-image:v1.0';
  const s = ref.trim();
  if (s.includes('@')) throw new UserError(`bad push reference ${JSON.stringify(ref)}: a push names tags, not a digest (@…)`, fix);
  const slash = s.lastIndexOf('/');
  const colon = s.indexOf(':', slash + 1);
  const repo = colon < 0 ? s : s.slice(0, colon);
  const tags = colon < 0 ? [] : s.slice(colon + 1).split(',');
  for (const t of tags) if (!TAG.test(t)) throw new UserError(`bad tag ${JSON.stringify(t)} in ${JSON.stringify(ref)}: letters, digits, . _ - (not first), at most 128`, fix);
  if (!repo.slice(repo.indexOf('//') + 2).includes('/')) throw new UserError(`bad push reference ${JSON.stringify(ref)}: it names no registry`, fix);
  return { repository: parseRepository(repo, undefined, { plainHttp: o.plainHttp, push: true }), tags: [...new Set(tags)] };
}

/** `key=value` annotations (--annotation) as a record. */
export function parseAnnotations(list: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const a of list) {
    const eq = a.indexOf('=');
    const key = eq < 0 ? '' : a.slice(0, eq);
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(key))
      throw new UserError(`bad --annotation ${JSON.stringify(a)}: not KEY=VALUE`, 'e.g. --annotation org.opencontainers.image.revision=$(git rev-parse HEAD)');
    if ([ANNOTATION_ARCH, ANNOTATION_INPUTS, ANNOTATION_IMAGE_DIGEST].includes(key))
      throw new UserError(`--annotation ${key} is set by the push itself, from the image's manifest`, 'leave it out');
    out[key] = a.slice(eq + 1);
  }
  return out;
}

export interface PushedArch {
  arch: ImageArch;
  /** The image manifest's digest: `image pull --digest` pins it. */
  manifestDigest: string;
  tags: string[];
  layer: { digest: string; size: number };
  /** false: the registry had the image file already (HEAD), nothing was uploaded. */
  uploaded: boolean;
  image: ImageManifest;
}

export interface PushResult {
  repository: Repository;
  arches: PushedArch[];
  /** The index over them, when tags were named. */
  index?: { digest: string; tags: string[] };
  seconds: number;
}

/** The image manifest pull reads, for one exported image file. */
export function imageManifestFor(image: ImageManifest, layer: { digest: string; size: number }, annotations: Record<string, string> = {}): Buffer {
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA.ociManifest,
      artifactType: IMAGE_ARTIFACT_TYPE,
      config: { mediaType: EMPTY_TYPE, digest: sha256(EMPTY_CONFIG), size: EMPTY_CONFIG.length, data: EMPTY_CONFIG.toString('base64') },
      layers: [{ mediaType: IMAGE_LAYER_TYPE, digest: layer.digest, size: layer.size, annotations: { 'org.opencontainers.image.title': `sockmap-labs-image-${image.arch}.tar` } }],
      annotations: { ...annotations, [ANNOTATION_ARCH]: image.arch, [ANNOTATION_INPUTS]: image.inputsDigest, [ANNOTATION_IMAGE_DIGEST]: image.digest },
    }),
  );
}

/** An OCI index over the pushed arches (platform and arch annotation on each entry, as pull looks them up). */
export function indexFor(arches: { arch: ImageArch; manifestDigest: string; size: number }[], annotations: Record<string, string> = {}): Buffer {
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA.ociIndex,
      artifactType: IMAGE_ARTIFACT_TYPE,
      manifests: arches.map((a) => ({
        mediaType: MEDIA.ociManifest,
        artifactType: IMAGE_ARTIFACT_TYPE,
        digest: a.manifestDigest,
        size: a.size,
        platform: { architecture: a.arch, os: 'linux' },
        annotations: { [ANNOTATION_ARCH]: a.arch },
      })),
      ...(Object.keys(annotations).length ? { annotations } : {}),
    }),
  );
}

/** A refused request's message: what was done, the status, the registry's reason. */
async function refused(reg: Registry, res: Response, what: string, credentials?: Credentials): Promise<UserError> {
  const why = await registryError(res);
  if (res.status === 401) return credentials ? new UserError(`${reg.repo.display} refuses the push with the credentials in LAB_REGISTRY_USER and LAB_REGISTRY_PASSWORD (HTTP 401${why ? ` ${why}` : ''}) ${what}`, 'check them; the user must be allowed to push to this repository') : reg.needCredentials(401, why);
  if (res.status === 403)
    return new UserError(
      `${reg.repo.display} denies the push (HTTP 403${why ? ` ${why}` : ''}) ${what}`,
      credentials ? 'the user in LAB_REGISTRY_USER may not write this repository: grant it (for ghcr.io: a token that may write packages; in a workflow, permissions: packages: write)' : 'set LAB_REGISTRY_USER and LAB_REGISTRY_PASSWORD to a user that may write it',
    );
  return new UserError(`${reg.repo.display} answered HTTP ${res.status}${why ? ` (${why})` : ''} ${what}`, 'check the registry (its log says more), then push again');
}

/** The blob `digest` (`file`, or `data`), uploaded unless the registry has it; true when uploaded. */
async function pushBlob(
  reg: Registry,
  blob: { digest: string; size: number; file?: string; data?: Buffer },
  o: { credentials?: Credentials; signal?: AbortSignal; onProgress?: (sent: number, total: number) => void },
): Promise<boolean> {
  const short = `${blob.digest.slice(0, 19)}…`;
  const wd = reg.watchdog();
  try {
    const head = await reg.request(`blobs/${blob.digest}`, { method: 'HEAD', what: `checking for the blob ${short}`, wd });
    await head.body?.cancel();
    if (head.ok) return false;
    if (head.status !== 404) throw await refused(reg, head, `checking for the blob ${short}`, o.credentials);

    const start = await reg.request('blobs/uploads/', { method: 'POST', headers: { 'content-length': '0' }, what: `opening an upload for ${short}`, wd });
    const location = start.headers.get('location');
    if (start.status !== 202 || !location) throw await refused(reg, start, `opening an upload for ${short}`, o.credentials);
    await start.body?.cancel();
    const url = new URL(location, reg.repo.base);
    url.searchParams.set('digest', blob.digest);

    const body = blob.data ? () => blob.data! : () => fileChunks(blob.file!, blob.size, wd, o.onProgress);
    const put = await reg.request(url, {
      method: 'PUT',
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(blob.size) },
      body,
      what: `uploading the blob ${short} (${mb(blob.size)})`,
      wd,
    });
    if (put.status !== 201) {
      const err = await refused(reg, put, `uploading the blob ${short}`, o.credentials);
      if (/DIGEST_INVALID|SIZE_INVALID/.test(err.message)) throw new UserError(`${reg.repo.display} received other bytes than were sent for ${blob.digest} (${err.message})`, 'push again; if it fails the same way, something between here and the registry changes the data');
      throw err;
    }
    await put.body?.cancel();
    const said = put.headers.get('docker-content-digest');
    if (said && said !== blob.digest) throw new UserError(`${reg.repo.display} stored ${blob.digest} as ${said}`, 'push again; if it fails the same way, the registry is at fault');
    return true;
  } catch (e) {
    if (e instanceof UserError || o.signal?.aborted) throw e;
    throw reg.unreachable(e, `uploading the blob ${short}`, wd);
  } finally {
    wd.stop();
  }
}

/** `file`'s bytes in chunks, counted (progress, and the watchdog: a socket that takes nothing for the stall time is given up). */
async function* fileChunks(file: string, size: number, wd: Watchdog, onProgress?: (sent: number, total: number) => void): AsyncGenerator<Uint8Array> {
  const fh = await fs.promises.open(file, 'r');
  try {
    let sent = 0;
    onProgress?.(0, size);
    while (sent < size) {
      // fetch stops reading its body when aborted, but not always at once: stop feeding it.
      wd.signal.throwIfAborted();
      const buf = Buffer.allocUnsafe(Math.min(CHUNK, size - sent));
      const { bytesRead } = await fh.read(buf, 0, buf.length, sent);
      if (!bytesRead) throw new Error(`${file} shrank while it was being pushed`);
      yield buf.subarray(0, bytesRead);
      sent += bytesRead;
      wd.kick();
      onProgress?.(sent, size);
    }
  } finally {
    await fh.close();
  }
}

/** PUTs a manifest under each of `refs`; returns its digest, checked against the one the registry computed. */
async function putManifest(reg: Registry, body: Buffer, type: string, refs: string[], credentials?: Credentials): Promise<string> {
  const digest = sha256(body);
  for (const ref of refs) {
    const wd = reg.watchdog();
    try {
      const what = `putting the manifest ${DIGEST.test(ref) ? `${ref.slice(0, 19)}…` : ref}`;
      const res = await reg.request(`manifests/${ref}`, { method: 'PUT', headers: { 'content-type': type }, body: () => body, what, wd });
      if (res.status !== 201) throw await refused(reg, res, what, credentials);
      await res.body?.cancel();
      const said = res.headers.get('docker-content-digest');
      if (said && said !== digest) throw new UserError(`${reg.repo.display} stored the manifest ${ref} as ${said}, not ${digest}`, 'push again; if it fails the same way, the registry rewrites manifests (pull by tag, not by this digest)');
    } finally {
      wd.stop();
    }
  }
  return digest;
}

/**
 * Pushes the current image of each of `arches` from the cache to
 * `target.repository` (arch tags), then an index over them under
 * `target.tags`. Throws a UserError naming the fix on any failure; leaves
 * nothing in the cache. Credentials are used, never printed.
 */
export async function pushImages(o: {
  cacheDir: string;
  arches: ImageArch[];
  target: PushTarget;
  annotations?: Record<string, string>;
  credentials?: Credentials;
  signal?: AbortSignal;
  log?: (line: string) => void;
  /** Bytes of an image file sent so far, of its total. */
  onProgress?: (sent: number, total: number) => void;
  stallMs?: number;
}): Promise<PushResult> {
  const t0 = Date.now();
  const { repository: repo, tags } = o.target;
  const log = o.log ?? (() => {});
  const reg = new Registry(repo, { signal: o.signal, stallMs: o.stallMs ?? STALL_MS, credentials: o.credentials, push: true });
  const images = imagesDir(o.cacheDir);
  // Every image first: a missing one stops the push before anything is sent.
  for (const arch of o.arches)
    if (!currentImageFolder(o.cacheDir, arch)) throw new UserError(`no ${arch} guest image to push in ${images}`, `${buildFix(arch)}   (or: npm run image import FILE --arch ${arch})`);

  // The empty config every manifest names: first, so that an unreachable
  // registry or refused credentials stop the push before an export is made.
  log(`asking ${repo.display} for a push`);
  await pushBlob(reg, { digest: sha256(EMPTY_CONFIG), size: EMPTY_CONFIG.length, data: EMPTY_CONFIG }, o);
  const pushed: PushedArch[] = [];
  for (const arch of o.arches) {
    const work = path.join(images, `.download-push-${process.pid}-${crypto.randomBytes(4).toString('hex')}`);
    try {
      requireFreeSpace(images, 400e6, 'pushing the guest image');
      fs.mkdirSync(work);
      const file = path.join(work, `sockmap-labs-image-${arch}.tar`);
      log(`exporting the ${arch} image (checked in full first)`);
      const { manifest: image, bytes } = await exportImage({ cacheDir: o.cacheDir, arch, file, signal: o.signal });
      const layer = { digest: `sha256:${await sha256File(file, o.signal)}`, size: bytes };
      log(`pushing the ${arch} image file ${layer.digest.slice(7, 19)} (${mb(bytes)}) to ${repo.display}`);
      const uploaded = await pushBlob(reg, { ...layer, file }, o);
      if (!uploaded) log(`${repo.display} has that file already: not uploaded again`);
      const body = imageManifestFor(image, layer, o.annotations);
      const archTags = [`${arch}-${image.inputsDigest}`, `${arch}-latest`];
      log(`tagging it ${archTags.map((t) => (t.length > 30 ? `${t.slice(0, 22)}…` : t)).join(' and ')}`);
      const manifestDigest = await putManifest(reg, body, MEDIA.ociManifest, archTags, o.credentials);
      pushed.push({ arch, manifestDigest, tags: archTags, layer, uploaded, image });
    } finally {
      fs.rmSync(work, { recursive: true, force: true });
    }
  }

  let index: PushResult['index'];
  if (tags.length) {
    log(`putting the index of ${pushed.map((p) => p.arch).join(' and ')} under ${tags.join(', ')}`);
    const entries = pushed.map((p) => ({ arch: p.arch, manifestDigest: p.manifestDigest, size: imageManifestFor(p.image, p.layer, o.annotations).length }));
    const digest = await putManifest(reg, indexFor(entries, o.annotations), MEDIA.ociIndex, tags, o.credentials);
    index = { digest, tags };
  }
  return { repository: repo, arches: pushed, index, seconds: (Date.now() - t0) / 1000 };
}
