// The access log's line, serialized directly rather than through pino's generic path (object walk,
// formatters, hooks): one line per request is the hottest logging there is, and this costs a fraction.
// The line is the one pino writes (level, time and the logger's bindings first, msg last) and goes to the
// logger's own destination, so level, log.fields, log.formatter and batching all apply as to any line.
// Lines are formatted in batches, off the request's path (see accessLineWriter).
import { pino, type Logger } from 'pino';
import { scrubText } from './redact.js';

/** "Safe": never holds a character that JSON escapes (quote, backslash, control characters). */
export interface AccessEntry {
  /** Safe: a UUID or a client's id that matched [A-Za-z0-9._:-]. */
  requestId: string;
  /** Safe: an HTTP method token. */
  method: string;
  /** Safe: a route template of this code. */
  route: string;
  status: number;
  /** Safe: a validated repository name. */
  repository?: string;
  user?: string;
  jobId?: string;
  bytesIn: number;
  bytesOut: number;
  /** Written to the microsecond. */
  durationMs: number;
  /** Safe: an IP address. */
  remote: string;
  userAgent?: string;
  error?: string;
}

interface PinoInternals {
  [pino.symbols.streamSym]: { write(line: string): void };
  [pino.symbols.chindingsSym]: string;
}

const INFO = 30;
const BATCH_MS = 10;

/** Writers with queued lines; written at exit before the destination's own exit handler writes out. */
const waiting = new Set<() => void>();
process.prependListener('exit', () => {
  for (const flush of [...waiting]) flush();
});

export interface AccessLineWriter {
  /** `entry` is called when the line is formatted: it reads what it needs then, all but the timing. */
  (entry: () => AccessEntry): void;
  /** Writes the lines still queued now (they go out by themselves within 10 ms). */
  flush(): void;
}

/**
 * Queues the entry (a push; even its fields are read later) and formats the queue every 10 ms. Measured under load on 2 cores: a few
 * microseconds of formatting in every request cost about three times their CPU in requests/s (the event
 * loop's turns grow and the thread-pool and client hand-offs around them stall), deferring them to
 * setImmediate did not help, and the same work done once per 10 ms for all queued requests costs about
 * its CPU. Entries carry their own time, so lines say when the request ended, not when they were written.
 */
export function accessLineWriter(logger: Logger): AccessLineWriter {
  const internals = logger as unknown as PinoInternals;
  let queued: Array<() => AccessEntry> = [];
  let times: number[] = [];
  let timeMs = -1;
  let timeField = '';
  const format = (entry: AccessEntry, at: number): string => {
    if (at !== timeMs) {
      timeMs = at;
      timeField = `,"time":"${new Date(at).toISOString()}"`;
    }
    // Fields that cannot hold a character JSON escapes go in as they are (see AccessEntry): JSON.stringify
    // of every field was a third of the line's cost.
    let line = `{"level":${INFO}${timeField}${internals[pino.symbols.chindingsSym]},"requestId":"${entry.requestId}","method":"${entry.method}","route":"${entry.route}","status":${entry.status}`;
    if (entry.repository !== undefined) line += `,"repository":"${entry.repository}"`;
    if (entry.user !== undefined) line += `,"user":${JSON.stringify(entry.user)}`;
    if (entry.jobId !== undefined) line += `,"jobId":${JSON.stringify(entry.jobId)}`;
    line += `,"bytesIn":${entry.bytesIn},"bytesOut":${entry.bytesOut},"durationMs":${Math.round(entry.durationMs * 1000) / 1000},"remote":"${entry.remote}"`;
    if (entry.userAgent !== undefined) line += `,"userAgent":${JSON.stringify(scrubText(entry.userAgent))}`;
    if (entry.error !== undefined) line += `,"error":${JSON.stringify(entry.error)}`;
    return `${line},"msg":"request"}\n`;
  };
  const flush = () => {
    waiting.delete(flush);
    if (queued.length === 0) return;
    const batch = queued;
    const at = times;
    queued = [];
    times = [];
    const stream = internals[pino.symbols.streamSym];
    for (let i = 0; i < batch.length; i++) stream.write(format(batch[i]!(), at[i]!));
  };
  const write = (entry: () => AccessEntry) => {
    if (!logger.isLevelEnabled('info')) return;
    times.push(Date.now());
    if (queued.push(entry) > 1) return;
    setTimeout(flush, BATCH_MS).unref();
    waiting.add(flush);
  };

  return Object.assign(write, { flush });
}
