// How a build reaches this registry: its address as the engine sees it, and (with auth on) a short-lived
// credential for exactly the repositories the build pulls and pushes, written as an auth file the engine
// reads. The credential is exchanged for access tokens at the token endpoint (OAuth2 refresh_token
// grant); it never grants more than its ceiling, whoever holds it.
import { writeFile } from 'node:fs/promises';
import type { Config } from '../server/config.js';
import type { AuthService } from '../server/auth/auth-service.js';
import type { ResourceScope } from '../server/auth/scope.js';

export interface RegistryEndpoint {
  /** `http://127.0.0.1:5000` */
  url: string;
  /** `127.0.0.1:5000`: the host part of image references. */
  host: string;
  /** Plain HTTP: the engine must be told the registry is insecure. */
  insecure: boolean;
}

/** builder.registry, else http.host, else http.addr on loopback (0.0.0.0 listens there too). */
export function registryEndpoint(config: Config): RegistryEndpoint {
  let url = config.builder.registry ?? config.http.host;
  if (!url) {
    const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(config.http.addr);
    const host = match?.[1] ?? match?.[2] ?? '';
    const loopback = host === '' || host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
    url = `${config.http.tls ? 'https' : 'http'}://${loopback}:${match?.[3] ?? '5000'}`;
  }
  const parsed = new URL(url);
  return { url: parsed.origin, host: parsed.host, insecure: parsed.protocol === 'http:' };
}

/** `host/name[:tag]` on this registry -> `name`; undefined for images elsewhere. */
export function repositoryOnRegistry(reference: string, endpoint: RegistryEndpoint): string | undefined {
  if (!reference.startsWith(`${endpoint.host}/`)) return undefined;
  const rest = reference.slice(endpoint.host.length + 1).split('@')[0]!;
  const colon = rest.lastIndexOf(':');
  return colon > rest.lastIndexOf('/') ? rest.slice(0, colon) : rest;
}

/** What a platform build may do: push its repository and the cache, pull base images from here. */
export function buildScopes(options: { repository: string; cacheRepository?: string; baseRepositories: string[] }): ResourceScope[] {
  const scopes: ResourceScope[] = [{ type: 'repository', name: options.repository, actions: ['pull', 'push'] }];
  if (options.cacheRepository) scopes.push({ type: 'repository', name: options.cacheRepository, actions: ['pull', 'push'] });
  for (const name of new Set(options.baseRepositories)) {
    if (name !== options.repository && name !== options.cacheRepository) scopes.push({ type: 'repository', name, actions: ['pull'] });
  }
  return scopes;
}

/** Writes the auth file for `endpoint` with a delegated credential good for `lifetimeMs`. */
export async function writeAuthFile(
  path: string,
  auth: AuthService,
  endpoint: RegistryEndpoint,
  subject: string,
  scopes: ResourceScope[],
  lifetimeMs: number,
): Promise<void> {
  const credential = await auth.tokens.issueDelegated(subject, auth.service, scopes, lifetimeMs);
  // containers/image reads `identitytoken` only next to an `auth` of the form "user:" (base64).
  const entry = { auth: Buffer.from(`${subject}:`).toString('base64'), identitytoken: credential };
  await writeFile(path, JSON.stringify({ auths: { [endpoint.host]: entry } }), { mode: 0o600 });
}
