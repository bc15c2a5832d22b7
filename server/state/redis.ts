// The one Redis connection of a process, built from `redis.*`. Redis holds shared state only (sessions,
// caches, locks, rate limits, queues), never the only copy of content: storage stays the source of truth.
// Commands fail at once while disconnected (no offline queue), so a Redis outage turns into a quick 503
// or a cache miss instead of requests that hang; the client reconnects by itself.
import { Redis, Cluster, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { durationMs } from '../config.js';

export type RedisConfig = NonNullable<Config['redis']>;
export type RedisClient = Redis | Cluster;

/** Raised when shared state is needed and Redis does not answer; leaves as 503 UNAVAILABLE. */
export class SharedStateUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SharedStateUnavailableError';
  }
}

export interface SharedState {
  client: RedisClient;
  /** Prefix of every key of this registry. */
  prefix: string;
  /** True while connected and ready. */
  isReady(): boolean;
  /** A new connection with the same settings (BullMQ workers need blocking connections of their own). */
  duplicate(overrides?: Partial<RedisOptions>): RedisClient;
  close(): Promise<void>;
}

export function connectRedis(config: RedisConfig, logger: Logger): SharedState {
  const options = clientOptions(config);
  const make = (overrides: Partial<RedisOptions> = {}): RedisClient => {
    if (config.cluster) {
      return new Cluster(config.cluster.addrs.map(hostPort), {
        redisOptions: { ...options, ...overrides },
        enableOfflineQueue: overrides.enableOfflineQueue ?? false,
        clusterRetryStrategy: reconnectDelay,
      });
    }
    const base = { ...options, ...overrides };
    return config.url && !config.sentinel ? new Redis(config.url, base) : new Redis(base);
  };
  const client = make();
  let ready = false;
  let lastError = '';
  client.on('ready', () => {
    if (!ready) logger.info('redis connected');
    ready = true;
  });
  client.on('error', (error: Error) => {
    // ioredis reports every failed reconnect; log each distinct problem once.
    if (error.message !== lastError) logger.warn({ err: error.message }, 'redis unavailable');
    lastError = error.message;
  });
  client.on('close', () => {
    if (ready) logger.warn('redis connection lost; reconnecting');
    ready = false;
  });
  return {
    client,
    prefix: config.keyprefix,
    isReady: () => ready && client.status === 'ready',
    duplicate: make,
    async close() {
      await client.quit().catch(() => client.disconnect());
    },
  };
}

function clientOptions(config: RedisConfig): RedisOptions {
  const options: RedisOptions = {
    username: config.username,
    password: config.password,
    db: config.db,
    connectTimeout: durationMs(config.dialtimeout),
    commandTimeout: config.readtimeout ? durationMs(config.readtimeout) : 5_000,
    // Fail fast while disconnected; callers fall back to storage or answer 503.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    retryStrategy: reconnectDelay,
    lazyConnect: false,
    ...(config.tls?.enabled ? { tls: {} } : {}),
  };
  if (config.sentinel) {
    options.sentinels = config.sentinel.addrs.map(hostPort);
    options.name = config.sentinel.name;
    options.sentinelPassword = config.sentinel.password;
  } else if (config.addr && !config.url) {
    Object.assign(options, hostPort(config.addr));
  }
  return options;
}

/** Reconnect forever, backing off to one attempt every 2 s. */
function reconnectDelay(attempt: number): number {
  return Math.min(attempt * 100, 2_000);
}

function hostPort(addr: string): { host: string; port: number } {
  const at = addr.lastIndexOf(':');
  return { host: addr.slice(0, at), port: Number(addr.slice(at + 1)) };
}

/** Runs a Redis command, turning connection failures into SharedStateUnavailableError. */
export async function shared<T>(what: string, command: () => Promise<T>): Promise<T> {
  try {
    return await command();
  } catch (error) {
    throw new SharedStateUnavailableError(`redis: ${what}: ${(error as Error).message}`, { cause: error });
  }
}
