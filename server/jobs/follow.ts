// followLogs for both queues: poll the stored lines until the job has finished. The job's state is read
// before its lines, and runners store the last lines before the final state, so the read that first
// sees a finished job also sees its complete log.
import { setTimeout as sleep } from 'node:timers/promises';

export interface LogSnapshot {
  finished: boolean;
  /** Lines from `offset` on. */
  lines: string[];
}

export async function* pollLogs(
  read: (offset: number) => Promise<LogSnapshot | undefined>,
  signal: AbortSignal | undefined,
  intervalMs: number,
): AsyncGenerator<string> {
  let offset = 0;
  while (!signal?.aborted) {
    const snapshot = await read(offset);
    if (!snapshot) return;
    offset += snapshot.lines.length;
    yield* snapshot.lines;
    if (snapshot.finished) return;
    try {
      await sleep(intervalMs, undefined, { signal });
    } catch {
      return; // aborted: the reader went away
    }
  }
}
