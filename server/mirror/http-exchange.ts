// One HTTP exchange over node:http/https: connect and response timeouts, an AbortSignal, redirects
// followed with the Authorization header dropped when they leave the origin (blob storage, CDNs).
// The body comes back as the live IncomingMessage so blobs stream without being buffered.
import http, { type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import https from 'node:https';
import { networkError, UpstreamError } from './upstream-error.js';

export interface ExchangeOptions {
  method: 'GET' | 'HEAD';
  url: URL;
  headers: Record<string, string>;
  signal?: AbortSignal;
  /** Until the TCP (and TLS) connection is up. */
  connectTimeoutMs: number;
  /** From the request sent until the response headers arrive. */
  responseTimeoutMs: number;
  agents: { http: http.Agent; https: https.Agent };
  /** Redirects followed at most (default 5). */
  maxRedirects?: number;
}

export interface ExchangeResponse {
  status: number;
  headers: IncomingHttpHeaders;
  /** The URL that answered, after redirects. */
  url: URL;
  body: IncomingMessage;
  /** Describes the original request for error messages. */
  request: string;
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

export async function exchange(options: ExchangeOptions): Promise<ExchangeResponse> {
  const request = `${options.method} ${redact(options.url)}`;
  let url = options.url;
  let headers = { ...options.headers };
  for (let hops = 0; ; hops++) {
    const res = await once(options, url, headers, request);
    const location = res.headers.location;
    if (!REDIRECTS.has(res.statusCode ?? 0) || !location) {
      return { status: res.statusCode ?? 0, headers: res.headers, url, body: res, request };
    }
    res.resume();
    if (hops >= (options.maxRedirects ?? 5)) {
      throw new UpstreamError(`more than ${options.maxRedirects ?? 5} redirects`, { status: res.statusCode ?? 0, code: 'INVALID_RESPONSE', retryable: false, request });
    }
    const next = new URL(location, url);
    if (next.protocol !== 'http:' && next.protocol !== 'https:') {
      throw new UpstreamError(`redirect to unsupported URL ${redact(next)}`, { status: res.statusCode ?? 0, code: 'INVALID_RESPONSE', retryable: false, request });
    }
    // Credentials for the registry must not reach blob storage; a presigned URL carries its own.
    if (next.origin !== url.origin) headers = withoutAuthorization(headers);
    url = next;
  }
}

function withoutAuthorization(headers: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(headers).filter(([name]) => name.toLowerCase() !== 'authorization'));
}

/** Query strings of presigned URLs hold signatures: keep them out of messages and logs. */
export function redact(url: URL): string {
  return url.search ? `${url.origin}${url.pathname}?…` : `${url.origin}${url.pathname}`;
}

function once(options: ExchangeOptions, url: URL, headers: Record<string, string>, request: string): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const secure = url.protocol === 'https:';
    const client = secure ? https : http;
    let settled = false;
    let connectTimer: NodeJS.Timeout | undefined;
    let responseTimer: NodeJS.Timeout | undefined;
    const clear = () => { clearTimeout(connectTimer); clearTimeout(responseTimer); };
    const fail = (error: unknown) => {
      if (settled) return;
      settled = true;
      clear();
      reject(networkError(error, request));
    };
    const req = client.request(url, {
      method: options.method,
      headers: { 'user-agent': 'dify-registry-mirror', ...headers },
      agent: secure ? options.agents.https : options.agents.http,
      signal: options.signal,
    });
    req.on('socket', (socket) => {
      // A reused keep-alive socket is already connected.
      if (!socket.connecting) return;
      connectTimer = setTimeout(() => {
        req.destroy(timeoutError(`no connection within ${options.connectTimeoutMs} ms`, request));
      }, options.connectTimeoutMs);
      socket.once(secure ? 'secureConnect' : 'connect', () => clearTimeout(connectTimer));
    });
    req.on('finish', () => {
      responseTimer = setTimeout(() => {
        req.destroy(timeoutError(`no response within ${options.responseTimeoutMs} ms`, request));
      }, options.responseTimeoutMs);
    });
    req.on('error', fail);
    req.on('response', (res) => {
      if (settled) { res.destroy(); return; }
      settled = true;
      clear();
      resolve(res);
    });
    req.end();
  });
}

export function timeoutError(message: string, request: string): UpstreamError {
  return new UpstreamError(message, { status: 0, code: 'TIMEOUT', retryable: true, request });
}

/** Reads a whole (small) body, failing beyond `limit` bytes or when it stalls for `idleTimeoutMs`. */
export function readBody(res: ExchangeResponse, limit: number, idleTimeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const body = res.body;
    // Our own timer, not the socket's: the socket goes back to the agent's pool when the body ends.
    let idle: NodeJS.Timeout | undefined;
    const arm = () => {
      clearTimeout(idle);
      idle = setTimeout(() => body.destroy(timeoutError(`response body idle for ${idleTimeoutMs} ms`, res.request)), idleTimeoutMs);
    };
    const settle = (error?: Error) => {
      clearTimeout(idle);
      if (error) reject(error);
      else resolve(Buffer.concat(chunks));
    };
    arm();
    body.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        body.destroy(new UpstreamError(`response body larger than ${limit} bytes`, { status: res.status, code: 'SIZE_MISMATCH', retryable: false, request: res.request }));
        return;
      }
      chunks.push(chunk);
      arm();
    });
    body.on('error', (error) => settle(networkError(error, res.request)));
    body.on('close', () => {
      if (!body.complete) settle(new UpstreamError('connection closed before the response body ended', { status: res.status, code: 'NETWORK', retryable: true, request: res.request }));
    });
    body.on('end', () => settle());
  });
}

/** Discards a body we do not need, so the connection can be reused. */
export function drain(res: ExchangeResponse): void {
  res.body.resume();
}
