// The JobContext a handler sees, for both queues: log lines and progress are collected in memory and
// handed to the queue's sink in batches, at most once per interval and once more when the job ends,
// so a chatty handler costs one storage or Redis write per interval rather than one per event.
import type { ChildOutcome, JobContext, JobKind, JobProgress } from './job.js';
import { scrubText } from '../logging/redact.js';

/** Per attempt; beyond it lines are dropped (with one note), so a runaway handler cannot fill memory. */
export const MAX_LOG_LINES = 20_000;
export const MAX_LINE_LENGTH = 4_096;

export interface FlushBatch {
  /** The whole merged progress, when it changed since the last batch. */
  progress?: JobProgress;
  lines: string[];
}

export interface ContextSink {
  flush(batch: FlushBatch): Promise<void>;
}

export interface ContextOptions<Request> {
  id: string;
  kind: JobKind;
  request: Request;
  attempt: number;
  signal: AbortSignal;
  /** Progress so far (from an earlier attempt): updates merge into it. */
  progress: JobProgress;
  intervalMs: number;
  sink: ContextSink;
  /** A failed periodic flush; the batch is kept and tried again. */
  onFlushError(error: unknown): void;
  /** A flow's child: its parent. */
  parent?: { id: string; key: string };
  /** A flow's parent: how its children ended. */
  children?: Record<string, ChildOutcome>;
}

export interface RunningContext<Request> {
  context: JobContext<Request>;
  /** A line from the queue itself (attempts, retries), never dropped by the cap. */
  note(line: string): void;
  /** Writes everything pending; call after the handler settled and before the final state is stored. */
  drain(): Promise<void>;
}

export function createJobContext<Request>(options: ContextOptions<Request>): RunningContext<Request> {
  let progress: JobProgress = { ...options.progress };
  let progressDirty = false;
  let pending: string[] = [];
  let logged = 0;
  let timer: NodeJS.Timeout | undefined;
  let inFlight: Promise<void> | undefined;
  let lastFlush = 0;
  /** After drain: the job has ended, and late calls from a handler that left work behind are ignored. */
  let closed = false;

  const dirty = () => progressDirty || pending.length > 0;

  const push = (line: string) => {
    const stamp = new Date().toISOString();
    for (const part of line.split(/\r?\n/)) pending.push(`${stamp} ${part.slice(0, MAX_LINE_LENGTH)}`);
  };

  const flush = async (): Promise<void> => {
    const batch: FlushBatch = { lines: pending, ...(progressDirty ? { progress: { ...progress } } : {}) };
    pending = [];
    progressDirty = false;
    lastFlush = Date.now();
    try {
      await options.sink.flush(batch);
    } catch (error) {
      // Keep the batch for the next try, ahead of anything logged meanwhile.
      pending = [...batch.lines, ...pending];
      if (batch.progress) progressDirty = true;
      throw error;
    }
  };

  const schedule = () => {
    if (timer || inFlight || closed || !dirty()) return;
    const wait = Math.max(0, lastFlush + options.intervalMs - Date.now());
    timer = setTimeout(() => {
      timer = undefined;
      inFlight = flush()
        .catch((error) => options.onFlushError(error))
        .finally(() => {
          inFlight = undefined;
          schedule();
        });
    }, wait);
  };

  const context: JobContext<Request> = {
    id: options.id,
    kind: options.kind,
    request: options.request,
    attempt: options.attempt,
    signal: options.signal,
    ...(options.parent ? { parent: options.parent } : {}),
    ...(options.children ? { children: options.children } : {}),
    log(line: string) {
      if (closed) return;
      logged++;
      if (logged <= MAX_LOG_LINES) push(scrubText(String(line)));
      else if (logged === MAX_LOG_LINES + 1) push(`(log limit of ${MAX_LOG_LINES} lines reached: further lines are dropped)`);
      else return;
      schedule();
    },
    progress(update: JobProgress) {
      if (closed) return;
      progress = { ...progress, ...structuredClone(update) };
      progressDirty = true;
      schedule();
    },
  };

  return {
    context,
    note(line: string) {
      if (closed) return;
      push(line);
      schedule();
    },
    async drain() {
      closed = true;
      clearTimeout(timer);
      timer = undefined;
      if (inFlight) await inFlight;
      // One more try if the last write failed; after that the job's end matters more than its lines.
      for (let attempt = 0; dirty() && attempt < 2; attempt++) {
        try {
          await flush();
        } catch (error) {
          options.onFlushError(error);
        }
      }
    },
  };
}
