// One JSON line per request: method, route template, status, bytes, duration, repository, user, job id,
// request id. Never the URL or headers: query strings and Authorization carry tokens and credentials.
import type { Context } from 'koa';
import type { Logger } from 'pino';
import { routeTemplate } from '../metrics/route-template.js';
import { accessLineWriter, type AccessEntry } from '../logging/access-line.js';
import type { RequestObserver } from './observe.js';

/** The line of one request (http/request-id.ts gave it its id), or of its failure. */
export function accessLog(logger: Logger): RequestObserver {
  const writeLine = accessLineWriter(logger);
  const failures = errorLog(logger);
  return {
    end(ctx, durationMs, bytesIn, bytesOut) {
      if (ctx.state.internalError) return failures.end(ctx, durationMs, bytesIn, bytesOut);
      // The timing, byte counts and peer are known now (a closed socket forgets its address; the ops routes
      // answer before the client-address middleware); the rest is read at format time.
      const remote = remoteOf(ctx);
      writeLine(() => entryOf(ctx, durationMs, bytesIn, bytesOut, remote));
    },
  };
}

/** With the access log off (log.accesslog.disabled), failures are still logged, as Distribution does. */
export function errorLog(logger: Logger): RequestObserver {
  return {
    end(ctx, durationMs, bytesIn, bytesOut) {
      if (ctx.state.internalError) logger.error({ ...entryOf(ctx, durationMs, bytesIn, bytesOut, remoteOf(ctx)), err: ctx.state.internalError }, 'request failed');
    },
  };
}

function remoteOf(ctx: Context): string {
  return (ctx.state.clientAddress as string | undefined) ?? ctx.ip;
}

function entryOf(ctx: Context, durationMs: number, bytesIn: number, bytesOut: number, remote: string): AccessEntry {
  return {
    requestId: ctx.state.requestId as string,
    method: ctx.method,
    route: routeTemplate(ctx),
    status: ctx.status,
    repository: ctx.state.repository,
    user: ctx.state.user,
    jobId: jobIdOf(ctx),
    bytesIn,
    bytesOut,
    durationMs,
    remote,
    userAgent: ctx.req.headers['user-agent'] || undefined,
    error: ctx.state.errorCode,
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
