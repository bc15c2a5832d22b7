// Test-side OCI helpers: digests, random content, a small HTTP client that always reads the whole
// response (so failures can quote it), pushes of blobs, images, indexes and artifacts, and assertions
// on the OCI error body. Deliberately independent of the server code: the tests must be able to fail.
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { gzipSync } from 'node:zlib';
import { expect } from 'chai';

export const MediaType = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociLayerTar: 'application/vnd.oci.image.layer.v1.tar',
  ociEmpty: 'application/vnd.oci.empty.v1+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  buildkitCacheConfig: 'application/vnd.buildkit.cacheconfig.v0',
} as const;

/** Every manifest type we accept, so that content negotiation never rewrites or hides a manifest. */
export const MANIFEST_ACCEPT = [
  MediaType.ociManifest,
  MediaType.ociIndex,
  MediaType.dockerManifest,
  MediaType.dockerManifestList,
].join(', ');

/** The error codes of the distribution spec (its code-1 .. code-14 table, plus TOOMANYREQUESTS). */
export const OCI_ERROR_CODES = [
  'BLOB_UNKNOWN',
  'BLOB_UPLOAD_INVALID',
  'BLOB_UPLOAD_UNKNOWN',
  'DIGEST_INVALID',
  'MANIFEST_BLOB_UNKNOWN',
  'MANIFEST_INVALID',
  'MANIFEST_UNKNOWN',
  'MANIFEST_UNVERIFIED',
  'NAME_INVALID',
  'NAME_UNKNOWN',
  'SIZE_INVALID',
  'TAG_INVALID',
  'UNAUTHORIZED',
  'DENIED',
  'UNSUPPORTED',
  'TOOMANYREQUESTS',
] as const;

/** The digest of the OCI empty JSON blob `{}`. */
export const EMPTY_JSON_DIGEST = 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a';

// ---------------------------------------------------------------------------------------------
// Content

export function sha256(data: Uint8Array | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

export function randomHex(bytes = 6): string {
  return randomBytes(bytes).toString('hex');
}

export function randomBlob(size: number): Buffer {
  return randomBytes(size);
}

/** A unique lowercase namespace for one suite run, valid as a repository name component. */
export function uniqueNamespace(prefix: string): string {
  return `${prefix}-${randomHex(5)}`;
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
  platform?: { architecture: string; os: string; variant?: string; 'os.version'?: string };
  urls?: string[];
  data?: string;
  [extra: string]: unknown;
}

/** Bytes with their digest and media type: a blob or a manifest. */
export interface Content {
  bytes: Buffer;
  digest: string;
  size: number;
  mediaType: string;
}

export function content(bytes: Buffer | string, mediaType = 'application/octet-stream'): Content {
  const buf = typeof bytes === 'string' ? Buffer.from(bytes) : bytes;
  return { bytes: buf, digest: sha256(buf), size: buf.length, mediaType };
}

export function descriptorOf(c: Content, extra: Partial<Descriptor> = {}): Descriptor {
  return { mediaType: c.mediaType, digest: c.digest, size: c.size, ...extra };
}

export function emptyJsonBlob(): Content {
  return content('{}', MediaType.ociEmpty);
}

/** A random image config (unique digest through a random author), tab-indented like Go's MarshalIndent. */
export function imageConfig(options: { architecture?: string; os?: string; mediaType?: string } = {}): Content {
  const config = {
    architecture: options.architecture ?? 'amd64',
    os: options.os ?? 'linux',
    author: `tester-${randomHex(8)}`,
    rootfs: { type: 'layers', diff_ids: [] as string[] },
    config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'] },
  };
  return content(JSON.stringify(config, null, '\t'), options.mediaType ?? MediaType.ociConfig);
}

/** A small gzip'ed "layer" with random content (registries do not look inside layers). */
export function gzipLayer(size = 512, mediaType: string = MediaType.ociLayerGzip): Content {
  return content(gzipSync(randomBytes(size)), mediaType);
}

export interface ManifestOptions {
  config: Descriptor;
  layers: Descriptor[];
  /** The `mediaType` field; `null` leaves it out (allowed by the image spec). */
  mediaType?: string | null;
  /** The Content-Type to push with; defaults to the media type or the OCI manifest type. */
  contentType?: string;
  artifactType?: string;
  subject?: Descriptor;
  annotations?: Record<string, string>;
  /** JSON.stringify indentation; default a tab, so that byte-exact storage is tested. */
  indent?: string | number;
  /** Extra top-level fields that a registry must store and serve unchanged. */
  extra?: Record<string, unknown>;
}

export function imageManifest(options: ManifestOptions): Content {
  const mediaType = options.mediaType === undefined ? MediaType.ociManifest : options.mediaType;
  const doc: Record<string, unknown> = { schemaVersion: 2 };
  if (mediaType !== null) doc.mediaType = mediaType;
  if (options.artifactType !== undefined) doc.artifactType = options.artifactType;
  doc.config = options.config;
  doc.layers = options.layers;
  if (options.subject) doc.subject = options.subject;
  if (options.annotations) doc.annotations = options.annotations;
  Object.assign(doc, options.extra ?? {});
  const text = JSON.stringify(doc, null, options.indent ?? '\t');
  return content(text, options.contentType ?? mediaType ?? MediaType.ociManifest);
}

export interface IndexOptions {
  manifests: Descriptor[];
  mediaType?: string | null;
  contentType?: string;
  artifactType?: string;
  subject?: Descriptor;
  annotations?: Record<string, string>;
  indent?: string | number;
}

export function indexManifest(options: IndexOptions): Content {
  const mediaType = options.mediaType === undefined ? MediaType.ociIndex : options.mediaType;
  const doc: Record<string, unknown> = { schemaVersion: 2 };
  if (mediaType !== null) doc.mediaType = mediaType;
  if (options.artifactType !== undefined) doc.artifactType = options.artifactType;
  doc.manifests = options.manifests;
  if (options.subject) doc.subject = options.subject;
  if (options.annotations) doc.annotations = options.annotations;
  const text = JSON.stringify(doc, null, options.indent ?? '\t');
  return content(text, options.contentType ?? mediaType ?? MediaType.ociIndex);
}

// ---------------------------------------------------------------------------------------------
// HTTP

export interface Reply {
  /** "METHOD /path?query", for assertion messages. */
  request: string;
  status: number;
  headers: Headers;
  body: Buffer;
  text(): string;
  json<T = unknown>(): T;
}

function describeReply(r: Reply): string {
  const interesting = ['content-type', 'location', 'range', 'docker-content-digest', 'oci-subject', 'link']
    .map((h) => (r.headers.get(h) !== null ? `${h}: ${r.headers.get(h)}` : ''))
    .filter(Boolean)
    .join('; ');
  const body = r.body.length > 400 ? `${r.body.subarray(0, 400).toString()}...` : r.body.toString();
  return `${r.request} -> ${r.status}${interesting ? ` [${interesting}]` : ''}${body ? ` ${body}` : ''}`;
}

export { describeReply };

function makeReply(request: string, status: number, headers: Headers, body: Buffer): Reply {
  return {
    request,
    status,
    headers,
    body,
    text: () => body.toString('utf8'),
    json: <T>() => JSON.parse(body.toString('utf8')) as T,
  };
}

export interface RequestOptions {
  headers?: Record<string, string>;
  body?: Buffer | string;
  query?: Record<string, string | number | undefined>;
  /** 'manual' shows a 307 to storage (S3 presigned URLs) instead of following it. */
  redirect?: 'follow' | 'manual';
}

/** A minimal registry client over Node's fetch. Paths may be relative ("/v2/...") or absolute URLs. */
export class OciClient {
  constructor(public base: string) {}

  /** Resolves a path or a Location header (relative or absolute) against the registry. */
  url(pathOrLocation: string, query?: Record<string, string | number | undefined>): URL {
    const u = new URL(pathOrLocation, this.base);
    for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined) u.searchParams.set(k, String(v));
    return u;
  }

  async request(method: string, path: string, options: RequestOptions = {}): Promise<Reply> {
    const u = this.url(path, options.query);
    const request = `${method} ${u.pathname}${u.search}`;
    try {
      const res = await fetch(u, {
        method,
        headers: options.headers,
        body: options.body === undefined ? undefined : typeof options.body === 'string' ? options.body : new Uint8Array(options.body),
        redirect: options.redirect ?? 'follow',
      });
      const body = method === 'HEAD' ? Buffer.alloc(0) : Buffer.from(await res.arrayBuffer());
      return makeReply(request, res.status, res.headers, body);
    } catch (err) {
      // A dropped connection or a malformed response: say which request, and why.
      const cause = (err as { cause?: { message?: string } }).cause?.message;
      throw new Error(`${request}: no valid HTTP response (${(err as Error).message}${cause ? `: ${cause}` : ''})`);
    }
  }

  get(path: string, options?: RequestOptions): Promise<Reply> { return this.request('GET', path, options); }
  head(path: string, options?: RequestOptions): Promise<Reply> { return this.request('HEAD', path, options); }
  delete(path: string, options?: RequestOptions): Promise<Reply> { return this.request('DELETE', path, options); }

  // --- blobs -----------------------------------------------------------------------------

  /** POST /v2/<name>/blobs/uploads/ (optionally with query, e.g. mount/from/digest, and a body). */
  startUpload(name: string, options: RequestOptions = {}): Promise<Reply> {
    return this.request('POST', `/v2/${name}/blobs/uploads/`, options);
  }

  /** Starts an upload session and returns its Location; fails the test when there is none. */
  async openSession(name: string): Promise<{ location: string; reply: Reply }> {
    const reply = await this.startUpload(name, { headers: { 'Content-Length': '0' } });
    expectStatus(reply, 202);
    const location = reply.headers.get('location');
    expect(location, `${describeReply(reply)}: no Location`).to.be.a('string').and.not.equal('');
    return { location: location as string, reply };
  }

  patchChunk(location: string, chunk: Buffer, range?: { start: number }, headers: Record<string, string> = {}): Promise<Reply> {
    const h: Record<string, string> = { 'Content-Type': 'application/octet-stream', ...headers };
    if (range) h['Content-Range'] = `${range.start}-${range.start + chunk.length - 1}`;
    return this.request('PATCH', location, { headers: h, body: chunk });
  }

  /** Closes a session: PUT <location>?digest=..., with an optional last chunk as body. */
  closeUpload(location: string, digest: string, body?: Buffer, headers: Record<string, string> = {}): Promise<Reply> {
    const h: Record<string, string> = { 'Content-Type': 'application/octet-stream', ...headers };
    return this.request('PUT', location, { headers: h, body: body ?? Buffer.alloc(0), query: { digest } });
  }

  /** POST then PUT with the whole blob. Asserts 201 and returns the PUT reply. */
  async pushBlob(name: string, data: Buffer | Content): Promise<Reply> {
    const bytes = Buffer.isBuffer(data) ? data : data.bytes;
    const { location } = await this.openSession(name);
    const reply = await this.closeUpload(location, sha256(bytes), bytes);
    expectStatus(reply, 201);
    return reply;
  }

  /** POST, PATCH chunks with Content-Range, PUT without body. Asserts each step. */
  async pushBlobChunked(name: string, data: Buffer, chunkSize: number): Promise<Reply> {
    let { location } = await this.openSession(name);
    for (let start = 0; start < data.length; start += chunkSize) {
      const chunk = data.subarray(start, Math.min(start + chunkSize, data.length));
      const reply = await this.patchChunk(location, chunk, { start });
      expectStatus(reply, 202);
      expect(reply.headers.get('range'), describeReply(reply)).to.equal(`0-${start + chunk.length - 1}`);
      location = reply.headers.get('location') ?? location;
    }
    const reply = await this.closeUpload(location, sha256(data));
    expectStatus(reply, 201);
    return reply;
  }

  /** POST, one PATCH without Content-Range (as docker does), PUT without body. */
  async pushBlobStreamed(name: string, data: Buffer): Promise<Reply> {
    const { location } = await this.openSession(name);
    const patched = await this.patchChunk(location, data);
    expectStatus(patched, 202);
    const reply = await this.closeUpload(patched.headers.get('location') ?? location, sha256(data));
    expectStatus(reply, 201);
    return reply;
  }

  headBlob(name: string, digest: string, headers?: Record<string, string>): Promise<Reply> {
    return this.head(`/v2/${name}/blobs/${digest}`, { headers });
  }

  getBlob(name: string, digest: string, headers?: Record<string, string>): Promise<Reply> {
    return this.get(`/v2/${name}/blobs/${digest}`, { headers });
  }

  // --- manifests -------------------------------------------------------------------------

  putManifest(name: string, reference: string, manifest: Content, contentType?: string): Promise<Reply> {
    return this.request('PUT', `/v2/${name}/manifests/${reference}`, {
      headers: { 'Content-Type': contentType ?? manifest.mediaType },
      body: manifest.bytes,
    });
  }

  getManifest(name: string, reference: string, accept: string = MANIFEST_ACCEPT): Promise<Reply> {
    return this.get(`/v2/${name}/manifests/${reference}`, { headers: { Accept: accept } });
  }

  headManifest(name: string, reference: string, accept: string = MANIFEST_ACCEPT): Promise<Reply> {
    return this.head(`/v2/${name}/manifests/${reference}`, { headers: { Accept: accept } });
  }

  /** Pushes blobs (skipping none: each push is idempotent) and the manifest; asserts 201. */
  async pushManifest(name: string, reference: string, manifest: Content, blobs: Content[] = []): Promise<Reply> {
    for (const b of blobs) await this.pushBlob(name, b);
    const reply = await this.putManifest(name, reference, manifest);
    expectStatus(reply, 201);
    return reply;
  }

  /** Pushes a config, `layerCount` random layers and an OCI (or Docker) image manifest. */
  async pushImage(name: string, reference: string | undefined, options: {
    layers?: number;
    docker?: boolean;
    architecture?: string;
    annotations?: Record<string, string>;
    subject?: Descriptor;
  } = {}): Promise<PushedImage> {
    const docker = options.docker ?? false;
    const config = imageConfig({ architecture: options.architecture, mediaType: docker ? MediaType.dockerConfig : MediaType.ociConfig });
    const layers = Array.from({ length: options.layers ?? 1 }, () => gzipLayer(256, docker ? MediaType.dockerLayerGzip : MediaType.ociLayerGzip));
    const manifest = imageManifest({
      mediaType: docker ? MediaType.dockerManifest : MediaType.ociManifest,
      config: descriptorOf(config),
      layers: layers.map((l) => descriptorOf(l)),
      annotations: options.annotations,
      subject: options.subject,
    });
    const reply = await this.pushManifest(name, reference ?? manifest.digest, manifest, [config, ...layers]);
    return { manifest, config, layers, reply };
  }

  tags(name: string, query?: Record<string, string | number | undefined>): Promise<Reply> {
    return this.get(`/v2/${name}/tags/list`, { query });
  }

  referrers(name: string, digest: string, query?: Record<string, string | number | undefined>): Promise<Reply> {
    return this.get(`/v2/${name}/referrers/${digest}`, { query });
  }

  catalog(query?: Record<string, string | number | undefined>): Promise<Reply> {
    return this.get('/v2/_catalog', { query });
  }
}

export interface PushedImage {
  manifest: Content;
  config: Content;
  layers: Content[];
  reply: Reply;
}

/** An artifact manifest: empty config (or a config of `configMediaType`), one layer, a subject. */
export function artifactManifest(options: {
  subject?: Descriptor;
  artifactType?: string;
  configMediaType?: string;
  layer: Content;
  annotations?: Record<string, string>;
}): { manifest: Content; blobs: Content[] } {
  const empty = emptyJsonBlob();
  const config = options.configMediaType
    ? content(`{"kind":"${options.configMediaType}","n":"${randomHex(4)}"}`, options.configMediaType)
    : empty;
  const manifest = imageManifest({
    artifactType: options.artifactType,
    config: descriptorOf(config),
    layers: [descriptorOf(options.layer)],
    subject: options.subject,
    annotations: options.annotations,
  });
  return { manifest, blobs: config === empty ? [empty, options.layer] : [config, options.layer] };
}

// ---------------------------------------------------------------------------------------------
// Assertions

export interface OciErrorBody {
  errors: Array<{ code: string; message?: string; detail?: unknown }>;
}

/** Parses `{"errors":[{code,message,detail}]}`; throws (failing the test) when the body is not one. */
export function parseOciErrors(reply: Reply): OciErrorBody {
  let parsed: unknown;
  try {
    parsed = JSON.parse(reply.text());
  } catch {
    throw new Error(`expected an OCI error body (JSON), got: ${describeReply(reply)}`);
  }
  const errors = (parsed as { errors?: unknown }).errors;
  expect(errors, `no "errors" array in ${describeReply(reply)}`).to.be.an('array').that.is.not.empty;
  for (const e of errors as unknown[]) {
    expect(e, describeReply(reply)).to.be.an('object');
    expect((e as { code?: unknown }).code, `error without a string code in ${describeReply(reply)}`).to.be.a('string');
  }
  return parsed as OciErrorBody;
}

export function expectStatus(reply: Reply, ...allowed: number[]): void {
  expect(allowed, describeReply(reply)).to.include(reply.status);
}

/**
 * Asserts the status (one of `status`) and, except for HEAD, an OCI error body whose first error has
 * one of `code`. Pass `null` as `code` to accept any code from the spec's table.
 */
export function expectOciError(reply: Reply, status: number | number[], code: string | string[] | null): OciErrorBody | undefined {
  const statuses = Array.isArray(status) ? status : [status];
  expectStatus(reply, ...statuses);
  if (reply.request.startsWith('HEAD ')) return undefined;
  const body = parseOciErrors(reply);
  const codes = code === null ? [...OCI_ERROR_CODES] : Array.isArray(code) ? code : [code];
  expect(codes, `error code of ${describeReply(reply)}`).to.include(body.errors[0]?.code);
  return body;
}

/** Asserts 2xx..4xx, i.e. never a server error and never a dropped connection. */
export function expectNoServerError(reply: Reply): void {
  expect(reply.status, describeReply(reply)).to.be.below(500);
}

/** Parses an RFC 5988 Link header and returns the URL with rel="next", if any. */
export function nextLink(reply: Reply): string | undefined {
  const link = reply.headers.get('link');
  if (!link) return undefined;
  for (const part of link.split(',')) {
    const m = /^\s*<([^>]*)>\s*;(.*)$/.exec(part);
    if (m && /rel="?next"?/.test(m[2] as string)) return m[1];
  }
  expect.fail(`Link header without rel="next": ${link} (${reply.request})`);
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP: paths that fetch would normalize ("..", "%2e%2e"), truncated bodies, aborted streams

/** Sends a request with the path exactly as given (no URL normalization). */
export function rawRequest(base: string, method: string, path: string, options: { headers?: Record<string, string>; body?: Buffer | string } = {}): Promise<Reply> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: u.hostname, port: u.port, method, path, headers: options.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const headers = new Headers();
        for (const [k, v] of Object.entries(res.headers)) {
          if (v === undefined) continue;
          for (const one of Array.isArray(v) ? v : [v]) headers.append(k, one);
        }
        resolve(makeReply(`${method} ${path}`, res.statusCode ?? 0, headers, Buffer.concat(chunks)));
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

/**
 * Sends a request head announcing `Content-Length: declaredLength` (or, with `chunked`, a chunked body
 * that never ends), then only `sent`, then closes the connection. Resolves with the status code if the
 * server answered before the close, else undefined.
 */
export function truncatedRequest(base: string, method: string, pathAndQuery: string, options: {
  declaredLength?: number;
  chunked?: boolean;
  sent: Buffer;
  headers?: Record<string, string>;
  /** How long to wait after sending before closing. */
  lingerMs?: number;
}): Promise<number | undefined> {
  const u = new URL(base);
  const head = [
    `${method} ${pathAndQuery} HTTP/1.1`,
    `Host: ${u.host}`,
    options.chunked ? 'Transfer-Encoding: chunked' : `Content-Length: ${options.declaredLength ?? options.sent.length * 2}`,
    'Content-Type: application/octet-stream',
    ...Object.entries(options.headers ?? {}).map(([k, v]) => `${k}: ${v}`),
    '',
    '',
  ].join('\r\n');
  const frame = (b: Buffer) => Buffer.concat([Buffer.from(`${b.length.toString(16)}\r\n`), b, Buffer.from('\r\n')]);
  return new Promise((resolve) => {
    const socket = net.connect(Number(u.port), u.hostname);
    let answered: number | undefined;
    socket.on('data', (d: Buffer) => {
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(d.toString('latin1'));
      if (m && answered === undefined) answered = Number(m[1]);
    });
    socket.on('error', () => { /* the server may reset; that is fine */ });
    socket.on('close', () => resolve(answered));
    socket.on('connect', () => {
      socket.write(head);
      const body = options.chunked ? frame(options.sent) : options.sent;
      socket.write(body, () => {
        setTimeout(() => socket.destroy(), options.lingerMs ?? 200);
      });
    });
  });
}

/**
 * Sends the head of a request and `sent` of its body (declared longer, or chunked), then keeps the
 * connection open and silent, as a stalled client does. Resolves with what the server answered and whether
 * it closed the connection, or (after `maxWaitMs`) with `closed: false`.
 */
export function stalledRequest(base: string, method: string, pathAndQuery: string, options: {
  declaredLength?: number;
  chunked?: boolean;
  sent: Buffer;
  headers?: Record<string, string>;
  maxWaitMs: number;
}): Promise<{ status?: number; response: string; closed: boolean; elapsedMs: number }> {
  const u = new URL(base);
  const head = [
    `${method} ${pathAndQuery} HTTP/1.1`,
    `Host: ${u.host}`,
    options.chunked ? 'Transfer-Encoding: chunked' : `Content-Length: ${options.declaredLength ?? options.sent.length * 2}`,
    ...Object.entries({ 'Content-Type': 'application/octet-stream', ...options.headers }).map(([k, v]) => `${k}: ${v}`),
    '',
    '',
  ].join('\r\n');
  const body = options.chunked ? Buffer.concat([Buffer.from(`${options.sent.length.toString(16)}\r\n`), options.sent, Buffer.from('\r\n')]) : options.sent;
  return new Promise((resolve) => {
    const started = performance.now();
    const socket = net.connect(Number(u.port), u.hostname);
    const received: Buffer[] = [];
    const finish = (closed: boolean) => {
      clearTimeout(giveUp);
      socket.destroy();
      const response = Buffer.concat(received).toString('latin1');
      const status = /^HTTP\/1\.[01] (\d{3})/.exec(response)?.[1];
      resolve({ status: status === undefined ? undefined : Number(status), response, closed, elapsedMs: performance.now() - started });
    };
    const giveUp = setTimeout(() => finish(false), options.maxWaitMs);
    socket.on('data', (d: Buffer) => received.push(d));
    socket.on('error', () => { /* a reset is a close too */ });
    socket.on('close', () => finish(true));
    socket.on('connect', () => socket.write(Buffer.concat([Buffer.from(head), body])));
  });
}

/** The path and query of a Location header, to replay it against another base URL (after a restart). */
export function pathOf(location: string): string {
  const u = new URL(location, 'http://placeholder');
  return `${u.pathname}${u.search}`;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
