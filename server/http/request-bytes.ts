// Bytes a request took on its connection: request line, headers and body, counted on the socket from the
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
