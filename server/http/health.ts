// Liveness (/healthz) and readiness (/readyz): storage checked in the background on Distribution's
// health.storagedriver schedule, so probes are cheap and a slow disk never piles up probe requests.
import type Router from '@koa/router';
import type { Logger } from 'pino';
import type { StorageDriver } from '../../storage-drivers/driver.js';

export interface HealthOptions {
  intervalMs: number;
  threshold: number;
  enabled: boolean;
}

export class Readiness {
  private failures = 0;
  private lastError: string | undefined;
  private shuttingDown = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly driver: StorageDriver,
    private readonly options: HealthOptions,
    private readonly logger: Logger,
  ) {}

  start(): void {
    if (!this.options.enabled) return;
    void this.check();
    this.timer = setInterval(() => void this.check(), this.options.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    this.shuttingDown = true;
    if (this.timer) clearInterval(this.timer);
  }

  async check(): Promise<void> {
    try {
      await this.driver.healthCheck();
      if (this.failures >= this.options.threshold) this.logger.info('storage reachable again');
      this.failures = 0;
      this.lastError = undefined;
    } catch (error) {
      this.failures++;
      this.lastError = (error as Error).message;
      if (this.failures === this.options.threshold) this.logger.error({ err: error }, 'storage unreachable');
    }
  }

  report(): { ready: boolean; checks: Record<string, { ok: boolean; error?: string }> } {
    const storageOk = this.failures < this.options.threshold;
    return {
      ready: storageOk && !this.shuttingDown,
      checks: {
        storage: storageOk ? { ok: true } : { ok: false, error: this.lastError },
        shutdown: this.shuttingDown ? { ok: false, error: 'shutting down' } : { ok: true },
      },
    };
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
