// S3 driver (AWS SDK v3) for AWS S3 and S3-compatible stores (Ceph RGW, MinIO, OSS, OBS).
// Paths map to keys under `rootdirectory`; "directories" are key prefixes, listed with a delimiter.
import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
  UploadPartCommand,
  UploadPartCopyCommand,
  type S3ClientConfig,
  type ServerSideEncryption,
  type StorageClass,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { BufferPool } from './buffer-pool.js';
import { resendCopy, type ResendCopy } from './s3-resend-copy.js';
import { StreamedPutWriter } from './s3-streamed-put.js';
import {
  assertSafePath,
  InvalidPathError,
  PathNotFoundError,
  StorageUnavailableError,
  type FileInfo,
  type FileWriter,
  type StorageDriver,
  type WriterCheckpoint,
  type WriterOptions,
} from './driver.js';

export interface S3Options {
  bucket: string;
  region: string;
  regionendpoint?: string;
  forcepathstyle: boolean;
  rootdirectory: string;
  accesskey?: string;
  secretkey?: string;
  encrypt: boolean;
  storageclass?: string;
  /** Multipart part size in bytes (at least 5 MiB). */
  chunksize: number;
  checksummode: 'WHEN_SUPPORTED' | 'WHEN_REQUIRED';
  /** Parts of one upload sent in parallel; memory per upload is (uploadconcurrency + 1) * chunksize at most. */
  uploadconcurrency: number;
  redirect: { enabled: boolean; baseurl?: string; expirySeconds: number };
}

const MIN_PART = 5 * 1024 * 1024;
/** CopyObject's limit; larger objects are copied part by part. */
const MAX_SINGLE_COPY = 5 * 1024 * 1024 * 1024;
const COPY_PART = 1024 * 1024 * 1024;
/** PutObject's limit. */
const MAX_SINGLE_PUT = 5 * 1024 * 1024 * 1024;
/** How long healthCheck waits for the bucket to answer, retries included. */
const HEALTH_TIMEOUT_MS = 5_000;

interface Part {
  PartNumber: number;
  ETag: string;
  size: number;
}

/** What a checkpoint of an S3 writer carries, so any process can continue the same multipart upload. */
interface ResumeToken {
  uploadId?: string;
  parts: Part[];
  /** Bytes after the last part (fewer than a part), kept as a small object until the next write. */
  tailKey?: string;
  /** A checkpoint of this file wrote a tail: commit removes the tails (only then, saving a listing). */
  tails?: boolean;
}

export class S3Driver implements StorageDriver {
  readonly name = 's3';
  readonly directoriesArePrefixes = true;
  readonly writersCommitAtomically = true;
  readonly client: S3Client;
  /** For streamed bodies: the SDK must not retry them (it would resend a stream already consumed). */
  private readonly streamingClient: S3Client;
  /** For the health probe: a call with options (its timeout) empties a client's middleware cache. */
  private readonly probeClient: S3Client;
  private readonly presigner: S3Client;
  private readonly prefix: string;
  /** Part buffers of all uploads of this process, reused: 16 concurrent uploads should not mean 16 buffers of garbage per part. */
  readonly partBuffers: BufferPool;

  constructor(private readonly options: S3Options) {
    if (options.chunksize < MIN_PART) throw new Error(`storage.s3.chunksize must be at least ${MIN_PART} bytes`);
    const base: S3ClientConfig = {
      region: options.region,
      forcePathStyle: options.forcepathstyle,
      requestChecksumCalculation: options.checksummode,
      responseChecksumValidation: options.checksummode,
      maxAttempts: 5,
      retryMode: 'standard',
      // An idle timeout, not a total one: a multi-GiB layer may stream for many minutes.
      requestHandler: { connectionTimeout: 5_000, socketTimeout: 60_000 },
      ...(options.accesskey && options.secretkey
        ? { credentials: { accessKeyId: options.accesskey, secretAccessKey: options.secretkey } }
        : {}),
    };
    const endpoint = options.regionendpoint ? { endpoint: options.regionendpoint } : {};
    // cacheMiddleware: the SDK otherwise copies and sorts the whole middleware stack for every request, about
    // a fifth of a small request's CPU here (400 -> 325 us; chunked uploads make several per PATCH). The
    // cache holds while calls pass no options and nobody changes the stack after the first call. Requests of
    // a command type then share one handler context, where the SDK keeps the resolved endpoint and signing
    // scheme: the same for every request of this driver, which talks to one bucket with one identity.
    this.client = new S3Client({ ...base, ...endpoint, cacheMiddleware: true });
    this.streamingClient = new S3Client({ ...base, ...endpoint, maxAttempts: 1 });
    this.probeClient = new S3Client({ ...base, ...endpoint });
    // A build-step middleware (the SDK's own types for it are not exported by client-s3).
    this.client.middlewareStack.add(unsignedPayloads as never, { step: 'build', name: 'unsignedPayloads' });
    // Presigned URLs are signed for the host clients will use (the redirect middleware's baseurl).
    const publicEndpoint = options.redirect.baseurl ?? options.regionendpoint;
    this.presigner = new S3Client({ ...base, ...(publicEndpoint ? { endpoint: publicEndpoint } : {}) });
    this.prefix = options.rootdirectory.replace(/^\/+|\/+$/g, '');
    this.partBuffers = new BufferPool(options.chunksize, 16);
  }

  key(path: string): string {
    // No trailing '/': "/a/" and "/a" are the same path, and "/" is the root directory itself.
    const relative = assertSafePath(path).slice(1).replace(/\/+$/, '');
    return this.prefix && relative ? `${this.prefix}/${relative}` : this.prefix || relative;
  }

  /** The key prefix of everything under the directory `path` ("" for the root of an unprefixed bucket). */
  private dirPrefix(path: string): string {
    const key = this.key(path);
    return key ? `${key}/` : '';
  }

  private pathOf(key: string): string {
    return `/${this.prefix ? key.slice(this.prefix.length + 1) : key}`;
  }

  /** One PUT of a stream: a single attempt, since a consumed stream cannot be sent again. */
  private async putStream(path: string, body: Readable, length: number, signal: AbortSignal): Promise<void> {
    const command = new PutObjectCommand({ ...this.putParams(path), Body: body, ContentLength: length });
    await this.call(path, () => this.streamingClient.send(command, { abortSignal: signal }));
  }

  async getContent(path: string): Promise<Buffer> {
    const response = await this.call(path, (client) => client.send(new GetObjectCommand({ Bucket: this.options.bucket, Key: this.key(path) })));
    return Buffer.from(await response.Body!.transformToByteArray());
  }

  async putContent(path: string, content: Buffer | string): Promise<void> {
    await this.call(path, (client) => client.send(new PutObjectCommand({ ...this.putParams(path), Body: toBuffer(content) })));
  }

  async putContentIfAbsent(path: string, content: Buffer | string): Promise<boolean> {
    try {
      await this.client.send(new PutObjectCommand({ ...this.putParams(path), Body: toBuffer(content), IfNoneMatch: '*' }));
      return true;
    } catch (error) {
      const status = (error as S3ServiceException).$metadata?.httpStatusCode;
      if (status === 412 || status === 409) {
        // Taken. When the SDK sent the request again (the first answer was lost), maybe by this very write:
        // what is stored tells (claims and locks carry a random token).
        if (((error as S3ServiceException).$metadata?.attempts ?? 1) <= 1) return false;
        return (await this.getContent(path).catch(() => undefined))?.equals(toBuffer(content)) === true;
      }
      throw translate(error, path);
    }
  }

  async reader(path: string, offset = 0, length?: number): Promise<Readable> {
    if (length === 0) {
      await this.stat(path); // still report a missing file (and a bad path), as the filesystem driver does
      return Readable.from([]);
    }
    const range = offset > 0 || length !== undefined ? `bytes=${offset}-${length === undefined ? '' : offset + length - 1}` : undefined;
    try {
      const response = await this.client.send(new GetObjectCommand({ Bucket: this.options.bucket, Key: this.key(path), Range: range }));
      return response.Body as Readable;
    } catch (error) {
      // A range starting at or past the end (416) reads nothing, as a file read there does.
      if (range && (error as S3ServiceException).$metadata?.httpStatusCode === 416) return Readable.from([]);
      throw translate(error, path);
    }
  }

  async writer(path: string, options: WriterOptions = {}): Promise<FileWriter> {
    this.key(path); // refuse a bad path now, not at the first part
    const resume = options.resume;
    // Larger than a part and announced: one streamed PUT (smaller files are one buffered, retried PUT anyway).
    if (!resume && options.size !== undefined && options.size > this.partSize && options.size <= MAX_SINGLE_PUT) {
      return new StreamedPutWriter(path, options.size, (body, length, signal) => this.putStream(path, body, length, signal));
    }
    const token: ResumeToken = resume?.token ? (JSON.parse(resume.token) as ResumeToken) : { parts: [] };
    let tail: Buffer = Buffer.alloc(0);
    if (token.tailKey) tail = await this.getContent(this.pathOf(token.tailKey));
    const committed = token.parts.reduce((sum, part) => sum + part.size, 0) + tail.length;
    if (resume && committed !== resume.size) {
      throw new Error(`${path}: checkpoint says ${resume.size} bytes, its parts hold ${committed}`);
    }
    // A whole part announced at a part boundary: streamed as one UploadPart, no part buffer.
    if (resume && tail.length === 0 && options.size !== undefined && options.size >= MIN_PART && options.size <= MAX_SINGLE_PUT) {
      return new StreamedPartWriter(this, path, token, committed, options.size);
    }
    const writer = new S3Writer(this, path, token, committed - tail.length, resume !== undefined);
    // Through write(): a tail checkpointed with a larger chunksize may hold more than one part of ours.
    if (tail.length > 0) await writer.write(tail);
    return writer;
  }

  async stat(path: string, options: { file?: boolean } = {}): Promise<FileInfo> {
    const key = this.key(path);
    try {
      if (key) {
        const head = await this.client.send(new HeadObjectCommand({ Bucket: this.options.bucket, Key: key }));
        return { path, size: head.ContentLength ?? 0, modTime: head.LastModified ?? new Date(0), isDir: false };
      }
    } catch (error) {
      if (!isMissing(error)) throw translate(error, path);
      if (options.file) throw new PathNotFoundError(path);
    }
    const listing = await this.call(path, (client) => client.send(new ListObjectsV2Command({ Bucket: this.options.bucket, Prefix: this.dirPrefix(path), MaxKeys: 1 })));
    if (!listing.KeyCount) throw new PathNotFoundError(path);
    return { path, size: 0, modTime: new Date(0), isDir: true };
  }

  async list(path: string): Promise<string[]> {
    const prefix = this.dirPrefix(path);
    const children: string[] = [];
    let token: string | undefined;
    do {
      const page = await this.call(path, (client) => client.send(new ListObjectsV2Command({ Bucket: this.options.bucket, Prefix: prefix, Delimiter: '/', ContinuationToken: token })));
      for (const dir of page.CommonPrefixes ?? []) children.push(this.pathOf(dir.Prefix!.replace(/\/$/, '')));
      for (const file of page.Contents ?? []) children.push(this.pathOf(file.Key!));
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    if (children.length === 0) throw new PathNotFoundError(path);
    return children;
  }

  async move(source: string, destination: string): Promise<void> {
    await this.copy(source, destination);
    await this.call(source, (client) => client.send(new DeleteObjectCommand({ Bucket: this.options.bucket, Key: this.key(source) })));
  }

  async copy(source: string, destination: string): Promise<void> {
    this.key(destination); // refuse a bad destination before anything happens
    try {
      await this.client.send(new CopyObjectCommand({ ...this.putParams(destination), CopySource: this.copySource(source) }));
    } catch (error) {
      // Larger than CopyObject takes (5 GiB on AWS): part by part. Tried first, as most blobs are smaller.
      if ((error as { name?: string }).name !== 'InvalidRequest') throw translate(error, source);
      const { size } = await this.stat(source, { file: true });
      if (size <= MAX_SINGLE_COPY) throw translate(error, source);
      await this.multipartCopy(source, destination, size);
    }
  }

  /**
   * Deletes the object at `path`, the checkpoint tails of an unfinished file there, and everything under it,
   * and aborts the multipart uploads of all of these.
   */
  async delete(path: string, options: { finished?: boolean } = {}): Promise<void> {
    const key = this.key(path);
    // The object at the key itself goes in the first DeleteObjects batch of the directory's listing.
    await this.deletePrefix(path, this.dirPrefix(path), key ? [key] : []);
    if (options.finished) return;
    if (key) await this.deleteTails(path, key);
    await this.abortMultipartUploads(path, key, (upload) => upload === key || upload.startsWith(this.dirPrefix(path)));
  }

  async deleteFile(path: string): Promise<void> {
    await this.call(path, (client) => client.send(new DeleteObjectCommand({ Bucket: this.options.bucket, Key: this.key(path) })));
  }

  /** DeleteObjects, 1000 keys a request (garbage collection removes thousands of blobs and links at once). */
  async deleteFiles(paths: string[]): Promise<void> {
    for (let i = 0; i < paths.length; i += 1000) {
      const chunk = paths.slice(i, i + 1000);
      const objects = chunk.map((path) => ({ Key: this.key(path) }));
      const result = await this.call(chunk[0]!, (client) => client.send(new DeleteObjectsCommand({ Bucket: this.options.bucket, Delete: { Objects: objects, Quiet: true } })));
      const failed = result.Errors ?? [];
      if (failed.length > 0) {
        throw new StorageUnavailableError(`s3: could not delete ${failed.length} of ${chunk.length} objects: ${failed[0]!.Key}: ${failed[0]!.Code} ${failed[0]!.Message ?? ''}`);
      }
    }
  }

  /** Deletes every object whose key starts with `prefix`, and `alsoKeys` (missing ones are no error). */
  /**
   * The checkpoint tails of the file at `key` (`<key>.tail-<uuid>`), and nothing else under that prefix: a
   * tag `v1.tail-keep` or a repository `app.tail-x` shares it.
   */
  async deleteTails(path: string, key: string): Promise<void> {
    const prefix = tailPrefix(key);
    await this.deletePrefix(path, prefix, [], (candidate) => TAIL_ID.test(candidate.slice(prefix.length)));
  }

  async deletePrefix(path: string, prefix: string, alsoKeys: string[] = [], only: (key: string) => boolean = () => true): Promise<void> {
    let token: string | undefined;
    let extra = alsoKeys.map((Key) => ({ Key }));
    do {
      // A page holds up to 1,000 keys, as many as one DeleteObjects takes: the extra keys ride along only if they fit.
      const page = await this.call(path, (client) => client.send(new ListObjectsV2Command({ Bucket: this.options.bucket, Prefix: prefix, ContinuationToken: token })));
      let keys = (page.Contents ?? []).filter((object) => only(object.Key!)).map((object) => ({ Key: object.Key! }));
      if (keys.length + extra.length <= 1000) {
        keys = [...extra, ...keys];
        extra = [];
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
      if (!token && extra.length > 0) {
        await this.deleteFiles(extra.map(({ Key }) => this.pathOf(Key)));
        extra = [];
      }
      if (keys.length > 0) {
        const result = await this.call(path, (client) => client.send(new DeleteObjectsCommand({ Bucket: this.options.bucket, Delete: { Objects: keys, Quiet: true } })));
        const failed = result.Errors ?? [];
        if (failed.length > 0) {
          throw new StorageUnavailableError(`s3: could not delete ${failed.length} objects under ${path}: ${failed[0]!.Key}: ${failed[0]!.Code} ${failed[0]!.Message ?? ''}`);
        }
      }
    } while (token);
  }

  async abortStaleWriters(path: string, startedBefore: Date): Promise<number> {
    let aborted = 0;
    await this.abortMultipartUploads(path, this.dirPrefix(path), (_key, initiated) => {
      const stale = initiated !== undefined && initiated < startedBefore;
      if (stale) aborted++;
      return stale;
    });
    return aborted;
  }

  async redirectURL(path: string, method: 'GET' | 'HEAD'): Promise<string | undefined> {
    if (!this.options.redirect.enabled) return undefined;
    const input = { Bucket: this.options.bucket, Key: this.key(path) };
    const command = method === 'HEAD' ? new HeadObjectCommand(input) : new GetObjectCommand(input);
    return getSignedUrl(this.presigner, command, { expiresIn: this.options.redirect.expirySeconds });
  }

  async healthCheck(): Promise<void> {
    try {
      // Bounded: a gateway that accepts connections and never answers would otherwise hold the probe (and
      // startup) for maxAttempts x the idle socket timeout (5 minutes).
      await this.probeClient.send(new HeadBucketCommand({ Bucket: this.options.bucket }), { abortSignal: AbortSignal.timeout(HEALTH_TIMEOUT_MS) });
    } catch (error) {
      if ((error as Error).name === 'AbortError' || (error as Error).name === 'TimeoutError') {
        throw new StorageUnavailableError(`s3: no answer from ${this.options.regionendpoint ?? 'S3'} about bucket "${this.options.bucket}" within ${HEALTH_TIMEOUT_MS / 1000} s`, error);
      }
      // HEAD answers carry no error body: say what the status means (a missing bucket is no missing path).
      const status = (error as S3ServiceException).$metadata?.httpStatusCode;
      const bucket = `bucket "${this.options.bucket}"${this.options.regionendpoint ? ` at ${this.options.regionendpoint}` : ''}`;
      if (status === 404) throw new StorageUnavailableError(`s3: ${bucket} does not exist (HTTP 404)`, error);
      if (status === 403 || status === 401) {
        throw new StorageUnavailableError(`s3: access to ${bucket} denied (HTTP ${status}): check accesskey, secretkey and the bucket policy`, error);
      }
      throw translate(error, bucket);
    }
  }

  // Used by the writer.

  putParams(path: string) {
    return {
      Bucket: this.options.bucket,
      Key: this.key(path),
      ...(this.options.encrypt ? { ServerSideEncryption: 'AES256' as ServerSideEncryption } : {}),
      ...(this.options.storageclass ? { StorageClass: this.options.storageclass as StorageClass } : {}),
    };
  }

  get partSize(): number {
    return this.options.chunksize;
  }

  get concurrency(): number {
    return this.options.uploadconcurrency;
  }

  /** Runs one S3 call, translating its failure (missing key -> PathNotFoundError, the rest -> unavailable). */
  async call<T>(path: string, run: (client: S3Client) => Promise<T>): Promise<T> {
    try {
      return await run(this.client);
    } catch (error) {
      throw translate(error, path);
    }
  }

  private copySource(path: string): string {
    return `${this.options.bucket}/${this.key(path).split('/').map(encodeURIComponent).join('/')}`;
  }

  private async multipartCopy(source: string, destination: string, size: number): Promise<void> {
    const uploadId = await this.createUpload(destination);
    try {
      const parts: Part[] = [];
      for (let start = 0, number = 1; start < size; start += COPY_PART, number++) {
        parts.push(await this.copyPart(source, destination, uploadId, number, start, Math.min(size, start + COPY_PART)));
      }
      await this.complete(destination, uploadId, parts);
    } catch (error) {
      await this.abort(destination, uploadId).catch(() => undefined);
      throw error;
    }
  }

  /** Copies bytes [start, end) of `source` into part `number` of `destination`'s multipart upload. */
  async copyPart(source: string, destination: string, uploadId: string, number: number, start: number, end: number): Promise<Part> {
    const copied = await this.call(destination, (client) => client.send(new UploadPartCopyCommand({
        Bucket: this.options.bucket,
        Key: this.key(destination),
        UploadId: uploadId,
        PartNumber: number,
        CopySource: this.copySource(source),
        CopySourceRange: `bytes=${start}-${end - 1}`,
      })));
    return { PartNumber: number, ETag: quoteETag(copied.CopyPartResult?.ETag), size: end - start };
  }

  async createUpload(path: string): Promise<string> {
    const created = await this.call(path, (client) => client.send(new CreateMultipartUploadCommand(this.putParams(path))));
    return created.UploadId!;
  }

  async uploadPart(path: string, uploadId: string, number: number, body: Buffer): Promise<Part> {
    const result = await this.call(path, (client) =>
      client.send(
        new UploadPartCommand({
          Bucket: this.options.bucket,
          Key: this.key(path),
          UploadId: uploadId,
          PartNumber: number,
          Body: body,
          ContentLength: body.length,
        }),
      ),
    );
    return { PartNumber: number, ETag: quoteETag(result.ETag), size: body.length };
  }

  /** Uploads part `number` from a stream of exactly `length` bytes: one attempt (a stream cannot be resent). */
  async uploadPartStream(path: string, uploadId: string, number: number, body: Readable, length: number, signal: AbortSignal): Promise<Part> {
    const command = new UploadPartCommand({ Bucket: this.options.bucket, Key: this.key(path), UploadId: uploadId, PartNumber: number, Body: body, ContentLength: length });
    const result = await this.call(path, () => this.streamingClient.send(command, { abortSignal: signal }));
    return { PartNumber: number, ETag: quoteETag(result.ETag), size: length };
  }

  /** Every part the multipart upload holds, whoever uploaded it. */
  async listParts(path: string, uploadId: string): Promise<Part[]> {
    const parts: Part[] = [];
    let marker: string | undefined;
    do {
      const page = await this.call(path, (client) => client.send(new ListPartsCommand({ Bucket: this.options.bucket, Key: this.key(path), UploadId: uploadId, PartNumberMarker: marker })));
      for (const part of page.Parts ?? []) parts.push({ PartNumber: part.PartNumber!, ETag: quoteETag(part.ETag), size: part.Size ?? 0 });
      marker = page.IsTruncated ? page.NextPartNumberMarker : undefined;
    } while (marker);
    return parts;
  }

  async complete(path: string, uploadId: string, parts: Part[]): Promise<void> {
    try {
      await this.client.send(new CompleteMultipartUploadCommand({
        Bucket: this.options.bucket,
        Key: this.key(path),
        UploadId: uploadId,
        MultipartUpload: { Parts: parts.map(({ PartNumber, ETag }) => ({ PartNumber, ETag })) },
      }));
    } catch (error) {
      // A retry after a lost answer may find the upload already completed (AWS forgets it): the object is there.
      const expected = parts.reduce((sum, part) => sum + part.size, 0);
      if ((error as { name?: string }).name === 'NoSuchUpload' && (await this.stat(path).catch(() => undefined))?.size === expected) return;
      throw translate(error, path);
    }
  }

  async abort(path: string, uploadId: string): Promise<void> {
    await this.call(path, (client) => client.send(new AbortMultipartUploadCommand({ Bucket: this.options.bucket, Key: this.key(path), UploadId: uploadId })));
  }

  private async abortMultipartUploads(path: string, prefix: string, matches: (key: string, initiated?: Date) => boolean): Promise<void> {
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    do {
      const page = await this.call(path, (client) => client.send(new ListMultipartUploadsCommand({ Bucket: this.options.bucket, Prefix: prefix, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker })));
      for (const upload of page.Uploads ?? []) {
        if (!matches(upload.Key!, upload.Initiated)) continue;
        await this.client
          .send(new AbortMultipartUploadCommand({ Bucket: this.options.bucket, Key: upload.Key!, UploadId: upload.UploadId! }))
          .catch(() => undefined); // already completed or aborted by someone else
      }
      keyMarker = page.IsTruncated ? page.NextKeyMarker : undefined;
      uploadIdMarker = page.IsTruncated ? page.NextUploadIdMarker : undefined;
    } while (keyMarker);
  }
}

/**
 * Streams into a multipart upload. Bytes are copied into part-sized buffers (no concatenation copies);
 * at most `uploadconcurrency` parts exist at once, counting the one being filled, so memory per upload
 * is uploadconcurrency x chunksize. A checkpoint keeps the bytes after the last full part as a small tail
 * object, so the next writer (maybe in another process) continues by reading only that tail.
 */
class S3Writer implements FileWriter {
  private part: Buffer | undefined;
  private filled = 0;
  private readonly inFlight = new Set<Promise<void>>();
  private failure: unknown;
  private done = false;
  private checkpointed: WriterCheckpoint | undefined;
  private readonly createdHere: boolean;
  private nextPartNumber: number;

  constructor(
    private readonly driver: S3Driver,
    private readonly path: string,
    private readonly token: ResumeToken,
    private written: number,
    /** Continues a checkpoint: earlier writers may have left tails (and, when they crashed, parts). */
    private readonly resumed: boolean,
  ) {
    this.createdHere = token.uploadId === undefined;
    this.nextPartNumber = Math.max(0, ...token.parts.map((part) => part.PartNumber)) + 1;
  }

  get size(): number {
    return this.written;
  }

  async write(chunk: Buffer): Promise<void> {
    if (this.failure) throw this.failure;
    let offset = 0;
    while (offset < chunk.length) {
      offset += this.append(chunk.subarray(offset));
      if (this.filled === this.driver.partSize) {
        this.startPart();
        // Backpressure: the request body waits while every part slot is taken.
        while (this.inFlight.size >= this.driver.concurrency) await Promise.race(this.inFlight);
        if (this.failure) throw this.failure;
      }
    }
    this.written += chunk.length;
  }

  async checkpoint(): Promise<WriterCheckpoint> {
    if (this.done) {
      if (this.checkpointed) return this.checkpointed;
      throw new Error(`${this.path}: the writer was already committed or cancelled`);
    }
    await this.drain();
    this.done = true;
    const token: ResumeToken = { uploadId: this.token.uploadId, parts: this.token.parts, ...(this.token.tails || this.filled > 0 ? { tails: true } : {}) };
    if (this.filled > 0) {
      // A fresh key per checkpoint: the previous tail stays valid until the caller has saved this one.
      const tailPath = `${this.path}.tail-${randomUUID()}`;
      await this.withPart((body) => this.driver.putContent(tailPath, body));
      token.tailKey = this.driver.key(tailPath);
    }
    this.checkpointed = { size: this.written, token: JSON.stringify(token) };
    return this.checkpointed;
  }

  async commit(): Promise<void> {
    if (this.done) return; // committed, checkpointed or cancelled already: as the filesystem driver, a no-op
    await this.drain();
    this.done = true;
    const uploadId = this.token.uploadId;
    if (uploadId === undefined) {
      // Smaller than a part: one plain PUT.
      await this.withPart((body) => this.driver.putContent(this.path, body));
    } else {
      const ours = new Set(this.token.parts.map((part) => part.PartNumber));
      const foreign = this.createdHere ? [] : (await this.driver.listParts(this.path, uploadId)).filter((part) => !ours.has(part.PartNumber));
      if (foreign.length > 0) {
        await this.completeWithout(uploadId, foreign);
      } else {
        if (this.filled > 0 || this.token.parts.length === 0) this.startPart();
        await this.drain();
        const parts = [...this.token.parts].sort((a, b) => a.PartNumber - b.PartNumber);
        await this.driver.complete(this.path, uploadId, parts);
      }
    }
    // Tails of earlier checkpoints are garbage now that the file is whole. (A writer that crashed after
    // writing a tail, before its checkpoint was saved, leaves one that the flag does not know of: the
    // upload store deletes the session's whole directory, tails included.)
    if (this.resumed && this.token.tails) await this.driver.deleteTails(this.path, this.driver.key(this.path)).catch(() => undefined);
  }

  /**
   * Finishes an upload that also holds `foreign` parts: ones a crashed (or cancelled) writer uploaded beyond
   * the checkpoint this writer continued. AWS S3 drops parts a CompleteMultipartUpload does not list, but
   * Ceph RGW refuses to complete unless it lists every part (InvalidPart). So complete with all of them,
   * then copy our parts (server-side) into a new upload, add the last bytes, and complete that one.
   */
  private async completeWithout(uploadId: string, foreign: Part[]): Promise<void> {
    const ours = [...this.token.parts].sort((a, b) => a.PartNumber - b.PartNumber);
    await this.driver.complete(this.path, uploadId, [...ours, ...foreign].sort((a, b) => a.PartNumber - b.PartNumber));
    const rewrite = await this.driver.createUpload(this.path);
    try {
      const parts: Part[] = [];
      let start = 0;
      for (const part of ours) {
        parts.push(await this.driver.copyPart(this.path, this.path, rewrite, parts.length + 1, start, start + part.size));
        start += part.size;
      }
      if (this.filled > 0 || parts.length === 0) {
        const number = parts.length + 1;
        parts.push(await this.withPart((body) => this.driver.uploadPart(this.path, rewrite, number, body)));
      }
      await this.driver.complete(this.path, rewrite, parts);
    } catch (error) {
      await this.driver.abort(this.path, rewrite).catch(() => undefined);
      throw error;
    }
  }

  async cancel(): Promise<void> {
    if (this.done) return;
    this.done = true;
    await Promise.allSettled(this.inFlight);
    // A resumed upload keeps its earlier parts (its checkpoint still names them); later ones are overwritten on reuse.
    if (this.createdHere && this.token.uploadId) await this.driver.abort(this.path, this.token.uploadId).catch(() => undefined);
  }

  /** Copies as much of `data` as fits into the current part buffer; returns how much. */
  private append(data: Buffer): number {
    this.part ??= this.driver.partBuffers.take();
    const count = Math.min(data.length, this.part.length - this.filled);
    data.copy(this.part, this.filled, 0, count);
    this.filled += count;
    return count;
  }

  /** Hands the filled part to `use`; its buffer returns to the pool once `use` is done with it. */
  private withPart<T>(use: (body: Buffer) => Promise<T>): Promise<T> {
    const buffer = this.part;
    const body = buffer ? buffer.subarray(0, this.filled) : Buffer.alloc(0);
    this.part = undefined;
    this.filled = 0;
    return use(body).finally(() => buffer && this.driver.partBuffers.give(buffer));
  }

  private startPart(): void {
    const number = this.nextPartNumber++;
    const pending = this.withPart((body) => this.uploadPart(number, body)).then(
      (part) => void this.token.parts.push(part),
      (error: unknown) => void (this.failure ??= error),
    );
    const tracked: Promise<void> = pending.finally(() => this.inFlight.delete(tracked));
    this.inFlight.add(tracked);
  }

  private async uploadPart(number: number, body: Buffer): Promise<Part> {
    // Parts may start together: the first creates the multipart upload, the others wait for it.
    return this.driver.uploadPart(this.path, await this.uploadId(), number, body);
  }

  private creating: Promise<string> | undefined;

  private uploadId(): Promise<string> {
    if (this.token.uploadId) return Promise.resolve(this.token.uploadId);
    this.creating ??= this.driver.createUpload(this.path).then((id) => (this.token.uploadId = id));
    return this.creating;
  }

  private async drain(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.race(this.inFlight);
    if (this.failure) throw this.failure;
  }
}

/**
 * Continues a multipart upload with one part streamed from the writes (their number announced, at least
 * 5 MiB, the resume point at a part boundary): the bytes go to S3 as they arrive, with no part buffer to
 * fill and no wait for one. A second copy of them (s3-resend-copy.ts) lets a part S3 refused (throttling,
 * 5xx, a dropped connection) be sent again, with backoff; where no copy could be kept, the part still
 * streams, without that second chance.
 */
class StreamedPartWriter implements FileWriter {
  private readonly part: StreamedPutWriter<Part>;
  private readonly number: number;
  private uploadId: string | undefined;
  private readonly copy: ResendCopy;
  /** Why streaming the part failed; it is then sent again from the copy. */
  private streamFailure: unknown;
  private written = 0;

  constructor(
    private readonly driver: S3Driver,
    private readonly path: string,
    private readonly token: ResumeToken,
    private readonly before: number,
    private readonly length: number,
  ) {
    this.uploadId = token.uploadId;
    this.number = Math.max(0, ...token.parts.map((part) => part.PartNumber)) + 1;
    this.part = new StreamedPutWriter(path, length, async (body, size, signal) => {
      this.uploadId ??= await driver.createUpload(path);
      return driver.uploadPartStream(path, this.uploadId, this.number, body, size, signal);
    });
    this.copy = resendCopy(length, driver.partBuffers);
  }

  get size(): number {
    return this.before + this.written;
  }

  async write(chunk: Buffer): Promise<void> {
    if (this.written + chunk.length > this.length) throw new Error(`${this.path}: more than the ${this.length} bytes announced`);
    const kept = this.copy.add(chunk);
    if (this.streamFailure === undefined) await this.part.write(chunk).catch((error: unknown) => void (this.streamFailure = error));
    await kept;
    this.written += chunk.length;
  }

  async checkpoint(): Promise<WriterCheckpoint> {
    return { size: this.size, token: JSON.stringify(await this.finishPart()) };
  }

  async commit(): Promise<void> {
    // The buffered writer completes an upload that holds every part already (with the checks for parts a
    // crashed writer left): nothing is written through it.
    const token = await this.finishPart();
    await new S3Writer(this.driver, this.path, token, this.size, true).commit();
  }

  async cancel(): Promise<void> {
    await this.part.cancel();
    await this.copy.drop();
    // An upload this writer started is named by no checkpoint: abort it rather than leave it to purging.
    if (this.token.uploadId === undefined && this.uploadId !== undefined) await this.driver.abort(this.path, this.uploadId).catch(() => undefined);
  }

  private async finishPart(): Promise<ResumeToken> {
    if (this.written !== this.length) {
      await this.cancel();
      throw new Error(`${this.path}: ${this.written} bytes written, ${this.length} announced`);
    }
    let part: Part | undefined;
    try {
      if (this.streamFailure === undefined) {
        await this.part.commit().catch((error: unknown) => void (this.streamFailure = error));
        part = this.part.answer;
      }
      for (let attempt = 0; part === undefined; attempt++) {
        const body = this.streamFailure instanceof StorageUnavailableError && attempt < RESEND_ATTEMPTS ? await this.copy.body() : undefined;
        if (!body) throw this.streamFailure;
        await new Promise((resolve) => setTimeout(resolve, RESEND_BACKOFF_MS * 2 ** attempt));
        try {
          this.uploadId ??= await this.driver.createUpload(this.path);
          part = await this.driver.uploadPartStream(this.path, this.uploadId, this.number, body, this.length, new AbortController().signal);
        } catch (error) {
          body.destroy();
          this.streamFailure = error;
        }
      }
    } finally {
      await this.copy.drop();
    }
    return { ...this.token, uploadId: this.uploadId, parts: [...this.token.parts, part] };
  }
}

/** A streamed part S3 refused is sent again from its copy this many times, after 0.2, 0.4, 0.8 s. */
const RESEND_ATTEMPTS = 3;
const RESEND_BACKOFF_MS = 200;

/** Commands whose body is blob data: its SHA-256 for the signature would be a second hash of every byte. */
const DATA_COMMANDS = new Set(['UploadPartCommand', 'PutObjectCommand']);

/**
 * Signs data uploads with UNSIGNED-PAYLOAD instead of the body's SHA-256 (as aws-sdk-go v2 does over HTTPS):
 * the registry already hashed those bytes for their digest, and the payload hash was measured at a fifth of
 * the registry's CPU per pushed byte. The request itself stays signed. Over HTTPS TLS protects the body;
 * over plain HTTP a signed payload would guard writes against tampering on the wire, but reads have no such
 * guard either way, so it would not make an unencrypted link trustworthy.
 */
function unsignedPayloads(next: (args: { request: unknown }) => Promise<unknown>, context: { commandName?: string }) {
  return (args: { request: unknown }) => {
    const request = args.request as { headers?: Record<string, string> };
    if (DATA_COMMANDS.has(context.commandName ?? '') && request.headers) request.headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD';
    return next(args);
  };
}

/** Where the checkpoint tails of the file at `key` live: beside it, so deleting its directory removes them. */
const TAIL_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function tailPrefix(key: string): string {
  return `${key}.tail-`;
}

function toBuffer(content: Buffer | string): Buffer {
  return typeof content === 'string' ? Buffer.from(content) : content;
}

/** Ceph RGW returns copy ETags without quotes; CompleteMultipartUpload wants them quoted. */
function quoteETag(etag: string | undefined): string {
  if (!etag) return '""';
  return etag.startsWith('"') ? etag : `"${etag}"`;
}

function isMissing(error: unknown): boolean {
  const name = (error as { name?: string }).name;
  const status = (error as S3ServiceException).$metadata?.httpStatusCode;
  return name === 'NoSuchKey' || name === 'NotFound' || status === 404;
}

function translate(error: unknown, path: string): Error {
  // Our own errors (a bad path refused by key(), a missing tail) are already what callers expect.
  if (error instanceof InvalidPathError || error instanceof PathNotFoundError || error instanceof StorageUnavailableError) return error;
  if (isMissing(error) && (error as { name?: string }).name !== 'NoSuchBucket') return new PathNotFoundError(path);
  const name = (error as { name?: string }).name ?? 'Error';
  const status = (error as S3ServiceException).$metadata?.httpStatusCode;
  return new StorageUnavailableError(`s3: ${name}${status ? ` (HTTP ${status})` : ''}: ${(error as Error).message}`, error);
}
