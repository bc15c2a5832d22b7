// What each upstream answered last, from every request the mirror and pull-through made: shown by
// /readyz (as information: an upstream outage never makes this registry unready) and in metrics.
import type { RateLimitState } from './rate-limit.js';

export type UpstreamCondition = 'unknown' | 'up' | 'rate-limited' | 'down';

export interface UpstreamStatus {
  name: string;
  state: UpstreamCondition;
  /** The last HTTP status received. */
  lastStatus?: number;
  lastSuccessAt?: string;
  lastFailureAt?: string;
  lastError?: string;
  /** Failed requests in a row. */
  failures: number;
  rateLimit?: { limit: number; remaining: number; windowSeconds?: number };
}

/** Requests by outcome, growing counters for metrics. */
export interface UpstreamCounts {
  answered: number;
  rateLimited: number;
  failed: number;
}

interface Entry {
  status: UpstreamStatus;
  counts: UpstreamCounts;
}

export class UpstreamHealth {
  private readonly entries = new Map<string, Entry>();

  /** Upstreams known from the config, shown as `unknown` until first used. */
  constructor(names: Iterable<string> = []) {
    for (const name of names) this.entry(name);
  }

  record(name: string, outcome: { status: number } | { error: unknown }, rateLimit?: RateLimitState): void {
    const { status, counts } = this.entry(name);
    const now = new Date().toISOString();
    if ('status' in outcome) {
      status.lastStatus = outcome.status;
      // Any answer below 500 (a 404 or 401 too) shows the upstream is there; 429 and 5xx do not serve us.
      if (outcome.status === 429) {
        status.state = 'rate-limited';
        status.lastFailureAt = now;
        status.lastError = 'HTTP 429';
        status.failures++;
        counts.rateLimited++;
      } else if (outcome.status >= 500) {
        status.state = 'down';
        status.lastFailureAt = now;
        status.lastError = `HTTP ${outcome.status}`;
        status.failures++;
        counts.failed++;
      } else {
        status.state = 'up';
        status.lastSuccessAt = now;
        status.failures = 0;
        counts.answered++;
      }
    } else {
      status.state = 'down';
      status.lastFailureAt = now;
      status.lastError = errorText(outcome.error);
      status.failures++;
      counts.failed++;
    }
    if (rateLimit) status.rateLimit = { limit: rateLimit.limit, remaining: rateLimit.remaining, windowSeconds: rateLimit.windowSeconds };
  }

  statuses(): UpstreamStatus[] {
    return [...this.entries.values()].map((entry) => structuredClone(entry.status));
  }

  counts(): Array<{ name: string; counts: UpstreamCounts }> {
    return [...this.entries.entries()].map(([name, entry]) => ({ name, counts: { ...entry.counts } }));
  }

  private entry(name: string): Entry {
    let entry = this.entries.get(name);
    if (!entry) {
      entry = { status: { name, state: 'unknown', failures: 0 }, counts: { answered: 0, rateLimited: 0, failed: 0 } };
      this.entries.set(name, entry);
    }
    return entry;
  }
}

/** A short reason without URLs' query strings (token realms carry scopes, presigned URLs signatures). */
function errorText(error: unknown): string {
  const message = error instanceof Error ? ((error as NodeJS.ErrnoException).code ?? error.message) : String(error);
  return message.replace(/\?[^\s"']*/g, '?…').slice(0, 200);
}
