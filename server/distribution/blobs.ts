// GET/HEAD/DELETE /v2/<name>/blobs/<digest>
import type Router from '@koa/router';
import type { Context } from 'koa';
import type { Registry } from '../registry/registry.js';
import { assertDigest } from '../registry/digest.js';
import { deleteDisabled, OciError } from '../registry/errors.js';
import { parseRangeHeader } from '../registry/range.js';
import { emptyBody, repositoryOf } from './request.js';
import { markBodyStart } from '../http/observe.js';

export function blobRoutes(router: Router, registry: Registry): void {
  router.get('/v2/*name/blobs/:digest', async (ctx) => {
    const name = repositoryOf(ctx);
    const digest = assertDigest(ctx.params.digest);
    const blob = await registry.blobs.stat(name, digest);
    setBlobHeaders(ctx, blob.digest);
    ctx.status = 200; // Koa computes `fresh` only for a successful status
    if (ctx.fresh) {
      ctx.status = 304;
      return;
    }
    // GET goes to the driver's URL when it offers one (S3 presigned, unless storage.redirect.disable).
    // HEAD is answered here from the stat above: a redirect would only add a round trip.
    if (ctx.method === 'GET') {
      const url = await registry.blobs.redirectURL(digest, 'GET');
      if (url) {
        ctx.status = 307;
        ctx.set('Location', url);
        return;
      }
    }
    const range = parseRangeHeader(ctx.get('Range') || undefined, blob.size);
    if (range === 'unsatisfiable') {
      throw new OciError(416, 'RANGE_INVALID', 'requested range not satisfiable', { size: blob.size }, {
        'Content-Range': `bytes */${blob.size}`,
      });
    }
    const start = range?.start ?? 0;
    const length = range ? range.end - range.start + 1 : blob.size;
    ctx.status = range ? 206 : 200;
    if (range) ctx.set('Content-Range', `bytes ${range.start}-${range.end}/${blob.size}`);
    ctx.set('Content-Length', String(length));
    if (ctx.method === 'HEAD') return; // HEAD never opens the data
    if (length === 0) return emptyBody(ctx);
    if (registry.blobs.canSend()) {
      // Written here rather than by Koa, so the bytes go through reused buffers (no garbage per chunk).
      ctx.respond = false;
      ctx.res.statusCode = ctx.status;
      markBodyStart(ctx);
      try {
        await registry.blobs.sendTo(digest, start, length, ctx.res);
        ctx.res.end();
      } catch {
        ctx.res.destroy(); // the client went away, or the file could not be read: cut the response short
      }
      return;
    }
    ctx.body = await registry.blobs.read(digest, start, length);
    ctx.length = length;
  });

  router.delete('/v2/*name/blobs/:digest', async (ctx) => {
    const name = repositoryOf(ctx);
    const digest = assertDigest(ctx.params.digest);
    if (!registry.options.deleteEnabled) throw deleteDisabled('GET, HEAD');
    await registry.blobs.unlink(name, digest);
    ctx.status = 202;
    ctx.set('Docker-Content-Digest', digest.digest);
    emptyBody(ctx);
  });
}

function setBlobHeaders(ctx: Context, digest: string): void {
  ctx.set('Docker-Content-Digest', digest);
  ctx.set('ETag', `"${digest}"`);
  ctx.set('Accept-Ranges', 'bytes');
  ctx.set('Cache-Control', 'max-age=31536000');
  ctx.type = 'application/octet-stream';
}
