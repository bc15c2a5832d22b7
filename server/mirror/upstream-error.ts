// Typed failures of upstream requests: the mirror job and pull-through decide from `retryable` and
// `status` whether to try again, serve a stored copy, or fail with a clear message.

/**
 * The OCI error code from the upstream's body (MANIFEST_UNKNOWN, TOOMANYREQUESTS, ...), `HTTP_<status>`
 * when the body had none, or ours: NETWORK, TIMEOUT, DIGEST_MISMATCH, SIZE_MISMATCH, INVALID_RESPONSE,
 * UNAUTHORIZED (a challenge we cannot answer).
 */
export type UpstreamErrorCode = string;

export interface UpstreamErrorOptions {
  /** HTTP status; 0 when there was no answer (connection refused, dropped, timed out). */
  status: number;
  code: UpstreamErrorCode;
  retryable: boolean;
  /** What was asked, e.g. `GET https://host/v2/library/nginx/manifests/latest`. */
  request?: string;
  /** From `Retry-After`, when the upstream sent one. */
  retryAfterMs?: number;
  detail?: unknown;
  cause?: unknown;
}

export class UpstreamError extends Error {
  override readonly name = 'UpstreamError';
  readonly status: number;
  readonly code: UpstreamErrorCode;
  readonly retryable: boolean;
  readonly request?: string;
  readonly retryAfterMs?: number;
  readonly detail?: unknown;

  constructor(message: string, options: UpstreamErrorOptions) {
    super(options.request ? `${options.request}: ${message}` : message, options.cause !== undefined ? { cause: options.cause } : undefined);
    this.status = options.status;
    this.code = options.code;
    this.retryable = options.retryable;
    this.request = options.request;
    this.retryAfterMs = options.retryAfterMs;
    this.detail = options.detail;
  }
}

export function isUpstreamError(error: unknown): error is UpstreamError {
  return error instanceof UpstreamError;
}

/** A 404 for the manifest, blob or repository asked for. */
export function isNotFound(error: unknown): boolean {
  return error instanceof UpstreamError && error.status === 404;
}

// Connection-level failures worth another attempt: resets, refusals while an upstream restarts,
// "socket hang up" (ECONNRESET), a body cut short ("aborted", premature close).
const RETRYABLE_NETWORK_CODES = new Set([
  'ECONNRESET', 'ECONNREFUSED', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN', 'ENETUNREACH', 'EHOSTUNREACH',
  'ENETDOWN', 'EHOSTDOWN', 'ERR_STREAM_PREMATURE_CLOSE', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED',
]);

export function isRetryableNetworkError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && RETRYABLE_NETWORK_CODES.has(code)) return true;
  const message = (error as { message?: unknown } | null)?.message;
  return typeof message === 'string' && /socket hang up|aborted|premature close/i.test(message);
}

/** Wraps a socket or stream error into an UpstreamError, keeping abort errors as they are. */
export function networkError(error: unknown, request: string): Error {
  if (error instanceof UpstreamError) return error;
  if ((error as { name?: string } | null)?.name === 'AbortError') return error as Error;
  const err = error as NodeJS.ErrnoException;
  return new UpstreamError(err?.message ?? String(error), {
    status: 0,
    code: 'NETWORK',
    retryable: isRetryableNetworkError(error),
    request,
    detail: err?.code !== undefined ? { code: err.code } : undefined,
    cause: error,
  });
}

/** `{"errors":[{"code":"MANIFEST_UNKNOWN","message":...}]}` -> its first code and message. */
export function parseOciErrorBody(body: Buffer | string): { code?: string; message?: string; detail?: unknown } {
  try {
    const parsed = JSON.parse(typeof body === 'string' ? body : body.toString('utf8')) as { errors?: Array<{ code?: unknown; message?: unknown; detail?: unknown }> };
    const first = Array.isArray(parsed.errors) ? parsed.errors[0] : undefined;
    if (!first) return {};
    return {
      code: typeof first.code === 'string' ? first.code : undefined,
      message: typeof first.message === 'string' ? first.message : undefined,
      detail: first.detail,
    };
  } catch {
    return {};
  }
}
