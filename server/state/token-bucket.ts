// Token buckets: each key holds up to `burst` tokens, refilled at `rate` per second; a request takes one.
// With Redis, every replica draws from the same buckets (one atomic script per check, Redis's clock, keys that
// expire once a bucket would be full again, so idle clients cost nothing); without it, a bounded map per process
// (so with http.workers > 1 and no Redis, each worker grants the full budget).
import type { Logger } from 'pino';
import { FailOpen } from './fail-open.js';
import type { SharedState } from './redis.js';
import { RedisScript } from './redis-script.js';

export interface BucketLimit {
  /** Tokens refilled per second. */
  rate: number;
  /** Bucket size: the most requests allowed at once. */
  burst: number;
}

export interface BucketDecision {
  allowed: boolean;
  /** When refused: milliseconds until a token is available. */
  retryAfterMs: number;
}

export interface TokenBuckets {
  take(key: string, limit: BucketLimit): Promise<BucketDecision>;
}

export class MemoryTokenBuckets implements TokenBuckets {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    /** Past this many keys the least recently used go (they come back full: a bounded, forgiving error). */
    private readonly maxKeys = 100_000,
    private readonly now: () => number = Date.now,
  ) {}

  async take(key: string, limit: BucketLimit): Promise<BucketDecision> {
    const now = this.now();
    const bucket = this.buckets.get(key);
    let tokens = bucket ? Math.min(limit.burst, bucket.tokens + (Math.max(0, now - bucket.at) * limit.rate) / 1000) : limit.burst;
    const allowed = tokens >= 1;
    if (allowed) tokens -= 1;
    // Re-inserted so the map's order is least recently used first.
    this.buckets.delete(key);
    this.buckets.set(key, { tokens, at: now });
    while (this.buckets.size > this.maxKeys) this.buckets.delete(this.buckets.keys().next().value!);
    return { allowed, retryAfterMs: allowed ? 0 : Math.ceil(((1 - tokens) * 1000) / limit.rate) };
  }

  get size(): number {
    return this.buckets.size;
  }
}

// Redis's own clock (TIME), so replicas with skewed clocks agree; effects replication makes TIME before
// writes legal on Redis < 7 too (a no-op from 7.0).
const TAKE = new RedisScript(`
if redis.replicate_commands then redis.replicate_commands() end
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(bucket[1])
local at = tonumber(bucket[2])
if tokens == nil or at == nil then
  tokens = burst
else
  tokens = math.min(burst, tokens + math.max(0, now - at) * rate / 1000)
end
local allowed = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return { allowed, wait }
`);

export class RedisTokenBuckets implements TokenBuckets {
  private readonly failOpen: FailOpen;

  constructor(
    private readonly shared: SharedState,
    logger: Logger,
  ) {
    this.failOpen = new FailOpen(shared, logger, 'rate limiting');
  }

  async take(key: string, limit: BucketLimit): Promise<BucketDecision> {
    return this.failOpen.run({ allowed: true, retryAfterMs: 0 }, async () => {
      const reply = (await TAKE.run(this.shared.client, [`${this.shared.prefix}ratelimit:${key}`], [limit.rate, limit.burst])) as [number, number];
      return { allowed: reply[0] === 1, retryAfterMs: reply[1] };
    });
  }
}

/** Buckets in Redis when there is shared state, otherwise in this process. */
export function createTokenBuckets(shared: SharedState | undefined, logger: Logger): TokenBuckets {
  return shared ? new RedisTokenBuckets(shared, logger) : new MemoryTokenBuckets();
}
