// Composition root: storage, registry domain, HTTP middleware and routes, built from one config.
import Koa from 'koa';
import Router from '@koa/router';
import type { Logger } from 'pino';
import type { Config } from './config.js';
import { durationMs } from './config.js';
import { createStorageDriver } from '../storage-drivers/index.js';
import type { StorageDriver } from '../storage-drivers/driver.js';
import { Registry } from './registry/registry.js';
import { accessLog } from './http/access-log.js';
import { ociErrors } from './http/errors.js';
import { healthRoutes, Readiness } from './http/health.js';
import { loopbackOnly } from './http/loopback-only.js';
import { distributionRouter } from './distribution/routes.js';
import { schedulePurging } from './registry/upload-purger.js';
import { AuthService } from './auth/auth-service.js';
import { tokenRoutes } from './auth/token-routes.js';
import { authorization } from './http/authorization.js';

export interface App {
  koa: Koa;
  registry: Registry;
  readiness: Readiness;
  driver: StorageDriver;
  /** Starts background work (readiness checks, upload purging); returns its stopper. */
  startBackground(): () => void;
}

export async function createApp(config: Config, logger: Logger): Promise<App> {
  const driver = await createStorageDriver(config);
  const registry = new Registry(driver, { deleteEnabled: config.storage.delete.enabled });
  const readiness = new Readiness(
    driver,
    {
      enabled: config.health.storagedriver.enabled,
      intervalMs: durationMs(config.health.storagedriver.interval),
      threshold: config.health.storagedriver.threshold,
    },
    logger,
  );

  const koa = new Koa({ proxy: false });
  koa.silent = true; // errors are logged once, by the access log
  koa.use(accessLog(logger));
  koa.use(staticHeaders(config.http.headers));
  koa.use(ociErrors);

  const ops = new Router();
  healthRoutes(ops, readiness);
  koa.use(ops.routes());

  koa.use(async (ctx, next) => {
    if (ctx.path.startsWith('/v2')) ctx.set('Docker-Distribution-API-Version', 'registry/2.0');
    await next();
  });

  const auth = await AuthService.create(config, driver);
  if (auth) {
    const tokens = new Router();
    tokenRoutes(tokens, auth);
    koa.use(tokens.routes());
    koa.use(authorization(auth));
  } else {
    // Without auth, /admin answers only this machine.
    koa.use(async (ctx, next) => (ctx.path === '/admin' || ctx.path.startsWith('/admin/') ? loopbackOnly(ctx, next) : next()));
  }

  const v2 = distributionRouter(registry, { publicUrl: config.http.host });
  koa.use(v2.routes());
  koa.use(v2.allowedMethods({ throw: true }));

  const startBackground = () => {
    readiness.start();
    const purging = config.storage.maintenance.uploadpurging;
    const stopPurging = purging.enabled
      ? schedulePurging(
          driver,
          { ageMs: durationMs(purging.age), intervalMs: durationMs(purging.interval), dryRun: purging.dryrun },
          logger,
        )
      : () => undefined;
    return () => {
      readiness.stop();
      stopPurging();
    };
  };
  return { koa, registry, readiness, driver, startBackground };
}

function staticHeaders(headers: Record<string, string | string[]>) {
  const entries = Object.entries(headers);
  return async (ctx: Koa.Context, next: Koa.Next) => {
    for (const [name, value] of entries) ctx.set(name, value);
    await next();
  };
}
