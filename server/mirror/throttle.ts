// Per-upstream limits shared by every job of a process: how many blobs are fetched at once, and how many
// bytes per second all of them may take together (0: unlimited).
export class UpstreamThrottle {
  private active = 0;
  private readonly waiting: Array<() => void> = [];
  private available: number;
  private refilledAt = Date.now();

  constructor(
    readonly concurrency: number,
    private readonly bytesPerSecond: number,
  ) {
    this.available = bytesPerSecond;
  }

  /** Runs `task` when a slot is free. */
  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.active >= this.concurrency) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.active++;
    try {
      return await task();
    } finally {
      this.active--;
      this.waiting.shift()?.();
    }
  }

  /** Passes `source` through at no more than the byte rate (a token bucket holding one second of bytes). */
  async *limit(source: AsyncIterable<Buffer>, signal?: AbortSignal): AsyncGenerator<Buffer> {
    for await (const chunk of source) {
      if (this.bytesPerSecond > 0) await this.take(chunk.length, signal);
      yield chunk;
    }
  }

  private async take(bytes: number, signal?: AbortSignal): Promise<void> {
    for (;;) {
      const now = Date.now();
      this.available = Math.min(this.bytesPerSecond, this.available + ((now - this.refilledAt) / 1000) * this.bytesPerSecond);
      this.refilledAt = now;
      // A chunk larger than the bucket goes once the bucket is full, then leaves it in debt.
      if (this.available >= Math.min(bytes, this.bytesPerSecond)) {
        this.available -= bytes;
        return;
      }
      signal?.throwIfAborted();
      const waitMs = ((Math.min(bytes, this.bytesPerSecond) - this.available) / this.bytesPerSecond) * 1000;
      await new Promise((resolve) => setTimeout(resolve, Math.max(1, Math.ceil(waitMs))));
    }
  }
}
