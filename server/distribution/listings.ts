// Listings: GET /v2/<name>/tags/list, GET /v2/<name>/referrers/<digest>, GET /v2/_catalog
import type Router from '@koa/router';
import type { Registry } from '../registry/registry.js';
import { assertDigest } from '../registry/digest.js';
import { OCI_INDEX } from '../registry/media-types.js';
import { paginate } from '../registry/pagination.js';
import { location, nextLink, pageSize, queryString, repositoryOf, type RouteOptions } from './request.js';

export function listingRoutes(router: Router, registry: Registry, options: RouteOptions): void {
  router.get('/v2/_catalog', async (ctx) => {
    const n = pageSize(ctx);
    const page = paginate(await registry.repositories(), n, queryString(ctx, 'last'));
    if (page.next !== undefined) ctx.set('Link', nextLink(location(options, '/v2/_catalog'), n!, page.next));
    ctx.body = { repositories: page.items };
  });

  router.get('/v2/*name/tags/list', async (ctx) => {
    const name = repositoryOf(ctx);
    const n = pageSize(ctx);
    const page = paginate(await registry.tags.all(name), n, queryString(ctx, 'last'));
    if (page.next !== undefined) ctx.set('Link', nextLink(location(options, `/v2/${name}/tags/list`), n!, page.next));
    ctx.body = { name, tags: page.items };
  });

  router.get('/v2/*name/referrers/:digest', async (ctx) => {
    const name = repositoryOf(ctx);
    const subject = assertDigest(ctx.params.digest);
    let manifests = await registry.referrers.list(name, subject);
    const artifactType = queryString(ctx, 'artifactType');
    if (artifactType !== undefined) {
      manifests = manifests.filter((descriptor) => descriptor.artifactType === artifactType);
      ctx.set('OCI-Filters-Applied', 'artifactType');
    }
    ctx.type = OCI_INDEX;
    ctx.body = { schemaVersion: 2, mediaType: OCI_INDEX, manifests };
  });
}
