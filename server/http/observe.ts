// One middleware for everything that watches whole requests (metrics, the access log): one timing, one
// await, one check for a streamed body, and the byte counts read once. Under load each of these per
// request was measured to cost about three times its own CPU in requests/s, so the watchers share them
// rather than each wrapping the request.
import { STATUS_CODES } from 'node:http';
import type { Readable } from 'node:stream';
import type { Context, Next } from 'koa';
import { cutResponseBytes, requestBytes, responseBodyBytes } from './request-bytes.js';

export interface RequestObserver {
  /** Before the request is handled. */
  begin?(ctx: Context): void;
  /**
   * Once the response is done (for a streamed body: when it has been sent). Plain arguments rather than an
   * object: nothing is allocated per request for them.
   */
  end(ctx: Context, durationMs: number, bytesIn: number, bytesOut: number): void;
}

export function observeRequests(observers: RequestObserver[]) {
  const beginners = observers.filter((observer) => observer.begin);
  const done = (ctx: Context, started: number, sentBefore?: number) => {
    const durationMs = performance.now() - started;
    const bytesIn = requestBytes(ctx);
    const bytesOut = sentBefore === undefined || ctx.res.writableEnded ? responseBodyBytes(ctx) : cutResponseBytes(ctx, sentBefore);
    for (const observer of observers) observer.end(ctx, durationMs, bytesIn, bytesOut);
  };
  return async function observeRequestsMiddleware(ctx: Context, next: Next): Promise<void> {
    const started = performance.now();
    for (const observer of beginners) observer.begin!(ctx);
    try {
      await next();
    } catch (error) {
      // Past ociErrors, which answers every route's errors: Koa answers this one, silently (app.silent).
      ctx.status = koaStatus(error);
      if (ctx.status >= 500) ctx.state.internalError ??= error;
      throw error;
    } finally {
      // Streamed bodies are still flowing here: observe when the response is done, with real timing.
      if (ctx.res.writableFinished || !ctx.body || typeof (ctx.body as { pipe?: unknown }).pipe !== 'function') done(ctx, started, ctx.state.bodyStartedAt as number | undefined);
      else {
        const sentBefore = ctx.req.socket.bytesWritten; // a response cut short counts what left, not its length
        ctx.res.once('close', () => {
          // A body that failed mid-way (the store dropped it): the client saw its connection cut. Koa says
          // nothing (no 'error' listener); the watchers do. A client that went away is no failure: this
          // listener runs before pipeline() destroys the body then, and CLIENT_GONE covers the other order.
          const failed = (ctx.body as Readable).errored as NodeJS.ErrnoException | null;
          if (failed && !CLIENT_GONE.has(failed.code ?? '')) ctx.state.internalError ??= failed;
          done(ctx, started, sentBefore);
        });
      }
    }
  };
}

/**
 * For a route that writes its body itself (ctx.respond = false): call before writing, so that a response
 * cut short counts the bytes that went out rather than its length.
 */
export function markBodyStart(ctx: Context): void {
  ctx.state.bodyStartedAt = ctx.req.socket.bytesWritten; // what the connection had sent by then
}

// What pipeline() destroys the body with when the response closed first: the client went away.
const CLIENT_GONE = new Set(['ERR_STREAM_PREMATURE_CLOSE']);

/** The status Koa answers an error with: its own, if it is an HTTP status Koa knows, else 500. */
function koaStatus(error: unknown): number {
  const status = (error as { status?: unknown }).status || (error as { statusCode?: unknown }).statusCode;
  return typeof status === 'number' && STATUS_CODES[status] !== undefined ? status : 500;
}
