// What `dify-registry build` needs of the admin API beyond admin-client.ts: submitting a build, uploading
// a context, and following a job's log as it is written, through the admin client's authenticated send.
import type { Readable } from 'node:stream';
import type { JobRecord } from '../jobs/job.js';
import { AdminClient, apiError, ConnectionError } from './admin-client.js';

export interface UploadedContext {
  id: string;
  size: number;
  digest: string;
}

export class BuildClient extends AdminClient {
  /** POST /admin/v1/builds: the queued job, the absolute URL to follow it at, and the server's warnings. */
  async submitBuild(body: unknown): Promise<{ job: JobRecord; location: string; warnings: string[] }> {
    const res = await this.send('POST', 'admin/v1/builds', { body: JSON.stringify(body) });
    if (res.status !== 202) throw await apiError(res);
    const { warnings, ...job } = (await res.json()) as JobRecord & { warnings?: string[] };
    return { job, location: new URL(res.headers.get('location') ?? `admin/v1/jobs/${job.id}`, this.base).href, warnings: warnings ?? [] };
  }

  /** POST /admin/v1/contexts with a .tar.gz stream. */
  async uploadContext(tarGz: Readable): Promise<UploadedContext> {
    // A stream cannot be sent twice: make sure of the credentials with a cheap request first.
    await this.send('GET', 'admin/v1/jobs?n=1').then((res) => res.arrayBuffer());
    const res = await this.send('POST', 'admin/v1/contexts', { body: tarGz, contentType: 'application/gzip', stream: true });
    if (res.status !== 201) throw await apiError(res);
    return (await res.json()) as UploadedContext;
  }

  /** Calls `onLine` for each log line of the job from line `skip` on, until the job ends or `signal` aborts. */
  async followLogs(id: string, onLine: (line: string) => void, signal: AbortSignal, skip = 0): Promise<number> {
    const res = await this.send('GET', `admin/v1/jobs/${encodeURIComponent(id)}/logs?follow=1`, { stream: true, signal });
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

}
