// Until auth exists, /admin answers only requests from this machine.
import type { Context, Next } from 'koa';
import { OciError } from '../registry/errors.js';

export function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  return address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.');
}

export async function loopbackOnly(ctx: Context, next: Next): Promise<void> {
  if (!isLoopback(ctx.req.socket.remoteAddress)) {
    throw new OciError(403, 'DENIED', 'the admin API answers only loopback clients until auth is configured');
  }
  await next();
}
