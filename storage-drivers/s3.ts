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
import {
  assertSafePath,
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
}

export class S3Driver implements StorageDriver {
  readonly name = 's3';
  readonly client: S3Client;
  private readonly presigner: S3Client;
  private readonly prefix: string;

  constructor(private readonly options: S3Options) {
    if (options.chunksize < MIN_PART) throw new Error(`storage.s3.chunksize must be at least ${MIN_PART} bytes`);
    const base: S3ClientConfig = {
      region: options.region,
      forcePathStyle: options.forcepathstyle,
      requestChecksumCalculation: options.checksummode,
      responseChecksumValidation: options.checksummode,
      maxAttempts: 5,
      retryMode: 'standard',
      requestHandler: { connectionTimeout: 5_000, requestTimeout: 120_000 },
      ...(options.accesskey && options.secretkey
        ? { credentials: { accessKeyId: options.accesskey, secretAccessKey: options.secretkey } }
        : {}),
    };
    this.client = new S3Client({ ...base, ...(options.regionendpoint ? { endpoint: options.regionendpoint } : {}) });
    // Presigned URLs are signed for the host clients will use (the redirect middleware's baseurl).
    const publicEndpoint = options.redirect.baseurl ?? options.regionendpoint;
    this.presigner = new S3Client({ ...base, ...(publicEndpoint ? { endpoint: publicEndpoint } : {}) });
    this.prefix = options.rootdirectory.replace(/^\/+|\/+$/g, '');
  }

  key(path: string): string {
    const relative = assertSafePath(path).slice(1);
    return this.prefix ? `${this.prefix}/${relative}` : relative;
  }

  private pathOf(key: string): string {
    return `/${this.prefix ? key.slice(this.prefix.length + 1) : key}`;
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
      if (status === 412 || status === 409) return false;
      throw translate(error, path);
    }
  }

  async reader(path: string, offset = 0, length?: number): Promise<Readable> {
    if (length === 0) return Readable.from([]);
    const range = offset > 0 || length !== undefined ? `bytes=${offset}-${length === undefined ? '' : offset + length - 1}` : undefined;
    const response = await this.call(path, (client) => client.send(new GetObjectCommand({ Bucket: this.options.bucket, Key: this.key(path), Range: range })));
    return response.Body as Readable;
  }

  async writer(path: string, options: WriterOptions = {}): Promise<FileWriter> {
    const resume = options.resume;
    const token: ResumeToken = resume?.token ? (JSON.parse(resume.token) as ResumeToken) : { parts: [] };
    let tail: Buffer = Buffer.alloc(0);
    if (token.tailKey) tail = await this.getContent(this.pathOf(token.tailKey));
    const committed = token.parts.reduce((sum, part) => sum + part.size, 0) + tail.length;
    if (resume && committed !== resume.size) {
      throw new Error(`${path}: checkpoint says ${resume.size} bytes, its parts hold ${committed}`);
    }
    return new S3Writer(this, path, token, tail, committed);
  }

  async stat(path: string): Promise<FileInfo> {
    try {
      const head = await this.client.send(new HeadObjectCommand({ Bucket: this.options.bucket, Key: this.key(path) }));
      return { path, size: head.ContentLength ?? 0, modTime: head.LastModified ?? new Date(0), isDir: false };
    } catch (error) {
      if (!isMissing(error)) throw translate(error, path);
    }
    const listing = await this.call(path, (client) => client.send(new ListObjectsV2Command({ Bucket: this.options.bucket, Prefix: `${this.key(path)}/`, MaxKeys: 1 })));
    if (!listing.KeyCount) throw new PathNotFoundError(path);
    return { path, size: 0, modTime: new Date(0), isDir: true };
  }

  async list(path: string): Promise<string[]> {
    const prefix = `${this.key(path).replace(/\/$/, '')}/`;
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
    const { size } = await this.stat(source);
    if (size <= MAX_SINGLE_COPY) {
      await this.call(source, (client) => client.send(new CopyObjectCommand({ ...this.putParams(destination), CopySource: this.copySource(source) })));
    } else {
      await this.multipartCopy(source, destination, size);
    }
    await this.call(source, (client) => client.send(new DeleteObjectCommand({ Bucket: this.options.bucket, Key: this.key(source) })));
  }

  /** Deletes the object at `path` and everything under it, and aborts multipart uploads under it. */
  async delete(path: string): Promise<void> {
    const key = this.key(path);
    await this.call(path, (client) => client.send(new DeleteObjectCommand({ Bucket: this.options.bucket, Key: key })));
    let token: string | undefined;
    do {
      const page = await this.call(path, (client) => client.send(new ListObjectsV2Command({ Bucket: this.options.bucket, Prefix: `${key}/`, ContinuationToken: token })));
      const keys = (page.Contents ?? []).map((object) => ({ Key: object.Key! }));
      if (keys.length > 0) {
        await this.call(path, (client) => client.send(new DeleteObjectsCommand({ Bucket: this.options.bucket, Delete: { Objects: keys, Quiet: true } })));
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    await this.abortMultipartUploads(path, `${key}/`);
  }

  async redirectURL(path: string, method: 'GET' | 'HEAD'): Promise<string | undefined> {
    if (!this.options.redirect.enabled) return undefined;
    const input = { Bucket: this.options.bucket, Key: this.key(path) };
    const command = method === 'HEAD' ? new HeadObjectCommand(input) : new GetObjectCommand(input);
    return getSignedUrl(this.presigner, command, { expiresIn: this.options.redirect.expirySeconds });
  }

  async healthCheck(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.options.bucket }));
    } catch (error) {
      throw translate(error, `bucket ${this.options.bucket}`);
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
    const created = await this.call(destination, (client) => client.send(new CreateMultipartUploadCommand(this.putParams(destination))));
    const uploadId = created.UploadId!;
    try {
      const parts: Part[] = [];
      for (let start = 0, number = 1; start < size; start += COPY_PART, number++) {
        const end = Math.min(size, start + COPY_PART) - 1;
        const copied = await this.call(destination, (client) => client.send(new UploadPartCopyCommand({
            Bucket: this.options.bucket,
            Key: this.key(destination),
            UploadId: uploadId,
            PartNumber: number,
            CopySource: this.copySource(source),
            CopySourceRange: `bytes=${start}-${end}`,
          })));
        parts.push({ PartNumber: number, ETag: quoteETag(copied.CopyPartResult?.ETag), size: end - start + 1 });
      }
      await this.complete(destination, uploadId, parts);
    } catch (error) {
      await this.abort(destination, uploadId).catch(() => undefined);
      throw error;
    }
  }

  async complete(path: string, uploadId: string, parts: Part[]): Promise<void> {
    await this.call(path, (client) => client.send(new CompleteMultipartUploadCommand({
        Bucket: this.options.bucket,
        Key: this.key(path),
        UploadId: uploadId,
        MultipartUpload: { Parts: parts.map(({ PartNumber, ETag }) => ({ PartNumber, ETag })) },
      })));
  }

  async abort(path: string, uploadId: string): Promise<void> {
    await this.call(path, (client) => client.send(new AbortMultipartUploadCommand({ Bucket: this.options.bucket, Key: this.key(path), UploadId: uploadId })));
  }

  private async abortMultipartUploads(path: string, prefix: string): Promise<void> {
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    do {
      const page = await this.call(path, (client) => client.send(new ListMultipartUploadsCommand({ Bucket: this.options.bucket, Prefix: prefix, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker })));
      for (const upload of page.Uploads ?? []) {
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
  private readonly createdHere: boolean;
  private nextPartNumber: number;

  constructor(
    private readonly driver: S3Driver,
    private readonly path: string,
    private readonly token: ResumeToken,
    tail: Buffer,
    private written: number,
  ) {
    this.createdHere = token.uploadId === undefined;
    this.nextPartNumber = Math.max(0, ...token.parts.map((part) => part.PartNumber)) + 1;
    if (tail.length > 0) this.append(tail);
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
        this.startPart(this.takePart());
        // Backpressure: the request body waits while every part slot is taken.
        while (this.inFlight.size >= this.driver.concurrency) await Promise.race(this.inFlight);
        if (this.failure) throw this.failure;
      }
    }
    this.written += chunk.length;
  }

  async checkpoint(): Promise<WriterCheckpoint> {
    await this.drain();
    this.done = true;
    const token: ResumeToken = { uploadId: this.token.uploadId, parts: this.token.parts };
    if (this.filled > 0) {
      // A fresh key per checkpoint: the previous tail stays valid until the caller has saved this one.
      const tailPath = `${this.path}.tail-${randomUUID()}`;
      await this.driver.putContent(tailPath, this.takePart());
      token.tailKey = this.driver.key(tailPath);
    }
    return { size: this.written, token: JSON.stringify(token) };
  }

  async commit(): Promise<void> {
    await this.drain();
    this.done = true;
    if (this.token.uploadId === undefined) {
      // Smaller than a part: one plain PUT.
      await this.driver.putContent(this.path, this.takePart());
      return;
    }
    if (this.filled > 0 || this.token.parts.length === 0) this.startPart(this.takePart());
    await this.drain();
    const parts = [...this.token.parts].sort((a, b) => a.PartNumber - b.PartNumber);
    await this.driver.complete(this.path, this.token.uploadId, parts);
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
    this.part ??= Buffer.allocUnsafe(this.driver.partSize);
    const count = Math.min(data.length, this.part.length - this.filled);
    data.copy(this.part, this.filled, 0, count);
    this.filled += count;
    return count;
  }

  private takePart(): Buffer {
    const body = this.part ? this.part.subarray(0, this.filled) : Buffer.alloc(0);
    this.part = undefined;
    this.filled = 0;
    return body;
  }

  private startPart(body: Buffer): void {
    const number = this.nextPartNumber++;
    const pending = this.uploadPart(number, body).then(
      (part) => void this.token.parts.push(part),
      (error: unknown) => void (this.failure ??= error),
    );
    const tracked: Promise<void> = pending.finally(() => this.inFlight.delete(tracked));
    this.inFlight.add(tracked);
  }

  private async uploadPart(number: number, body: Buffer): Promise<Part> {
    // Parts may start together: the first creates the multipart upload, the others wait for it.
    const uploadId = await this.uploadId();
    const result = await this.driver.call(this.path, (client) =>
      client.send(
        new UploadPartCommand({
          Bucket: this.driver.putParams(this.path).Bucket,
          Key: this.driver.key(this.path),
          UploadId: uploadId,
          PartNumber: number,
          Body: body,
          ContentLength: body.length,
        }),
      ),
    );
    return { PartNumber: number, ETag: quoteETag(result.ETag), size: body.length };
  }

  private creating: Promise<string> | undefined;

  private uploadId(): Promise<string> {
    if (this.token.uploadId) return Promise.resolve(this.token.uploadId);
    this.creating ??= this.driver
      .call(this.path, (client) => client.send(new CreateMultipartUploadCommand(this.driver.putParams(this.path))))
      .then((created) => (this.token.uploadId = created.UploadId!));
    return this.creating;
  }

  private async drain(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.race(this.inFlight);
    if (this.failure) throw this.failure;
  }
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
  if (isMissing(error) && (error as { name?: string }).name !== 'NoSuchBucket') return new PathNotFoundError(path);
  const name = (error as { name?: string }).name ?? 'Error';
  const status = (error as S3ServiceException).$metadata?.httpStatusCode;
  return new StorageUnavailableError(`s3: ${name}${status ? ` (HTTP ${status})` : ''}: ${(error as Error).message}`, error);
}
