// Backoff, Retry-After and abortable sleeps for upstream requests.
import { UpstreamError } from './upstream-error.js';

export interface RetryPolicy {
  /** Tries in all, the first included (default 5). */
  attempts: number;
  /** The first backoff (default 250 ms); it doubles per attempt, up to maxDelayMs. */
  baseDelayMs: number;
  maxDelayMs: number;
  /**
   * The longest Retry-After honoured by waiting (default 120 s); a longer one fails at once with a
   * retryable error that carries retryAfterMs, so that a job can schedule itself instead of hanging.
   */
  maxRetryAfterMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 5, baseDelayMs: 250, maxDelayMs: 15_000, maxRetryAfterMs: 120_000 };

/** The wait before attempt `attempt + 1` (attempt counts from 1): exponential with equal jitter. */
export function backoffDelay(policy: RetryPolicy, attempt: number, random: () => number = Math.random): number {
  const cap = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.max(0, attempt - 1));
  // Half fixed, half random: never a zero wait, and retries from many clients spread out.
  return Math.round(cap / 2 + random() * (cap / 2));
}

/**
 * `Retry-After` as milliseconds from `now`: delay-seconds (`120`) or an HTTP date
 * (`Wed, 21 Oct 2015 07:28:00 GMT`); a date in the past is 0; anything else is undefined.
 */
export function parseRetryAfter(value: string | string[] | undefined | null, now: number = Date.now()): number | undefined {
  if (Array.isArray(value)) value = value[0];
  if (value === undefined || value === null) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  if (!/[a-z]/i.test(text)) return undefined; // "1.5", "-3": neither form
  const at = Date.parse(text);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - now);
}

/** Resolves after `ms`, or rejects with the signal's reason once it aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) { reject(abortReason(signal)); return; }
    const onAbort = () => { clearTimeout(timer); reject(abortReason(signal!)); };
    const timer = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve(); }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export function abortReason(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof Error) return reason;
  const error = new Error(typeof reason === 'string' ? reason : 'the operation was aborted');
  error.name = 'AbortError';
  return error;
}

export interface RetryEvent {
  attempt: number;
  delayMs: number;
  error: UpstreamError;
}

/**
 * Runs `operation` until it succeeds, throws something not retryable, or the attempts are spent.
 * A Retry-After longer than the policy allows is not waited for.
 */
export async function withRetries<T>(
  policy: RetryPolicy,
  operation: (attempt: number) => Promise<T>,
  options: { signal?: AbortSignal; onRetry?: (event: RetryEvent) => void } = {},
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await operation(attempt);
    } catch (error) {
      if (options.signal?.aborted) throw abortReason(options.signal);
      if (!(error instanceof UpstreamError) || !error.retryable || attempt >= policy.attempts) throw error;
      if (error.retryAfterMs !== undefined && error.retryAfterMs > policy.maxRetryAfterMs) throw error;
      const delayMs = error.retryAfterMs ?? backoffDelay(policy, attempt);
      options.onRetry?.({ attempt, delayMs, error });
      await sleep(delayMs, options.signal);
    }
  }
}
