// The log destination (standard output by default), written in batches: at most one write every 10 ms,
// and one as soon as 64 KiB are waiting. One write per line was the largest cost of the access log under
// load (a syscall and a thread-pool handoff per request); a quiet process still writes each line at once,
// since the first line after a pause goes out at the end of its event-loop turn. Lines still waiting are
// written on exit.
import { pino, type DestinationStream } from 'pino';

const INTERVAL_MS = 10;
const MAX_PENDING = 64 * 1024;

export function batchedDestination(format: (line: string) => string = (line) => line, fd = 1): DestinationStream {
  const out = pino.destination({ dest: fd, sync: false });
  let pending: string[] = [];
  let pendingLength = 0;
  let scheduled = false;
  let lastWrite = 0;
  const flush = () => {
    scheduled = false;
    if (pending.length === 0) return;
    const chunk = pending.length === 1 ? pending[0]! : pending.join('');
    pending = [];
    pendingLength = 0;
    lastWrite = performance.now();
    out.write(chunk);
  };
  process.on('exit', () => {
    flush();
    try {
      out.flushSync();
    } catch {
      // Not open yet or already closed: nothing more can be written.
    }
  });
  return {
    write(line: string) {
      const formatted = format(line);
      pending.push(formatted);
      pendingLength += formatted.length;
      if (pendingLength >= MAX_PENDING) return flush();
      if (scheduled) return;
      scheduled = true;
      const wait = lastWrite + INTERVAL_MS - performance.now();
      if (wait <= 0) setImmediate(flush);
      else setTimeout(flush, wait).unref();
    },
  };
}
