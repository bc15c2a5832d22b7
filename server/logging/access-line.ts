// The access log's line, serialized directly rather than through pino's generic path (object walk,
// formatters, hooks): one line per request is the hottest logging there is, and this costs a fraction.
// The line is the one pino writes (level, time and the logger's bindings first, msg last) and goes to the
// logger's own destination, so level, log.fields, log.formatter and batching all apply as to any line.
import { pino, type Logger } from 'pino';
import { scrubText } from './redact.js';

export interface AccessEntry {
  requestId: string;
  method: string;
  route: string;
  status: number;
  repository?: string;
  user?: string;
  jobId?: string;
  bytesIn: number;
  bytesOut: number;
  durationMs: number;
  remote: string;
  userAgent?: string;
  error?: string;
}

interface PinoInternals {
  [pino.symbols.streamSym]: { write(line: string): void };
  [pino.symbols.chindingsSym]: string;
  [pino.symbols.timeSym]: () => string;
}

const INFO = 30;

export function accessLineWriter(logger: Logger): (entry: AccessEntry) => void {
  const internals = logger as unknown as PinoInternals;
  return (entry) => {
    if (!logger.isLevelEnabled('info')) return;
    let line = `{"level":${INFO}${internals[pino.symbols.timeSym]()}${internals[pino.symbols.chindingsSym]}`;
    line += `,"requestId":${JSON.stringify(entry.requestId)},"method":${JSON.stringify(entry.method)},"route":${JSON.stringify(entry.route)},"status":${entry.status}`;
    if (entry.repository !== undefined) line += `,"repository":${JSON.stringify(entry.repository)}`;
    if (entry.user !== undefined) line += `,"user":${JSON.stringify(entry.user)}`;
    if (entry.jobId !== undefined) line += `,"jobId":${JSON.stringify(entry.jobId)}`;
    line += `,"bytesIn":${entry.bytesIn},"bytesOut":${entry.bytesOut},"durationMs":${entry.durationMs},"remote":${JSON.stringify(entry.remote)}`;
    if (entry.userAgent !== undefined) line += `,"userAgent":${JSON.stringify(scrubText(entry.userAgent))}`;
    if (entry.error !== undefined) line += `,"error":${JSON.stringify(entry.error)}`;
    internals[pino.symbols.streamSym].write(`${line},"msg":"request"}\n`);
  };
}
