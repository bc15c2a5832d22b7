// What a request needs, read from its method and path before routing: the scopes of the token protocol.
import type { ResourceScope } from './scope.js';

const REPOSITORY_PATH = /^\/v2\/(.+)\/(?:manifests\/[^/]+|blobs\/uploads\/[^/]*|blobs\/[^/]+|tags\/list|referrers\/[^/]+)$/;

export interface RequestNeeds {
  /** Scopes the caller must hold; empty for /v2/ itself, which needs only a valid identity. */
  scopes: ResourceScope[];
  /** A /v2 or /admin path of no known shape: refused, since no scope could be checked for it. */
  unknown?: boolean;
  /** The repository for the challenge and the logs. */
  repository?: string;
}

export function requiredScopes(method: string, path: string, query: URLSearchParams): RequestNeeds {
  if (path === '/admin' || path.startsWith('/admin/')) return { scopes: [{ type: 'registry', name: 'admin', actions: ['*'] }] };
  if (path === '/v2/_catalog') return { scopes: [{ type: 'registry', name: 'catalog', actions: ['*'] }] };
  if (path === '/v2' || path === '/v2/') return { scopes: [] };
  const match = REPOSITORY_PATH.exec(path);
  if (!match) return { scopes: [], unknown: true };
  const repository = match[1]!;
  const actions =
    method === 'GET' || method === 'HEAD' ? ['pull'] : method === 'DELETE' ? ['delete'] : ['pull', 'push'];
  const scopes: ResourceScope[] = [{ type: 'repository', name: repository, actions }];
  // A cross-repository mount reads the source repository.
  const from = method === 'POST' ? query.get('from') : null;
  if (from && query.get('mount')) scopes.push({ type: 'repository', name: from, actions: ['pull'] });
  return { scopes, repository };
}
