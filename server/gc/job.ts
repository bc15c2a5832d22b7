// The `gc` job: POST /admin/v1/gc answers 202 with it; its result is the run's report.
import type Router from '@koa/router';
import type { Context } from 'koa';
import { durationMs } from '../config.js';
import { readJson } from '../admin/json-body.js';
import { submitted } from '../admin/jobs-routes.js';
import { JobError, type JobHandler, type Json } from '../jobs/job.js';
import type { JobQueue } from '../jobs/queue.js';
import { OciError } from '../registry/errors.js';
import { GcBusyError, type GcRunRequest, type GcService } from './service.js';

export const GC_PATH = '/admin/v1/gc';

/** The job's request as submitted (JSON), e.g. `{"dryRun": true, "gracePeriod": "0s"}`. */
export interface GcJobRequest {
  dryRun?: boolean;
  gracePeriod?: string;
  untagged?: string;
}

const DURATION = /^\d+(ms|s|m|h|d)$/;
/** A job waits this long for a run elsewhere (scheduled, CLI, another replica) to finish. */
const LOCK_WAIT_MS = 30 * 60_000;

export function parseGcRequest(body: unknown): GcJobRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw invalid('the body must be a JSON object');
  const request: GcJobRequest = {};
  for (const [key, value] of Object.entries(body)) {
    if (key === 'dryRun') {
      if (typeof value !== 'boolean') throw invalid('dryRun must be true or false');
      request.dryRun = value;
    } else if (key === 'gracePeriod') {
      if (typeof value !== 'string' || !DURATION.test(value)) throw invalid('gracePeriod must be a duration such as "0s", "30m" or "1h"');
      request.gracePeriod = value;
    } else if (key === 'untagged') {
      if (typeof value !== 'string' || (value !== 'keep' && !DURATION.test(value))) throw invalid('untagged must be "keep" or a duration such as "0s" or "30d"');
      request.untagged = value;
    } else {
      throw invalid(`unknown field "${key.slice(0, 50)}"`, { allowed: ['dryRun', 'gracePeriod', 'untagged'] });
    }
  }
  return request;
}

export function toRunRequest(request: GcJobRequest): GcRunRequest {
  return {
    dryRun: request.dryRun,
    gracePeriodMs: request.gracePeriod === undefined ? undefined : durationMs(request.gracePeriod),
    untagged: request.untagged === undefined ? undefined : request.untagged === 'keep' ? 'keep' : durationMs(request.untagged),
  };
}

export function gcJobHandler(service: GcService): JobHandler<GcJobRequest, Json> {
  return async (ctx) => {
    try {
      const report = await service.run(toRunRequest(ctx.request), {
        signal: ctx.signal,
        log: (line) => ctx.log(line),
        progress: (update) => ctx.progress(update),
        waitMs: LOCK_WAIT_MS,
      });
      return report as unknown as Json;
    } catch (error) {
      if (error instanceof GcBusyError) throw new JobError('GC_BUSY', error.message);
      throw error;
    }
  };
}

export function gcRoutes(router: Router, queue: JobQueue): void {
  router.post(GC_PATH, async (ctx) => {
    const body = hasBody(ctx) ? await readJson(ctx) : {};
    submitted(ctx, await queue.submit('gc', parseGcRequest(body)));
  });
}

function hasBody(ctx: Context): boolean {
  return Boolean(ctx.get('Transfer-Encoding')) || Number(ctx.get('Content-Length') || 0) > 0;
}

function invalid(message: string, detail?: unknown): OciError {
  return new OciError(400, 'INVALID_REQUEST', message, detail);
}
