// The admin side of one process: the job queue (BullMQ on Redis, or in-process with state in storage),
// the mirror job and its upstreams, sync rules, and the /admin/v1 routes over them.
import Router from '@koa/router';
import { EXACT_PATHS } from '../http/exact-paths.js';
import type { Logger } from 'pino';
import type { StorageDriver } from '../../storage-drivers/driver.js';
import type { Config } from '../config.js';
import { BullJobQueue } from '../jobs/bullmq-queue.js';
import { LocalJobQueue } from '../jobs/local-queue.js';
import type { JobQueue } from '../jobs/queue.js';
import { instrumentJobQueue } from '../metrics/job-metrics.js';
import { mirrorHandler } from '../mirror/mirror-job.js';
import { SyncRules } from '../mirror/sync-rules.js';
import { UpstreamPool } from '../mirror/upstream-pool.js';
import { resolveUpstreams } from '../mirror/upstreams.js';
import { LeaseStore } from '../registry/leases.js';
import type { Registry } from '../registry/registry.js';
import type { Locks } from '../state/locks.js';
import type { SharedState } from '../state/redis.js';
import { gcJobHandler, gcRoutes } from '../gc/job.js';
import { GcService } from '../gc/service.js';
import { jobRoutes } from './jobs-routes.js';
import { mirrorRoutes } from './mirror-routes.js';
import { BuildService } from '../../builder/service.js';
import { buildRoutes } from './build-routes.js';

export interface AdminDeps {
  driver: StorageDriver;
  registry: Registry;
  locks: Locks;
  shared?: SharedState;
  logger: Logger;
}

export class AdminService {
  readonly queue: JobQueue;
  readonly pool: UpstreamPool;
  readonly leases: LeaseStore;
  readonly sync: SyncRules;
  readonly gc: GcService;
  /** Present when builder.enabled: builds are accepted and assembled here. */
  readonly builds: BuildService | undefined;
  readonly router = new Router(EXACT_PATHS);

  constructor(config: Config, deps: AdminDeps) {
    const logger = deps.logger.child({ component: 'jobs' });
    // Every handler registered below is measured and logs with its job id (server/metrics/job-metrics.ts).
    this.queue = instrumentJobQueue(deps.shared ? new BullJobQueue(deps.shared, { logger }) : new LocalJobQueue(deps.driver, { logger }), logger);
    const limits = new Map(config.mirror.upstreams.map((u) => [u.name, { concurrency: u.concurrency, bandwidth: u.bandwidth }]));
    this.pool = new UpstreamPool(
      resolveUpstreams(config.mirror.upstreams),
      (name) => limits.get(name) ?? { concurrency: 4, bandwidth: 0 },
      deps.logger.child({ component: 'mirror' }),
    );
    this.leases = new LeaseStore(deps.driver);
    this.queue.register('mirror', mirrorHandler({ registry: deps.registry, pool: this.pool, leases: this.leases }), { concurrency: 2 });
    this.sync = new SyncRules(config.mirror.sync, this.queue, deps.locks, deps.driver, logger);
    this.gc = new GcService(config, { driver: deps.driver, registry: deps.registry, leases: this.leases, locks: deps.locks, logger: deps.logger.child({ component: 'gc' }) });
    this.queue.register('gc', gcJobHandler(this.gc));
    const options = { publicUrl: config.http.host };
    jobRoutes(this.router, this.queue, options);
    mirrorRoutes(this.router, this.queue, this.pool.upstreams, this.sync);
    gcRoutes(this.router, this.queue);
    if (config.builder.enabled) {
      this.builds = new BuildService(config, { ...deps, queue: this.queue, leases: this.leases, logger: deps.logger.child({ component: 'builder' }) });
      this.builds.registerServer();
      this.builds.registerPlatforms();
      buildRoutes(this.router, this.builds, deps.driver, config.builder.maxcontextsize);
    }
  }

  /** Runs jobs in this process and schedules sync rules, GC and the build-tag sweep; returns the stopper. */
  async start(): Promise<() => void> {
    await this.queue.start();
    const stopSync = this.sync.schedule();
    const stopGc = this.gc.schedule();
    const stopSweep = this.builds?.scheduleLeftoverSweep();
    return () => {
      stopSync();
      stopGc();
      stopSweep?.();
    };
  }

  async close(): Promise<void> {
    await this.queue.close();
    this.pool.close();
  }
}
