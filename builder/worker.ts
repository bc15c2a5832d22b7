// `dify-registry worker`: a process that only builds, the platforms of its builder.platforms, taking them
// from the `build-<os>-<arch>` queues in Redis. It serves no HTTP; it reaches the registry at
// builder.registry (or http.host) to push, and its storage for uploaded contexts and the signing keys.
import type { Logger } from 'pino';
import type { Config } from '../server/config.js';
import { BullJobQueue } from '../server/jobs/bullmq-queue.js';
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
  const driver = await createStorageDriver(config);
  const shared = connectRedis(config.redis, logger);
  const queue = new BullJobQueue(shared, { logger: logger.child({ component: 'jobs' }) });
  // Reads what it pushed (sizes, digests for leases); never writes tags or manifests itself.
  const registry = new Registry(driver, { deleteEnabled: false });
  const builds = new BuildService(config, { driver, registry, queue, leases: new LeaseStore(driver), shared, logger: logger.child({ component: 'builder' }) });
  builds.registerPlatforms();
  await queue.start();
  logger.info(
    { platforms: config.builder.platforms, queues: config.builder.platforms.map(platformQueue), registry: registryEndpoint(config).url },
    'build worker started',
  );
  return {
    async close() {
      await queue.close();
      await shared.close();
    },
  };
}
