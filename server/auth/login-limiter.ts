// Failed logins are limited per user and address: after `limit` failures in `windowMs`, further attempts
// are refused until the window has passed. In memory here (one process); redis-login-limiter.ts shares the
// count between replicas, so a password guesser cannot multiply its attempts by the number of replicas.
export interface LoginLimiter {
  /** Milliseconds until `user` from `address` may try again, or 0. */
  retryAfter(user: string, address: string): Promise<number>;
  recordFailure(user: string, address: string): Promise<void>;
  recordSuccess(user: string, address: string): Promise<void>;
}

export const LOGIN_FAILURE_LIMIT = 5;
export const LOGIN_FAILURE_WINDOW_MS = 60_000;

export class MemoryLoginLimiter implements LoginLimiter {
  private readonly failures = new Map<string, number[]>();

  constructor(
    private readonly limit = LOGIN_FAILURE_LIMIT,
    private readonly windowMs = LOGIN_FAILURE_WINDOW_MS,
    private readonly now = Date.now,
  ) {}

  async retryAfter(user: string, address: string): Promise<number> {
    const recent = this.recent(`${user}\n${address}`);
    if (recent.length < this.limit) return 0;
    // Allowed again once enough failures have left the window to drop below the limit.
    return recent[recent.length - this.limit]! + this.windowMs - this.now();
  }

  async recordFailure(user: string, address: string): Promise<void> {
    const key = `${user}\n${address}`;
    this.failures.set(key, [...this.recent(key), this.now()].slice(-this.limit));
    if (this.failures.size > 10_000) this.failures.delete(this.failures.keys().next().value!);
  }

  async recordSuccess(user: string, address: string): Promise<void> {
    this.failures.delete(`${user}\n${address}`);
  }

  private recent(key: string): number[] {
    const cutoff = this.now() - this.windowMs;
    return (this.failures.get(key) ?? []).filter((time) => time > cutoff);
  }
}
