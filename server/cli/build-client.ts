// What `dify-registry build` needs of the admin API beyond admin-client.ts: submitting a build, uploading
// a context, and following a job's log as it is written. Same auth as the admin client: Basic, or a token
// from the realm of a Bearer challenge, asked for with the same credentials.
import type { Readable } from 'node:stream';
import type { JobRecord } from '../jobs/job.js';
import { AdminApiError, AdminClient, ConnectionError, parseChallenge, type AdminClientOptions } from './admin-client.js';

export interface UploadedContext {
  id: string;
  size: number;
  digest: string;
}

interface SendOptions {
  body?: string | Readable;
  contentType?: string;
  /** No timeout: the follow stream stays open as long as the job runs. */
  stream?: boolean;
  signal?: AbortSignal;
}

export class BuildClient extends AdminClient {
  private readonly root: URL;
  private bearer: string | undefined;

  constructor(private readonly clientOptions: AdminClientOptions) {
    super(clientOptions);
    this.root = new URL(clientOptions.server.endsWith('/') ? clientOptions.server : `${clientOptions.server}/`);
  }

  /** POST /admin/v1/builds: the queued job and the absolute URL to follow it at. */
  async submitBuild(body: unknown): Promise<{ job: JobRecord; location: string }> {
    const res = await this.call('POST', 'admin/v1/builds', { body: JSON.stringify(body), contentType: 'application/json' });
    if (res.status !== 202) throw await apiError(res);
    const job = (await res.json()) as JobRecord;
    return { job, location: new URL(res.headers.get('location') ?? `admin/v1/jobs/${job.id}`, this.root).href };
  }

  /** POST /admin/v1/contexts with a .tar.gz stream. */
  async uploadContext(tarGz: Readable): Promise<UploadedContext> {
    // A stream cannot be sent twice: make sure of the credentials with a cheap request first.
    await this.call('GET', 'admin/v1/jobs?n=1').then((res) => res.arrayBuffer());
    const res = await this.call('POST', 'admin/v1/contexts', { body: tarGz, contentType: 'application/gzip', stream: true });
    if (res.status !== 201) throw await apiError(res);
    return (await res.json()) as UploadedContext;
  }

  /** Calls `onLine` for each log line of the job from line `skip` on, until the job ends or `signal` aborts. */
  async followLogs(id: string, onLine: (line: string) => void, signal: AbortSignal, skip = 0): Promise<number> {
    const res = await this.call('GET', `admin/v1/jobs/${encodeURIComponent(id)}/logs?follow=1`, { stream: true, signal });
    if (res.status !== 200 || !res.body) throw await apiError(res);
    let seen = 0;
    let rest = '';
    const decoder = new TextDecoder();
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        const parts = (rest + decoder.decode(chunk, { stream: true })).split('\n');
        rest = parts.pop() ?? '';
        for (const line of parts) if (seen++ >= skip) onLine(line);
      }
    } catch (error) {
      if (!signal.aborted) throw new ConnectionError(`the log stream broke: ${(error as Error).message}`);
    }
    return seen;
  }

  private async call(method: string, path: string, options: SendOptions = {}): Promise<Response> {
    const url = new URL(path, this.root);
    const res = await this.fetchWithAuth(method, url, options);
    if (res.status !== 401 || typeof options.body === 'object') return res;
    const challenge = parseChallenge(res.headers.get('www-authenticate'));
    if (challenge?.scheme !== 'bearer' || !challenge.params.realm) return res;
    await res.arrayBuffer().catch(() => undefined);
    this.bearer = await this.fetchBearer(challenge.params);
    return this.fetchWithAuth(method, url, options);
  }

  private async fetchBearer(params: Record<string, string>): Promise<string> {
    const url = new URL(params.realm!, this.root);
    if (params.service) url.searchParams.set('service', params.service);
    for (const scope of (params.scope ?? '').split(' ').filter(Boolean)) url.searchParams.append('scope', scope);
    const res = await this.raw(url, { method: 'GET', headers: this.basic() }, {});
    if (res.status !== 200) throw await apiError(res);
    const answer = (await res.json().catch(() => ({}))) as { token?: unknown; access_token?: unknown };
    const token = typeof answer.token === 'string' ? answer.token : answer.access_token;
    if (typeof token !== 'string' || token === '') throw new AdminApiError(res.status, 'UNAUTHORIZED', `no token in the answer of ${url.origin}${url.pathname}`);
    return token;
  }

  private fetchWithAuth(method: string, url: URL, options: SendOptions): Promise<Response> {
    const headers: Record<string, string> = this.bearer ? { authorization: `Bearer ${this.bearer}` } : this.basic();
    if (options.contentType) headers['content-type'] = options.contentType;
    const init: RequestInit & { duplex?: 'half' } = { method, headers };
    if (options.body !== undefined) {
      init.body = options.body as unknown as BodyInit;
      if (typeof options.body === 'object') init.duplex = 'half'; // a streamed request body
    }
    return this.raw(url, init, options);
  }

  private async raw(url: URL, init: RequestInit, options: SendOptions): Promise<Response> {
    const signals = [options.signal, options.stream ? undefined : AbortSignal.timeout(this.clientOptions.timeoutMs ?? 30_000)].filter(
      (signal): signal is AbortSignal => signal !== undefined,
    );
    try {
      return await fetch(url, { ...init, redirect: 'follow', ...(signals.length > 0 ? { signal: AbortSignal.any(signals) } : {}) });
    } catch (error) {
      const err = error as Error & { cause?: { message?: string } };
      const why = err.name === 'TimeoutError' ? 'no answer in time' : (err.cause?.message ?? err.message);
      throw new ConnectionError(`cannot reach ${url.origin}: ${why}`);
    }
  }

  private basic(): Record<string, string> {
    const { username, password } = this.clientOptions;
    if (username === undefined || password === undefined) return {};
    return { authorization: `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}` };
  }
}

/** The first entry of an OCI error body, or the status and the start of whatever else came. */
async function apiError(res: Response): Promise<AdminApiError> {
  const text = await res.text().catch(() => '');
  try {
    const first = (JSON.parse(text) as { errors?: Array<{ code?: unknown; message?: unknown; detail?: unknown }> }).errors?.[0];
    if (first && typeof first.code === 'string') {
      return new AdminApiError(res.status, first.code, typeof first.message === 'string' ? first.message : first.code, first.detail);
    }
  } catch {
    // not JSON
  }
  return new AdminApiError(res.status, `HTTP_${res.status}`, text.trim().slice(0, 200) || res.statusText || 'unexpected answer');
}
