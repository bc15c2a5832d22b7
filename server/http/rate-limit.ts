// Request rate limits (ratelimit.*): a token bucket per client address and one per authenticated user,
// shared by all replicas through Redis when configured. Refusals are 429 TOOMANYREQUESTS with Retry-After.
// Health and metrics endpoints are never limited: a probe refused under load would restart a busy pod.
import type { Context, Next } from 'koa';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { OciError } from '../registry/errors.js';
import type { SharedState } from '../state/redis.js';
import { createTokenBuckets, type BucketLimit, type TokenBuckets } from '../state/token-bucket.js';
import { limitKeyOf } from './client-address.js';

export type RateLimitConfig = Config['ratelimit'];
type Middleware = (ctx: Context, next: Next) => Promise<void>;

export interface RateLimits {
  /** Before authentication: bounds the work an unauthenticated flood can cause (bcrypt, token checks). */
  perClient: Middleware;
  /**
   * After authorization, which names the user (ctx.state.user); anonymous requests pass. /token is not
   * behind it (the user is known only inside the route): logins are bounded per client and by the failed-login limit.
   */
  perUser: Middleware;
}

const UNLIMITED_PATHS = new Set(['/healthz', '/readyz', '/metrics']);

/** The two middlewares, or undefined when ratelimit.enabled is off. */
export function rateLimits(
  config: RateLimitConfig,
  shared: SharedState | undefined,
  logger: Logger,
  buckets: TokenBuckets = createTokenBuckets(shared, logger),
): RateLimits | undefined {
  if (!config.enabled) return undefined;
  const limiter = (kind: 'client' | 'user', limit: BucketLimit, keyOf: (ctx: Context) => string | undefined): Middleware =>
    async function rateLimit(ctx, next) {
      const id = UNLIMITED_PATHS.has(ctx.path) ? undefined : keyOf(ctx);
      if (id !== undefined) {
        const decision = await buckets.take(`${kind}:${id}`, limit);
        if (!decision.allowed) throw tooManyRequests(kind, decision.retryAfterMs);
      }
      await next();
    };
  return {
    perClient: limiter('client', config.perclient, limitKeyOf),
    perUser: limiter('user', config.peruser, (ctx) => (ctx.state.user as string | undefined) || undefined),
  };
}

function tooManyRequests(kind: 'client' | 'user', retryAfterMs: number): OciError {
  const seconds = Math.max(1, Math.ceil(retryAfterMs / 1000));
  return new OciError(
    429,
    'TOOMANYREQUESTS',
    kind === 'client' ? 'too many requests from this address; slow down' : 'too many requests for this user; slow down',
    { limit: kind, retryAfter: seconds },
    { 'Retry-After': String(seconds) },
  );
}
