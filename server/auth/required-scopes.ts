// What a request needs, read from its method and path before routing: the scopes of the token protocol.
import { isValidName } from '../registry/names.js';
import type { ResourceScope } from './scope.js';

const REPOSITORY_PATH = /^\/v2\/(.+)\/(?:manifests\/[^/]+|blobs\/uploads\/[^/]*|blobs\/[^/]+|tags\/list|referrers\/[^/]+)$/;

export interface RequestNeeds {
  /** Scopes the caller must hold; empty for /v2/ itself, which needs only a valid identity. */
  scopes: ResourceScope[];
  /** A /v2 or /admin path of no known shape: refused, since no scope could be checked for it. */
  unknown?: boolean;
  /** A repository name (or mount source) that no repository can have: refused before any rule is matched. */
  invalidName?: boolean;
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
  // Before the access rules' globs see it: those cost more the longer the name, and names are short.
  if (!isValidName(repository)) return { scopes: [], invalidName: true };
  const actions =
    method === 'GET' || method === 'HEAD' ? ['pull'] : method === 'DELETE' ? ['delete'] : ['pull', 'push'];
  const scopes: ResourceScope[] = [{ type: 'repository', name: repository, actions }];
  // A cross-repository mount reads the source repository.
  const from = method === 'POST' ? query.get('from') : null;
  if (from && query.get('mount')) {
    if (!isValidName(from)) return { scopes: [], invalidName: true };
    scopes.push({ type: 'repository', name: from, actions: ['pull'] });
  }
  return { scopes, repository };
}
