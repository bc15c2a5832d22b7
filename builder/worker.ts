// `dify-registry worker`: a process that only builds, the platforms of its builder.platforms, taking them
// from the `build-<os>-<arch>` queues in Redis. It serves no registry API, only its metrics on
// http.debug.addr when http.debug.prometheus is on (job runs and durations, storage, Redis, the process);
// it reaches the registry at builder.registry (or http.host) to push, and its storage for uploaded
// contexts and the signing keys.
import type { Logger } from 'pino';
import type { Config } from '../server/config.js';
import { BullJobQueue } from '../server/jobs/bullmq-queue.js';
import { startDebugServer } from '../server/metrics/debug-server.js';
import { watchRedis } from '../server/metrics/dependency-metrics.js';
import { instrumentJobQueue } from '../server/metrics/job-metrics.js';
import { collectProcessMetrics } from '../server/metrics/registry.js';
import { scrape } from '../server/metrics/scrape.js';
import { metricsSettings } from '../server/metrics/setup.js';
import { instrumentDriver } from '../server/metrics/storage-metrics.js';
import { LeaseStore } from '../server/registry/leases.js';
import { Registry } from '../server/registry/registry.js';
import { connectRedis } from '../server/state/redis.js';
import { createStorageDriver } from '../storage-drivers/index.js';
import { registryEndpoint } from './registry-access.js';
import { platformQueue } from './request.js';
import { BuildService } from './service.js';

export class WorkerConfigError extends Error {}

export interface RunningWorker {
  close(): Promise<void>;
}

export async function startWorker(config: Config, logger: Logger): Promise<RunningWorker> {
  if (!config.redis) {
    throw new WorkerConfigError('a build worker takes its work from Redis: configure redis.* (without Redis, the registry with builder.enabled builds itself)');
  }
  if (config.builder.platforms.length === 0) throw new WorkerConfigError('builder.platforms is empty: this worker would build nothing');
  const { debug } = metricsSettings(config);
  if (debug) collectProcessMetrics();
  const driver = debug ? instrumentDriver(await createStorageDriver(config)) : await createStorageDriver(config);
  const shared = connectRedis(config.redis, logger);
  const unwatchRedis = debug ? watchRedis(shared) : undefined;
  // Instrumented as the registry's queue is: job lines carry the job id, and runs are measured here.
  const jobsLogger = logger.child({ component: 'jobs' });
  const queue = instrumentJobQueue(new BullJobQueue(shared, { logger: jobsLogger }), jobsLogger);
  // Reads what it pushed (sizes, digests for leases); never writes tags or manifests itself.
  const registry = new Registry(driver, { deleteEnabled: false });
  const builds = new BuildService(config, { driver, registry, queue, leases: new LeaseStore(driver), shared, logger: logger.child({ component: 'builder' }) });
  builds.registerPlatforms();
  await queue.start();
  const stopDebug = debug ? startDebugServer(debug.addr, debug.path, scrape, logger) : undefined;
  logger.info(
    { platforms: config.builder.platforms, queues: config.builder.platforms.map(platformQueue), registry: registryEndpoint(config).url },
    'build worker started',
  );
  return {
    async close() {
      await queue.close();
      unwatchRedis?.();
      await stopDebug?.();
      await shared.close();
    },
  };
}
