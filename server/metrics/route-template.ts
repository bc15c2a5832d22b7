// The route of a request as a bounded label: the router's template when a route matched, else the /v2
// template its path has (requests answered before routing: 401s, pull-through blobs, 404s), else
// "unmatched". Never the path itself: repository names and digests would make unbounded series.
import type { Context } from 'koa';

const V2_TEMPLATES: Array<[RegExp, string]> = [
  [/^\/v2\/?$/, '/v2/'],
  [/^\/v2\/_catalog$/, '/v2/_catalog'],
  // Uploads before blobs: `/blobs/uploads/` must not read as a digest.
  [/^\/v2\/.+\/blobs\/uploads\/?$/, '/v2/*name/blobs/uploads/'],
  [/^\/v2\/.+\/blobs\/uploads\/[^/]+$/, '/v2/*name/blobs/uploads/:id'],
  [/^\/v2\/.+\/blobs\/[^/]+$/, '/v2/*name/blobs/:digest'],
  [/^\/v2\/.+\/manifests\/[^/]+$/, '/v2/*name/manifests/:reference'],
  [/^\/v2\/.+\/tags\/list$/, '/v2/*name/tags/list'],
  [/^\/v2\/.+\/referrers\/[^/]+$/, '/v2/*name/referrers/:digest'],
];

export const UNMATCHED = 'unmatched';

export function routeTemplate(ctx: Context): string {
  const matched = (ctx as { _matchedRoute?: string | RegExp })._matchedRoute;
  if (typeof matched === 'string') return matched;
  return templateOfPath(ctx.path);
}

export function templateOfPath(path: string): string {
  if (!path.startsWith('/v2')) return UNMATCHED;
  for (const [pattern, template] of V2_TEMPLATES) if (pattern.test(path)) return template;
  return UNMATCHED;
}

const METHODS = new Set(['GET', 'HEAD', 'PUT', 'POST', 'PATCH', 'DELETE', 'OPTIONS']);

/** The method as a bounded label. */
export function methodLabel(method: string): string {
  return METHODS.has(method) ? method : 'OTHER';
}
