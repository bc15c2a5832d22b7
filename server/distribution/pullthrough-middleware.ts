// Pull-through in front of the /v2 routes: fetches what a GET or HEAD misses here from the upstream of
// the repository's rule, then lets the normal routes serve it (a blob missing everywhere is streamed to
// this client while it is stored). With containerd's `?ns=<upstream>`, only that upstream's rules apply.
import type { Context, Middleware, Next } from 'koa';
import { assertDigest } from '../registry/digest.js';
import type { PullThrough } from '../mirror/pullthrough.js';
import type { PullThroughRules } from '../mirror/pullthrough-rules.js';

const ROUTE = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/;

export function pullThrough(service: PullThrough): Middleware {
  return async (ctx: Context, next: Next) => {
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') return next();
    const match = ROUTE.exec(ctx.path);
    if (!match || match[3] === 'uploads') return next();
    const [, name, kind, reference] = match as unknown as [string, string, string, string];
    const upstream = typeof ctx.query.ns === 'string' ? ctx.query.ns : undefined;
    if (kind === 'manifests') {
      await service.ensureManifest(name, reference, upstream);
      return next();
    }
    const digest = assertDigest(reference);
    const fetched = await service.fetchBlob(name, digest, ctx.method, upstream);
    if (!fetched) return next();
    ctx.status = 200;
    ctx.set('Docker-Content-Digest', fetched.digest);
    ctx.set('ETag', `"${fetched.digest}"`);
    ctx.type = 'application/octet-stream';
    ctx.length = fetched.size;
    if (fetched.body) ctx.body = fetched.body;
  };
}

/**
 * containerd's hosts.toml mirrors ask `/v2/library/nginx/...?ns=docker.io`: read that as the repository
 * under the prefix of docker.io's pull-through rule. Runs before authorization, which then checks the
 * name the request really reads.
 */
export function namespaceRewrite(rules: PullThroughRules): Middleware {
  return async (ctx: Context, next: Next) => {
    const ns = ctx.query.ns;
    if (typeof ns === 'string' && ctx.path.startsWith('/v2/')) {
      const match = /^\/v2\/(.+)\/(manifests|blobs|tags)\/(.+)$/.exec(ctx.path);
      const local = match ? rules.localNameForNamespace(match[1]!, ns) : undefined;
      if (match && local && local !== match[1]) ctx.path = `/v2/${local}/${match[2]}/${match[3]}`;
    }
    await next();
  };
}
