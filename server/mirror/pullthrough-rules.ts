// Which local repositories are pull-through caches of which upstream, and how their names and tags map
// upstream (`mirror.pullthrough`, plus Distribution's `proxy.remoteurl` as a one-upstream shorthand).
import type { Config } from '../config.js';
import { durationMs } from '../config.js';
import { isValidName } from '../registry/names.js';
import { upstreamRepository } from './layouts.js';
import { resolveDdnTag } from './platforms.js';
import { DOCKER_HUB, resolveUpstream, type Upstream } from './upstreams.js';

export interface PullThroughRule {
  upstream: Upstream;
  /** Local prefix without slashes at the ends; '' for the whole registry (dockerd's registry-mirrors). */
  prefix: string;
  layout: 'same-name' | 'ddn-k8s';
  ttlMs: number;
  /** Distribution's proxy.remoteurl: the whole registry mirrors one upstream, whatever containerd's ?ns= names. */
  anyNamespace?: boolean;
}

export interface PullThroughTarget {
  rule: PullThroughRule;
  /** The repository to ask upstream for. */
  upstreamRepository: string;
}

/** The upstream tag and platform behind a local tag: ddn-k8s tags carry the platform in a suffix. */
export interface UpstreamTag {
  tag: string;
  platform?: string;
}

export class PullThroughRules {
  constructor(readonly rules: PullThroughRule[]) {}

  static fromConfig(config: Config, upstreams: Map<string, Upstream>): PullThroughRules {
    const rules: PullThroughRule[] = config.mirror.pullthrough.map((entry) => {
      const upstream = upstreams.get(entry.upstream);
      if (!upstream) throw new Error(`mirror.pullthrough: no upstream named "${entry.upstream}" (known: ${[...upstreams.keys()].join(', ')})`);
      const prefix = entry.prefix.replace(/^\/+|\/+$/g, '');
      if (prefix !== '' && !isValidName(prefix)) throw new Error(`mirror.pullthrough: prefix "${entry.prefix}" is not a repository path`);
      return { upstream, prefix, layout: entry.layout, ttlMs: durationMs(entry.ttl) };
    });
    if (config.proxy) {
      // Distribution's proxy: the whole registry mirrors one upstream, names unchanged.
      const url = new URL(config.proxy.remoteurl);
      const name = url.host === 'registry-1.docker.io' ? DOCKER_HUB : 'proxy';
      const upstream = resolveUpstream({
        name,
        url: config.proxy.remoteurl,
        ...(config.proxy.username !== undefined ? { username: config.proxy.username, password: config.proxy.password ?? '' } : {}),
      });
      upstreams.set(name, upstream);
      rules.push({ upstream, prefix: '', layout: 'same-name', ttlMs: durationMs(config.proxy.ttl), anyNamespace: true });
    }
    // Longest prefix first, so `ddn-k8s/docker.io` wins over ''.
    rules.sort((a, b) => b.prefix.length - a.prefix.length);
    return new PullThroughRules(rules);
  }

  get enabled(): boolean {
    return this.rules.length > 0;
  }

  /**
   * The rule serving local repository `name`, and the upstream repository it maps to. `upstream` (from
   * containerd's `?ns=`) keeps only that upstream's rules: a mirror asked for ghcr.io content must never
   * answer with docker.io's image of the same name. The proxy.remoteurl rule ignores `?ns=`, as Distribution does.
   */
  match(name: string, upstream?: string): PullThroughTarget | undefined {
    for (const rule of this.rules) {
      if (upstream !== undefined && rule.upstream.name !== upstream && !rule.anyNamespace) continue;
      let rest: string;
      if (rule.prefix === '') rest = name;
      else if (name.startsWith(`${rule.prefix}/`)) rest = name.slice(rule.prefix.length + 1);
      else continue;
      if (!isValidName(rest)) continue;
      return { rule, upstreamRepository: upstreamRepository(rule.upstream.name, rest) };
    }
    return undefined;
  }

  /**
   * containerd's hosts.toml mirrors add `?ns=<registry>`: `library/nginx?ns=docker.io` is docker.io's
   * nginx. The local name is that under the prefix of a rule for that upstream (undefined: no such rule).
   */
  localNameForNamespace(name: string, ns: string): string | undefined {
    const rule = this.rules.find((r) => r.upstream.name === ns && r.layout === 'same-name');
    if (!rule) return undefined;
    return rule.prefix === '' || name.startsWith(`${rule.prefix}/`) ? name : `${rule.prefix}/${name}`;
  }
}

export function upstreamTagOf(rule: PullThroughRule, tag: string): UpstreamTag {
  if (rule.layout !== 'ddn-k8s') return { tag };
  const resolved = resolveDdnTag(tag);
  return { tag: resolved.upstreamTag, platform: resolved.platform };
}
