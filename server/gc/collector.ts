// One garbage collection run: retention, then per repository mark and sweep, then blob data no repository
// holds, then leftovers. Deletes only through the domain stores (so the Redis descriptor cache forgets what
// is gone) and only inside fenced batches (server/gc/fence.ts explains the protocol against concurrent pushes).
// The caller holds the `gc` lock (service.ts): one run at a time across processes and replicas.
import type { StorageDriver } from '../../storage-drivers/driver.js';
import type { LeaseStore } from '../registry/leases.js';
import { paths } from '../registry/paths.js';
import type { Registry } from '../registry/registry.js';
import { parseDigest } from '../registry/digest.js';
import { mapLimit } from './concurrency.js';
import { FenceRun } from './fence.js';
import { modTime, readTag, tagNames } from './layout.js';
import { purgeAbandonedUploads, removeTempFiles, TEMP_FILE_MIN_AGE_MS } from './leftovers.js';
import { ManifestRefsReader } from './manifest-refs.js';
import { RepositoryMark } from './mark.js';
import { countDeleted, countKept, emptyReport, type GcReport } from './report.js';
import type { RetentionRules } from './retention.js';
import { sweepBlobs, sweepRepository, type SweepContext } from './sweep.js';

export interface CollectorDeps {
  driver: StorageDriver;
  registry: Registry;
  leases: LeaseStore;
  retention: RetentionRules;
}

export interface CollectOptions {
  dryRun: boolean;
  gracePeriodMs: number;
  /** `keep`, or delete untagged manifests older than this many ms (never younger than the grace period). */
  untagged: 'keep' | number;
  /** Upload sessions older than this are purged; undefined: upload purging is off. */
  uploadPurgeAgeMs?: number;
  /** Storage round trips in flight (default 8). */
  concurrency?: number;
  /** Repositories marked at once (default 2). */
  repositoryConcurrency?: number;
  /** Deletes per fenced batch (default 256). */
  batchSize?: number;
  signal?: AbortSignal;
  /** Whether the run still holds the collection's lock (it stops deleting once it does not). */
  lockHeld?: () => boolean;
  log?(line: string): void;
  progress?(update: Record<string, { done: number; total: number } | number | string>): void;
  /** The run's start (tests). */
  now?: Date;
}

const LEASE_REREAD_MS = 5_000;

export async function collectGarbage(deps: CollectorDeps, options: CollectOptions): Promise<GcReport> {
  const { driver, registry } = deps;
  const started = options.now ?? new Date();
  const start = started.getTime();
  const cutoff = start - options.gracePeriodMs;
  const untaggedCutoff = options.untagged === 'keep' ? undefined : start - Math.max(options.untagged, options.gracePeriodMs);
  const report = emptyReport(options.dryRun, options.gracePeriodMs, options.untagged, started);
  const concurrency = options.concurrency ?? 8;
  const log = options.log ?? (() => undefined);

  // The marker goes first: every listing below sees what was written before it, writers after it pin.
  const fence = options.dryRun ? undefined : await FenceRun.begin(driver, options.lockHeld);
  try {
    let leased = await deps.leases.leasedDigests(start);
    let leasedAt = Date.now();
    const ctx: SweepContext = {
      driver,
      registry,
      refs: new ManifestRefsReader(driver),
      report,
      dryRun: options.dryRun,
      cutoff,
      fence,
      async leased() {
        if (Date.now() - leasedAt > LEASE_REREAD_MS) {
          leased = await deps.leases.leasedDigests();
          leasedAt = Date.now();
        }
        return leased;
      },
      concurrency,
      batchSize: options.batchSize ?? 256,
      signal: options.signal,
    };

    const repositories = await registry.repositories();
    report.repositories = repositories.length;
    log(`${options.dryRun ? 'dry run: ' : ''}${repositories.length} repositories, grace period ${options.gracePeriodMs} ms, untagged ${options.untagged === 'keep' ? 'kept' : `deleted after ${options.untagged} ms`}`);
    const held = new Set<string>();
    let done = 0;
    await mapLimit(repositories, options.repositoryConcurrency ?? 2, async (repository) => {
      const removedTags = await applyRetention(deps, ctx, repository, start);
      const mark = new RepositoryMark(repository, driver, ctx.refs, {
        cutoff,
        untaggedCutoff,
        leased: await ctx.leased(),
        concurrency,
        signal: options.signal,
      });
      await mark.mark(removedTags);
      countKept(report, 'tags', [...mark.tags.keys()].filter((tag) => !removedTags.has(tag)).length);
      for (const digest of await sweepRepository(ctx, mark)) held.add(digest);
      options.progress?.({ phase: 'repositories', repositories: { done: ++done, total: repositories.length } });
    }, options.signal);

    log(`repositories done: ${report.kinds.manifests.deleted} manifests, ${report.kinds.layerLinks.deleted} layer links, ${report.kinds.tags.deleted} tags ${options.dryRun ? 'to delete' : 'deleted'}; sweeping blobs`);
    options.progress?.({ phase: 'blobs' });
    await sweepBlobs(ctx, held, () => options.progress?.({ phase: 'blobs', blobsDeleted: report.kinds.blobs.deleted, freedBytes: report.freedBytes }));

    options.progress?.({ phase: 'leftovers' });
    if (options.uploadPurgeAgeMs !== undefined) {
      await purgeAbandonedUploads(driver, report, { ageMs: options.uploadPurgeAgeMs, dryRun: options.dryRun, now: started });
    }
    await removeTempFiles(driver, report, { olderThan: start - Math.max(options.gracePeriodMs, TEMP_FILE_MIN_AGE_MS), dryRun: options.dryRun });
  } finally {
    await fence?.end();
  }
  const finished = new Date();
  report.finishedAt = finished.toISOString();
  report.durationMs = finished.getTime() - start;
  log(`${options.dryRun ? 'would free' : 'freed'} ${report.freedBytes} bytes: ${report.kinds.blobs.deleted} blobs, ${report.kinds.uploads.deleted} uploads, ${report.kinds.tempFiles.deleted} temporary files, in ${report.durationMs} ms`);
  return report;
}

/** Deletes the tags retention expires in `repository`; returns them (in a dry run, those it would delete). */
async function applyRetention(deps: CollectorDeps, ctx: SweepContext, repository: string, now: number): Promise<Set<string>> {
  const removed = new Set<string>();
  if (!deps.retention.deletesIn(repository)) return removed;
  const { driver } = deps;
  const tags = await tagNames(driver, repository);
  const ages = await mapLimit(tags, ctx.concurrency, async (tag) => {
    const [digest, pushedAt] = await Promise.all([readTag(driver, repository, tag), modTime(driver, paths.tagLink(repository, tag))]);
    return digest && pushedAt !== undefined ? { tag, digest, pushedAt } : undefined;
  }, ctx.signal);
  const expired = deps.retention.expired(repository, ages.filter((age) => age !== undefined), now);
  for (const { tag, digest } of expired) {
    ctx.signal?.throwIfAborted();
    if (!parseDigest(digest)) continue;
    if (ctx.dryRun || (await deps.registry.tags.deleteIf(repository, tag, digest))) {
      removed.add(tag);
      countDeleted(ctx.report, 'tags');
    }
  }
  return removed;
}
