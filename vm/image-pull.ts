// `npm run image pull`: a published guest image, fetched from an OCI registry
// and added exactly as `npm run image import FILE` adds a file.
//
// What is published (.github/workflows/image-release.yml pushes it with oras):
// for each architecture one OCI image manifest whose one layer is the file
// `npm run image export` writes (media type IMAGE_LAYER_TYPE), annotated with
// the image's arch and inputs digest, and tagged `<arch>-<inputs digest>` and
// `<arch>-latest`.
//
// The pull speaks the OCI distribution API with Node's fetch: it answers the
// registry's Bearer challenge with an anonymous token, reads the manifest (or,
// from an index, the one for the arch), streams the layer into a temporary
// file in the cache while hashing it, refuses it unless its size and sha256
// are the manifest's, and hands it to importImage (vm/image-transfer.ts),
// which checks everything in it before the image is put in place. Whatever
// fails or is interrupted, the temporary file goes (and sweepStale removes
// one a killed process left). No resume: a broken download starts again.
// This file is not among the image's build scripts: changing it changes no
// inputs digest.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { UserError } from '../core/errors.ts';
import { projectRoot } from '../core/paths.ts';
import { importImage } from './image-transfer.ts';
import {
  buildFix,
  hostArch,
  IMAGE_ARCHES,
  imageFolderName,
  imagesDir,
  isImageArch,
  removeOtherImages,
  requireFreeSpace,
  setCurrentImage,
  verifyImage,
  type ImageArch,
  type ImageManifest,
} from './image-verify.ts';

/** The layer's media type: one `npm run image export` file. */
export const IMAGE_LAYER_TYPE = 'application/vnd.sockmap-labs.image.v1+tar';
/** The manifest's artifactType. */
export const IMAGE_ARTIFACT_TYPE = 'application/vnd.sockmap-labs.image.v1';
/** Manifest annotations the workflow sets: what the image is, known before its 320 MB are fetched. */
export const ANNOTATION_ARCH = 'org.sockmap-labs.image.arch';
export const ANNOTATION_INPUTS = 'org.sockmap-labs.image.inputs-digest';
/** The image's own digest (its manifest.json's `digest`: the hash of its files' hashes). */
export const ANNOTATION_IMAGE_DIGEST = 'org.sockmap-labs.image.digest';

export const MEDIA = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
};
const MANIFEST_ACCEPT = [MEDIA.ociManifest, MEDIA.ociIndex, MEDIA.dockerManifest, MEDIA.dockerList].join(', ');
/** A manifest is a few hundred bytes; anything this big is not one. */
const MAX_MANIFEST = 4 << 20;
/** The export format (ustar) holds files below 8 GiB; an image is ~350 MB. */
const MAX_LAYER = 8 * 1024 ** 3;
/** No byte for this long: the download has stalled. */
export const STALL_MS = 60_000;

const HEX64 = /^[0-9a-f]{64}$/;
export const DIGEST = /^sha256:[0-9a-f]{64}$/;
/** OCI distribution's tag grammar. */
export const TAG = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;
/** OCI distribution's repository name grammar (lower case only). */
/** A registry host: a name or IPv4 address, or [IPv6], and a port. */
const HOST = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;
const NAME = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/;

const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;
const archFlag = (arch: ImageArch) => (arch === hostArch() ? '' : ` --arch ${arch}`);
const pullCommand = (arch: ImageArch, extra: string) => `npm run image pull --${archFlag(arch)} ${extra}`;
const OFFLINE_FIX = 'offline: npm run image import FILE (an instructor\'s export), or npm run image build';

// ---- where -----------------------------------------------------------------

/** A repository on a registry: `base` is the registry's URL, `name` the repository's path on it. */
export interface Repository {
  base: string;
  name: string;
  /** How messages name it: registry host and name, as `docker pull` would. */
  display: string;
}

/** The repository images are published to: package.json's sockmapLabs.imageRepository (the workflow pushes there too). */
export function defaultRepository(): string {
  const file = path.join(projectRoot, 'package.json');
  const repo = (JSON.parse(fs.readFileSync(file, 'utf8')) as { sockmapLabs?: { imageRepository?: unknown } }).sockmapLabs?.imageRepository;
  if (typeof repo !== 'string' || !repo)
    throw new UserError(`${file} names no image repository (sockmapLabs.imageRepository)`, 'name one: npm run image pull -- --repository ghcr.io/OWNER/sockmap-labs-image');
  return repo;
}

/** A registry host on this machine: plain HTTP to it never leaves the machine. */
export const isLoopback = (hostname: string) => /^(localhost|127(?:\.\d{1,3}){3}|\[::1\])$/i.test(hostname);

/**
 * `ghcr.io/owner/name` (or `http://127.0.0.1:5000/owner/name`) as a Repository.
 * `registry` (a host, or a URL for plain HTTP) replaces the one in `repository`.
 * Plain HTTP is for a registry on this machine (loopback); to any other host
 * only with `plainHttp` (--plain-http): the manifest, and a push's
 * credentials, would cross the network unprotected.
 */
export function parseRepository(repository: string, registry?: string, o: { plainHttp?: boolean; push?: boolean } = {}): Repository {
  const bad = (why: string) => new UserError(`bad image repository ${JSON.stringify(repository)}: ${why}`, 'name it as REGISTRY/NAME, e.g. --repository ghcr.io/OWNER/sockmap-labs-image');
  let rest = repository.trim().replace(/\/+$/, '');
  let scheme = 'https:';
  const withScheme = /^(https?:)\/\/(.*)$/.exec(rest);
  if (withScheme) [, scheme, rest] = withScheme;
  const slash = rest.indexOf('/');
  const first = slash < 0 ? rest : rest.slice(0, slash);
  let host: string;
  let name: string;
  let hostFrom = repository;
  if (withScheme || /[.:]/.test(first) || first === 'localhost') {
    if (slash < 0) throw bad('it has no name after the registry');
    host = first;
    name = rest.slice(slash + 1);
  } else {
    if (registry === undefined) throw bad('it names no registry');
    host = '';
    name = rest;
  }
  const badRegistry = () =>
    registry !== undefined
      ? new UserError(`bad --registry ${JSON.stringify(registry)}: not a host`, 'name a host (ghcr.io, or HOST:PORT), or a URL for a registry without TLS (http://127.0.0.1:5000)')
      : bad(`${JSON.stringify(host)} is not a registry host`);
  if (registry !== undefined) {
    const r = /^(?:(https?:)\/\/)?([^/]+)\/?$/.exec(registry.trim());
    if (!r) throw badRegistry();
    scheme = r[1] ?? 'https:';
    host = r[2];
    hostFrom = registry;
  }
  // A bad host is refused here, not by fetch later (it threw "Invalid URL").
  if (!HOST.test(host)) throw badRegistry();
  let url: URL;
  try {
    url = new URL(`${scheme}//${host}`);
  } catch {
    throw badRegistry();
  }
  if (scheme === 'http:' && !isLoopback(url.hostname) && !o.plainHttp)
    throw new UserError(
      `${JSON.stringify(hostFrom)} asks for plain HTTP to ${url.host}, which is not this machine: the image's manifest${o.push ? ' and your registry credentials' : ''} would cross the network unprotected`,
      `use https://${url.host} (a registry with TLS), or add --plain-http if you trust every network between here and ${url.host}`,
    );
  if (!NAME.test(name)) throw bad(`${JSON.stringify(name)} is not a repository name (lower-case letters, digits, . _ - and /)`);
  return { base: url.origin, name, display: `${url.host}/${name}` };
}

// ---- which -----------------------------------------------------------------

export interface Choice {
  /** A tag or a sha256:… manifest digest. */
  ref: string;
  /** Why this one, for the first line the command prints. */
  why: string;
  /** The inputs digest a build here would compute, when apt could tell. */
  inputsDigest?: string;
  /** Said before the pull (the fallback to <arch>-latest). */
  note?: string;
}

/** `sha256:hex` (or bare hex) as a manifest digest. */
export function normalizeDigest(d: string): string {
  const s = d.trim().toLowerCase();
  const full = HEX64.test(s) ? `sha256:${s}` : s;
  if (!DIGEST.test(full)) throw new UserError(`bad --digest ${JSON.stringify(d)}: a manifest digest is sha256: and 64 hex digits`, 'copy it from the release notes, or leave --digest out');
  return full;
}

/**
 * What to pull: --digest, else --ref, else the image the current inputs name
 * (`<arch>-<inputs digest>`, what `npm run image build` would make now). Telling
 * the inputs needs apt (~3 s); without it (macOS, a host that is not Debian 12)
 * the newest published image of the arch, `<arch>-latest`.
 */
export async function chooseReference(o: {
  arch: ImageArch;
  cacheDir: string;
  digest?: string;
  ref?: string;
  resolve: (arch: ImageArch, cacheDir: string) => Promise<{ inputsDigest: string }>;
  signal?: AbortSignal;
}): Promise<Choice> {
  if (o.digest && o.ref) throw new UserError('--digest and --ref both name an image: give one', 'npm run image pull -- --digest sha256:…');
  if (o.digest) return { ref: normalizeDigest(o.digest), why: 'the manifest --digest pins' };
  if (o.ref) {
    if (!TAG.test(o.ref)) throw new UserError(`bad --ref ${JSON.stringify(o.ref)}: not a tag`, pullCommand(o.arch, `--ref ${o.arch}-latest`));
    return { ref: o.ref, why: 'the tag --ref names' };
  }
  try {
    const { inputsDigest } = await o.resolve(o.arch, o.cacheDir);
    return { ref: `${o.arch}-${inputsDigest}`, why: 'the image the current inputs name', inputsDigest };
  } catch (e) {
    o.signal?.throwIfAborted();
    const why = (e as Error).message.split('\n')[0];
    return {
      ref: `${o.arch}-latest`,
      why: `the newest published ${o.arch} image`,
      note: `apt cannot tell this checkout's image inputs here (${why}): pulling the newest published ${o.arch} image, ${o.arch}-latest, instead`,
    };
  }
}

// ---- talking to the registry -----------------------------------------------

/** A timer that aborts a request when no byte came for `ms`; kick() on each one. */
function watchdog(outer: AbortSignal | undefined, ms: number) {
  const c = new AbortController();
  const fire = () => c.abort(new Error('stalled'));
  let timer = setTimeout(fire, ms);
  return {
    signal: outer ? AbortSignal.any([outer, c.signal]) : c.signal,
    kick: () => {
      clearTimeout(timer);
      timer = setTimeout(fire, ms);
    },
    stop: () => clearTimeout(timer),
    stalled: () => c.signal.aborted,
  };
}
export type Watchdog = ReturnType<typeof watchdog>;

/** The system's reason under a fetch failure (ENOTFOUND, ECONNREFUSED, UND_ERR_SOCKET …). */
export function causeOf(e: unknown): string {
  const c = (e as { cause?: unknown }).cause as { code?: string; message?: string; errors?: { code?: string }[] } | undefined;
  const code = c?.code ?? c?.errors?.find((x) => x.code)?.code;
  if (code) return code === 'UND_ERR_SOCKET' ? `the connection closed: ${c?.message}` : code;
  return c?.message ?? (e as Error).message;
}

/** The first error of a registry's error body ({"errors":[{"code","message"}]}), if it has one. */
export async function registryError(res: Response): Promise<string> {
  try {
    const text = (await res.text()).slice(0, 4096);
    const err = (JSON.parse(text) as { errors?: { code?: string; message?: string }[] }).errors?.[0];
    return err ? `${err.code ?? ''}${err.message ? `: ${err.message}` : ''}`.replace(/^: /, '') : '';
  } catch {
    return '';
  }
}

/** A user name and a password (or a token) for a registry: LAB_REGISTRY_USER and LAB_REGISTRY_PASSWORD (core/config.ts). */
export interface Credentials {
  user: string;
  password: string;
}

interface Challenge {
  scheme: 'bearer' | 'basic';
  realm: string;
  service?: string;
  scope?: string;
}

/** `Bearer realm="…",service="…",scope="…"` (or `Basic realm="…"`) → its parameters; undefined for another scheme. */
export function parseChallenge(header: string | null): Challenge | undefined {
  const scheme = /^\s*(bearer|basic)\s/i.exec(header ?? '')?.[1].toLowerCase() as Challenge['scheme'] | undefined;
  if (!scheme) return undefined;
  const params: Record<string, string> = {};
  for (const m of header!.matchAll(/(\w+)="([^"]*)"/g)) params[m[1].toLowerCase()] = m[2];
  if (scheme === 'basic') return { scheme, realm: params.realm ?? '' };
  return params.realm ? { scheme, realm: params.realm, service: params.service, scope: params.scope } : undefined;
}

/** How a request to the registry goes: its body is made again for the retry a challenge asks for. */
export interface RegistryRequest {
  method?: 'GET' | 'HEAD' | 'POST' | 'PUT';
  accept?: string;
  headers?: Record<string, string>;
  body?: () => Uint8Array | AsyncIterable<Uint8Array>;
  /** What is being done, for messages: "fetching the manifest …". */
  what: string;
  wd: Watchdog;
}

/**
 * One repository on one registry: pulled anonymously, or with credentials
 * (a push, or a private repository). Answers the registry's challenge once:
 * Bearer (a token from its realm, asked with the credentials when there are
 * some) or Basic (the credentials themselves). Credentials and tokens go only
 * to the registry's own origin and its token realm, never into a message.
 */
export class Registry {
  private token?: string;
  private basic?: string;

  constructor(
    readonly repo: Repository,
    private readonly o: { signal?: AbortSignal; stallMs: number; credentials?: Credentials; push?: boolean },
  ) {}

  get host() {
    return new URL(this.repo.base).host;
  }

  private get retry() {
    return this.o.push ? 'check the network and the registry, then push again' : `try again: npm run image pull   (${OFFLINE_FIX})`;
  }

  unreachable(e: unknown, what: string, wd: Watchdog): unknown {
    if (this.o.signal?.aborted) return e;
    if (wd.stalled()) return new UserError(`${what}: ${this.host} sent nothing for ${this.o.stallMs / 1000} s; stopped`, this.retry);
    const cause = causeOf(e);
    if (/SSL|TLS|EPROTO/i.test(cause) && this.repo.base.startsWith('https:'))
      return new UserError(
        `cannot speak TLS with ${this.host} (${cause}) ${what}: it may be a registry without TLS`,
        `if it is, name it with http:// (http://${this.host}/${this.repo.name}${this.o.push ? '' : ', or --registry http://' + this.host}); plain HTTP goes only to this machine unless --plain-http`,
      );
    return new UserError(`cannot reach ${this.host} (${cause}) ${what}`, `check the network (and that ${this.host} is the registry meant), then run this again${this.o.push ? '' : `; ${OFFLINE_FIX}`}`);
  }

  private refusedCredentials(status: number, why: string): UserError {
    return new UserError(
      `${this.host} refuses the credentials in LAB_REGISTRY_USER and LAB_REGISTRY_PASSWORD for ${this.repo.display} (HTTP ${status}${why ? ` ${why}` : ''})`,
      `check them (for ghcr.io: your GitHub user and a token that may write packages; in a workflow, github.actor and GITHUB_TOKEN with "packages: write")`,
    );
  }

  /** A token, as the challenge says where to ask for it: anonymous, or with the credentials; for pull, or pull and push. */
  private async authenticate(ch: Challenge, what: string, wd: Watchdog): Promise<void> {
    const url = new URL(ch.realm, this.repo.base);
    if (ch.service) url.searchParams.set('service', ch.service);
    url.searchParams.set('scope', this.o.push ? `repository:${this.repo.name}:pull,push` : (ch.scope ?? `repository:${this.repo.name}:pull`));
    const headers: Record<string, string> = { accept: 'application/json' };
    const creds = this.o.credentials;
    if (creds) headers.authorization = `Basic ${Buffer.from(`${creds.user}:${creds.password}`).toString('base64')}`;
    let res: Response;
    try {
      res = await fetch(url, { signal: wd.signal, headers });
    } catch (e) {
      throw this.unreachable(e, `asking ${url.host} for a token ${what}`, wd);
    }
    if (!res.ok) {
      const why = await registryError(res);
      if (creds) throw this.refusedCredentials(res.status, why);
      if (this.o.push) throw this.needCredentials(res.status, why);
      throw new UserError(
        `${this.repo.display} gives no anonymous pull token (HTTP ${res.status}${why ? ` ${why}` : ''}): it does not exist, or it is not public`,
        `check the repository (--repository; default: package.json sockmapLabs.imageRepository), or build the image here: npm run image build`,
      );
    }
    const body = (await res.json().catch(() => ({}))) as { token?: string; access_token?: string };
    this.token = body.token ?? body.access_token;
    if (!this.token) throw new UserError(`${url.host} answered a token request without a token`, `try again later${this.o.push ? '' : `; ${OFFLINE_FIX}`}`);
  }

  /** A push the registry refused for want of credentials. */
  needCredentials(status: number, why: string): UserError {
    return new UserError(
      `${this.repo.display} takes no push without credentials (HTTP ${status}${why ? ` ${why}` : ''})`,
      'set LAB_REGISTRY_USER and LAB_REGISTRY_PASSWORD (for ghcr.io: your GitHub user and a token that may write packages), then push again',
    );
  }

  /**
   * `below` (a path under /v2/<name>/, or an absolute URL the registry gave,
   * e.g. an upload's Location), answering one challenge; GET and HEAD follow
   * redirects. The token goes only to the registry's own origin (not to the
   * storage a blob redirects to). Returns the final response, whatever its
   * status; its body is the caller's.
   */
  async request(below: string | URL, r: RegistryRequest): Promise<Response> {
    const origin = new URL(this.repo.base).origin;
    const method = r.method ?? 'GET';
    const follow = method === 'GET' || method === 'HEAD';
    for (let challenged = false; ; ) {
      let url = typeof below === 'string' ? new URL(`${this.repo.base}/v2/${this.repo.name}/${below}`) : below;
      let res: Response;
      for (let hops = 0; ; hops++) {
        const headers: Record<string, string> = { ...r.headers };
        if (r.accept) headers.accept = r.accept;
        if (url.origin === origin && this.token) headers.authorization = `Bearer ${this.token}`;
        else if (url.origin === origin && this.basic) headers.authorization = this.basic;
        const body = r.body?.();
        try {
          res = await fetch(url, { method, headers, redirect: 'manual', signal: r.wd.signal, body: body as BodyInit | undefined, ...(body ? { duplex: 'half' } : {}) } as RequestInit);
        } catch (e) {
          throw this.unreachable(e, r.what, r.wd);
        }
        const location = res.headers.get('location');
        if (!follow || ![301, 302, 303, 307, 308].includes(res.status) || !location) break;
        await res.body?.cancel();
        if (hops === 5) throw new UserError(`${this.repo.display} redirects too often ${r.what}`, `try again later${this.o.push ? '' : `; ${OFFLINE_FIX}`}`);
        url = new URL(location, url);
      }
      if (res.status !== 401 || challenged) return res;
      const ch = parseChallenge(res.headers.get('www-authenticate'));
      if (!ch) return res;
      challenged = true;
      if (ch.scheme === 'basic') {
        const creds = this.o.credentials;
        if (!creds) return res;
        await res.body?.cancel();
        this.basic = `Basic ${Buffer.from(`${creds.user}:${creds.password}`).toString('base64')}`;
        continue;
      }
      await res.body?.cancel();
      await this.authenticate(ch, r.what, r.wd);
    }
  }

  /** GET `below`: see request(). */
  get(below: string, accept: string, what: string, wd: Watchdog): Promise<Response> {
    return this.request(below, { accept, what, wd });
  }

  /** A watchdog for one exchange with this registry: stops it when nothing comes for the stall time. */
  watchdog(): Watchdog {
    return watchdog(this.o.signal, this.o.stallMs);
  }

  /** The repository's tags (best effort: undefined when the registry will not say). */
  async tags(): Promise<string[] | undefined> {
    const wd = watchdog(this.o.signal, this.o.stallMs);
    try {
      const res = await this.get('tags/list?n=1000', 'application/json', 'listing its tags', wd);
      if (!res.ok) return undefined;
      const tags = ((await res.json()) as { tags?: unknown }).tags;
      return Array.isArray(tags) ? tags.filter((t): t is string => typeof t === 'string') : undefined;
    } catch {
      return undefined;
    } finally {
      wd.stop();
    }
  }
}

// ---- manifests ---------------------------------------------------------------

interface Descriptor {
  mediaType?: string;
  digest: string;
  size: number;
  platform?: { architecture?: string; os?: string };
  annotations?: Record<string, string>;
}

interface OciManifest {
  mediaType?: string;
  artifactType?: string;
  layers?: Descriptor[];
  manifests?: Descriptor[];
  annotations?: Record<string, string>;
}

/** What the pull learns from the manifest, before the layer. */
export interface Published {
  /** The image manifest's digest: pins this very image (--digest). */
  manifestDigest: string;
  layer: { digest: string; size: number };
  /** The annotations' arch, inputs digest and image digest (absent when the pusher set none). */
  arch?: string;
  inputsDigest?: string;
  imageDigest?: string;
}

/** How messages name `ref` in a repository: name:tag or name@digest. */
const at = (repo: Repository, ref: string) => `${repo.display}${DIGEST.test(ref) ? '@' : ':'}${ref}`;

/** GETs the manifest `ref`, checking it hashes to `ref` when that is a digest. */
async function getManifest(reg: Registry, ref: string, o: { signal?: AbortSignal; stallMs: number }): Promise<{ json: OciManifest; digest: string; type: string; status: number; why?: string }> {
  const wd = watchdog(o.signal, o.stallMs);
  try {
    const res = await reg.get(`manifests/${ref}`, MANIFEST_ACCEPT, `fetching the manifest ${ref}`, wd);
    if (!res.ok) return { json: {}, digest: '', type: '', status: res.status, why: await registryError(res) };
    const length = Number(res.headers.get('content-length') ?? 0);
    if (length > MAX_MANIFEST) throw new UserError(`${at(reg.repo, ref)} answers ${mb(length)} for a manifest: that is not one`, `check the repository and the reference`);
    let bytes: Buffer;
    try {
      bytes = Buffer.from(await res.arrayBuffer());
    } catch (e) {
      throw o.signal?.aborted ? e : new UserError(`the manifest ${ref} broke off (${causeOf(e)})`, `try again; ${OFFLINE_FIX}`);
    }
    const digest = `sha256:${crypto.createHash('sha256').update(bytes).digest('hex')}`;
    const said = res.headers.get('docker-content-digest');
    const pinned = DIGEST.test(ref) ? ref : said?.startsWith('sha256:') ? said : undefined;
    if (pinned && pinned !== digest)
      throw new UserError(`${reg.repo.display} answered a manifest that hashes to ${digest}, not ${pinned}: it is damaged or not the one asked for; nothing was pulled`, `try again; if it persists, the registry is at fault (${OFFLINE_FIX})`);
    let json: OciManifest;
    try {
      json = JSON.parse(bytes.toString('utf8'));
      if (typeof json !== 'object' || json === null) throw new Error('not an object');
    } catch (e) {
      throw new UserError(`the manifest ${ref} in ${reg.repo.display} does not parse (${(e as Error).message})`, `try again; ${OFFLINE_FIX}`);
    }
    return { json, digest, type: json.mediaType ?? res.headers.get('content-type')?.split(';')[0] ?? '', status: res.status };
  } finally {
    wd.stop();
  }
}

/** Says what is missing when a manifest is not there, and what to do instead. */
async function notFound(reg: Registry, ref: string, arch: ImageArch, status: number, why: string, choice: Choice): Promise<UserError> {
  const where = reg.repo.display;
  if (status === 401 || status === 403)
    return new UserError(
      `${where} refuses an anonymous pull (HTTP ${status}${why ? ` ${why}` : ''}): it is not public, or does not exist`,
      `check the repository (--repository; default: package.json sockmapLabs.imageRepository), or build the image here: ${buildFix(arch)}`,
    );
  if (status === 429) return new UserError(`${where} asks to slow down (HTTP 429${why ? ` ${why}` : ''})`, 'wait a minute, then run this again');
  if (status >= 500) return new UserError(`${where} failed (HTTP ${status}${why ? ` ${why}` : ''}) fetching ${ref}`, `try again later; ${OFFLINE_FIX}`);
  if (status !== 404) return new UserError(`${where} answered HTTP ${status}${why ? ` (${why})` : ''} for the manifest ${ref}`, `try again later; ${OFFLINE_FIX}`);
  if (/NAME_UNKNOWN/.test(why))
    return new UserError(`${where} does not exist (${why})`, `check the repository (--repository; default: package.json sockmapLabs.imageRepository), or build the image here: ${buildFix(arch)}`);
  const tags = await reg.tags();
  const ofArch = tags?.filter((t) => t.startsWith(`${arch}-`)) ?? [];
  const latest = ofArch.includes(`${arch}-latest`);
  const others = tags ? IMAGE_ARCHES.filter((a) => a !== arch && tags.some((t) => t.startsWith(`${a}-`))) : [];
  if (tags && !ofArch.length)
    return new UserError(
      `${where} has no ${arch} guest image at all${others.length ? ` (only ${others.join(', ')})` : ''}`,
      `build it here: ${buildFix(arch)}${arch !== hostArch() ? `   (once: sudo dpkg --add-architecture ${arch} && sudo apt-get update)` : ''}`,
    );
  if (choice.inputsDigest)
    return new UserError(
      `no ${arch} guest image for this checkout's inputs (${imageFolderName(arch, choice.inputsDigest)}) is published in ${where}: the package versions apt offers here, or vm/guest/image-init, differ from those of every published image`,
      `${buildFix(arch)}   (builds it here in a minute or two)${latest ? `; or the newest published one, made from other inputs: ${pullCommand(arch, `--ref ${arch}-latest`)}` : ''}`,
    );
  return new UserError(
    `${where} has no ${DIGEST.test(ref) ? 'manifest' : 'tag'} ${ref}${why ? ` (${why})` : ''}`,
    latest ? `${pullCommand(arch, `--ref ${arch}-latest`)}   (the newest published; or build it here: ${buildFix(arch)})` : buildFix(arch),
  );
}

/** The image manifest for `arch` at `ref` (through an index if it is one), checked to describe a guest image of that arch. */
async function resolvePublished(reg: Registry, choice: Choice, arch: ImageArch, o: { signal?: AbortSignal; stallMs: number }): Promise<Published> {
  const where = at(reg.repo, choice.ref);
  let m = await getManifest(reg, choice.ref, o);
  if (m.status !== 200) throw await notFound(reg, choice.ref, arch, m.status, m.why ?? '', choice);
  if (m.type === MEDIA.ociIndex || m.type === MEDIA.dockerList || Array.isArray(m.json.manifests)) {
    const entries = m.json.manifests ?? [];
    const pick =
      entries.find((d) => d.platform?.architecture === arch && (!d.platform.os || d.platform.os === 'linux')) ??
      entries.find((d) => d.annotations?.[ANNOTATION_ARCH] === arch);
    if (!pick) {
      const has = [...new Set(entries.map((d) => d.platform?.architecture ?? d.annotations?.[ANNOTATION_ARCH]).filter(Boolean))];
      throw new UserError(`${where} holds no ${arch} guest image (its index has: ${has.join(', ') || 'nothing'})`, `build it here: ${buildFix(arch)}`);
    }
    if (!DIGEST.test(String(pick.digest))) throw new UserError(`${where}: its index names its ${arch} entry by a bad digest`, `try again later; ${OFFLINE_FIX}`);
    m = await getManifest(reg, pick.digest, o);
    if (m.status !== 200) throw new UserError(`${where}: its ${arch} manifest ${pick.digest} is missing (HTTP ${m.status})`, `try again later; ${OFFLINE_FIX}`);
    if (Array.isArray(m.json.manifests)) throw new UserError(`${where}: an index inside an index is not a guest image`, buildFix(arch));
  }
  const layers = m.json.layers ?? [];
  const layer = layers.find((l) => l.mediaType === IMAGE_LAYER_TYPE);
  if (!layer)
    throw new UserError(
      `${where} is not a sockmap-labs guest image: no layer of type ${IMAGE_LAYER_TYPE} (it has: ${layers.map((l) => l.mediaType).join(', ') || 'no layers'})`,
      `check --repository and --ref; or build the image here: ${buildFix(arch)}`,
    );
  if (!DIGEST.test(String(layer.digest)) || !Number.isSafeInteger(layer.size) || layer.size <= 0 || layer.size > MAX_LAYER)
    throw new UserError(`${where}: its manifest gives the image file a bad digest or size (${layer.digest}, ${layer.size})`, `try again later; ${OFFLINE_FIX}`);
  const ann = m.json.annotations ?? {};
  const annArch = ann[ANNOTATION_ARCH];
  if (annArch !== undefined && annArch !== arch)
    throw new UserError(
      `the guest image ${where} is for ${annArch}, but this pull is for ${arch}${archFlag(arch) ? ' (--arch)' : " (this machine's)"}; nothing was downloaded`,
      isImageArch(annArch) ? `${pullCommand(annArch, `${DIGEST.test(choice.ref) ? '--digest' : '--ref'} ${choice.ref}`)}   (for an ${annArch} guest), or for ${arch}: ${buildFix(arch)}` : buildFix(arch),
    );
  const hex = (k: string) => (HEX64.test(ann[k] ?? '') ? ann[k] : undefined);
  return { manifestDigest: m.digest, layer: { digest: layer.digest, size: layer.size }, arch: annArch, inputsDigest: hex(ANNOTATION_INPUTS), imageDigest: hex(ANNOTATION_IMAGE_DIGEST) };
}

// ---- the pull ------------------------------------------------------------------


export interface PullResult {
  manifest: ImageManifest;
  dir: string;
  published: Published;
  repository: Repository;
  /**
   * false: an image for the same inputs was in the cache already, sound
   * (built here, or pulled before), so nothing was downloaded. With --digest,
   * only when it is that very image (the same files).
   */
  downloaded: boolean;
  seconds: number;
}

/** The tag `<arch>-<64 hex>` names the inputs digest of the image it holds. */
const inputsOfTag = (ref: string, arch: ImageArch) => new RegExp(`^${arch}-([0-9a-f]{64})$`).exec(ref)?.[1];

/**
 * Pulls the guest image `choice.ref` for `arch` from `repository` into the
 * cache and makes it the one `arch` VMs boot. The layer is checked against
 * the manifest (size, sha256), then imported (importImage: every file against
 * the image's own manifest). Throws a UserError naming the fix on any failure;
 * nothing half-made stays in the cache.
 */
export async function pullImage(o: {
  cacheDir: string;
  arch: ImageArch;
  repository: Repository;
  choice: Choice;
  signal?: AbortSignal;
  /** Stage lines. */
  log?: (line: string) => void;
  /** Bytes of the layer so far, of its total. */
  onProgress?: (got: number, total: number) => void;
  /** How long a silent connection may take before it counts as stalled (default 60 s). */
  stallMs?: number;
  /** For a private repository (LAB_REGISTRY_USER, LAB_REGISTRY_PASSWORD); anonymous without. */
  credentials?: Credentials;
}): Promise<PullResult> {
  const t0 = Date.now();
  const { arch, repository: repo, choice, signal } = o;
  const log = o.log ?? (() => {});
  const stallMs = o.stallMs ?? STALL_MS;
  const reg = new Registry(repo, { signal, stallMs, credentials: o.credentials });
  log(`asking ${repo.display} for ${choice.ref.length > 40 ? `${choice.ref.slice(0, 22)}…` : choice.ref} (${choice.why})`);
  const pub = await resolvePublished(reg, choice, arch, { signal, stallMs });
  const tagged = inputsOfTag(choice.ref, arch);
  if (tagged && pub.inputsDigest && tagged !== pub.inputsDigest)
    throw new UserError(`${repo.display}:${choice.ref} holds an image annotated with other inputs (${pub.inputsDigest.slice(0, 16)}): it is mis-tagged; nothing was downloaded`, buildFix(arch));
  const inputs = tagged ?? pub.inputsDigest;
  const images = imagesDir(o.cacheDir);
  fs.mkdirSync(images, { recursive: true });

  // An image for these inputs may be here already (built, or pulled before):
  // good enough, unless a digest pins the very image, files and all.
  const pinned = DIGEST.test(choice.ref);
  if (inputs && (!pinned || pub.imageDigest)) {
    const folder = imageFolderName(arch, inputs);
    const dir = path.join(images, folder);
    if (fs.existsSync(dir)) {
      try {
        const { manifest } = await verifyImage(dir, { arch, signal });
        if (manifest.inputsDigest === inputs && (!pinned || manifest.digest === pub.imageDigest)) {
          setCurrentImage(o.cacheDir, arch, folder);
          for (const n of removeOtherImages(o.cacheDir, arch, folder)) log(`removed the older image ${n}`);
          return { manifest, dir, published: pub, repository: repo, downloaded: false, seconds: (Date.now() - t0) / 1000 };
        }
      } catch (e) {
        if (!(e instanceof UserError)) throw e;
        log(`the image in ${dir} is unusable (${e.message}): pulling it again`);
      }
    }
  }

  const { size, digest } = pub.layer;
  // The download, then its unpacked copy beside it until the import is done.
  requireFreeSpace(images, 2 * size + 50e6, 'pulling the guest image');
  // Named as sweepStale (vm/image.ts) expects: one a killed pull left is removed by the next image command.
  const tmp = path.join(images, `.download-${process.pid}-${crypto.randomBytes(4).toString('hex')}`);
  const source = `${repo.display}@${pub.manifestDigest}`;
  try {
    log(`downloading the ${arch} image (${mb(size)})`);
    await download(reg, digest, size, tmp, { signal, stallMs, onProgress: o.onProgress });
    const r = await importImage({
      cacheDir: o.cacheDir,
      file: tmp,
      arch,
      signal,
      log,
      source: { name: source, fix: `pull it again (npm run image pull); if it fails the same way, the published image is bad: ${buildFix(arch)}` },
      checkManifest: (m) => {
        if (inputs && m.inputsDigest !== inputs) throw new UserError(`the image in ${source} was built from other inputs (${m.inputsDigest.slice(0, 16)}) than it is published as (${inputs.slice(0, 16)}); nothing was imported`, buildFix(arch));
      },
    });
    return { ...r, published: pub, repository: repo, downloaded: true, seconds: (Date.now() - t0) / 1000 };
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}

/** Streams the blob `digest` into `file` (created here), hashing it; refuses it unless it is `size` bytes with that sha256. */
async function download(reg: Registry, digest: string, size: number, file: string, o: { signal?: AbortSignal; stallMs: number; onProgress?: (got: number, total: number) => void }): Promise<void> {
  const where = `${reg.repo.display}@${digest}`;
  const refetch = `pull again: npm run image pull   (${OFFLINE_FIX})`;
  const wd = watchdog(o.signal, o.stallMs);
  let got = 0;
  const fh = await fs.promises.open(file, 'wx', 0o644);
  try {
    const res = await reg.get(`blobs/${digest}`, '*/*', `downloading the image ${digest.slice(0, 19)}…`, wd);
    if (!res.ok) {
      const why = await registryError(res);
      throw new UserError(`${reg.repo.display} lists the image file ${digest} but does not serve it (HTTP ${res.status}${why ? ` ${why}` : ''}); nothing was pulled`, `try again later; ${OFFLINE_FIX}`);
    }
    const hash = crypto.createHash('sha256');
    o.onProgress?.(0, size);
    try {
      for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
        wd.kick();
        got += chunk.length;
        if (got > size) throw new UserError(`${where} is longer than the ${size} bytes its manifest says: refused; nothing was imported`, refetch);
        hash.update(chunk);
        let off = 0;
        while (off < chunk.length) off += (await fh.write(chunk, off, chunk.length - off)).bytesWritten;
        o.onProgress?.(got, size);
      }
    } catch (e) {
      if (e instanceof UserError || o.signal?.aborted) throw e;
      if (wd.stalled()) throw new UserError(`the download of ${where} stalled: nothing for ${o.stallMs / 1000} s after ${mb(got)} of ${mb(size)}; nothing was imported`, refetch);
      throw new UserError(`the download of ${where} broke off after ${mb(got)} of ${mb(size)} (${causeOf(e)}); nothing was imported`, refetch);
    }
    if (got < size) throw new UserError(`the download of ${where} ended after ${got} of ${size} bytes: truncated; nothing was imported`, refetch);
    const sum = `sha256:${hash.digest('hex')}`;
    if (sum !== digest)
      throw new UserError(`the download of ${where} hashes to ${sum}: sha256 mismatch, refused and deleted; nothing was imported`, `${refetch}; if it fails the same way, the registry serves a damaged file`);
  } finally {
    wd.stop();
    await fh.close();
  }
}
