// A blob body that verifies itself: it hashes every byte it passes on and fails at the end when the
// size or the digest is wrong. A connection lost in the middle (reset, stall, body cut short) is
// resumed from the bytes already passed on with a Range request; an upstream that ignores Range
// answers 200 and the bytes already sent are skipped. Nothing is buffered beyond the stream's
// high-water mark: the reader's pace pauses the socket.
import { Readable } from 'node:stream';
import type { Hash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { newHash, type Algorithm } from '../registry/digest.js';
import { abortReason, backoffDelay, sleep, type RetryEvent, type RetryPolicy } from './retry.js';
import { networkError, UpstreamError } from './upstream-error.js';
import { timeoutError } from './http-exchange.js';

const HIGH_WATER_MARK = 1024 * 1024;

export interface BlobBody {
  body: IncomingMessage;
  /** Bytes of the body to drop before passing any on (a 200 where a 206 was asked for). */
  skip: number;
  request: string;
}

export interface VerifyingBlobOptions {
  digest: string;
  algorithm: Algorithm;
  hex: string;
  size: number;
  first: BlobBody;
  /** Opens the blob again from byte `offset` (with Range), retries of the request itself included. */
  reopen: (offset: number, signal?: AbortSignal) => Promise<BlobBody>;
  retry: RetryPolicy;
  idleTimeoutMs: number;
  signal?: AbortSignal;
  onRetry?: (event: RetryEvent) => void;
  /** Each resumption, for tests and logs. */
  onResume?: (offset: number) => void;
}

export class VerifyingBlobStream extends Readable {
  private readonly hash: Hash;
  private received = 0;
  private source?: IncomingMessage;
  private skip = 0;
  private request: string;
  private idle?: NodeJS.Timeout;
  private lastActivity = 0;
  /** Failures since the last byte arrived, and resumptions in all: both bounded. */
  private failures = 0;
  private resumes = 0;
  private reopening = false;
  private readonly onAbort = () => this.destroy(abortReason(this.options.signal!));

  constructor(private readonly options: VerifyingBlobOptions) {
    // A deeper buffer than the 16 KiB default: fewer pauses of the socket on fast links.
    super({ highWaterMark: HIGH_WATER_MARK });
    this.hash = newHash(options.algorithm);
    this.request = options.first.request;
    options.signal?.addEventListener('abort', this.onAbort, { once: true });
    this.attach(options.first);
  }

  /** Bytes passed on so far. */
  get bytesReceived(): number {
    return this.received;
  }

  override _read(): void {
    if (!this.source || this.reopening) return;
    this.source.resume();
    this.armIdle();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.disarmIdle();
    this.options.signal?.removeEventListener('abort', this.onAbort);
    this.detach();
    callback(error);
  }

  private attach(body: BlobBody): void {
    const source = body.body;
    this.source = source;
    this.skip = body.skip;
    this.request = body.request;
    source.pause();
    source.on('data', (chunk: Buffer) => this.onData(source, chunk));
    source.once('end', () => { if (this.source === source) this.onEnd(); });
    source.on('error', (error) => { if (this.source === source) this.fail(networkError(error, this.request)); });
    source.once('close', () => {
      if (this.source === source && !source.complete) this.fail(premature(this.request, this.received, this.options.size));
    });
    // After a resumption the reader may be waiting already: its _read came while there was no source.
    if (this.readableLength < this.readableHighWaterMark) this._read();
  }

  private detach(): void {
    const source = this.source;
    this.source = undefined;
    if (source) {
      source.removeAllListeners('data');
      // Keep an error listener: a late socket error must not crash the process.
      source.on('error', () => undefined);
      source.destroy();
    }
  }

  private onData(source: IncomingMessage, chunk: Buffer): void {
    if (this.source !== source) return;
    if (this.skip > 0) {
      const dropped = Math.min(this.skip, chunk.length);
      this.skip -= dropped;
      chunk = chunk.subarray(dropped);
      if (chunk.length === 0) { this.armIdle(); return; }
    }
    if (this.received + chunk.length > this.options.size) {
      this.fatal(new UpstreamError(`blob ${this.options.digest} is longer than its ${this.options.size} bytes`, {
        status: 200, code: 'SIZE_MISMATCH', retryable: true, request: this.request,
      }));
      return;
    }
    this.received += chunk.length;
    this.hash.update(chunk);
    this.failures = 0;
    if (this.push(chunk)) this.armIdle();
    else { source.pause(); this.disarmIdle(); }
  }

  private onEnd(): void {
    this.disarmIdle();
    if (this.received < this.options.size) {
      this.fail(premature(this.request, this.received, this.options.size));
      return;
    }
    const hex = this.hash.digest('hex');
    this.source = undefined;
    if (hex !== this.options.hex) {
      // The whole blob came and it is not what was asked for: a retry of the whole fetch may help
      // (a proxy that corrupted it), a resumption cannot.
      this.destroy(new UpstreamError(`blob content does not match its digest ${this.options.digest} (got ${this.options.algorithm}:${hex})`, {
        status: 200, code: 'DIGEST_MISMATCH', retryable: true, request: this.request,
      }));
      return;
    }
    this.options.signal?.removeEventListener('abort', this.onAbort);
    this.push(null);
  }

  /** A lost connection: resume when the error allows it and attempts remain. */
  private fail(error: Error): void {
    if (this.destroyed || this.reopening) return;
    this.disarmIdle();
    this.detach();
    const retryable = error instanceof UpstreamError && error.retryable;
    this.failures++;
    // Progress resets `failures`; the total bound stops an upstream that drops every connection after a few bytes.
    const exhausted = this.failures >= this.options.retry.attempts || this.resumes >= this.options.retry.attempts * 4;
    if (!retryable || exhausted || this.options.signal?.aborted) {
      this.fatal(error);
      return;
    }
    const delayMs = backoffDelay(this.options.retry, this.failures);
    this.options.onRetry?.({ attempt: this.failures, delayMs, error: error as UpstreamError });
    this.reopening = true;
    this.resumes++;
    void (async () => {
      try {
        await sleep(delayMs, this.options.signal);
        const offset = this.received;
        const body = await this.options.reopen(offset, this.options.signal);
        this.reopening = false;
        if (this.destroyed) { body.body.destroy(); return; }
        this.options.onResume?.(offset);
        this.attach(body);
      } catch (reopenError) {
        this.reopening = false;
        this.fatal(reopenError as Error);
      }
    })();
  }

  private fatal(error: Error): void {
    this.disarmIdle();
    this.detach();
    this.destroy(error);
  }

  /** Starts (or keeps) the idle clock; one timer per stall, not one per chunk. */
  private armIdle(): void {
    this.lastActivity = Date.now();
    if (this.idle) return;
    const check = () => {
      const quiet = Date.now() - this.lastActivity;
      if (quiet < this.options.idleTimeoutMs) {
        this.idle = setTimeout(check, this.options.idleTimeoutMs - quiet);
        return;
      }
      this.idle = undefined;
      this.fail(timeoutError(`blob body idle for ${this.options.idleTimeoutMs} ms`, this.request));
    };
    this.idle = setTimeout(check, this.options.idleTimeoutMs);
  }

  private disarmIdle(): void {
    if (this.idle) { clearTimeout(this.idle); this.idle = undefined; }
  }
}

function premature(request: string, received: number, size: number): UpstreamError {
  return new UpstreamError(`connection closed after ${received} of ${size} bytes`, { status: 200, code: 'NETWORK', retryable: true, request });
}
