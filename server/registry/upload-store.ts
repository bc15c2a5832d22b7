// Upload sessions. State is kept where every process and replica reads it (storage, or Redis: see
// upload-sessions.ts), the data in storage; the running SHA-256 of the process that took the last chunk is kept in memory so the common path
// (docker's single streamed PATCH, then a body-less PUT) hashes every byte exactly once.
import { randomUUID, type Hash } from 'node:crypto';
import { isNotFound, type FileWriter, type StorageDriver, type WriterCheckpoint } from '../../storage-drivers/driver.js';
import { digestInvalid, OciError, rangeHeader, uploadBusy, uploadUnknown } from './errors.js';
import { newHash, type ParsedDigest } from './digest.js';
import { paths } from './paths.js';
import type { ByteRange } from './range.js';
import { BlobDataGoneError, type BlobInfo, type BlobStore } from './blob-store.js';
import type { HeldLock } from './upload-lock.js';
import { StorageUploadSessions, type SessionClaim, type UploadSessions, type UploadState } from './upload-sessions.js';

export type { UploadState };

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
    private readonly sessions: UploadSessions = new StorageUploadSessions(driver),
  ) {}

  async create(name: string): Promise<UploadState> {
    const state: UploadState = { id: randomUUID(), name, offset: 0, sha256: EMPTY_SHA256, startedAt: new Date().toISOString() };
    await this.sessions.create(state);
    return state;
  }

  async get(name: string, id: string): Promise<UploadState> {
    if (!UUID_PATTERN.test(id)) throw uploadUnknown(id.slice(0, 100));
    const state = await this.sessions.load(name, id);
    if (!state || state.name !== name) throw uploadUnknown(id);
    return state;
  }

  /** PATCH: appends one chunk. */
  async append(name: string, id: string, chunk: Chunk): Promise<UploadState> {
    return this.withClaim(name, id, (claim) => this.write(claim, chunk, 'checkpoint'));
  }

  /** PUT: appends an optional last chunk, verifies the digest, and makes the blob visible in `name`. */
  async complete(name: string, id: string, digest: ParsedDigest, chunk?: Chunk): Promise<BlobInfo> {
    return this.withClaim(name, id, async (claim) => {
      const known = await this.blobs.statGlobal(digest);
      const state = await this.write(claim, chunk, 'finish');
      const lock = claim.lock;
      const actual = await this.digestOf(state, digest);
      if (actual !== digest.digest) {
        await this.discard(state, { finished: true, lock });
        throw digestInvalid('uploaded content does not match the digest', { expected: digest.digest, actual });
      }
      // Content-addressed: when the same bytes are already stored, the upload's copy is simply dropped. A
      // backend copy (S3) leaves the source to the deletion of the session's directory below: one request less.
      const place = this.driver.copy ? this.driver.copy.bind(this.driver) : this.driver.move.bind(this.driver);
      const putIntoPlace = () =>
        this.blobs
          .storeData(digest, state.offset, () => place(paths.uploadData(state.name, state.id), paths.blobData(digest)))
          .catch((error: unknown) => Promise.reject(sessionGone(error, state)));
      if (known === undefined) await putIntoPlace();
      try {
        await this.blobs.link(state.name, digest);
      } catch (error) {
        // Garbage collection removed the stored copy we were about to reuse: ours takes its place.
        if (!(error instanceof BlobDataGoneError) || known === undefined) throw error;
        await putIntoPlace();
        await this.blobs.link(state.name, digest);
      }
      await this.discard(state, { finished: true, lock });
      return { digest: digest.digest, size: state.offset };
    });
  }

  /**
   * POST ?digest= with the whole blob in the body. Where writers commit atomically (S3), no session: the
   * bytes stream straight to the blob's content-addressed path, hashed on the way, and are committed only
   * when the digest matched (a mismatch aborts; nothing was ever visible). Bytes already stored are only
   * hashed. Elsewhere (files written in place), through a session as any upload.
   */
  async putWhole(name: string, digest: ParsedDigest, chunk: Chunk): Promise<BlobInfo> {
    if (!this.driver.writersCommitAtomically) {
      const state = await this.create(name);
      return this.complete(name, state.id, digest, chunk).catch(async (error: unknown) => {
        await this.cancel(name, state.id).catch(() => undefined);
        throw error;
      });
    }
    // A Content-Range must describe the whole blob, as for the first chunk of a session.
    chunk = this.checkRange({ offset: 0 }, chunk);
    const hash = newHash(digest.algorithm);
    const known = await this.blobs.statGlobal(digest);
    const writer = known === undefined ? await this.driver.writer(paths.blobData(digest), { size: chunk.length }) : undefined;
    let size: number;
    try {
      size = await this.copyChunk(chunk, writer, hash);
      const actual = `${digest.algorithm}:${hash.digest('hex')}`;
      if (actual !== digest.digest) throw digestInvalid('uploaded content does not match the digest', { expected: digest.digest, actual });
    } catch (error) {
      await writer?.cancel();
      throw error;
    }
    if (writer) {
      // A failure here (a cache update, the commit itself) must not leave the upload open until purged.
      await this.blobs.storeData(digest, size, () => writer.commit()).catch(async (error: unknown) => {
        await writer.cancel().catch(() => undefined);
        throw error;
      });
    }
    // Already stored and garbage collection removes it now: BlobDataGoneError asks the client to push again.
    await this.blobs.link(name, digest);
    return { digest: digest.digest, size };
  }

  /** DELETE: ends the session and removes its data; during another request's chunk, that request removes it. */
  async cancel(name: string, id: string): Promise<void> {
    if (!UUID_PATTERN.test(id)) throw uploadUnknown(id.slice(0, 100));
    for (let attempt = 0; attempt < 3; attempt++) {
      const claim = await this.sessions.claim(name, id);
      if (claim) {
        try {
          return await this.discard(claim.state, { lock: claim.lock });
        } finally {
          await claim.lock.release().catch(() => undefined);
        }
      }
      // Unknown (404 from get), or another request is writing a chunk: end the session under it. Removing the
      // data now would not stop that request: its save would bring the session back without its bytes.
      await this.get(name, id);
      const outcome = await this.sessions.endClaimed(name, id);
      if (outcome === 'retry') continue;
      this.liveHashes.delete(id);
      if (outcome === 'nobody') await this.removeData(name, id);
      return;
    }
    throw uploadBusy(await this.get(name, id));
  }

  private async withClaim<T>(name: string, id: string, action: (claim: SessionClaim) => Promise<T>): Promise<T> {
    if (!UUID_PATTERN.test(id)) throw uploadUnknown(id.slice(0, 100));
    const claim = await this.sessions.claim(name, id);
    // Unknown (404 from get) or another request's (416 with the upload's range).
    if (!claim) throw uploadBusy(await this.get(name, id));
    let failed = false;
    try {
      return await action(claim);
    } catch (error) {
      failed = true;
      throw error;
    } finally {
      await claim.lock.release().catch(() => undefined);
      // Cancelled while this request wrote: its save failed as unknown, or its chunk failed. Either way the
      // cancel left the data to whoever held the claim. Checked after letting go (see endClaimed).
      if (failed && (await this.sessions.load(name, id).catch(() => null)) === undefined) await this.removeData(name, id).catch(() => undefined);
    }
  }

  /**
   * Streams a chunk (if any) into the session's data. `checkpoint` leaves the data open for more chunks
   * and records where to continue; `finish` completes it as one readable object.
   */
  private async write(claim: SessionClaim, chunk: Chunk | undefined, mode: 'checkpoint' | 'finish'): Promise<UploadState> {
    const state = claim.state;
    if (chunk) chunk = this.checkRange(state, chunk);
    const hash = this.hashAt(state);
    // The live hash is about to absorb bytes that may never be committed: forget it until they are.
    this.liveHashes.delete(state.id);
    const writer = await this.driver
      .writer(paths.uploadData(state.name, state.id), {
        resume: state.checkpoint ?? { size: state.offset },
        ...(chunk?.length !== undefined ? { size: chunk.length } : {}),
      })
      .catch((error: unknown) => Promise.reject(sessionGone(error, state)));
    let received = 0;
    let checkpoint: WriterCheckpoint | undefined;
    // A holder that stalled past its lock's expiry (a paused process) may have been taken over: it must not
    // write another byte into data that is someone else's now.
    const stillHolds = () => {
      if (claim.lock.isHeld?.() === false) throw uploadBusy(state);
    };
    try {
      if (chunk) received = await this.copyChunk(chunk, writer, hash, stillHolds);
      stillHolds();
      if (mode === 'finish') await writer.commit();
      else checkpoint = await writer.checkpoint();
    } catch (error) {
      await writer.cancel();
      throw sessionGone(error, state);
    }
    const next: UploadState = {
      ...state,
      offset: state.offset + received,
      // No bytes and no live hash here (a body-less PUT on another process): the saved digest still holds.
      sha256: hash ? hash.copy().digest('hex') : received === 0 ? state.sha256 : undefined,
      checkpoint,
    };
    if (mode === 'checkpoint') {
      await this.sessions.save(next, claim); // cancelled meanwhile: unknown, and withClaim removes the data
      if (hash) this.remember(next.id, next.offset, hash);
    }
    return next;
  }

  /** Content-Range must continue the upload exactly and agree with Content-Length. */
  private checkRange(state: Pick<UploadState, 'offset'>, chunk: Chunk): Chunk {
    if (!chunk.range) return chunk;
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
    return { ...chunk, length: declared };
  }

  /** Streams the chunk into `writer` (or nowhere: only hashed) and checks its length; `beforeWrite` may refuse. */
  private async copyChunk(chunk: Chunk, writer: FileWriter | undefined, hash: Hash | undefined, beforeWrite?: () => void): Promise<number> {
    let received = 0;
    for await (const data of chunk.body) {
      received += data.length;
      if (chunk.length !== undefined && received > chunk.length) break;
      hash?.update(data);
      beforeWrite?.();
      await writer?.write(data);
    }
    if (chunk.length !== undefined && received !== chunk.length) {
      throw new OciError(400, 'SIZE_INVALID', 'chunk length does not match Content-Length or Content-Range', {
        expected: chunk.length,
        received,
      });
    }
    return received;
  }

  /**
   * A running hash of bytes [0, offset), or undefined when this process does not hold one (the previous
   * chunk went to another process, or this one restarted). Then the digest is computed by reading the
   * finished data once at the final PUT: measured cheaper than carrying hash state between processes
   * (see DESIGN.md section 8), and possible on S3, where unfinished multipart data cannot be read.
   */
  private hashAt(state: UploadState): Hash | undefined {
    if (state.offset === 0) return newHash('sha256');
    const live = this.liveHashes.get(state.id);
    return live && live.offset === state.offset ? live.hash : undefined;
  }

  /** The digest of the finished data in `expected`'s algorithm. */
  private async digestOf(state: UploadState, expected: ParsedDigest): Promise<string> {
    if (expected.algorithm === 'sha256' && state.sha256) return `sha256:${state.sha256}`;
    const hash = newHash(expected.algorithm);
    const stream = await this.driver.reader(paths.uploadData(state.name, state.id));
    for await (const data of stream) hash.update(data as Buffer);
    return `${expected.algorithm}:${hash.digest('hex')}`;
  }

  /** Forgets the session and removes its data; `finished` when its data was committed (nothing unfinished is left), `lock` the one held. */
  private async discard(state: UploadState, options: { finished?: boolean; lock?: HeldLock } = {}): Promise<void> {
    this.liveHashes.delete(state.id);
    await this.sessions.remove(state);
    await this.driver.delete(paths.upload(state.name, state.id), { finished: options.finished });
    // A lock file in the directory went with it: releasing it would be one more request for nothing.
    if (this.sessions.locksGoWithSession) options.lock?.abandon?.();
  }

  /** Removes the data of a session that ended without its claim (nothing to forget; a missing one is gone already). */
  private async removeData(name: string, id: string): Promise<void> {
    this.liveHashes.delete(id);
    await this.driver.delete(paths.upload(name, id)).catch((error: unknown) => {
      if (!isNotFound(error)) throw error;
    });
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

/**
 * The session's data was not found: another process finished, cancelled or purged the session while this
 * request held an out-of-date view of it. For the client that is an unknown upload, not a server error.
 */
function sessionGone(error: unknown, state: UploadState): unknown {
  return isNotFound(error) ? uploadUnknown(state.id) : error;
}
