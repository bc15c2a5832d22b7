// Liveness (/healthz) and readiness (/readyz): storage checked in the background on Distribution's
// health.storagedriver schedule, so probes are cheap and a slow disk never piles up probe requests.
// Other dependencies (Redis, upstreams) add their own checks; each decides whether its failure makes
// this process unready or is reported only. The body lists every check and names the failed ones.
import type Router from '@koa/router';
import type { Logger } from 'pino';
import type { StorageDriver } from '../../storage-drivers/driver.js';

export interface HealthOptions {
  intervalMs: number;
  threshold: number;
  enabled: boolean;
  /** A storage check still running after this long counts as failed (default: the interval, at least 5 s). */
  timeoutMs?: number;
}

export interface CheckReport {
  ok: boolean;
  error?: string;
  /** A failure that makes this process unready; false for checks shown as information only. */
  critical?: boolean;
  [detail: string]: unknown;
}

export interface ReadinessCheck {
  readonly name: string;
  start?(): void;
  stop?(): void;
  report(): CheckReport;
}

export interface ReadinessReport {
  ready: boolean;
  checks: Record<string, CheckReport>;
  /** Checks whose failure makes this process unready. */
  failed: string[];
  /** Checks that failed without making it unready (reported only). */
  degraded: string[];
}

export class Readiness {
  private failures = 0;
  /** When the running storage check began: one at a time, so a hung mount never piles them up. */
  private checkingSince: number | undefined;
  private lastError: string | undefined;
  private shuttingDown = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly checks: ReadinessCheck[] = [];

  constructor(
    private readonly driver: StorageDriver,
    private readonly options: HealthOptions,
    private readonly logger: Logger,
  ) {}

  /** Adds a dependency's check; started and stopped with this. */
  add(check: ReadinessCheck): void {
    this.checks.push(check);
  }

  start(): void {
    for (const check of this.checks) check.start?.();
    if (!this.options.enabled) return;
    this.tick();
    this.timer = setInterval(() => this.tick(), this.options.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    this.shuttingDown = true;
    if (this.timer) clearInterval(this.timer);
    for (const check of this.checks) check.stop?.();
  }

  private tick(): void {
    const timeoutMs = this.options.timeoutMs ?? Math.max(this.options.intervalMs, 5_000);
    if (this.checkingSince === undefined) {
      this.checkingSince = Date.now();
      void this.check().finally(() => (this.checkingSince = undefined));
    } else if (Date.now() - this.checkingSince >= timeoutMs) {
      // A hung storage (a stale NFS mount) never answers: each interval it stays silent is a failure.
      this.failed(new Error(`storage health check has not answered for ${Math.round((Date.now() - this.checkingSince) / 1000)} s`));
    }
  }

  private async check(): Promise<void> {
    try {
      await this.driver.healthCheck();
      if (this.failures >= this.options.threshold) this.logger.info('storage reachable again');
      this.failures = 0;
      this.lastError = undefined;
    } catch (error) {
      this.failed(error as Error);
    }
  }

  private failed(error: Error): void {
    this.failures++;
    this.lastError = error.message;
    if (this.failures === this.options.threshold) this.logger.error({ err: error }, 'storage unreachable');
  }

  report(): ReadinessReport {
    const storageOk = this.failures < this.options.threshold;
    const checks: Record<string, CheckReport> = {
      storage: storageOk ? { ok: true } : { ok: false, critical: true, error: this.lastError },
    };
    for (const check of this.checks) checks[check.name] = check.report();
    checks.shutdown = this.shuttingDown ? { ok: false, critical: true, error: 'shutting down' } : { ok: true };
    const failed: string[] = [];
    const degraded: string[] = [];
    for (const [name, report] of Object.entries(checks)) {
      if (report.ok) continue;
      if (report.critical === false) degraded.push(name);
      else failed.push(name);
    }
    return { ready: failed.length === 0, checks, failed, degraded };
  }
}

export function healthRoutes(router: Router, readiness: Readiness): void {
  router.get('/healthz', (ctx) => {
    ctx.body = { status: 'ok' };
  });
  router.get('/readyz', (ctx) => {
    const report = readiness.report();
    ctx.status = report.ready ? 200 : 503;
    ctx.body = report;
  });
}
