// Every request gets an id: the client's X-Request-Id when it is a sane one, else a new UUID. It is answered
// in X-Request-Id and named by the access log, error details and notification events, whether or not the
// access log is on.
import { randomUUID } from 'node:crypto';
import type { Context, Next } from 'koa';

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export async function requestId(ctx: Context, next: Next): Promise<void> {
  const incoming = ctx.req.headers['x-request-id'];
  const id = typeof incoming === 'string' && REQUEST_ID.test(incoming) ? incoming : randomUUID();
  ctx.state.requestId = id;
  ctx.set('X-Request-Id', id);
  await next();
}
