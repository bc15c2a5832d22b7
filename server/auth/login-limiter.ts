// Failed logins are limited per user and address: after `limit` failures in `windowMs`, further attempts
// are refused until the window has passed. In memory: per process until shared state arrives with Redis.
export class LoginLimiter {
  private readonly failures = new Map<string, number[]>();

  constructor(
    private readonly limit = 5,
    private readonly windowMs = 60_000,
    private readonly now = Date.now,
  ) {}

  /** Milliseconds until `user` from `address` may try again, or 0. */
  retryAfter(user: string, address: string): number {
    const recent = this.recent(`${user}\n${address}`);
    if (recent.length < this.limit) return 0;
    return recent[0]! + this.windowMs - this.now();
  }

  recordFailure(user: string, address: string): void {
    const key = `${user}\n${address}`;
    this.failures.set(key, [...this.recent(key), this.now()]);
    if (this.failures.size > 10_000) this.failures.delete(this.failures.keys().next().value!);
  }

  recordSuccess(user: string, address: string): void {
    this.failures.delete(`${user}\n${address}`);
  }

  private recent(key: string): number[] {
    const cutoff = this.now() - this.windowMs;
    return (this.failures.get(key) ?? []).filter((time) => time > cutoff);
  }
}
