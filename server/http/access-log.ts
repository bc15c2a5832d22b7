// One JSON line per request: method, route template, status, bytes, duration, repository, user, job id,
// request id. Never the URL or headers: query strings and Authorization carry tokens and credentials.
import { randomUUID } from 'node:crypto';
import type { Context } from 'koa';
import type { Logger } from 'pino';
import { routeTemplate } from '../metrics/route-template.js';
import { accessLineWriter, type AccessEntry } from '../logging/access-line.js';
import type { RequestObserver } from './observe.js';

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export function accessLog(logger: Logger): RequestObserver {
  const writeLine = accessLineWriter(logger);
  const write = (ctx: Context, requestId: string, durationMs: number, bytesIn: number, bytesOut: number) => {
    // The timing and byte counts are known now; the rest is read at format time.
    const entry = (): AccessEntry => ({
      requestId,
      method: ctx.method,
      route: routeTemplate(ctx),
      status: ctx.status,
      repository: ctx.state.repository,
      user: ctx.state.user,
      jobId: jobIdOf(ctx),
      bytesIn,
      bytesOut,
      durationMs,
      remote: (ctx.state.clientAddress as string | undefined) ?? ctx.ip,
      userAgent: ctx.req.headers['user-agent'] || undefined,
      error: ctx.state.errorCode,
    });
    if (ctx.state.internalError) logger.error({ ...entry(), err: ctx.state.internalError }, 'request failed');
    else writeLine(entry);
  };
  return {
    begin(ctx) {
      const incoming = ctx.req.headers['x-request-id'];
      const requestId = typeof incoming === 'string' && REQUEST_ID.test(incoming) ? incoming : randomUUID();
      ctx.state.requestId = requestId;
      ctx.set('X-Request-Id', requestId);
    },
    end(ctx, durationMs, bytesIn, bytesOut) {
      write(ctx, ctx.state.requestId as string, durationMs, bytesIn, bytesOut);
    },
  };
}

const JOB_LOCATION = /\/admin\/v1\/jobs\/([^/?#]+)$/;

/** The job a request created (202 with its Location) or is about (/admin/v1/jobs/<id>...), if any. */
function jobIdOf(ctx: Context): string | undefined {
  const set = ctx.state.jobId as string | undefined;
  if (set) return set;
  if (ctx.path.startsWith('/admin/v1/jobs/')) return (ctx.params as Record<string, string> | undefined)?.id;
  if (ctx.status === 202 && ctx.path.startsWith('/admin/')) return JOB_LOCATION.exec(ctx.response.get('Location'))?.[1];
  return undefined;
}
