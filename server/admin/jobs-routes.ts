// /admin/v1/jobs: list, read, follow the logs of, and cancel mirror, build and GC jobs. Admin-only access
// is enforced before these routes; the feature routes answer their POSTs with `submitted`.
import { Readable } from 'node:stream';
import type Router from '@koa/router';
import type { Context } from 'koa';
import { location, pageSize as requestedPageSize, queryString, type RouteOptions } from '../distribution/request.js';
import { OciError } from '../registry/errors.js';
import { SharedStateUnavailableError } from '../state/redis.js';
import { isJobKind, isJobState, JOB_KINDS, JOB_STATES, type JobRecord } from '../jobs/job.js';
import { JobFinishedError, JobNotFoundError, pageSize, type JobQueue } from '../jobs/queue.js';
import { shownRecord } from '../logging/redact.js';

export const JOBS_PATH = '/admin/v1/jobs';

export function jobLocation(id: string): string {
  return `${JOBS_PATH}/${id}`;
}

// The OCI vocabulary has no job code; NAME_UNKNOWN is the closest "no such thing" it has.
export const jobUnknown = (id: string) => new OciError(404, 'NAME_UNKNOWN', 'job unknown', { id: id.slice(0, 100) });

/** 202 with the job and where to follow it: the answer of POST /admin/v1/{mirror,builds,gc}. */
export function submitted(ctx: Context, job: JobRecord): void {
  ctx.status = 202;
  ctx.set('Location', jobLocation(job.id));
  ctx.body = shownJob(job);
}

/** The record as readers see it: requests and results scrubbed of credentials (see shownRecord). */
function shownJob(job: JobRecord): JobRecord {
  return { ...job, request: shownRecord(job.request), ...(job.result !== undefined ? { result: shownRecord(job.result) } : {}) } as JobRecord;
}

export function jobRoutes(router: Router, queue: JobQueue, options: RouteOptions = {}): void {
  router.get(JOBS_PATH, async (ctx) => {
    const kind = filter(ctx, 'kind', isJobKind, JOB_KINDS);
    const state = filter(ctx, 'state', isJobState, JOB_STATES);
    const n = pageSize(requestedPageSize(ctx));
    const last = queryString(ctx, 'last') || undefined;
    const page = await available(() => queue.list({ kind, state, n, last }));
    if (page.next !== undefined) {
      const query = new URLSearchParams({ ...(kind ? { kind } : {}), ...(state ? { state } : {}), n: String(n), last: page.next });
      ctx.set('Link', `<${location(options, JOBS_PATH)}?${query}>; rel="next"`);
    }
    ctx.body = { jobs: page.jobs.map(shownJob) };
  });

  router.get(`${JOBS_PATH}/:id`, async (ctx) => {
    const job = await available(() => queue.get(ctx.params.id!));
    if (!job) throw jobUnknown(ctx.params.id!);
    ctx.body = shownJob(job);
  });

  router.get(`${JOBS_PATH}/:id/logs`, async (ctx) => {
    const id = ctx.params.id!;
    ctx.set('Cache-Control', 'no-store');
    if (!['1', 'true'].includes(queryString(ctx, 'follow') ?? '')) {
      const lines = await available(() => queue.logs(id));
      if (!lines) throw jobUnknown(id);
      ctx.type = 'text/plain; charset=utf-8';
      ctx.body = lines.map((line) => `${line}\n`).join('');
      return;
    }
    if (!(await available(() => queue.get(id)))) throw jobUnknown(id);
    const reader = new AbortController();
    ctx.res.once('close', () => reader.abort()); // the client went away: stop polling
    ctx.type = 'text/plain; charset=utf-8';
    ctx.set('X-Accel-Buffering', 'no'); // proxies pass lines on as they come
    ctx.body = Readable.from(withNewlines(queue.followLogs(id, reader.signal)), { objectMode: false });
    // Headers now, so a client sees the answer begin even before the job logs its first line.
    ctx.res.flushHeaders();
  });

  router.delete(`${JOBS_PATH}/:id`, async (ctx) => {
    const id = ctx.params.id!;
    try {
      submitted(ctx, await available(() => queue.cancel(id)));
    } catch (error) {
      if (error instanceof JobNotFoundError) throw jobUnknown(id);
      if (error instanceof JobFinishedError) {
        throw new OciError(409, 'UNSUPPORTED', `job already ${error.job.state}`, { id, state: error.job.state });
      }
      throw error;
    }
  });
}

function filter<T extends string>(ctx: Context, key: string, valid: (value: unknown) => value is T, allowed: readonly string[]): T | undefined {
  const value = queryString(ctx, key) || undefined;
  if (value === undefined) return undefined;
  if (!valid(value)) throw new OciError(400, 'UNSUPPORTED', `unknown ${key}`, { [key]: value.slice(0, 50), allowed });
  return value;
}

/** Redis away: 503 with Retry-After, as storage outages answer. */
async function available<T>(operation: () => Promise<T>): Promise<T> {
  try {
    return await operation();
  } catch (error) {
    if (error instanceof SharedStateUnavailableError) {
      throw new OciError(503, 'UNAVAILABLE', 'shared state unavailable, try again', undefined, { 'Retry-After': '5' });
    }
    throw error;
  }
}

async function* withNewlines(lines: AsyncIterable<string>): AsyncGenerator<string> {
  for await (const line of lines) yield `${line}\n`;
}
