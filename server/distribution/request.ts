// Small helpers the /v2 routes share: the repository of a request, absolute-or-relative Locations, bodies.
import type { Context } from 'koa';
import type { IncomingMessage } from 'node:http';
import { assertValidName } from '../registry/names.js';
import { OciError } from '../registry/errors.js';
import type { Chunk } from '../registry/upload-store.js';
import { parseContentRange } from '../registry/range.js';

declare module 'koa' {
  interface DefaultContext {
    /** http.bodytimeout in ms (0: none): how long a request body may send nothing. Set once on the app. */
    bodyIdleMs?: number;
  }
}

export interface RouteOptions {
  /** Public base URL for Location headers; relative Locations when unset. */
  publicUrl?: string;
}

export function repositoryOf(ctx: Context): string {
  const raw = ctx.params.name;
  const name = assertValidName(Array.isArray(raw) ? raw.join('/') : String(raw ?? ''));
  ctx.state.repository = name;
  return name;
}

export function location(options: RouteOptions, path: string): string {
  return options.publicUrl ? `${options.publicUrl.replace(/\/$/, '')}${path}` : path;
}

export function contentLength(req: IncomingMessage): number | undefined {
  const header = req.headers['content-length'];
  if (header === undefined) return undefined;
  const value = Number(header);
  if (!/^\d+$/.test(header) || !Number.isSafeInteger(value)) {
    throw new OciError(400, 'SIZE_INVALID', 'invalid Content-Length', { contentLength: header.slice(0, 50) });
  }
  return value;
}

/** True when a body follows (Content-Length > 0 or chunked transfer). */
export function hasBody(req: IncomingMessage): boolean {
  const length = contentLength(req);
  return (length !== undefined && length > 0) || (length === undefined && req.headers['transfer-encoding'] !== undefined);
}

/** The request body as an upload chunk, with its declared length and Content-Range checked by the store. */
export function chunkOf(ctx: Context): Chunk {
  const range = parseContentRange(ctx.get('Content-Range') || undefined);
  if (range === 'invalid') {
    throw new OciError(400, 'BLOB_UPLOAD_INVALID', 'Content-Range must be <start>-<end>', { contentRange: ctx.get('Content-Range').slice(0, 100) });
  }
  return { body: bodyOf(ctx.req, ctx.bodyIdleMs), length: contentLength(ctx.req), range };
}

/**
 * The request body as chunks. Leaving the loop early (a storage error mid-body, a digest or size check)
 * must not destroy the request, as a plain `for await` over it does: the socket would go with it and the
 * client would get no error response, or Koa's plain-text 500. Instead the rest of the body is read and
 * dropped, so the error response arrives and the connection can carry the next request (Node does that
 * by itself only for bodies nobody started to read).
 * A body that sends nothing for `idleMs` while it is waited for fails with 408 and closes its connection:
 * otherwise a stalled client holds its upload session (and the session's lock) for as long as its TCP
 * connection lives. Time the reader spends elsewhere (writing a chunk to S3) does not count.
 */
export async function* bodyOf(req: IncomingMessage, idleMs = 0): AsyncGenerator<Buffer> {
  const chunks = req.iterator({ destroyOnReturn: false });
  const watch = idleMs > 0 ? new StallWatch(idleMs) : undefined;
  let complete = false;
  try {
    for (;;) {
      const next = watch ? await watch.wait(chunks.next()) : await chunks.next();
      if (next.done) break;
      yield next.value as Buffer;
    }
    complete = true;
  } finally {
    watch?.stop();
    if (!complete && watch?.stalled) {
      // A read is still pending on the silent body: it ends with the connection, closed after the 408.
      chunks.return!().catch(() => undefined);
    } else if (!complete) {
      await chunks.return!();
      req.resume();
    }
  }
}

/** Fails a wait for body data that lasts longer than `idleMs`; one timer for the whole body, refreshed per wait. */
class StallWatch {
  stalled = false;
  private waiting = false;
  private fail!: (error: OciError) => void;
  private readonly failure = new Promise<never>((_, reject) => (this.fail = reject));
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly idleMs: number) {
    this.failure.catch(() => undefined); // unobserved when every wait is won by data
    this.timer = setTimeout(() => this.expired(), idleMs);
  }

  async wait<T>(read: Promise<T>): Promise<T> {
    this.waiting = true;
    this.timer.refresh();
    try {
      return await Promise.race([read, this.failure]);
    } finally {
      this.waiting = false;
    }
  }

  stop(): void {
    clearTimeout(this.timer);
  }

  private expired(): void {
    if (!this.waiting) return; // the reader was busy elsewhere: its next wait starts a new count
    this.stalled = true;
    const seconds = this.idleMs / 1000;
    this.fail(new OciError(408, 'SIZE_INVALID', `request body stalled: nothing received for ${seconds} s`, { idleSeconds: seconds }, {
      Connection: 'close',
    }));
  }
}

/** Reads a whole body of at most `limit` bytes; larger bodies are refused before they are read. */
export async function readBody(ctx: Context, limit: number): Promise<Buffer> {
  const req = ctx.req;
  const declared = contentLength(req);
  const tooLarge = () => new OciError(413, 'SIZE_INVALID', `body larger than ${limit} bytes`, { limit });
  if (declared !== undefined && declared > limit) throw tooLarge();
  const parts: Buffer[] = [];
  let size = 0;
  for await (const part of bodyOf(req, ctx.bodyIdleMs)) {
    size += (part as Buffer).length;
    if (size > limit) throw tooLarge();
    parts.push(part as Buffer);
  }
  if (declared !== undefined && size !== declared) {
    throw new OciError(400, 'SIZE_INVALID', 'body shorter than Content-Length', { expected: declared, received: size });
  }
  return Buffer.concat(parts, size);
}

/** `n` of the paginated listings: a non-negative integer, or absent. */
export function pageSize(ctx: Context): number | undefined {
  const raw = ctx.query.n;
  if (raw === undefined) return undefined;
  const value = Number(raw);
  if (typeof raw !== 'string' || !/^\d+$/.test(raw) || !Number.isSafeInteger(value)) {
    throw new OciError(400, 'PAGINATION_NUMBER_INVALID', 'n must be a non-negative integer', { n: String(raw).slice(0, 50) });
  }
  return value;
}

export function queryString(ctx: Context, key: string): string | undefined {
  const value = ctx.query[key];
  return Array.isArray(value) ? value[0] : value;
}

/** RFC 8288 `Link` for the next page. */
export function nextLink(path: string, n: number, last: string): string {
  return `<${path}?n=${n}&last=${encodeURIComponent(last)}>; rel="next"`;
}

/** An empty body. Koa would otherwise write the status text ("Created") as the body of a 201 or 202. */
export function emptyBody(ctx: Context): void {
  ctx.body = Buffer.alloc(0);
}
