// `dify-registry gc [--dry-run] [--config FILE] [--grace-period 1h] [--untagged keep|30d]`: one run in this
// process against the configured storage (and Redis, when configured: its lock, and its descriptor cache
// is told what is deleted). Safe while registries serve the same storage. Prints the report as JSON.
import { parseArgs } from 'node:util';
import { ConfigError, durationMs, loadConfig, type Config } from '../config.js';
import { createStorageDriver } from '../../storage-drivers/index.js';
import { LeaseStore } from '../registry/leases.js';
import { Registry } from '../registry/registry.js';
import { RedisLocks, StorageLocks, type Locks } from '../state/locks.js';
import { connectRedis } from '../state/redis.js';
import { sharedRegistryState } from '../state/shared-registry-state.js';
import { pino } from 'pino';
import { GcBusyError, GcService } from './service.js';

export const GC_USAGE = `usage: dify-registry gc [--dry-run] [--config FILE] [--grace-period 1h] [--untagged keep|30d] [--concurrency N] [--wait 60s]

Collects garbage in the configured storage now, while registries keep serving it: unreferenced manifests,
layer links and blobs (gc.*), tags retention rules expire (retention.rules), abandoned uploads and temporary
files. Prints the report as JSON.

  --dry-run            report what would be deleted; delete nothing
  --grace-period D     keep content younger than D (default gc.graceperiod, 1h)
  --untagged P         keep untagged manifests, or delete those older than P (default gc.untagged)
  --concurrency N      storage operations in flight (default gc.concurrency, 2); more is faster, and slows
                       pulls from the same storage more
  --wait D             wait up to D for a run elsewhere to finish (default 60s)
  --config FILE        the registry's configuration (or REGISTRY_CONFIGURATION_PATH)`;

const DURATION = /^\d+(ms|s|m|h|d)$/;

export async function runGcCommand(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        config: { type: 'string', short: 'c' },
        'dry-run': { type: 'boolean' },
        'grace-period': { type: 'string' },
        untagged: { type: 'string' },
        wait: { type: 'string' },
        concurrency: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (error) {
    console.error(`${(error as Error).message}\n\n${GC_USAGE}`);
    return 2;
  }
  if (values.help) {
    console.log(GC_USAGE);
    return 0;
  }
  for (const key of ['grace-period', 'wait'] as const) {
    const value = values[key];
    if (value !== undefined && !DURATION.test(value)) {
      console.error(`--${key}: expected a duration such as 0s, 30m, 1h or 30d, got ${value}`);
      return 2;
    }
  }
  if (values.untagged !== undefined && values.untagged !== 'keep' && !DURATION.test(values.untagged)) {
    console.error(`--untagged: expected keep or a duration such as 30d, got ${values.untagged}`);
    return 2;
  }
  const concurrency = values.concurrency === undefined ? undefined : Number(values.concurrency);
  if (concurrency !== undefined && !(Number.isInteger(concurrency) && concurrency >= 1 && concurrency <= 64)) {
    console.error(`--concurrency: expected a number from 1 to 64, got ${values.concurrency}`);
    return 2;
  }
  let config: Config;
  try {
    config = loadConfig(values.config ?? process.env.REGISTRY_CONFIGURATION_PATH);
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(error.message);
      return 2;
    }
    throw error;
  }

  // Logs go to stderr: stdout is the report.
  const logger = pino({ level: config.log.level === 'info' ? 'warn' : config.log.level, base: { pid: process.pid } }, pino.destination(2));
  const driver = await createStorageDriver(config);
  const shared = config.redis ? connectRedis(config.redis, logger) : undefined;
  const locks: Locks = shared ? new RedisLocks(shared) : new StorageLocks(driver);
  const registry = new Registry(driver, {
    deleteEnabled: config.storage.delete.enabled,
    shared: shared && sharedRegistryState(shared, driver, {
      uploadTtlMs: durationMs(config.storage.maintenance.uploadpurging.age),
      descriptorCache: config.storage.cache?.blobdescriptor !== 'inmemory',
    }),
  });
  const service = new GcService(config, { driver, registry, leases: new LeaseStore(driver), locks, logger });
  const abort = new AbortController();
  const stop = () => abort.abort(new Error('interrupted'));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    const report = await service.run(
      {
        dryRun: values['dry-run'] ?? undefined,
        gracePeriodMs: values['grace-period'] === undefined ? undefined : durationMs(values['grace-period']),
        untagged: values.untagged === undefined ? undefined : values.untagged === 'keep' ? 'keep' : durationMs(values.untagged),
        concurrency,
      },
      {
        signal: abort.signal,
        log: (line) => process.stderr.write(`${line}\n`),
        waitMs: values.wait === undefined ? 60_000 : durationMs(values.wait),
      },
    );
    console.log(JSON.stringify(report, null, 2));
    return 0;
  } catch (error) {
    if (error instanceof GcBusyError) {
      console.error(`${error.message}; try again later or give --wait`);
      return 1;
    }
    console.error(`garbage collection failed: ${(error as Error).message}`);
    return 1;
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    await shared?.close().catch(() => undefined);
  }
}
