// Docker Hub's pull limits: `ratelimit-limit: 100;w=21600` and `ratelimit-remaining: 76;w=21600`
// on manifest GETs (HEADs show them without counting against the limit).
import type { IncomingHttpHeaders } from 'node:http';

export interface RateLimitState {
  limit: number;
  remaining: number;
  /** The window of the limit (`w=`), when given. */
  windowSeconds?: number;
  /** `docker-ratelimit-source`: the IP or account the limit applies to. */
  source?: string;
  /** When the headers were seen (ms since the epoch). */
  seenAt: number;
}

function parseOne(value: string | string[] | undefined): { count: number; window?: number } | undefined {
  if (Array.isArray(value)) value = value[0];
  if (value === undefined) return undefined;
  const [count, ...params] = value.split(';').map((s) => s.trim());
  if (!count || !/^\d+$/.test(count)) return undefined;
  const w = params.find((p) => p.startsWith('w='));
  const window = w && /^\d+$/.test(w.slice(2)) ? Number(w.slice(2)) : undefined;
  return { count: Number(count), window };
}

export function parseRateLimit(headers: IncomingHttpHeaders, now: number = Date.now()): RateLimitState | undefined {
  const limit = parseOne(headers['ratelimit-limit']);
  const remaining = parseOne(headers['ratelimit-remaining']);
  if (!limit || !remaining) return undefined;
  const state: RateLimitState = { limit: limit.count, remaining: remaining.count, seenAt: now };
  const windowSeconds = remaining.window ?? limit.window;
  if (windowSeconds !== undefined) state.windowSeconds = windowSeconds;
  const source = headers['docker-ratelimit-source'];
  if (typeof source === 'string') state.source = source;
  return state;
}
