// A small client of the registry's /admin/v1 API for CLI commands, over Node's fetch. Auth: Basic on every
// request when credentials are given (the registry accepts it on /admin); when a server answers 401 with a
// Bearer challenge instead, a token from the challenge's realm (asked for with the same Basic credentials),
// kept for later requests and fetched again when it expires.
import type { Readable } from 'node:stream';
import type { JobRecord } from '../jobs/job.js';

export interface AdminClientOptions {
  /** http(s)://host[:port][/base], without the /admin path. */
  server: string;
  username?: string;
  password?: string;
  /** Per request; a poll that hangs must not hang the command. */
  timeoutMs?: number;
}

/** An answer of the server other than the expected one, from its OCI error body when it sent one. */
export class AdminApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly detail?: unknown,
  ) {
    super(message);
    this.name = 'AdminApiError';
  }
}

/** No HTTP answer at all: refused, reset, DNS, timeout. */
export class ConnectionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConnectionError';
  }
}

export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/** A request body: JSON text, or a stream (sent once: never retried with a token, see send). */
export interface SendOptions {
  body?: string | Readable;
  /** Default application/json for a text body. */
  contentType?: string;
  /** No timeout: for a response that stays open as long as a job runs, or a long upload. */
  stream?: boolean;
  signal?: AbortSignal;
}

export class AdminClient {
  protected readonly base: URL;
  private token: string | undefined;

  constructor(private readonly options: AdminClientOptions) {
    this.base = new URL(options.server.endsWith('/') ? options.server : `${options.server}/`);
  }

  /** POST /admin/v1/mirror: the queued job and the absolute URL to follow it at. */
  async submitMirror(body: unknown): Promise<{ job: JobRecord; location: string }> {
    const res = await this.send('POST', 'admin/v1/mirror', { body: JSON.stringify(body) });
    if (res.status !== 202) throw await apiError(res);
    const job = (await res.json()) as JobRecord;
    const location = new URL(res.headers.get('location') ?? `admin/v1/jobs/${job.id}`, this.base).href;
    return { job, location };
  }

  async job(id: string): Promise<JobRecord> {
    const res = await this.send('GET', `admin/v1/jobs/${encodeURIComponent(id)}`);
    if (res.status !== 200) throw await apiError(res);
    return (await res.json()) as JobRecord;
  }

  /** DELETE /admin/v1/jobs/<id>: asks the job to stop; it ends `cancelled` a moment later. */
  async cancel(id: string): Promise<JobRecord> {
    const res = await this.send('DELETE', `admin/v1/jobs/${encodeURIComponent(id)}`);
    if (res.status !== 202) throw await apiError(res);
    return (await res.json()) as JobRecord;
  }

  async logs(id: string): Promise<string[]> {
    const res = await this.send('GET', `admin/v1/jobs/${encodeURIComponent(id)}/logs`);
    if (res.status !== 200) throw await apiError(res);
    return (await res.text()).split('\n').filter((line) => line !== '');
  }

  /**
   * One request with the credentials: Basic, or a token from the realm of a Bearer challenge (asked for
   * with the same credentials), the request then sent again. A streamed body cannot be sent again: its
   * 401 is the answer (callers make sure of the credentials first).
   */
  protected async send(method: string, path: string, options: SendOptions = {}): Promise<Response> {
    const res = await this.fetchOnce(method, new URL(path, this.base), options);
    if (res.status !== 401 || typeof options.body === 'object') return res;
    const challenge = parseChallenge(res.headers.get('www-authenticate'));
    if (challenge?.scheme !== 'bearer' || !challenge.params.realm) return res;
    await res.arrayBuffer().catch(() => undefined);
    this.token = await this.fetchToken(challenge.params);
    return this.fetchOnce(method, new URL(path, this.base), options);
  }

  private async fetchToken(params: Record<string, string>): Promise<string> {
    const url = new URL(params.realm!, this.base);
    if (params.service) url.searchParams.set('service', params.service);
    for (const scope of (params.scope ?? '').split(' ').filter(Boolean)) url.searchParams.append('scope', scope);
    const res = await this.fetchRaw(url, { method: 'GET', headers: this.basicHeader() }, {});
    if (res.status !== 200) throw await apiError(res);
    const answer = (await res.json().catch(() => ({}))) as { token?: unknown; access_token?: unknown };
    const token = typeof answer.token === 'string' ? answer.token : answer.access_token;
    if (typeof token !== 'string' || token === '') throw new AdminApiError(res.status, 'UNAUTHORIZED', `no token in the answer of ${url.origin}${url.pathname}`);
    return token;
  }

  private fetchOnce(method: string, url: URL, options: SendOptions): Promise<Response> {
    const headers: Record<string, string> = this.token ? { authorization: `Bearer ${this.token}` } : this.basicHeader();
    const init: RequestInit & { duplex?: 'half' } = { method, headers };
    if (options.body !== undefined) {
      headers['content-type'] = options.contentType ?? 'application/json';
      init.body = options.body as unknown as BodyInit;
      if (typeof options.body === 'object') init.duplex = 'half'; // a streamed request body
    }
    return this.fetchRaw(url, init, options);
  }

  private async fetchRaw(url: URL, init: RequestInit, options: SendOptions): Promise<Response> {
    const signals = [options.signal, options.stream ? undefined : AbortSignal.timeout(this.options.timeoutMs ?? 30_000)].filter(
      (signal): signal is AbortSignal => signal !== undefined,
    );
    try {
      return await fetch(url, { ...init, redirect: 'follow', ...(signals.length > 0 ? { signal: AbortSignal.any(signals) } : {}) });
    } catch (error) {
      const err = error as Error & { cause?: { message?: string; code?: string } };
      const why = err.name === 'TimeoutError' ? 'no answer in time' : (err.cause?.message ?? err.message);
      throw new ConnectionError(`cannot reach ${url.origin}: ${why}`);
    }
  }

  private basicHeader(): Record<string, string> {
    const { username, password } = this.options;
    if (username === undefined || password === undefined) return {};
    return { authorization: `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}` };
  }
}

/** `Bearer realm="…",service="…",scope="a b"` (quoted values may hold commas); scheme lowercased. */
export function parseChallenge(header: string | null): Challenge | undefined {
  const match = /^\s*(\S+)(?:\s+(.*))?$/.exec(header ?? '');
  if (!match) return undefined;
  const params: Record<string, string> = {};
  const re = /\s*([a-zA-Z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*(?:,|$)/gy;
  const rest = match[2] ?? '';
  let m: RegExpExecArray | null;
  while (rest && (m = re.exec(rest)) !== null && m[0] !== '') {
    params[m[1]!.toLowerCase()] = m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : m[3]!;
  }
  return { scheme: match[1]!.toLowerCase(), params };
}

/** The first entry of an OCI error body, or the status and the start of whatever else came. */
export async function apiError(res: Response): Promise<AdminApiError> {
  const text = await res.text().catch(() => '');
  try {
    const body = JSON.parse(text) as { errors?: Array<{ code?: unknown; message?: unknown; detail?: unknown }> };
    const first = body.errors?.[0];
    if (first && typeof first.code === 'string') {
      return new AdminApiError(res.status, first.code, typeof first.message === 'string' ? first.message : first.code, first.detail);
    }
  } catch {
    // not JSON: a proxy's page, say
  }
  const excerpt = text.trim().slice(0, 200);
  return new AdminApiError(res.status, `HTTP_${res.status}`, excerpt || res.statusText || 'unexpected answer');
}
