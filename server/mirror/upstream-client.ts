// The OCI distribution client for upstream registries: manifests byte-exact with verified digests,
// blobs streamed and verified, tags listed page by page. Auth challenges, redirects, retries,
// rate limits and timeouts are handled here so that the mirror job and pull-through never see them.
import http, { type IncomingHttpHeaders } from 'node:http';
import https from 'node:https';
import type { Readable } from 'node:stream';
import { digestOf, parseDigest } from '../registry/digest.js';
import { detectMediaType, MAX_MANIFEST_BYTES } from '../registry/manifest.js';
import { baseMediaType, isManifestMediaType, MANIFEST_MEDIA_TYPES } from '../registry/media-types.js';
import { isValidName, isValidTag } from '../registry/names.js';
import { VerifyingBlobStream, type BlobBody } from './blob-stream.js';
import { drain, exchange, readBody, type ExchangeResponse } from './http-exchange.js';
import { parseRateLimit, type RateLimitState } from './rate-limit.js';
import { DEFAULT_RETRY, parseRetryAfter, withRetries, type RetryEvent, type RetryPolicy } from './retry.js';
import { parseTokenResponse, UpstreamAuth, type Credentials, type IssuedToken, type TokenRequest } from './upstream-auth.js';
import { parseOciErrorBody, UpstreamError } from './upstream-error.js';
import { parseUpstreamUrl } from './upstreams.js';
import { parseChallenges, pickChallenge } from './www-authenticate.js';

/** Every manifest type we store, so that the upstream never converts or hides one. */
export const MANIFEST_ACCEPT = MANIFEST_MEDIA_TYPES.join(', ');

const ERROR_BODY_LIMIT = 64 * 1024;
const TAG_PAGE_LIMIT = 16 * 1024 * 1024;

export interface UpstreamClientOptions {
  retry?: Partial<RetryPolicy>;
  /** Until the TCP/TLS connection is up (default 10 s). */
  connectTimeoutMs?: number;
  /** From the request sent to the response headers (default 60 s). */
  responseTimeoutMs?: number;
  /** Longest pause in a body while we are reading it (default 60 s); a reader's own slowness does not count. */
  idleTimeoutMs?: number;
  /** Connections per upstream host (default 16). */
  maxSockets?: number;
  /** Extra trusted CA certificates (PEM) for https upstreams. */
  ca?: string | Buffer;
  userAgent?: string;
  /** Docker Hub's `ratelimit-*` headers, each time they are seen. */
  onRateLimit?: (state: RateLimitState) => void;
  /** Each retry, with what failed and how long we wait. */
  onRetry?: (event: RetryEvent & { operation: string }) => void;
  /** A blob stream picked up again at `offset` after a lost connection. */
  onResume?: (event: { operation: string; offset: number }) => void;
  /** Every request's outcome (the upstream's status, or a network error; not our own aborts): its health. */
  onExchange?: (outcome: { status: number } | { error: unknown }) => void;
}

export interface CallOptions {
  signal?: AbortSignal;
}

export interface UpstreamManifest {
  /** The bytes exactly as the upstream sent them. */
  bytes: Buffer;
  mediaType: string;
  /** sha256 of the bytes (or the algorithm of the digest asked for). */
  digest: string;
  size: number;
}

export interface ManifestHead {
  /** Docker-Content-Digest, when the upstream sends it (Docker Hub and Distribution do). */
  digest?: string;
  mediaType?: string;
  size?: number;
}

export interface UpstreamBlob {
  /** Verifies size and digest while streaming; errors at the end when either is wrong. Also an async iterable. */
  stream: Readable;
  size: number;
  digest: string;
  mediaType?: string;
}

export interface UpstreamTarget {
  /** An http:// or https:// registry base URL. */
  url: URL | string;
  credentials?: Credentials;
  /** For messages; defaults to the URL's host. */
  name?: string;
}

export class UpstreamClient {
  readonly name: string;
  private readonly base: URL;
  private readonly auth: UpstreamAuth;
  private readonly retry: RetryPolicy;
  private readonly agents: { http: http.Agent; https: https.Agent };
  private readonly connectTimeoutMs: number;
  private readonly responseTimeoutMs: number;
  private readonly idleTimeoutMs: number;
  private lastRateLimit?: RateLimitState;

  constructor(target: UpstreamTarget, private readonly options: UpstreamClientOptions = {}) {
    this.base = typeof target.url === 'string' ? parseUpstreamUrl(target.url, target.name) : target.url;
    this.name = target.name ?? this.base.host;
    this.retry = { ...DEFAULT_RETRY, ...options.retry };
    this.connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    this.responseTimeoutMs = options.responseTimeoutMs ?? 60_000;
    this.idleTimeoutMs = options.idleTimeoutMs ?? 60_000;
    const maxSockets = options.maxSockets ?? 16;
    this.agents = {
      http: new http.Agent({ keepAlive: true, maxSockets }),
      https: new https.Agent({ keepAlive: true, maxSockets, ...(options.ca ? { ca: options.ca } : {}) }),
    };
    this.auth = new UpstreamAuth(target.credentials, (request) => this.requestToken(request));
  }

  /** The `ratelimit-*` headers last seen from this upstream. */
  get rateLimit(): RateLimitState | undefined {
    return this.lastRateLimit;
  }

  /** Closes idle keep-alive connections. */
  close(): void {
    this.agents.http.destroy();
    this.agents.https.destroy();
  }

  // --- manifests ---------------------------------------------------------------------------

  /** GET a manifest by tag or digest: exact bytes, media type and digest (verified against a digest reference). */
  async getManifest(repository: string, reference: string, options: CallOptions = {}): Promise<UpstreamManifest> {
    const asked = checkReference(repository, reference);
    const url = this.v2(`${repository}/manifests/${reference}`);
    return this.retrying(`GET manifest ${repository}:${reference}`, options.signal, async () => {
      const res = await this.send('GET', url, repository, { accept: MANIFEST_ACCEPT }, options.signal);
      const bytes = await readBody(res, MAX_MANIFEST_BYTES, this.idleTimeoutMs);
      const algorithm = asked?.algorithm ?? 'sha256';
      const digest = digestOf(bytes, algorithm);
      if (asked && digest !== asked.digest) {
        throw new UpstreamError(`manifest bytes have digest ${digest}, not the ${asked.digest} asked for`, {
          status: res.status, code: 'DIGEST_MISMATCH', retryable: true, request: res.request,
        });
      }
      const declared = parseDigest(headerValue(res.headers, 'docker-content-digest') ?? '');
      if (declared && digestOf(bytes, declared.algorithm) !== declared.digest) {
        throw new UpstreamError(`manifest bytes do not match Docker-Content-Digest ${declared.digest}`, {
          status: res.status, code: 'DIGEST_MISMATCH', retryable: true, request: res.request,
        });
      }
      return { bytes, mediaType: manifestMediaType(res.headers, bytes), digest, size: bytes.length };
    });
  }

  /** HEAD a manifest: cheap revalidation of a tag (Docker Hub does not count HEADs against its limit). */
  async headManifest(repository: string, reference: string, options: CallOptions = {}): Promise<ManifestHead> {
    checkReference(repository, reference);
    const url = this.v2(`${repository}/manifests/${reference}`);
    return this.retrying(`HEAD manifest ${repository}:${reference}`, options.signal, async () => {
      const res = await this.send('HEAD', url, repository, { accept: MANIFEST_ACCEPT }, options.signal);
      drain(res);
      const head: ManifestHead = {};
      const digest = parseDigest(headerValue(res.headers, 'docker-content-digest') ?? '');
      if (digest) head.digest = digest.digest;
      const mediaType = baseMediaType(headerValue(res.headers, 'content-type'));
      if (mediaType) head.mediaType = mediaType;
      const length = Number(res.headers['content-length']);
      if (res.headers['content-length'] !== undefined && Number.isSafeInteger(length)) head.size = length;
      return head;
    });
  }

  // --- blobs -------------------------------------------------------------------------------

  /**
   * Streams a blob. The promise resolves once the upstream answers; the stream then verifies length
   * and digest and resumes lost connections with Range requests. `size` (from the descriptor) is
   * checked against the upstream's Content-Length.
   */
  async fetchBlob(repository: string, digest: string, options: CallOptions & { size?: number } = {}): Promise<UpstreamBlob> {
    if (!isValidName(repository)) throw new TypeError(`invalid repository name ${repository}`);
    const parsed = parseDigest(digest);
    if (!parsed) throw new TypeError(`invalid digest ${digest}`);
    const url = this.v2(`${repository}/blobs/${digest}`);
    const open = (offset: number, signal?: AbortSignal) =>
      this.retrying(`GET blob ${repository}@${digest} from ${offset}`, signal, async () => {
        const res = await this.send('GET', url, repository, offset > 0 ? { range: `bytes=${offset}-` } : {}, signal);
        return { res, skip: rangeSkip(res, offset) };
      });

    const first = await open(0, options.signal);
    const length = contentLength(first.res.headers);
    const fail = (message: string, code: string): never => {
      first.res.body.destroy();
      throw new UpstreamError(message, { status: first.res.status, code, retryable: false, request: first.res.request });
    };
    const size = length ?? options.size ?? fail('blob answer without Content-Length', 'INVALID_RESPONSE');
    if (options.size !== undefined && length !== undefined && length !== options.size) {
      fail(`blob is ${length} bytes, its descriptor says ${options.size}`, 'SIZE_MISMATCH');
    }
    const body = (r: { res: ExchangeResponse; skip: number }): BlobBody => ({ body: r.res.body, skip: r.skip, request: r.res.request });
    const stream = new VerifyingBlobStream({
      digest,
      algorithm: parsed.algorithm,
      hex: parsed.hex,
      size,
      first: body(first),
      reopen: async (offset, signal) => body(await open(offset, signal)),
      retry: this.retry,
      idleTimeoutMs: this.idleTimeoutMs,
      signal: options.signal,
      onRetry: (event) => this.options.onRetry?.({ ...event, operation: `GET blob ${repository}@${digest}` }),
      onResume: (offset) => this.options.onResume?.({ operation: `GET blob ${repository}@${digest}`, offset }),
    });
    const blob: UpstreamBlob = { stream, size, digest };
    const mediaType = baseMediaType(headerValue(first.res.headers, 'content-type'));
    if (mediaType) blob.mediaType = mediaType;
    return blob;
  }

  /** HEAD a blob: its size, or an UpstreamError with status 404 when the upstream lacks it. */
  async headBlob(repository: string, digest: string, options: CallOptions = {}): Promise<{ size?: number }> {
    if (!parseDigest(digest)) throw new TypeError(`invalid digest ${digest}`);
    const url = this.v2(`${repository}/blobs/${digest}`);
    return this.retrying(`HEAD blob ${repository}@${digest}`, options.signal, async () => {
      const res = await this.send('HEAD', url, repository, {}, options.signal);
      drain(res);
      const size = contentLength(res.headers);
      return size === undefined ? {} : { size };
    });
  }

  // --- tags --------------------------------------------------------------------------------

  /** Every tag, following `Link: <...>; rel="next"` pages. */
  async listTags(repository: string, options: CallOptions & { pageSize?: number } = {}): Promise<string[]> {
    const tags: string[] = [];
    for await (const page of this.tagPages(repository, options)) tags.push(...page);
    return tags;
  }

  /** The tags page by page; `pageSize` asks for `n` per page (upstreams may ignore it). */
  async *tagPages(repository: string, options: CallOptions & { pageSize?: number } = {}): AsyncGenerator<string[]> {
    if (!isValidName(repository)) throw new TypeError(`invalid repository name ${repository}`);
    let url: URL | undefined = this.v2(`${repository}/tags/list`);
    if (options.pageSize !== undefined) url.searchParams.set('n', String(options.pageSize));
    const seen = new Set<string>();
    while (url) {
      seen.add(url.href);
      const current: URL = url;
      const { tags, next } = await this.retrying(`GET tags ${repository}`, options.signal, async () => {
        const res = await this.send('GET', current, repository, { accept: 'application/json' }, options.signal);
        const body = await readBody(res, TAG_PAGE_LIMIT, this.idleTimeoutMs);
        let parsed: { tags?: unknown };
        try {
          parsed = JSON.parse(body.toString('utf8')) as { tags?: unknown };
        } catch {
          throw new UpstreamError('tag list is not JSON', { status: res.status, code: 'INVALID_RESPONSE', retryable: false, request: res.request });
        }
        // Distribution answers `"tags": null` for a repository without tags.
        const list = Array.isArray(parsed.tags) ? parsed.tags.filter((t): t is string => typeof t === 'string') : [];
        const link = nextLink(headerValue(res.headers, 'link'));
        return { tags: list, next: link ? new URL(link, res.url) : undefined };
      });
      yield tags;
      // A next link that points back (a broken upstream) ends the listing instead of looping.
      url = next && !seen.has(next.href) ? next : undefined;
    }
  }

  // --- plumbing ----------------------------------------------------------------------------

  private v2(path: string): URL {
    const prefix = this.base.pathname.replace(/\/+$/, '');
    return new URL(`${prefix}/v2/${path}`, this.base.origin);
  }

  private retrying<T>(operation: string, signal: AbortSignal | undefined, fn: () => Promise<T>): Promise<T> {
    return withRetries(this.retry, fn, {
      signal,
      onRetry: (event) => this.options.onRetry?.({ ...event, operation }),
    });
  }

  /**
   * One request with authentication: a known challenge is answered up front, a new one (401) once.
   * Resolves with a 2xx answer; everything else becomes an UpstreamError.
   */
  private async send(
    method: 'GET' | 'HEAD',
    url: URL,
    repository: string,
    extra: { accept?: string; range?: string },
    signal?: AbortSignal,
  ): Promise<ExchangeResponse> {
    const scope = `repository:${repository}:pull`;
    const headers: Record<string, string> = {};
    if (this.options.userAgent) headers['user-agent'] = this.options.userAgent;
    if (extra.accept) headers.accept = extra.accept;
    if (extra.range) headers.range = extra.range;
    let authorization = await this.auth.authorization(scope, signal);
    for (let round = 0; ; round++) {
      const res = await this.exchange(method, url, authorization ? { ...headers, authorization } : headers, signal);
      if (res.status >= 200 && res.status < 300) return res;
      // Reading the (small) error body first frees the connection, e.g. for the token request.
      const error = await this.statusError(res, method);
      if (res.status === 401 && round === 0) {
        const challenge = pickChallenge(parseChallenges(res.headers['www-authenticate']));
        if (await this.auth.answer(challenge, scope, authorization, signal)) {
          authorization = await this.auth.authorization(scope, signal);
          continue;
        }
      }
      throw error;
    }
  }

  private async exchange(method: 'GET' | 'HEAD', url: URL, headers: Record<string, string>, signal?: AbortSignal): Promise<ExchangeResponse> {
    let res: ExchangeResponse;
    try {
      res = await exchange({
        method,
        url,
        headers,
        signal,
        connectTimeoutMs: this.connectTimeoutMs,
        responseTimeoutMs: this.responseTimeoutMs,
        agents: this.agents,
      });
    } catch (error) {
      if (!signal?.aborted) this.options.onExchange?.({ error });
      throw error;
    }
    const rateLimit = parseRateLimit(res.headers);
    if (rateLimit) {
      this.lastRateLimit = rateLimit;
      this.options.onRateLimit?.(rateLimit);
    }
    this.options.onExchange?.({ status: res.status });
    return res;
  }

  /** A non-2xx answer as an UpstreamError, with the OCI code of its body when it has one. */
  private async statusError(res: ExchangeResponse, method: string): Promise<UpstreamError> {
    let body: Buffer = Buffer.alloc(0);
    if (method !== 'HEAD') body = await readBody(res, ERROR_BODY_LIMIT, this.idleTimeoutMs).catch(() => Buffer.alloc(0));
    else drain(res);
    const oci = parseOciErrorBody(body);
    const status = res.status;
    const retryAfterMs = parseRetryAfter(headerValue(res.headers, 'retry-after'));
    const retryable = status === 408 || status === 429 || (status >= 500 && status !== 501 && status !== 505);
    let code = oci.code ?? `HTTP_${status}`;
    if (status === 429 && !oci.code) code = 'TOOMANYREQUESTS';
    if (status === 401 && !oci.code) code = 'UNAUTHORIZED';
    // A non-OCI body (a proxy's XML, a CDN's HTML page) as one short line: it ends up in job logs.
    const text = body.toString('utf8').replace(/<[^>]*>/g, ' ').replace(/\s+/g, ' ').trim();
    const message = oci.message ?? (text ? (text.length > 200 ? `${text.slice(0, 200)}...` : text) : `HTTP ${status}`);
    return new UpstreamError(`${status} ${code}: ${message}`, {
      status,
      code,
      retryable,
      request: res.request,
      ...(retryAfterMs !== undefined && retryable ? { retryAfterMs } : {}),
      ...(oci.detail !== undefined ? { detail: oci.detail } : {}),
    });
  }

  /** GET realm?service=...&scope=... with Basic credentials when configured (anonymous otherwise). */
  private async requestToken(request: TokenRequest): Promise<IssuedToken> {
    const url = new URL(request.realm);
    if (request.service !== undefined) url.searchParams.set('service', request.service);
    for (const scope of request.scopes) url.searchParams.append('scope', scope);
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.options.userAgent) headers['user-agent'] = this.options.userAgent;
    if (request.authorization) {
      headers.authorization = request.authorization;
      const user = Buffer.from(request.authorization.slice('Basic '.length), 'base64').toString('utf8').split(':')[0];
      if (user) url.searchParams.set('account', user);
    }
    const res = await this.exchange('GET', url, headers, request.signal);
    // Refused credentials are final; a token server's 5xx or 429 is retried like any request.
    if (res.status !== 200) throw await this.statusError(res, 'GET');
    return parseTokenResponse(await readBody(res, ERROR_BODY_LIMIT, this.idleTimeoutMs), res.request);
  }
}

function checkReference(repository: string, reference: string): ReturnType<typeof parseDigest> {
  if (!isValidName(repository)) throw new TypeError(`invalid repository name ${repository}`);
  if (reference.includes(':')) {
    const parsed = parseDigest(reference);
    if (!parsed) throw new TypeError(`invalid digest ${reference}`);
    return parsed;
  }
  if (!isValidTag(reference)) throw new TypeError(`invalid tag ${reference}`);
  return undefined;
}

function headerValue(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function contentLength(headers: IncomingHttpHeaders): number | undefined {
  const raw = headers['content-length'];
  if (raw === undefined) return undefined;
  const n = Number(raw);
  return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}

/** The media type of manifest bytes: the Content-Type when it names a manifest type, else what the body says. */
function manifestMediaType(headers: IncomingHttpHeaders, bytes: Buffer): string {
  const header = baseMediaType(headerValue(headers, 'content-type'));
  if (header && (isManifestMediaType(header) || header.startsWith('application/vnd.'))) return header;
  try {
    const document = JSON.parse(bytes.toString('utf8')) as Record<string, unknown>;
    if (document && typeof document === 'object') return detectMediaType(document) ?? header ?? 'application/octet-stream';
  } catch { /* not JSON: leave it to the caller's parser */ }
  return header ?? 'application/octet-stream';
}

/** How many bytes of a resumed answer to drop: all before `offset` of a 200, the overlap of a 206. */
function rangeSkip(res: ExchangeResponse, offset: number): number {
  if (offset === 0) {
    if (res.status === 206) throw invalid(res, 'partial answer to a request without Range');
    return 0;
  }
  if (res.status === 200) return offset;
  if (res.status !== 206) throw invalid(res, `unexpected status ${res.status} for a Range request`);
  const match = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(headerValue(res.headers, 'content-range') ?? '');
  const start = match ? Number(match[1]) : NaN;
  if (!match || start > offset) throw invalid(res, `Content-Range ${headerValue(res.headers, 'content-range') ?? '(none)'} does not start at ${offset}`);
  return offset - start;
}

function invalid(res: ExchangeResponse, message: string): UpstreamError {
  res.body.destroy();
  return new UpstreamError(message, { status: res.status, code: 'INVALID_RESPONSE', retryable: false, request: res.request });
}

/** The target of `Link: <url>; rel="next"` (several links may share the header). */
export function nextLink(header: string | undefined): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(/,(?=\s*<)/)) {
    const match = /^\s*<([^>]*)>\s*((?:;[^;]*)*)$/.exec(part);
    if (match && /;\s*rel="?([^";]*\s)?next(\s[^";]*)?"?\s*(;|$)/i.test(match[2]!)) return match[1];
  }
  return undefined;
}
