// Upstream registries in /readyz, as information only: an upstream outage never makes this registry
// unready (what is stored here is still served; pull-through falls back to stored copies).
import type { CheckReport, ReadinessCheck } from '../http/health.js';
import type { UpstreamHealth } from '../mirror/upstream-health.js';

export function upstreamsCheck(health: UpstreamHealth): ReadinessCheck {
  return {
    name: 'upstreams',
    report(): CheckReport {
      const statuses = health.statuses();
      const failing = statuses.filter((status) => status.state === 'down' || status.state === 'rate-limited').map((status) => status.name);
      return {
        ok: failing.length === 0,
        critical: false,
        ...(failing.length > 0 ? { error: `not answering: ${failing.join(', ')}` } : {}),
        upstreams: Object.fromEntries(statuses.map(({ name, ...status }) => [name, status])),
      };
    },
  };
}
