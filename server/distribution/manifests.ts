// GET/HEAD/PUT/DELETE /v2/<name>/manifests/<reference>
import type Router from '@koa/router';
import type { Registry } from '../registry/registry.js';
import { deleteDisabled } from '../registry/errors.js';
import { MAX_MANIFEST_BYTES } from '../registry/manifest.js';
import { emptyBody, location, readBody, repositoryOf, type RouteOptions } from './request.js';

export function manifestRoutes(router: Router, registry: Registry, options: RouteOptions): void {
  router.get('/v2/*name/manifests/:reference', async (ctx) => {
    const name = repositoryOf(ctx);
    const manifest = await registry.manifests.get(name, ctx.params.reference!);
    ctx.set('Docker-Content-Digest', manifest.digest);
    ctx.set('ETag', `"${manifest.digest}"`);
    ctx.type = manifest.mediaType;
    ctx.status = 200; // Koa computes `fresh` only for a successful status
    if (ctx.fresh) {
      ctx.status = 304;
      return;
    }
    ctx.set('Content-Length', String(manifest.bytes.length));
    if (ctx.method !== 'HEAD') ctx.body = manifest.bytes;
  });

  router.put('/v2/*name/manifests/:reference', async (ctx) => {
    const name = repositoryOf(ctx);
    const bytes = await readBody(ctx, MAX_MANIFEST_BYTES);
    const manifest = await registry.manifests.put(name, ctx.params.reference!, bytes, ctx.get('Content-Type') || undefined);
    ctx.status = 201;
    ctx.set('Location', location(options, `/v2/${name}/manifests/${manifest.digest}`));
    ctx.set('Docker-Content-Digest', manifest.digest);
    if (manifest.subject) ctx.set('OCI-Subject', manifest.subject.digest);
    emptyBody(ctx);
  });

  router.delete('/v2/*name/manifests/:reference', async (ctx) => {
    const name = repositoryOf(ctx);
    if (!registry.options.deleteEnabled) throw deleteDisabled('GET, HEAD, PUT');
    await registry.manifests.delete(name, ctx.params.reference!);
    ctx.status = 202;
    emptyBody(ctx);
  });
}
