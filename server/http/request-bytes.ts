// Bytes a request took on its connection, and the bytes of its response's body. Request bytes: request
// line, headers and body, counted on the socket from the end of the previous request on the same
// connection (HTTP/1.1 runs one request at a time on it). Read on the socket because a 'data' listener on
// the request would start the body flowing before routes read it, and because the headers arrive (with the
// start of the body) before any middleware runs.
import type { Socket } from 'node:net';
import type { Context } from 'koa';

/** Where the previous request on a connection ended; kept beside the socket, not on it (its shape stays Node's). */
const countedUpTo = new WeakMap<Socket, number>();

/** Call once per request, when the response is done. */
export function requestBytes(ctx: Context): number {
  const socket = ctx.req.socket;
  const read = socket.bytesRead;
  const bytes = Math.max(0, read - (countedUpTo.get(socket) ?? 0));
  countedUpTo.set(socket, read);
  return bytes;
}

/**
 * Body bytes of a streamed response that ended before all of it was sent (the client left, the store failed):
 * what went out on the connection since `sentBefore` (its bytesWritten when the body started), less the
 * header, at most the Content-Length. Bytes still in the socket's buffer when it closed count as sent.
 */
export function cutResponseBytes(ctx: Context, sentBefore: number): number {
  const header = (ctx.res as { _header?: unknown })._header; // Node's serialized head, once sent
  const sent = ctx.req.socket.bytesWritten - sentBefore - (typeof header === 'string' ? Buffer.byteLength(header) : 0);
  return Math.min(Math.max(0, sent), responseBodyBytes(ctx));
}

/** Response body bytes (its Content-Length; none for HEAD and 304), once the response is done. */
export function responseBodyBytes(ctx: Context): number {
  return ctx.method === 'HEAD' || ctx.status === 304 ? 0 : (ctx.response.length ?? 0);
}
