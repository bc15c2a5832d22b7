// The failed-login limit shared by all replicas: one sorted set of failure times (Redis's clock) per user and
// address, trimmed to the window and to `limit` entries, expiring with the window. Redis down: logins are not
// limited (fail open, logged once), because refusing every login would be worse than a short unlimited spell.
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { FailOpen } from '../state/fail-open.js';
import type { SharedState } from '../state/redis.js';
import { RedisScript } from '../state/redis-script.js';
import { LOGIN_FAILURE_LIMIT, LOGIN_FAILURE_WINDOW_MS, type LoginLimiter } from './login-limiter.js';

const NOW = `
if redis.replicate_commands then redis.replicate_commands() end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
`;

/** Milliseconds until the count of failures in the window drops below the limit, or 0. */
const RETRY_AFTER = new RedisScript(`${NOW}
local count = redis.call('ZCARD', KEYS[1])
if count < limit then return 0 end
local oldest = redis.call('ZRANGE', KEYS[1], count - limit, count - limit, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window - now)
`);

const RECORD_FAILURE = new RedisScript(`${NOW}
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -limit - 1)
redis.call('PEXPIRE', KEYS[1], window)
return 0
`);

export class RedisLoginLimiter implements LoginLimiter {
  private readonly failOpen: FailOpen;

  constructor(
    private readonly shared: SharedState,
    logger: Logger,
    private readonly limit = LOGIN_FAILURE_LIMIT,
    private readonly windowMs = LOGIN_FAILURE_WINDOW_MS,
  ) {
    this.failOpen = new FailOpen(shared, logger, 'failed-login limiting');
  }

  async retryAfter(user: string, address: string): Promise<number> {
    return this.failOpen.run(0, async () => Number(await RETRY_AFTER.run(this.shared.client, [this.key(user, address)], [this.windowMs, this.limit])));
  }

  async recordFailure(user: string, address: string): Promise<void> {
    await this.failOpen.run(undefined, async () => {
      // A unique member: two failures in the same millisecond both count.
      await RECORD_FAILURE.run(this.shared.client, [this.key(user, address)], [this.windowMs, this.limit, randomUUID()]);
    });
  }

  async recordSuccess(user: string, address: string): Promise<void> {
    await this.failOpen.run(undefined, async () => {
      await this.shared.client.del(this.key(user, address));
    });
  }

  /** The user name encoded, so `ab` from `c` and `a` from `bc` never share a key. */
  private key(user: string, address: string): string {
    return `${this.shared.prefix}login:${encodeURIComponent(user)}@${address}`;
  }
}
