// POST /v2/<name>/blobs/uploads/ and GET/PATCH/PUT/DELETE /v2/<name>/blobs/uploads/<id>
import type Router from '@koa/router';
import type { Context } from 'koa';
import type { Registry } from '../registry/registry.js';
import { assertDigest } from '../registry/digest.js';
import { assertValidName } from '../registry/names.js';
import { rangeHeader } from '../registry/errors.js';
import type { UploadState } from '../registry/upload-store.js';
import { chunkOf, emptyBody, hasBody, location, queryString, repositoryOf, type RouteOptions } from './request.js';

/** Clients should send chunks of at least this size (the spec's OCI-Chunk-Min-Length). */
export const CHUNK_MIN_LENGTH = 5 * 1024 * 1024;

export function uploadRoutes(router: Router, registry: Registry, options: RouteOptions): void {
  const blobCreated = (ctx: Context, name: string, digest: string) => {
    ctx.status = 201;
    ctx.set('Location', location(options, `/v2/${name}/blobs/${digest}`));
    ctx.set('Docker-Content-Digest', digest);
    emptyBody(ctx);
  };
  const uploadAccepted = (ctx: Context, state: UploadState, status: 202 | 204) => {
    ctx.status = status;
    ctx.set('Location', location(options, `/v2/${state.name}/blobs/uploads/${state.id}`));
    ctx.set('Docker-Upload-UUID', state.id);
    ctx.set(rangeHeader(state));
    ctx.set('OCI-Chunk-Min-Length', String(CHUNK_MIN_LENGTH));
    emptyBody(ctx);
  };

  router.post('/v2/*name/blobs/uploads/', async (ctx) => {
    const name = repositoryOf(ctx);
    const mount = queryString(ctx, 'mount');
    if (mount !== undefined) {
      const digest = assertDigest(mount);
      const from = queryString(ctx, 'from');
      // Without `from`, the blob may come from any repository: with auth on, only for callers who may read all.
      const mayMount = from !== undefined || ctx.state.mayMountAnywhere !== false;
      const mounted = mayMount ? await registry.blobs.mount(name, digest, from === undefined ? undefined : assertValidName(from)) : undefined;
      if (mounted) return blobCreated(ctx, name, mounted.digest);
      // Not mountable: fall through to a fresh session, as the spec says.
    }
    const monolithic = queryString(ctx, 'digest');
    if (monolithic !== undefined) {
      const blob = await registry.uploads.putWhole(name, assertDigest(monolithic), chunkOf(ctx));
      return blobCreated(ctx, name, blob.digest);
    }
    uploadAccepted(ctx, await registry.uploads.create(name), 202);
  });

  router.get('/v2/*name/blobs/uploads/:id', async (ctx) => {
    const name = repositoryOf(ctx);
    uploadAccepted(ctx, await registry.uploads.get(name, ctx.params.id!), 204);
  });

  router.patch('/v2/*name/blobs/uploads/:id', async (ctx) => {
    const name = repositoryOf(ctx);
    uploadAccepted(ctx, await registry.uploads.append(name, ctx.params.id!, chunkOf(ctx)), 202);
  });

  router.put('/v2/*name/blobs/uploads/:id', async (ctx) => {
    const name = repositoryOf(ctx);
    const digest = assertDigest(queryString(ctx, 'digest'));
    const chunk = hasBody(ctx.req) ? chunkOf(ctx) : undefined;
    const blob = await registry.uploads.complete(name, ctx.params.id!, digest, chunk);
    blobCreated(ctx, name, blob.digest);
  });

  router.delete('/v2/*name/blobs/uploads/:id', async (ctx) => {
    const name = repositoryOf(ctx);
    await registry.uploads.cancel(name, ctx.params.id!);
    ctx.status = 204;
  });
}
