// Bytes a request took on its connection, and the bytes of its response's body. Request bytes: request line, headers and body, counted on the socket from the
// end of the previous request on the same connection (HTTP/1.1 runs one request at a time on it). Read on
// the socket because a 'data' listener on the request would start the body flowing before routes read it,
// and because the headers arrive (with the start of the body) before any middleware runs.
import type { Socket } from 'node:net';
import type { Context } from 'koa';

/** Where the previous request on a connection ended; kept beside the socket, not on it (its shape stays Node's). */
const countedUpTo = new WeakMap<Socket, number>();
/** The answer for the request, on its state (a WeakMap entry per request would cost the GC more than this). */
const REQUEST_BYTES = Symbol('requestBytes');

/** Call when the response is done; the same answer for every caller of one request. */
export function requestBytes(ctx: Context): number {
  const state = ctx.state as { [REQUEST_BYTES]?: number };
  const known = state[REQUEST_BYTES];
  if (known !== undefined) return known;
  const socket = ctx.req.socket;
  const read = socket.bytesRead;
  const bytes = Math.max(0, read - (countedUpTo.get(socket) ?? 0));
  countedUpTo.set(socket, read);
  state[REQUEST_BYTES] = bytes;
  return bytes;
}

const RESPONSE_BYTES = Symbol('responseBytes');

/** Response body bytes (its Content-Length; none for HEAD and 304), once the response is done; computed once per request. */
export function responseBodyBytes(ctx: Context): number {
  const state = ctx.state as { [RESPONSE_BYTES]?: number };
  const known = state[RESPONSE_BYTES];
  if (known !== undefined) return known;
  const bytes = ctx.method === 'HEAD' || ctx.status === 304 ? 0 : (ctx.response.length ?? 0);
  state[RESPONSE_BYTES] = bytes;
  return bytes;
}
