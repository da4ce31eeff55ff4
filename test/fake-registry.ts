// An OCI registry in the test process, enough of the distribution API for
// `image pull`: a Bearer challenge and an anonymous token endpoint (as
// ghcr.io has them), manifests by tag and by digest, tags/list, and blobs
// redirected to a second server on another origin (as ghcr.io redirects
// to its storage), which can be told to misbehave. And for `image push`:
// push tokens only for the user and password set in `pushUser` (Basic auth
// on the token endpoint, as ghcr.io takes a GitHub token), HEAD on blobs,
// monolithic uploads (POST, then PUT with the digest, checked), manifest PUT.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { ANNOTATION_ARCH, ANNOTATION_IMAGE_DIGEST, ANNOTATION_INPUTS, IMAGE_ARTIFACT_TYPE, IMAGE_LAYER_TYPE } from '../vm/image-pull.ts';
import type { ImageManifest } from '../vm/image-verify.ts';

const digestOf = (b: Buffer) => `sha256:${crypto.createHash('sha256').update(b).digest('hex')}`;

/** How the storage server sends the next blobs. */
export type BlobFault =
  | 'flip' // one byte changed, same size
  | 'broken' // half the bytes, then the connection is cut (Content-Length says all)
  | 'short' // half the bytes as a complete response (Content-Length says half)
  | 'long' // the bytes and some more
  | 'hold'; // half the bytes, then nothing until the client goes

export interface Logged {
  method: string;
  url: string;
  authorization?: string;
}

export class FakeRegistry {
  readonly name: string;
  url = '';
  /** Requests to the registry (manifests, blobs, tags, tokens) and to the storage, in order. */
  readonly requests: Logged[] = [];
  readonly storage: Logged[] = [];
  readonly tokens: string[] = [];
  fault?: BlobFault;
  /** The token endpoint refuses (a private repository). */
  privateRepo = false;
  /** Who may push (none: nobody). */
  pushUser?: { user: string; password: string };
  /** Tokens that may push. */
  readonly pushTokens: string[] = [];
  /** The Authorization headers the token endpoint got. */
  readonly tokenAuth: (string | undefined)[] = [];
  private readonly uploads = new Set<string>();
  private storageUrl = '';
  private readonly manifests = new Map<string, { body: Buffer; type: string }>();
  private readonly blobs = new Map<string, Buffer>();
  private readonly servers: http.Server[] = [];
  private readonly sockets = new Set<import('node:net').Socket>();

  constructor(name = 'class/sockmap-labs-image') {
    this.name = name;
  }

  async start(): Promise<this> {
    const listen = async (handler: http.RequestListener) => {
      const s = http.createServer(handler);
      s.on('connection', (c) => {
        this.sockets.add(c);
        c.on('close', () => this.sockets.delete(c));
      });
      await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
      this.servers.push(s);
      return `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
    };
    this.url = await listen((q, s) => this.registry(q, s));
    this.storageUrl = await listen((q, s) => this.store(q, s));
    return this;
  }

  async close(): Promise<void> {
    for (const c of this.sockets) c.destroy();
    await Promise.all(this.servers.map((s) => new Promise((r) => s.close(r))));
  }

  /** Stores `file` as a blob and an image manifest for it (what oras push makes), under each tag. Returns the manifest's digest. */
  publishFile(file: string, tags: string[], annotations: Record<string, string> = {}): { manifestDigest: string; layerDigest: string; size: number } {
    const data = fs.readFileSync(file);
    const layerDigest = digestOf(data);
    this.blobs.set(layerDigest, data);
    const manifest = {
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      artifactType: IMAGE_ARTIFACT_TYPE,
      config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: digestOf(Buffer.from('{}')), size: 2, data: 'e30=' },
      layers: [{ mediaType: IMAGE_LAYER_TYPE, digest: layerDigest, size: data.length, annotations: { 'org.opencontainers.image.title': 'sockmap-labs-image.tar' } }],
      annotations: { 'org.opencontainers.image.created': new Date().toISOString(), ...annotations },
    };
    const manifestDigest = this.putManifest(Buffer.from(JSON.stringify(manifest)), manifest.mediaType, tags);
    return { manifestDigest, layerDigest, size: data.length };
  }

  /** The annotations the release workflow sets. */
  static annotations(m: Pick<ImageManifest, 'arch' | 'inputsDigest' | 'digest'>, arch: string = m.arch) {
    return { [ANNOTATION_ARCH]: arch, [ANNOTATION_INPUTS]: m.inputsDigest, [ANNOTATION_IMAGE_DIGEST]: m.digest };
  }

  /** Stores a manifest (any bytes) under its digest and each tag. */
  putManifest(body: Buffer, type: string, tags: string[] = []): string {
    const d = digestOf(body);
    for (const ref of [d, ...tags]) this.manifests.set(ref, { body, type });
    return d;
  }

  /** An OCI index over `entries` (manifest digest and arch), under `tags`. */
  publishIndex(entries: { digest: string; arch: string }[], tags: string[]): string {
    const manifests = entries.map((e) => {
      const m = this.manifests.get(e.digest)!;
      return { mediaType: m.type, digest: e.digest, size: m.body.length, platform: { architecture: e.arch, os: 'linux' } };
    });
    const type = 'application/vnd.oci.image.index.v1+json';
    return this.putManifest(Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: type, manifests })), type, tags);
  }

  /** Serves `body` for `ref` instead of what is stored (a registry that answers the wrong manifest). */
  replaceManifest(ref: string, body: Buffer) {
    const m = this.manifests.get(ref)!;
    this.manifests.set(ref, { ...m, body });
  }

  private error(s: http.ServerResponse, status: number, code: string, message: string) {
    s.writeHead(status, { 'content-type': 'application/json' });
    s.end(JSON.stringify({ errors: [{ code, message }] }));
  }

  private registry(q: http.IncomingMessage, s: http.ServerResponse) {
    this.requests.push({ method: q.method!, url: q.url!, authorization: q.headers.authorization });
    const url = new URL(q.url!, this.url);
    if (url.pathname === '/token') {
      this.tokenAuth.push(q.headers.authorization);
      if (this.privateRepo) return this.error(s, 401, 'UNAUTHORIZED', 'authentication required');
      const scope = /^repository:[a-z0-9/._-]+:(pull|pull,push)$/.exec(url.searchParams.get('scope') ?? '');
      if (!scope || url.searchParams.get('service') !== 'fake-registry') return this.error(s, 400, 'DENIED', `unexpected token request ${url.search}`);
      const push = scope[1] === 'pull,push';
      if (push) {
        const u = this.pushUser;
        if (!u || q.headers.authorization !== `Basic ${Buffer.from(`${u.user}:${u.password}`).toString('base64')}`) return this.error(s, 401, 'UNAUTHORIZED', 'bad credentials');
      }
      const token = `${push ? 'push' : 'anon'}-${this.tokens.length + 1}`;
      this.tokens.push(token);
      if (push) this.pushTokens.push(token);
      s.writeHead(200, { 'content-type': 'application/json' });
      return s.end(JSON.stringify({ token }));
    }
    const m = /^\/v2\/(.+)\/(manifests|blobs|tags)\/(.+)$/.exec(url.pathname);
    const auth = q.headers.authorization;
    if (!auth || !this.tokens.includes(auth.replace(/^Bearer /, ''))) {
      s.writeHead(401, {
        'www-authenticate': `Bearer realm="${this.url}/token",service="fake-registry",scope="repository:${m?.[1] ?? this.name}:pull"`,
        'content-type': 'application/json',
      });
      return s.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] }));
    }
    if (!m) return this.error(s, 404, 'NOT_FOUND', url.pathname);
    const [, name, kind, ref] = m;
    const writes = q.method === 'POST' || q.method === 'PUT';
    if (writes && !this.pushTokens.includes(auth.replace(/^Bearer /, ''))) {
      s.writeHead(401, { 'www-authenticate': `Bearer realm="${this.url}/token",service="fake-registry",scope="repository:${name}:pull,push"` });
      return s.end();
    }
    if (writes && name === this.name) return this.write(q, s, url, kind, ref);
    if (name !== this.name) return this.error(s, 404, 'NAME_UNKNOWN', `repository name not known to registry`);
    if (q.method === 'HEAD') {
      const b = kind === 'blobs' ? this.blobs.get(ref) : undefined;
      s.writeHead(b ? 200 : 404, b ? { 'content-length': b.length, 'docker-content-digest': ref } : {});
      return s.end();
    }
    if (kind === 'tags') {
      s.writeHead(200, { 'content-type': 'application/json' });
      return s.end(JSON.stringify({ name, tags: [...this.manifests.keys()].filter((k) => !k.startsWith('sha256:')).sort() }));
    }
    if (kind === 'manifests') {
      const man = this.manifests.get(ref);
      if (!man) return this.error(s, 404, 'MANIFEST_UNKNOWN', 'manifest unknown');
      s.writeHead(200, { 'content-type': man.type, 'content-length': man.body.length });
      return s.end(man.body);
    }
    if (!this.blobs.has(ref)) return this.error(s, 404, 'BLOB_UNKNOWN', 'blob unknown');
    s.writeHead(307, { location: `${this.storageUrl}/store/${ref.replace(':', '/')}?signature=fake` });
    s.end();
  }

  /** POST an upload, PUT its bytes with their digest, PUT a manifest. */
  private write(q: http.IncomingMessage, s: http.ServerResponse, url: URL, kind: string, ref: string) {
    const chunks: Buffer[] = [];
    q.on('data', (c: Buffer) => chunks.push(c));
    q.on('end', () => {
      const body = Buffer.concat(chunks);
      if (q.method === 'POST' && kind === 'blobs' && ref === 'uploads/') {
        const id = crypto.randomUUID();
        this.uploads.add(id);
        s.writeHead(202, { location: `/v2/${this.name}/blobs/uploads/${id}?state=x`, 'docker-upload-uuid': id, 'content-length': 0 });
        return s.end();
      }
      if (q.method === 'PUT' && kind === 'blobs' && ref.startsWith('uploads/')) {
        const id = ref.slice('uploads/'.length);
        if (!this.uploads.delete(id) || url.searchParams.get('state') !== 'x') return this.error(s, 404, 'BLOB_UPLOAD_UNKNOWN', 'upload unknown');
        const d = digestOf(body);
        if (d !== url.searchParams.get('digest')) return this.error(s, 400, 'DIGEST_INVALID', 'provided digest did not match uploaded content');
        this.blobs.set(d, body);
        s.writeHead(201, { location: `/v2/${this.name}/blobs/${d}`, 'docker-content-digest': d, 'content-length': 0 });
        return s.end();
      }
      if (q.method === 'PUT' && kind === 'manifests') {
        const json = JSON.parse(body.toString()) as { layers?: { digest: string }[]; manifests?: { digest: string }[]; config?: { digest: string } };
        for (const d of [json.config?.digest, ...(json.layers ?? []).map((l) => l.digest)]) if (d && !this.blobs.has(d)) return this.error(s, 400, 'MANIFEST_BLOB_UNKNOWN', d);
        for (const e of json.manifests ?? []) if (!this.manifests.has(e.digest)) return this.error(s, 400, 'MANIFEST_UNKNOWN', e.digest);
        const d = this.putManifest(body, q.headers['content-type'] ?? '', ref.startsWith('sha256:') ? [] : [ref]);
        s.writeHead(201, { 'docker-content-digest': d, 'content-length': 0 });
        return s.end();
      }
      this.error(s, 405, 'UNSUPPORTED', `${q.method} ${url.pathname}`);
    });
  }

  private store(q: http.IncomingMessage, s: http.ServerResponse) {
    this.storage.push({ method: q.method!, url: q.url!, authorization: q.headers.authorization });
    const m = /^\/store\/sha256\/([0-9a-f]{64})\?signature=fake$/.exec(q.url!);
    const data = m && this.blobs.get(`sha256:${m[1]}`);
    if (!data) {
      s.writeHead(403);
      return s.end('bad signature');
    }
    const half = data.subarray(0, data.length >> 1);
    switch (this.fault) {
      case 'flip': {
        const bad = Buffer.from(data);
        bad[bad.length >> 1] ^= 0xff;
        s.writeHead(200, { 'content-length': bad.length });
        return s.end(bad);
      }
      case 'broken':
        s.writeHead(200, { 'content-length': data.length });
        s.write(half);
        return setTimeout(() => s.socket?.destroy(), 50);
      case 'short':
        s.writeHead(200, { 'content-length': half.length });
        return s.end(half);
      case 'long': {
        const more = Buffer.concat([data, Buffer.alloc(5000)]);
        s.writeHead(200, { 'content-length': more.length });
        return s.end(more);
      }
      case 'hold':
        s.writeHead(200, { 'content-length': data.length });
        return s.write(half);
      default:
        s.writeHead(200, { 'content-length': data.length, 'content-type': 'application/octet-stream' });
        s.end(data);
    }
  }
}
