// Composition root: storage, registry domain, HTTP middleware and routes, built from one config.
import Koa from 'koa';
import Router from '@koa/router';
import { EXACT_PATHS } from './http/exact-paths.js';
import type { Logger } from 'pino';
import type { Config } from './config.js';
import { durationMs } from './config.js';
import { createStorageDriver } from '../storage-drivers/index.js';
import type { StorageDriver } from '../storage-drivers/driver.js';
import { Registry } from './registry/registry.js';
import { accessLog, errorLog } from './http/access-log.js';
import { requestId } from './http/request-id.js';
import { observeRequests } from './http/observe.js';
import { ociErrors } from './http/errors.js';
import { healthRoutes, Readiness } from './http/health.js';
import { loopbackOnly } from './http/loopback-only.js';
import { distributionRouter } from './distribution/routes.js';
import { schedulePurging } from './registry/upload-purger.js';
import { AuthService } from './auth/auth-service.js';
import { tokenRoutes } from './auth/token-routes.js';
import { authorization } from './http/authorization.js';
import { connectRedis } from './state/redis.js';
import { RedisLocks, StorageLocks, type Locks } from './state/locks.js';
import { sharedRegistryState } from './state/shared-registry-state.js';
import { AdminService } from './admin/admin-service.js';
import { immutableTagCheck } from './gc/retention.js';
import { PullThroughRules } from './mirror/pullthrough-rules.js';
import { PullThrough } from './mirror/pullthrough.js';
import { namespaceRewrite, pullThrough } from './distribution/pullthrough-middleware.js';
import { clientAddress, TrustedProxies } from './http/client-address.js';
import { rateLimits } from './http/rate-limit.js';
import cluster from 'node:cluster';
import { metricsRoute, metricsSettings, startMetrics } from './metrics/setup.js';
import { httpMetrics } from './metrics/http-metrics.js';
import { instrumentDriver } from './metrics/storage-metrics.js';
import { watchRedis, watchUpstreams } from './metrics/dependency-metrics.js';
import { startDebugServer } from './metrics/debug-server.js';
import { scrape } from './metrics/scrape.js';
import { RedisCheck } from './health/redis-check.js';
import { upstreamsCheck } from './health/upstreams-check.js';
import { Notifier } from './notifications/notifier.js';

export interface App {
  koa: Koa;
  registry: Registry;
  readiness: Readiness;
  driver: StorageDriver;
  /** Starts background work (readiness checks, upload purging); returns its stopper. */
  startBackground(): () => void;
  /** Releases connections (Redis) once requests have drained. */
  close(): Promise<void>;
}

export async function createApp(config: Config, logger: Logger): Promise<App> {
  // With metrics off (http.metrics and http.debug.prometheus), nothing is measured at all.
  const metrics = metricsSettings(config);
  if (metrics.enabled) startMetrics();
  const driver = metrics.enabled ? instrumentDriver(await createStorageDriver(config)) : await createStorageDriver(config);
  const shared = config.redis ? connectRedis(config.redis, logger) : undefined;
  const locks: Locks = shared ? new RedisLocks(shared) : new StorageLocks(driver);
  const purging = config.storage.maintenance.uploadpurging;
  const registry = new Registry(driver, {
    deleteEnabled: config.storage.delete.enabled,
    immutableTag: immutableTagCheck(config.retention.rules),
    shared: shared && sharedRegistryState(shared, driver, {
      // A session idle for longer than the purge age is gone anyway; keep Redis from holding it longer.
      uploadTtlMs: durationMs(purging.age),
      descriptorCache: config.storage.cache?.blobdescriptor !== 'inmemory',
    }),
  });
  const readiness = new Readiness(
    driver,
    {
      enabled: config.health.storagedriver.enabled,
      intervalMs: durationMs(config.health.storagedriver.interval),
      threshold: config.health.storagedriver.threshold,
    },
    logger,
  );
  const redisHealth = config.health.redis ?? { enabled: true, interval: '10s', threshold: 3, readiness: 'partition' as const };
  if (shared && redisHealth.enabled) {
    const options = { intervalMs: durationMs(redisHealth.interval), threshold: redisHealth.threshold, readiness: redisHealth.readiness };
    readiness.add(new RedisCheck(shared, driver, options, logger));
  }
  // What metrics read at scrape time from this app; forgotten when it closes.
  const unwatch: Array<() => void> = [];
  if (shared && metrics.enabled) unwatch.push(watchRedis(shared));

  const koa = new Koa({ proxy: false });
  koa.silent = true; // errors are logged once, by the access log (or the error log when it is off)
  koa.context.bodyIdleMs = durationMs(config.http.bodytimeout);
  koa.use(requestId);
  const observers = [...(metrics.enabled ? [httpMetrics()] : []), config.log.accesslog?.disabled ? errorLog(logger) : accessLog(logger)];
  koa.use(observeRequests(observers));
  // Events are built once the response is decided, and delivered in the background.
  const notifier = Notifier.fromConfig(config, registry, logger);
  if (notifier) koa.use(notifier.middleware());
  koa.use(staticHeaders(config.http.headers));
  koa.use(ociErrors);

  const ops = new Router(EXACT_PATHS);
  healthRoutes(ops, readiness);
  if (metrics.mainPath) metricsRoute(ops, metrics.mainPath, logger);
  koa.use(ops.routes());

  koa.use(async (ctx, next) => {
    if (ctx.path.startsWith('/v2')) ctx.set('Docker-Distribution-API-Version', 'registry/2.0');
    await next();
  });

  // The client behind trusted proxies (ratelimit.trustedproxies): the key of rate and failed-login limits.
  koa.use(clientAddress(new TrustedProxies(config.ratelimit.trustedproxies)));
  // Two limits at two places: per client before authentication, so a flood of bad credentials or tokens
  // cannot buy bcrypt and signature work; per user after authorization, the first point the user is known.
  // Health routes are above both and never limited.
  const limits = rateLimits(config.ratelimit, shared, logger);
  if (limits) koa.use(limits.perClient);

  const admin = new AdminService(config, { driver, registry, locks, shared, logger });
  readiness.add(upstreamsCheck(admin.pool.health));
  if (metrics.enabled) unwatch.push(watchUpstreams(admin.pool.health));
  const pullThroughRules = PullThroughRules.fromConfig(config, admin.pool.upstreams);
  if (pullThroughRules.enabled) koa.use(namespaceRewrite(pullThroughRules));

  const auth = await AuthService.create(config, driver, shared, logger);
  if (auth) {
    const tokens = new Router(EXACT_PATHS);
    tokenRoutes(tokens, auth);
    koa.use(tokens.routes());
    koa.use(authorization(auth));
    if (limits) koa.use(limits.perUser);
  } else {
    // Without auth, /admin answers only this machine.
    koa.use(async (ctx, next) => {
      const lower = ctx.path.toLowerCase();
      return lower === '/admin' || lower.startsWith('/admin/') ? loopbackOnly(ctx, next) : next();
    });
  }

  koa.use(admin.router.routes());
  koa.use(admin.router.allowedMethods());

  if (pullThroughRules.enabled) {
    koa.use(pullThrough(new PullThrough(pullThroughRules, admin.pool, registry, locks, logger.child({ component: 'pull-through' }), durationMs(config.mirror.waitforfetch))));
  }
  const v2 = distributionRouter(registry, { publicUrl: config.http.host });
  koa.use(v2.routes());
  koa.use(v2.allowedMethods());

  let stopSync: (() => void) | undefined;
  const startBackground = () => {
    readiness.start();
    admin.start().then(
      (stop) => (stopSync = stop),
      (error: unknown) => logger.error({ err: error }, 'job queue failed to start'),
    );
    const stopPurging = purging.enabled
      ? schedulePurging(
          driver,
          locks,
          { ageMs: durationMs(purging.age), intervalMs: durationMs(purging.interval), dryRun: purging.dryrun },
          logger,
        )
      : () => undefined;
    // In a cluster, the primary serves http.debug.addr with every worker's metrics (server/metrics/primary.ts).
    const stopDebug = metrics.debug && !cluster.isWorker ? startDebugServer(metrics.debug.addr, metrics.debug.path, scrape, logger) : undefined;
    return () => {
      readiness.stop();
      stopPurging();
      stopSync?.();
      void stopDebug?.();
    };
  };
  const close = async () => {
    for (const stop of unwatch) stop();
    await notifier?.close();
    await admin.close();
    await shared?.close();
  };
  return { koa, registry, readiness, driver, startBackground, close };
}

function staticHeaders(headers: Record<string, string | string[]>) {
  const entries = Object.entries(headers);
  return async (ctx: Koa.Context, next: Koa.Next) => {
    for (const [name, value] of entries) ctx.set(name, value);
    await next();
  };
}
