// A writer for a file whose size the caller announced: one PutObject (or, through `put`, one UploadPart)
// whose body is the stream of writes, instead of a multipart upload through part buffers. The bytes flow to S3 as they arrive (no part
// buffer, no wait for a part to fill before it is sent), and S3 costs a single request. The last chunk
// written is held back until commit: until then the request cannot reach its Content-Length, so S3 has
// stored nothing, and cancel (a digest that did not match, a client that went away) aborts it cleanly.
// The price: a failed request cannot be replayed (the bytes are gone), so it fails the write instead of
// being retried; the caller answers 503 and the client pushes again.
import { once } from 'node:events';
import { PassThrough, type Readable } from 'node:stream';
import type { FileWriter, WriterCheckpoint } from './driver.js';

/** Sends one PUT of exactly `length` bytes read from `body`; aborted by `signal`. Its answer is kept. */
export type StreamedPut<R> = (body: Readable, length: number, signal: AbortSignal) => Promise<R>;

export class StreamedPutWriter<R = void> implements FileWriter {
  private readonly body = new PassThrough();
  private readonly aborter = new AbortController();
  private readonly request: Promise<R>;
  /** What the PUT answered, once commit has returned. */
  answer: R | undefined;
  private failure: unknown;
  /** The latest chunk: sent at the next write or at commit. */
  private held: Buffer | undefined;
  private written = 0;
  private done = false;

  constructor(
    private readonly path: string,
    private readonly announced: number,
    put: StreamedPut<R>,
  ) {
    // Failures surface through the request; an error event of the body itself must not go unhandled.
    this.body.on('error', () => undefined);
    this.request = put(this.body, announced, this.aborter.signal);
    // Observed by write, commit and cancel; never an unhandled rejection in between.
    this.request.catch((error: unknown) => void (this.failure ??= error));
  }

  get size(): number {
    return this.written;
  }

  async write(chunk: Buffer): Promise<void> {
    if (this.done) throw new Error(`${this.path}: the writer was already committed or cancelled`);
    if (this.failure) throw this.failure;
    if (this.written + chunk.length > this.announced) throw new Error(`${this.path}: more than the ${this.announced} bytes announced`);
    if (this.held) await this.send(this.held);
    this.held = chunk;
    this.written += chunk.length;
  }

  checkpoint(): Promise<WriterCheckpoint> {
    return Promise.reject(new Error(`${this.path}: a writer of announced size cannot be continued later`));
  }

  async commit(): Promise<void> {
    if (this.done) return;
    if (this.written !== this.announced) {
      await this.cancel();
      throw new Error(`${this.path}: ${this.written} bytes written, ${this.announced} announced`);
    }
    this.done = true;
    if (this.held) await this.send(this.held);
    this.held = undefined;
    this.body.end();
    this.answer = await this.request;
  }

  async cancel(): Promise<void> {
    if (this.done) return;
    this.done = true;
    this.held = undefined;
    this.aborter.abort();
    this.body.destroy();
    await this.request.catch(() => undefined);
  }

  /** Writes into the request body, waiting while the request is behind (or failing with it). */
  private async send(chunk: Buffer): Promise<void> {
    try {
      if (this.body.destroyed) throw new Error(`${this.path}: the request body was closed`);
      if (!this.body.write(chunk)) await Promise.race([once(this.body, 'drain'), this.request.then(() => undefined)]);
    } catch (error) {
      // The request ended early (S3 answered an error, the connection broke): its failure says why.
      await this.request.catch(() => undefined);
      throw this.failure ?? error;
    }
    if (this.failure) throw this.failure;
  }
}
