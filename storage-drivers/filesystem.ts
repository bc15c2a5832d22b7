// Filesystem driver, the embedded default. Every whole-file write is temp file + fsync + rename,
// so a crash never leaves a truncated link (the failure CNCF Distribution's in-place writes have).
import { link, mkdir, open, readdir, readFile, rename, rm, rmdir, stat, unlink, type FileHandle } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import { dirname, join } from 'node:path';
import { Readable, type Writable } from 'node:stream';
import { BufferPool } from './buffer-pool.js';
import {
  assertSafePath,
  PathNotFoundError,
  type FileInfo,
  type FileWriter,
  type StorageDriver,
  type WriterCheckpoint,
  type WriterOptions,
  type PutIfAbsentOptions,
} from './driver.js';

export interface FilesystemOptions {
  rootdirectory: string;
}

/**
 * Temporary files live beside the content (same filesystem, so rename is atomic) but outside any listed tree.
 * Named by random UUIDs; garbage collection removes old ones, which a crash between write and rename left.
 */
export const TEMP_DIR = '/_tmp';

export class FilesystemDriver implements StorageDriver {
  readonly name = 'filesystem';
  private readonly root: string;
  /** A health check has found the root once. */
  private rootSeen = false;

  constructor(options: FilesystemOptions) {
    this.root = options.rootdirectory;
  }

  private full(path: string): string {
    return join(this.root, assertSafePath(path));
  }

  async getContent(path: string): Promise<Buffer> {
    try {
      return await readFile(this.full(path));
    } catch (error) {
      throw translate(error, path);
    }
  }

  async putContent(path: string, content: Buffer | string): Promise<void> {
    const target = this.full(path); // validates before anything is written
    const temp = await this.writeTemp(content);
    try {
      // A few times at most: a delete of the directory (a tag or manifest deleted meanwhile) may land
      // between the two calls, or while mkdir makes the parents.
      for (let attempt = 0; ; attempt++) {
        try {
          await mkdir(dirname(target), { recursive: true });
          await rename(temp, target);
          break;
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== 'ENOENT' || attempt >= 2) throw error;
        }
      }
    } catch (error) {
      await rm(temp, { force: true });
      throw error;
    }
    await syncDirectory(dirname(target));
  }

  async putContentIfAbsent(path: string, content: Buffer | string, options: PutIfAbsentOptions = {}): Promise<boolean> {
    const target = this.full(path);
    if (!options.inExistingDirectory) await mkdir(dirname(target), { recursive: true });
    // Write fully elsewhere first, then claim the name with a hard link (fails with EEXIST atomically).
    const temp = await this.writeTemp(content);
    try {
      await link(temp, target);
      await syncDirectory(dirname(target));
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw translate(error, path); // the directory went meanwhile (or was never there)
    } finally {
      await rm(temp, { force: true });
    }
  }

  async reader(path: string, offset = 0, length?: number): Promise<Readable> {
    const file = this.full(path);
    if (length === 0) {
      await this.stat(path); // still report a missing file
      return Readable.from([]);
    }
    const handle = await open(file, 'r').catch((error) => {
      throw translate(error, path);
    });
    const end = length === undefined ? undefined : offset + length - 1;
    // The stream owns the handle and closes it once (closing the raw fd as well would close a reused fd).
    return handle.createReadStream({ start: offset, end, highWaterMark: 256 * 1024, autoClose: true });
  }

  async copyTo(path: string, offset: number, length: number, out: Writable): Promise<void> {
    const handle = await open(this.full(path), 'r').catch((error) => {
      throw translate(error, path);
    });
    // Two buffers: one being read into while the socket sends the other; each is reused only after the
    // socket's write callback says it is done with it.
    const buffers = [SEND_BUFFERS.take(), SEND_BUFFERS.take()];
    const sent: Array<Promise<void>> = [Promise.resolve(), Promise.resolve()];
    try {
      let position = offset;
      for (let i = 0, remaining = length; remaining > 0; i ^= 1) {
        await sent[i];
        const buffer = buffers[i]!;
        const { bytesRead } = await handle.read(buffer, 0, Math.min(buffer.length, remaining), position);
        if (bytesRead === 0) throw new Error(`${path} ended ${remaining} bytes early`);
        position += bytesRead;
        remaining -= bytesRead;
        const chunk = buffer.subarray(0, bytesRead);
        sent[i] = new Promise<void>((resolve, reject) => out.write(chunk, (error) => (error ? reject(error) : resolve())));
        sent[i]!.catch(() => undefined); // awaited below or in the next round
      }
      await Promise.all(sent);
    } finally {
      // Buffers go back only once the socket can no longer read them.
      await Promise.allSettled(sent);
      await handle.close().catch(() => undefined);
      for (const buffer of buffers) SEND_BUFFERS.give(buffer);
    }
  }

  async writer(path: string, options: WriterOptions = {}): Promise<FileWriter> {
    const file = this.full(path);
    const resume = options.resume;
    if (!resume) await mkdir(dirname(file), { recursive: true });
    let handle: FileHandle;
    let size = 0;
    let created = false;
    if (resume) {
      handle = await open(file, 'r+').catch(async (error) => {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT' && resume.size === 0) {
          created = true;
          return open(file, 'w').catch((failed: unknown) => Promise.reject(translate(failed, path)));
        }
        throw translate(error, path);
      });
      const actual = (await handle.stat()).size;
      if (actual < resume.size) {
        await handle.close();
        throw new Error(`${path} holds ${actual} bytes, fewer than the ${resume.size} checkpointed`);
      }
      if (actual > resume.size) await handle.truncate(resume.size);
      size = resume.size;
    } else {
      handle = await open(file, 'w');
      created = true;
    }
    return new FilesystemWriter(handle, file, size, created);
  }

  async stat(path: string, options: { file?: boolean } = {}): Promise<FileInfo> {
    try {
      const info = await stat(this.full(path));
      if (options.file && info.isDirectory()) throw new PathNotFoundError(path);
      return { path, size: info.size, modTime: info.mtime, isDir: info.isDirectory() };
    } catch (error) {
      throw translate(error, path);
    }
  }

  async list(path: string): Promise<string[]> {
    try {
      const entries = await readdir(this.full(path));
      const base = path.endsWith('/') ? path : `${path}/`;
      return entries.map((entry) => base + entry);
    } catch (error) {
      throw translate(error, path);
    }
  }

  async move(source: string, destination: string): Promise<void> {
    const target = this.full(destination);
    await mkdir(dirname(target), { recursive: true });
    try {
      await rename(this.full(source), target);
    } catch (error) {
      throw translate(error, source);
    }
    await syncDirectory(dirname(target));
  }

  async delete(path: string): Promise<void> {
    const full = this.full(path);
    // One system call for what garbage collection removes most: an empty directory (or nothing).
    try {
      await rmdir(full);
      return;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST' && code !== 'ENOTDIR') throw error;
    }
    // Retried: a file written into the tree meanwhile (a tag set racing its delete) makes a pass fail.
    await rm(full, { recursive: true, force: true, maxRetries: 3, retryDelay: 10 });
  }

  async deleteFile(path: string): Promise<void> {
    await unlink(this.full(path)).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'ENOENT') throw error;
    });
  }

  async redirectURL(): Promise<string | undefined> {
    return undefined;
  }

  async healthCheck(): Promise<void> {
    // The root is made by the first check (a fresh install). A root that vanished since (an unmounted
    // volume, a renamed directory) fails the check: recreating it empty would serve an empty registry.
    if (this.rootSeen) {
      if (!(await stat(this.root)).isDirectory()) throw new Error(`storage root ${this.root} is not a directory`);
    } else await mkdir(this.root, { recursive: true });
    await mkdir(this.full(TEMP_DIR), { recursive: true });
    const probe = await this.writeTemp('ok');
    await rm(probe, { force: true });
    this.rootSeen = true;
  }

  private async writeTemp(content: Buffer | string): Promise<string> {
    const dir = this.full(TEMP_DIR);
    const temp = join(dir, randomUUID());
    let handle: FileHandle;
    try {
      handle = await open(temp, 'wx');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      await mkdir(dir, { recursive: true });
      handle = await open(temp, 'wx');
    }
    try {
      await handle.writeFile(content);
      await handle.datasync();
    } catch (error) {
      await handle.close();
      await rm(temp, { force: true });
      throw error;
    }
    await handle.close();
    return temp;
  }
}

/**
 * A rename or link is durable once its directory is: without this, a blob, manifest or tag acknowledged
 * with 201 could be gone after a power loss (its bytes were synced, its name was not).
 */
async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined; // deleted since, with what was written into it
    throw error;
  });
  if (!handle) return;
  try {
    await handle.datasync();
  } finally {
    await handle.close();
  }
}

/** Download buffers, shared by all downloads of this process. */
const SEND_BUFFERS = new BufferPool(256 * 1024, 64);

/** Socket chunks (about 64 KiB) are gathered into writes of this size: one thread-pool trip each, not sixteen. */
const WRITE_BATCH = 1024 * 1024;

/**
 * Writes in batches with one batch in flight, so the request body keeps flowing while the previous batch
 * is written: memory per writer is at most two batches.
 */
class FilesystemWriter implements FileWriter {
  private done = false;
  private readonly initialSize: number;
  private batch: Buffer[] = [];
  private batchBytes = 0;
  /** File offset of the next batch; `written` also counts bytes still in `batch`. */
  private position: number;
  private inFlight: Promise<void> = Promise.resolve();

  constructor(
    private readonly handle: FileHandle,
    private readonly file: string,
    private written: number,
    private readonly created: boolean,
  ) {
    this.initialSize = written;
    this.position = written;
  }

  get size(): number {
    return this.written;
  }

  async write(chunk: Buffer): Promise<void> {
    this.batch.push(chunk);
    this.batchBytes += chunk.length;
    this.written += chunk.length;
    if (this.batchBytes >= WRITE_BATCH) await this.flushBatch();
  }

  async checkpoint(): Promise<WriterCheckpoint> {
    await this.commit();
    return { size: this.written };
  }

  async commit(): Promise<void> {
    if (this.done) return;
    this.done = true;
    try {
      await this.flushBatch();
      await this.inFlight;
      await this.handle.datasync();
    } finally {
      await this.handle.close();
    }
  }

  async cancel(): Promise<void> {
    if (this.done) return;
    this.done = true;
    await this.inFlight.catch(() => undefined);
    // An appending writer gives back only its own bytes; the file's earlier content stays.
    if (!this.created) await this.handle.truncate(this.initialSize).catch(() => undefined);
    await this.handle.close().catch(() => undefined);
    if (this.created) await rm(this.file, { force: true });
  }

  /** Waits for the batch in flight (surfacing its error), then starts writing the gathered one. */
  private async flushBatch(): Promise<void> {
    await this.inFlight;
    if (this.batchBytes === 0) return;
    const chunks = this.batch;
    const position = this.position;
    this.position += this.batchBytes;
    this.batch = [];
    this.batchBytes = 0;
    this.inFlight = writeAll(this.handle, chunks, position);
    // Handled when awaited at the next flush, commit or cancel; never an unhandled rejection meanwhile.
    this.inFlight.catch(() => undefined);
  }
}

/** One positioned writev, finishing a short write buffer by buffer. */
async function writeAll(handle: FileHandle, chunks: Buffer[], position: number): Promise<void> {
  let { bytesWritten } = await handle.writev(chunks, position);
  for (const chunk of chunks) {
    if (bytesWritten >= chunk.length) {
      bytesWritten -= chunk.length;
      position += chunk.length;
      continue;
    }
    for (let offset = bytesWritten; offset < chunk.length; ) {
      const result = await handle.write(chunk, offset, chunk.length - offset, position + offset);
      offset += result.bytesWritten;
    }
    position += chunk.length;
    bytesWritten = 0;
  }
}

function translate(error: unknown, path: string): Error {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ENOENT' || code === 'ENOTDIR') return new PathNotFoundError(path);
  return error as Error;
}
