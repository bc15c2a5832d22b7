// Named upstream registries (`mirror.upstreams`): `docker.io` is built in; a configured entry with the
// same name overrides it (credentials, or another URL such as a local mirror). The name is what users
// write (`docker.io/nginx`) and what the ddn-k8s layout shows, never the API host.
import { isValidName } from '../registry/names.js';
import type { Credentials } from './upstream-auth.js';

export interface UpstreamConfig {
  name: string;
  /** http:// or https:// base of the registry API; optional for built-in names. */
  url?: string;
  username?: string;
  password?: string;
}

export interface Upstream {
  name: string;
  url: URL;
  credentials?: Credentials;
}

export const DOCKER_HUB = 'docker.io';

export const BUILT_IN_UPSTREAMS: ReadonlyArray<Required<Pick<UpstreamConfig, 'name' | 'url'>>> = [
  { name: DOCKER_HUB, url: 'https://registry-1.docker.io' },
];

/** One path component of a repository name, so that `ddn-k8s/<name>/...` stays a valid name. */
export function isValidUpstreamName(name: string): boolean {
  return !name.includes('/') && isValidName(name);
}

export function parseUpstreamUrl(url: string, name = 'upstream'): URL {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error(`mirror upstream "${name}": "${url}" is not a URL`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new Error(`mirror upstream "${name}": URL must start with http:// or https:// (got ${parsed.protocol})`);
  }
  if (parsed.username || parsed.password) throw new Error(`mirror upstream "${name}": put credentials in username and password, not in the URL`);
  if (parsed.search || parsed.hash) throw new Error(`mirror upstream "${name}": URL must not have a query or fragment`);
  return parsed;
}

export function resolveUpstream(config: UpstreamConfig): Upstream {
  if (!isValidUpstreamName(config.name)) {
    throw new Error(`mirror upstream name "${config.name}" must be one lowercase name component such as docker.io or ghcr.io (no port, no slash)`);
  }
  const url = config.url ?? BUILT_IN_UPSTREAMS.find((u) => u.name === config.name)?.url;
  if (!url) throw new Error(`mirror upstream "${config.name}" needs a url`);
  if ((config.username === undefined) !== (config.password === undefined)) {
    throw new Error(`mirror upstream "${config.name}": give both username and password, or neither`);
  }
  const upstream: Upstream = { name: config.name, url: parseUpstreamUrl(url, config.name) };
  if (config.username !== undefined) upstream.credentials = { username: config.username, password: config.password! };
  return upstream;
}

/** Built-ins plus the configured list, by name; a configured name replaces a built-in one. */
export function resolveUpstreams(configured: UpstreamConfig[] = []): Map<string, Upstream> {
  const out = new Map<string, Upstream>();
  for (const builtIn of BUILT_IN_UPSTREAMS) out.set(builtIn.name, resolveUpstream(builtIn));
  const seen = new Set<string>();
  for (const entry of configured) {
    if (seen.has(entry.name)) throw new Error(`mirror upstream "${entry.name}" is configured twice`);
    seen.add(entry.name);
    out.set(entry.name, resolveUpstream(entry));
  }
  return out;
}

/**
 * `docker.io/langgenius/dify-api` -> the upstream `docker.io` and `langgenius/dify-api`. The first
 * component names the upstream; undefined when no configured upstream has that name.
 */
export function splitSource(source: string, upstreams: Map<string, Upstream>): { upstream: Upstream; repository: string } | undefined {
  const slash = source.indexOf('/');
  if (slash <= 0) return undefined;
  const upstream = upstreams.get(source.slice(0, slash));
  const repository = source.slice(slash + 1);
  if (!upstream || !isValidName(repository)) return undefined;
  return { upstream, repository };
}
