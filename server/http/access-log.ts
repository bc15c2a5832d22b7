// One JSON line per request: method, route template, status, bytes, duration, repository, request id.
import { randomUUID } from 'node:crypto';
import type { Context, Next } from 'koa';
import type { Logger } from 'pino';

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export function accessLog(logger: Logger) {
  return async function accessLogMiddleware(ctx: Context, next: Next): Promise<void> {
    const started = process.hrtime.bigint();
    const incoming = ctx.get('X-Request-Id');
    const requestId = REQUEST_ID.test(incoming) ? incoming : randomUUID();
    ctx.state.requestId = requestId;
    ctx.set('X-Request-Id', requestId);
    // Counted on the socket: a 'data' listener on the request would start the body flowing before routes read it.
    const socket = ctx.req.socket;
    const bytesReadBefore = socket.bytesRead;
    try {
      await next();
    } finally {
      const write = () => {
        const entry = {
          requestId,
          method: ctx.method,
          route: (ctx as { _matchedRoute?: string })._matchedRoute ?? null,
          status: ctx.status,
          repository: ctx.state.repository,
          user: ctx.state.user,
          bytesIn: socket.bytesRead - bytesReadBefore,
          bytesOut: ctx.method === 'HEAD' ? 0 : (ctx.response.length ?? 0),
          durationMs: Number(process.hrtime.bigint() - started) / 1e6,
          remote: (ctx.state.clientAddress as string | undefined) ?? ctx.ip,
          userAgent: ctx.get('User-Agent') || undefined,
          error: ctx.state.errorCode,
        };
        if (ctx.state.internalError) logger.error({ ...entry, err: ctx.state.internalError }, 'request failed');
        else logger.info(entry, 'request');
      };
      // Streamed bodies are still flowing here: log when the response is done, with real timing.
      if (ctx.res.writableFinished || !ctx.body || typeof (ctx.body as { pipe?: unknown }).pipe !== 'function') write();
      else ctx.res.once('close', write);
    }
  };
}
