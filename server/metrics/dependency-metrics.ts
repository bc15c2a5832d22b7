// The state of what the registry depends on, read at scrape time: Redis, upstream registries.
import { Counter, Gauge } from 'prom-client';
import type { UpstreamHealth } from '../mirror/upstream-health.js';
import type { SharedState } from '../state/redis.js';
import { metricsRegistry } from './registry.js';

const redisSources = new Set<SharedState>();
const upstreamSources = new Set<UpstreamHealth>();
/** Registered with the first Redis, so a registry without one has no such series. */
let redisUp: Gauge | undefined;

/** Reports this Redis connection's state; returns the stopper. Without Redis the series is absent. */
export function watchRedis(shared: SharedState): () => void {
  redisUp ??= new Gauge({
    name: 'registry_redis_up',
    help: 'Whether the connection to Redis is ready (1) or not (0); absent without redis.* configured.',
    // Across workers: down if any worker cannot reach it.
    aggregator: 'min',
    registers: [metricsRegistry],
    collect() {
      let up = 1;
      for (const source of redisSources) if (!source.isReady()) up = 0;
      this.set(up);
    },
  });
  redisSources.add(shared);
  return () => redisSources.delete(shared);
}

/** Reports these upstreams' states; returns the stopper. */
export function watchUpstreams(health: UpstreamHealth): () => void {
  upstreamSources.add(health);
  return () => upstreamSources.delete(health);
}

const CONDITIONS = ['unknown', 'up', 'rate-limited', 'down'] as const;

new Gauge({
  name: 'registry_upstream_state',
  help: 'The last answer of each upstream registry: 1 on the series of its state (unknown, up, rate-limited, down).',
  labelNames: ['upstream', 'state'] as const,
  aggregator: 'max',
  registers: [metricsRegistry],
  collect() {
    this.reset();
    for (const health of upstreamSources) {
      for (const status of health.statuses()) {
        for (const state of CONDITIONS) this.set({ upstream: status.name, state }, status.state === state ? 1 : 0);
      }
    }
  },
});

new Gauge({
  name: 'registry_upstream_ratelimit_remaining',
  help: 'Pulls left in the upstream\'s rate-limit window (Docker Hub\'s ratelimit-remaining), when it sends one.',
  labelNames: ['upstream'] as const,
  aggregator: 'min',
  registers: [metricsRegistry],
  collect() {
    this.reset();
    for (const health of upstreamSources) {
      for (const status of health.statuses()) if (status.rateLimit) this.set({ upstream: status.name }, status.rateLimit.remaining);
    }
  },
});

const reported = new Map<string, number>();

new Counter({
  name: 'registry_upstream_requests_total',
  help: 'Requests to upstream registries by outcome (answered, rate_limited, failed: 5xx or network error).',
  labelNames: ['upstream', 'outcome'] as const,
  registers: [metricsRegistry],
  collect() {
    for (const health of upstreamSources) {
      for (const { name, counts } of health.counts()) {
        for (const [outcome, value] of [['answered', counts.answered], ['rate_limited', counts.rateLimited], ['failed', counts.failed]] as const) {
          const key = `${name}\u0000${outcome}`;
          const delta = value - (reported.get(key) ?? 0);
          reported.set(key, value);
          this.inc({ upstream: name, outcome }, Math.max(0, delta));
        }
      }
    }
  },
});
