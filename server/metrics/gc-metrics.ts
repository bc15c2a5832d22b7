// Garbage collection runs and what they freed, from server/gc's process-wide counters (read at scrape
// time: the GC module needs nothing from the metrics library).
import { Counter, Gauge } from 'prom-client';
import { GC_KINDS, gcStats } from '../gc/report.js';
import { metricsRegistry } from './registry.js';

const registers = [metricsRegistry];

/** A counter that follows a number that only grows. */
function following(name: string, help: string, read: () => number): void {
  let reported = 0;
  new Counter({
    name,
    help,
    registers,
    collect() {
      const current = read();
      if (current > reported) this.inc(current - reported);
      reported = current;
    },
  });
}

following('registry_gc_runs_total', 'Garbage collection runs that ended in this process (dry runs and failures included).', () => gcStats.runs);
following('registry_gc_failed_runs_total', 'Garbage collection runs that failed.', () => gcStats.failedRuns);
following('registry_gc_dry_runs_total', 'Garbage collection dry runs (nothing deleted).', () => gcStats.dryRuns);
following('registry_gc_freed_bytes_total', 'Bytes deleted by garbage collection.', () => gcStats.freedBytes);

const deletedReported = Object.fromEntries(GC_KINDS.map((kind) => [kind, 0])) as Record<(typeof GC_KINDS)[number], number>;
new Counter({
  name: 'registry_gc_deleted_total',
  help: 'Items deleted by garbage collection, by kind (tags, manifests, blobs, uploads, ...).',
  labelNames: ['kind'] as const,
  registers,
  collect() {
    for (const kind of GC_KINDS) {
      const current = gcStats.deleted[kind];
      this.inc({ kind }, Math.max(0, current - deletedReported[kind]));
      deletedReported[kind] = current;
    }
  },
});

new Gauge({
  name: 'registry_gc_last_run_timestamp_seconds',
  help: 'When the last garbage collection run in this process ended (Unix time); 0 before the first.',
  aggregator: 'max',
  registers,
  collect() {
    this.set(gcStats.lastRunAt ? Date.parse(gcStats.lastRunAt) / 1000 : 0);
  },
});

new Gauge({
  name: 'registry_gc_last_run_duration_seconds',
  help: 'How long the last garbage collection run in this process took.',
  aggregator: 'max',
  registers,
  collect() {
    this.set(gcStats.lastDurationMs / 1000);
  },
});
