// Upload sessions. All state is in storage (any process, any replica, or a restarted one continues a session);
// the running SHA-256 of the process that took the last chunk is kept in memory so the common path
// (docker's single streamed PATCH, then a body-less PUT) hashes every byte exactly once.
import { randomUUID, type Hash } from 'node:crypto';
import { isNotFound, type StorageDriver } from '../../storage-drivers/driver.js';
import { digestInvalid, OciError, uploadUnknown } from './errors.js';
import { newHash, type ParsedDigest } from './digest.js';
import { paths } from './paths.js';
import type { ByteRange } from './range.js';
import { tryLock, type HeldLock } from './upload-lock.js';
import type { BlobInfo, BlobStore } from './blob-store.js';

export interface UploadState {
  id: string;
  name: string;
  /** Bytes committed so far. */
  offset: number;
  /** Hex SHA-256 of bytes [0, offset): lets a body-less final PUT on any process verify without a re-read. */
  sha256: string;
  startedAt: string;
}

export interface Chunk {
  body: AsyncIterable<Buffer>;
  /** Content-Length when the client sent one: the chunk must be exactly this long. */
  length?: number;
  range?: ByteRange;
}

const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const EMPTY_SHA256 = newHash().digest('hex');
const MAX_LIVE_HASHES = 1024;

export class UploadStore {
  /** Live hashes by session id, valid only at exactly `offset`. Insertion order doubles as LRU order. */
  private readonly liveHashes = new Map<string, { offset: number; hash: Hash }>();

  constructor(
    private readonly driver: StorageDriver,
    private readonly blobs: BlobStore,
  ) {}

  async create(name: string): Promise<UploadState> {
    const state: UploadState = { id: randomUUID(), name, offset: 0, sha256: EMPTY_SHA256, startedAt: new Date().toISOString() };
    await this.saveState(state);
    return state;
  }

  async get(name: string, id: string): Promise<UploadState> {
    if (!UUID_PATTERN.test(id)) throw uploadUnknown(id.slice(0, 100));
    try {
      const state = JSON.parse((await this.driver.getContent(paths.uploadState(name, id))).toString()) as UploadState;
      if (state.name !== name) throw uploadUnknown(id);
      return state;
    } catch (error) {
      if (isNotFound(error)) throw uploadUnknown(id);
      throw error;
    }
  }

  /** PATCH: appends one chunk. */
  async append(name: string, id: string, chunk: Chunk): Promise<UploadState> {
    return this.withLock(name, id, (state) => this.write(state, chunk));
  }

  /** PUT: appends an optional last chunk, verifies the digest, and makes the blob visible in `name`. */
  async complete(name: string, id: string, digest: ParsedDigest, chunk?: Chunk): Promise<BlobInfo> {
    return this.withLock(name, id, async (state) => {
      if (chunk) state = await this.write(state, chunk);
      const actual = await this.digestOf(state, digest);
      if (actual !== digest.digest) {
        await this.discard(state);
        throw digestInvalid('uploaded content does not match the digest', { expected: digest.digest, actual });
      }
      await this.commitBlob(state, digest);
      return { digest: digest.digest, size: state.offset };
    });
  }

  async cancel(name: string, id: string): Promise<void> {
    const state = await this.get(name, id);
    await this.discard(state);
  }

  private async withLock<T>(name: string, id: string, action: (state: UploadState) => Promise<T>): Promise<T> {
    const state = await this.get(name, id);
    const lock: HeldLock | undefined = await tryLock(this.driver, paths.uploadLock(name, id));
    if (!lock) {
      throw new OciError(416, 'BLOB_UPLOAD_INVALID', 'another request is writing to this upload', { id }, rangeHeader(state));
    }
    try {
      // Re-read under the lock: the state read before may be one chunk old.
      return await action(await this.get(name, id));
    } finally {
      await lock.release().catch(() => undefined);
    }
  }

  private async write(state: UploadState, chunk: Chunk): Promise<UploadState> {
    if (chunk.range) {
      if (chunk.range.start !== state.offset) {
        throw new OciError(416, 'BLOB_UPLOAD_INVALID', 'chunk does not start at the end of the upload', {
          offset: state.offset,
          start: chunk.range.start,
        }, rangeHeader(state));
      }
      const declared = chunk.range.end - chunk.range.start + 1;
      if (chunk.length !== undefined && chunk.length !== declared) {
        throw new OciError(416, 'BLOB_UPLOAD_INVALID', 'Content-Range and Content-Length disagree', {
          contentRange: `${chunk.range.start}-${chunk.range.end}`,
          contentLength: chunk.length,
        }, rangeHeader(state));
      }
      chunk = { ...chunk, length: declared };
    }
    const hash = await this.hashAt(state);
    // The live hash is about to absorb bytes that may never be committed: forget it until they are.
    this.liveHashes.delete(state.id);
    const writer = await this.driver.writer(paths.uploadData(state.name, state.id), { append: { expectedSize: state.offset } });
    let received = 0;
    try {
      for await (const data of chunk.body) {
        received += data.length;
        if (chunk.length !== undefined && received > chunk.length) break;
        hash.update(data);
        await writer.write(data);
      }
      if (chunk.length !== undefined && received !== chunk.length) {
        throw new OciError(400, 'SIZE_INVALID', 'chunk length does not match Content-Length or Content-Range', {
          expected: chunk.length,
          received,
        });
      }
      await writer.commit();
    } catch (error) {
      await writer.cancel();
      throw error;
    }
    const next: UploadState = { ...state, offset: state.offset + received, sha256: hash.copy().digest('hex') };
    await this.saveState(next);
    this.remember(next.id, next.offset, hash);
    return next;
  }

  /** A hash of bytes [0, offset): this process's live one, or rebuilt by reading the data once. */
  private async hashAt(state: UploadState): Promise<Hash> {
    const live = this.liveHashes.get(state.id);
    if (live && live.offset === state.offset) return live.hash;
    return this.rehash(state, 'sha256');
  }

  private async rehash(state: UploadState, algorithm: 'sha256' | 'sha512'): Promise<Hash> {
    const hash = newHash(algorithm);
    if (state.offset === 0) return hash;
    const stream = await this.driver.reader(paths.uploadData(state.name, state.id), 0, state.offset);
    for await (const data of stream) hash.update(data as Buffer);
    return hash;
  }

  private async digestOf(state: UploadState, expected: ParsedDigest): Promise<string> {
    if (expected.algorithm === 'sha256') return `sha256:${state.sha256}`;
    return `${expected.algorithm}:${(await this.rehash(state, expected.algorithm)).digest('hex')}`;
  }

  private async commitBlob(state: UploadState, digest: ParsedDigest): Promise<void> {
    const target = paths.blobData(digest);
    if ((await this.blobs.statGlobal(digest)) === undefined) {
      if (state.offset === 0) await this.driver.putContent(target, Buffer.alloc(0));
      else await this.driver.move(paths.uploadData(state.name, state.id), target);
    }
    await this.blobs.link(state.name, digest);
    await this.discard(state);
  }

  private async discard(state: UploadState): Promise<void> {
    this.liveHashes.delete(state.id);
    await this.driver.delete(paths.upload(state.name, state.id));
  }

  private async saveState(state: UploadState): Promise<void> {
    await this.driver.putContent(paths.uploadState(state.name, state.id), JSON.stringify(state));
  }

  private remember(id: string, offset: number, hash: Hash): void {
    this.liveHashes.delete(id);
    this.liveHashes.set(id, { offset, hash });
    if (this.liveHashes.size > MAX_LIVE_HASHES) {
      const oldest = this.liveHashes.keys().next().value;
      if (oldest !== undefined) this.liveHashes.delete(oldest);
    }
  }
}

/** The spec's `Range: 0-<last byte>` of an upload ("0-0" when empty, as Distribution answers). */
export function rangeHeader(state: UploadState): Record<string, string> {
  return { Range: `0-${Math.max(0, state.offset - 1)}` };
}
