// One client and one throttle per named upstream, shared by every mirror job and pull-through request of a
// process, so per-upstream limits hold across all of them.
import type { Logger } from 'pino';
import { UpstreamHealth } from './upstream-health.js';
import { UpstreamThrottle } from './throttle.js';
import { UpstreamClient } from './upstream-client.js';
import type { Upstream } from './upstreams.js';

export interface UpstreamLimits {
  /** Blobs fetched at once from this upstream. */
  concurrency: number;
  /** Bytes per second over all its transfers; 0: unlimited. */
  bandwidth: number;
}

export interface PooledUpstream {
  upstream: Upstream;
  client: UpstreamClient;
  throttle: UpstreamThrottle;
}

export class UpstreamPool {
  private readonly pooled = new Map<string, PooledUpstream>();
  /** Each upstream's last answer, for /readyz and metrics. */
  readonly health: UpstreamHealth;

  constructor(
    readonly upstreams: Map<string, Upstream>,
    private readonly limits: (name: string) => UpstreamLimits,
    private readonly logger: Logger,
  ) {
    this.health = new UpstreamHealth(upstreams.keys());
  }

  get(upstream: Upstream): PooledUpstream {
    let entry = this.pooled.get(upstream.name);
    if (!entry) {
      const limits = this.limits(upstream.name);
      const log = this.logger.child({ upstream: upstream.name });
      const client: UpstreamClient = new UpstreamClient(
        { url: upstream.url, name: upstream.name, ...(upstream.credentials ? { credentials: upstream.credentials } : {}) },
        {
          maxSockets: Math.max(4, limits.concurrency * 2),
          onRetry: (event) => log.warn({ operation: event.operation, attempt: event.attempt, delayMs: event.delayMs, err: String(event.error) }, 'upstream retry'),
          onRateLimit: (state) => log.debug({ rateLimit: state }, 'upstream rate limit'),
          onExchange: (outcome) => this.health.record(upstream.name, outcome, client.rateLimit),
        },
      );
      entry = {
        upstream,
        client,
        throttle: new UpstreamThrottle(limits.concurrency, limits.bandwidth),
      };
      this.pooled.set(upstream.name, entry);
    }
    return entry;
  }

  close(): void {
    for (const entry of this.pooled.values()) entry.client.close();
    this.pooled.clear();
  }
}
