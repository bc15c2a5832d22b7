// The /v2 route table. Upload routes come before blob routes: `/blobs/uploads/` must not read as a digest.
import Router from '@koa/router';
import { EXACT_PATHS } from '../http/exact-paths.js';
import type { Registry } from '../registry/registry.js';
import { blobRoutes } from './blobs.js';
import { listingRoutes } from './listings.js';
import { manifestRoutes } from './manifests.js';
import { location, type RouteOptions } from './request.js';
import { uploadRoutes } from './uploads.js';

export function distributionRouter(registry: Registry, options: RouteOptions): Router {
  const router = new Router(EXACT_PATHS);
  router.get('/v2/', (ctx) => {
    ctx.body = {};
  });
  // As Distribution: the version check without its slash is sent to the one with it.
  router.get('/v2', (ctx) => {
    ctx.status = 301;
    ctx.set('Location', location(options, '/v2/'));
    ctx.body = '';
  });
  uploadRoutes(router, registry, options);
  blobRoutes(router, registry);
  manifestRoutes(router, registry, options);
  listingRoutes(router, registry, options);
  return router;
}
