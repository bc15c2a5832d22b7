// A second copy of a part that streams to S3, so a part S3 refused (throttling, 5xx, a dropped connection)
// can be sent again: the streamed bytes themselves are gone. The copy goes to a pooled part buffer while
// the process's budget for them allows, else to a spill file in the temp directory. The spill file was
// measured at a fifth of the registry's CPU per pushed byte (write syscalls and page-cache work); keeping
// the arriving chunks themselves instead cost as much in garbage collection (hundreds of 64 KiB buffers
// alive at once); a copy into a reused buffer costs a memcpy. The budget keeps memory bounded when many
// clients push at once.
import { randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, unlink, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { BufferPool } from './buffer-pool.js';

/** Bytes of all parts held in memory at once, per process: four 8 MiB parts in flight. */
export const RESEND_MEMORY_BYTES = 32 * 1024 * 1024;

let reserved = 0;

export interface ResendCopy {
  /** Keeps a copy of `chunk`. A spill file that fails makes the copy unusable, not the write. */
  add(chunk: Buffer): Promise<void>;
  /** The whole copy as a fresh stream, or undefined when there is no usable copy. */
  body(): Promise<Readable | undefined>;
  /** Frees the memory or removes the file. */
  drop(): Promise<void>;
}

/** A copy for a part of `length` bytes: in a buffer of `pool` if it fits and the budget has room, else in a spill file. */
export function resendCopy(length: number, pool: BufferPool): ResendCopy {
  if (length <= pool.size && reserved + pool.size <= RESEND_MEMORY_BYTES) return new MemoryCopy(pool);
  return new SpillFile();
}

/** Bytes reserved by copies in memory now (for tests). */
export function resendMemoryInUse(): number {
  return reserved;
}

class MemoryCopy implements ResendCopy {
  private buffer: Buffer | undefined;
  private filled = 0;

  constructor(private readonly pool: BufferPool) {
    this.buffer = pool.take();
    reserved += pool.size;
  }

  async add(chunk: Buffer): Promise<void> {
    if (this.buffer) this.filled += chunk.copy(this.buffer, this.filled);
  }

  async body(): Promise<Readable | undefined> {
    return this.buffer && Readable.from([this.buffer.subarray(0, this.filled)], { objectMode: false });
  }

  async drop(): Promise<void> {
    if (!this.buffer) return;
    this.pool.give(this.buffer);
    this.buffer = undefined;
    reserved -= this.pool.size;
  }
}

/** Where the temp directory is unusable (full, read-only), there is no copy: the part streams without a second chance. */
class SpillFile implements ResendCopy {
  private readonly path = join(tmpdir(), `dify-registry-part-${randomUUID()}`);
  private readonly file: Promise<FileHandle | undefined> = open(this.path, 'w').catch(() => undefined);
  private broken = false;

  async add(chunk: Buffer): Promise<void> {
    const file = this.broken ? undefined : await this.file;
    await file?.write(chunk).catch(() => void (this.broken = true));
  }

  async body(): Promise<Readable | undefined> {
    return !this.broken && (await this.file) !== undefined ? createReadStream(this.path) : undefined;
  }

  async drop(): Promise<void> {
    await (await this.file)?.close().catch(() => undefined);
    await unlink(this.path).catch(() => undefined);
  }
}
