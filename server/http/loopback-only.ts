// Until auth exists, /admin answers only requests from this machine.
import type { Context, Next } from 'koa';
import { OciError } from '../registry/errors.js';

export function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  return address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.');
}

/**
 * A proxy (nginx, an ingress controller's sidecar, Envoy in a service mesh) on this machine connects from
 * loopback for clients anywhere: a request it forwarded is not local, whatever its peer address says.
 */
const FORWARDED = /^(?:forwarded|via|x-forwarded-.*|x-real-ip|x-envoy-.*)$/;

export async function loopbackOnly(ctx: Context, next: Next): Promise<void> {
  const proxied = Object.keys(ctx.req.headers).some((name) => FORWARDED.test(name));
  if (proxied || !isLoopback(ctx.req.socket.remoteAddress)) {
    throw new OciError(403, 'DENIED', 'the admin API answers only direct loopback clients until auth is configured');
  }
  await next();
}
