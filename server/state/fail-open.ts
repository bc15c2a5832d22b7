// Limits (request rates, failed logins) must never take pulls down with Redis: while Redis does not answer,
// they let everything through. The outage is logged once when it starts and once when it ends, not per request.
import type { Logger } from 'pino';
import type { SharedState } from './redis.js';

export class FailOpen {
  private down = false;

  constructor(
    private readonly shared: SharedState,
    private readonly logger: Logger,
    /** What is suspended, for the log: "rate limiting", "failed-login limiting". */
    private readonly what: string,
  ) {}

  /** Runs `command` against Redis; on any failure (or while disconnected) answers `fallback`. */
  async run<T>(fallback: T, command: () => Promise<T>): Promise<T> {
    // While disconnected, do not even try: commands would only fail (no offline queue).
    if (!this.shared.isReady()) return this.failed(fallback, new Error('not connected'));
    let result: T;
    try {
      result = await command();
    } catch (error) {
      return this.failed(fallback, error);
    }
    if (this.down) this.logger.info(`${this.what} resumed: redis reachable again`);
    this.down = false;
    return result;
  }

  private failed<T>(fallback: T, error: unknown): T {
    if (!this.down) this.logger.warn({ err: (error as Error).message }, `${this.what} suspended (failing open): redis unavailable`);
    this.down = true;
    return fallback;
  }
}
