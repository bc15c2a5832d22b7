// Every failure leaves as the spec's JSON error body; anything unexpected is a logged 500 without internals.
import type { Context, Next } from 'koa';
import { noSuchEndpoint, OciError } from '../registry/errors.js';
import { InvalidPathError, StorageUnavailableError } from '../../storage-drivers/driver.js';
import { SharedStateUnavailableError } from '../state/redis.js';

export async function ociErrors(ctx: Context, next: Next): Promise<void> {
  try {
    await next();
    if (ctx.status === 404 && ctx.body === undefined) {
      throw noSuchEndpoint(ctx.method, ctx.path);
    }
    // The routers' answer to a method a path does not have: bare, with its Allow header, which stays.
    if ((ctx.status === 405 || ctx.status === 501) && ctx.body === undefined) {
      throw new OciError(ctx.status, 'UNSUPPORTED', ctx.status === 405 ? 'method not allowed' : 'method not implemented', {
        method: ctx.method,
        allow: ctx.response.get('Allow') || undefined,
      });
    }
  } catch (caught) {
    const error = toOciError(caught, ctx);
    ctx.status = error.status;
    ctx.set(error.headers);
    ctx.body = error.toBody(); // Koa sends no body for HEAD but keeps status and headers
    ctx.state.errorCode = error.code;
  }
}

function toOciError(caught: unknown, ctx: Context): OciError {
  if (caught instanceof OciError) return caught;
  if (caught instanceof InvalidPathError) return new OciError(400, 'NAME_INVALID', 'invalid name or reference');
  if (caught instanceof StorageUnavailableError) {
    // Retries with backoff already happened in the driver; the client may try again a little later.
    ctx.state.internalError = caught;
    return new OciError(503, 'UNAVAILABLE', 'storage backend unavailable, try again', { requestId: ctx.state.requestId }, {
      'Retry-After': '5',
    });
  }
  if (caught instanceof SharedStateUnavailableError) {
    // Redis is away: nothing was committed; it reconnects by itself, so a retry a little later succeeds.
    ctx.state.internalError = caught;
    return new OciError(503, 'UNAVAILABLE', 'shared state (Redis) unavailable, try again', { requestId: ctx.state.requestId }, {
      'Retry-After': '5',
    });
  }
  const code = (caught as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    // Nothing half-written became visible (writes land in temp files and upload sessions first).
    ctx.state.internalError = caught;
    return new OciError(507, 'UNAVAILABLE', 'storage is full', { requestId: ctx.state.requestId });
  }
  if (code === 'ECONNRESET' || code === 'ERR_STREAM_PREMATURE_CLOSE' || (caught as Error).message === 'aborted') {
    // The client went away mid-body; nothing was committed. It will not read this answer, but logs will.
    return new OciError(400, 'SIZE_INVALID', 'request body ended early', { code });
  }
  const status = (caught as { status?: number; expose?: boolean }).status;
  if (typeof status === 'number' && ((status >= 400 && status < 500) || status === 501)) {
    // Koa/raw-body client errors (payload too large, aborted request, ...).
    const code = status === 413 ? 'SIZE_INVALID' : 'UNSUPPORTED';
    return new OciError(status, code, (caught as Error).message);
  }
  ctx.state.internalError = caught;
  return new OciError(500, 'UNKNOWN', 'internal server error', { requestId: ctx.state.requestId });
}
