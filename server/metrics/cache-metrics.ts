// Cache hits and misses. The caches keep plain counters (no metrics library in the domain); they are
// turned into Prometheus counters at scrape time.
import { Counter } from 'prom-client';
import { descriptorCacheStats } from '../registry/descriptor-cache.js';
import { manifestCacheStats } from '../registry/manifest-cache.js';
import { metricsRegistry } from './registry.js';

const CACHES = {
  /** Tags, links and blob sizes shared through Redis (storage.cache.blobdescriptor). */
  descriptor: descriptorCacheStats,
  /** Manifest bytes in this process's memory. */
  manifest: manifestCacheStats,
};

type CacheName = keyof typeof CACHES;
const reported: Record<CacheName, { hits: number; misses: number }> = {
  descriptor: { hits: 0, misses: 0 },
  manifest: { hits: 0, misses: 0 },
};

function counter(name: string, help: string, field: 'hits' | 'misses'): Counter<'cache'> {
  return new Counter({
    name,
    help,
    labelNames: ['cache'] as const,
    registers: [metricsRegistry],
    collect() {
      for (const cache of Object.keys(CACHES) as CacheName[]) {
        const delta = CACHES[cache][field] - reported[cache][field];
        reported[cache][field] = CACHES[cache][field];
        this.inc({ cache }, delta);
      }
    },
  });
}

counter('registry_cache_hits_total', 'Lookups answered by a cache, by cache (descriptor: shared in Redis; manifest: in process).', 'hits');
counter('registry_cache_misses_total', 'Lookups a cache did not hold (answered from storage), by cache.', 'misses');
