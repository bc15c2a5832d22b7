// A free list of equal-sized buffers: transfers reuse them instead of leaving garbage per chunk or part
// (external memory that only a GC gives back). Idle buffers beyond a few are dropped after a while.
export class BufferPool {
  private readonly free: Buffer[] = [];
  private lastUse = Date.now();

  constructor(
    readonly size: number,
    private readonly maxIdle: number,
    private readonly keepIdle = 2,
    idleMs = 30_000,
  ) {
    setInterval(() => {
      if (Date.now() - this.lastUse > idleMs) this.free.length = Math.min(this.free.length, this.keepIdle);
    }, idleMs).unref();
  }

  take(): Buffer {
    this.lastUse = Date.now();
    return this.free.pop() ?? Buffer.allocUnsafeSlow(this.size);
  }

  /** Only once nothing (a socket, an HTTP request body) can still read it. */
  give(buffer: Buffer): void {
    if (buffer.length === this.size && this.free.length < this.maxIdle) this.free.push(buffer);
  }
}
