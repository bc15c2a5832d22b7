// The sweep: deletes what the mark left unreferenced, in fenced batches (server/gc/fence.ts), each item
// re-checked right before its delete: not pinned by a writer, not leased, and its link or data still older
// than the run's start minus the grace period. Order, so that a crash at any point leaves every reachable
// manifest and blob intact: revisions (with their referrers entries) before the layer links they used,
// links before blob data, blob data only when no repository links it.
import type { StorageDriver } from '../../storage-drivers/driver.js';
import { isNotFound } from '../../storage-drivers/driver.js';
import { parseDigest, type ParsedDigest } from '../registry/digest.js';
import { paths } from '../registry/paths.js';
import type { Registry } from '../registry/registry.js';
import { mapLimit } from './concurrency.js';
import type { FenceRun } from './fence.js';
import { children, modTime, revisionDigests, storedBlobs } from './layout.js';
import type { ManifestRefsReader } from './manifest-refs.js';
import type { RepositoryMark } from './mark.js';
import { countDeleted, countKept, type GcReport } from './report.js';

export interface SweepContext {
  driver: StorageDriver;
  registry: Registry;
  refs: ManifestRefsReader;
  report: GcReport;
  dryRun: boolean;
  cutoff: number;
  /** Absent in dry runs, which delete nothing. */
  fence?: FenceRun;
  /** Digests under unexpired leases, read again now and then while the run goes on. */
  leased(): Promise<Set<string>>;
  concurrency: number;
  batchSize: number;
  signal?: AbortSignal;
}

interface Keepers {
  pinned: Set<string>;
  leased: Set<string>;
}

/**
 * Runs `decide` over `digests` in fenced batches; what it returns true for goes to `remove` together, at the
 * end of its batch (one request for many on S3), unless this is a dry run.
 */
async function inBatches(
  ctx: SweepContext,
  digests: string[],
  decide: (digest: string, keepers: Keepers) => Promise<boolean | void>,
  remove?: (digests: string[]) => Promise<void>,
): Promise<void> {
  for (let i = 0; i < digests.length; i += ctx.batchSize) {
    ctx.signal?.throwIfAborted();
    const chunk = digests.slice(i, i + ctx.batchSize);
    const run = async (pinned: Set<string>) => {
      const keepers = { pinned, leased: await ctx.leased() };
      const verdicts = await mapLimit(chunk, ctx.concurrency, (digest) => decide(digest, keepers), ctx.signal);
      const doomed = chunk.filter((_, index) => verdicts[index] === true);
      if (remove && doomed.length > 0 && !ctx.dryRun) {
        ctx.fence?.assertHealthy(); // deciding took a while: still nobody may have taken the marker for expired
        await remove(doomed);
      }
    };
    if (ctx.fence) await ctx.fence.batch(run);
    else await run(new Set());
  }
}

/** The re-check: true when the item must stay (and counts why). */
function protectedNow(ctx: SweepContext, digest: string, age: number, keepers: Keepers): boolean {
  if (keepers.pinned.has(digest) || keepers.leased.has(digest)) {
    ctx.report.protected.pinned++;
    return true;
  }
  if (age >= ctx.cutoff) {
    ctx.report.protected.young++;
    return true;
  }
  return false;
}

/** A directory left without its file by a crash between the two deletes of an earlier run. */
async function removeEmptyDir(ctx: SweepContext, dir: string): Promise<void> {
  if (ctx.dryRun || ctx.driver.directoriesArePrefixes) return;
  if ((await children(ctx.driver, dir)).length === 0) await ctx.driver.delete(dir);
}

/** Sweeps one marked repository; returns the digests it still holds (for the blob data sweep). */
export async function sweepRepository(ctx: SweepContext, mark: RepositoryMark): Promise<Set<string>> {
  const { driver, registry, report } = ctx;
  const name = mark.repository;
  // Revisions written since the mark are live: they and what they reach stay.
  for (const digest of await revisionDigests(driver, name)) {
    if (!mark.revisions.has(digest)) {
      report.protected.referenced++;
      await mark.keep(digest);
    }
  }

  const deletedRevisions = new Set<string>();
  const decided = new Set<string>();
  for (;;) {
    const garbage = (await mark.garbageRevisions()).filter((digest) => !decided.has(digest)).slice(0, ctx.batchSize);
    if (garbage.length === 0) break;
    const kept: string[] = [];
    await inBatches(ctx, garbage, async (digest, keepers) => {
      decided.add(digest);
      const parsed = parseDigest(digest)!;
      const age = await modTime(driver, paths.revisionLink(name, parsed));
      if (age === undefined) {
        // Gone meanwhile, or a directory left without its link by a crash of an earlier run: it holds nothing.
        deletedRevisions.add(digest);
        await removeEmptyDir(ctx, paths.revision(name, parsed));
        return;
      }
      if (protectedNow(ctx, digest, age, keepers)) {
        kept.push(digest);
        return;
      }
      const subject = (await ctx.refs.read(digest))?.subject;
      ctx.fence?.assertHealthy();
      if (!ctx.dryRun) await registry.manifests.deleteRevision(name, parsed, subject ? parseDigest(subject) : undefined);
      deletedRevisions.add(digest);
      countDeleted(report, 'manifests');
      if (subject && mark.referrers.some((e) => e.subject.digest === subject && e.referrer.digest === digest)) countDeleted(report, 'referrers');
    });
    // A revision kept by the re-check is live after all, and so is what it reaches.
    for (const digest of kept) await mark.keep(digest);
  }
  countKept(report, 'manifests', mark.revisions.size - deletedRevisions.size);

  // Referrers entries whose referrer is gone (a crash between the two deletes, or an unreadable manifest).
  const orphans = mark.referrers.filter((e) => !mark.revisions.has(e.referrer.digest) || deletedRevisions.has(e.referrer.digest));
  const orphanKeys = new Map(orphans.map((e) => [`${e.subject.digest}/${e.referrer.digest}`, e]));
  await inBatches(ctx, [...orphanKeys.keys()], async (key) => {
    const entry = orphanKeys.get(key)!;
    const path = paths.referrer(name, entry.subject, entry.referrer);
    const age = await modTime(driver, path);
    if (age === undefined || age >= ctx.cutoff) return;
    if ((await modTime(driver, paths.revisionLink(name, entry.referrer))) !== undefined) return; // pushed again
    if (!ctx.dryRun) await registry.referrers.remove(name, entry.subject, entry.referrer);
    countDeleted(report, 'referrers');
  });
  countKept(report, 'referrers', mark.referrers.length - orphans.length);

  const deletedLayers = new Set<string>();
  await inBatches(
    ctx,
    mark.garbageLayers(),
    async (digest, keepers) => {
      const parsed = parseDigest(digest)!;
      const age = await modTime(driver, paths.layerLink(name, parsed));
      if (age === undefined) {
        deletedLayers.add(digest);
        await removeEmptyDir(ctx, paths.layer(name, parsed));
        return false;
      }
      if (protectedNow(ctx, digest, age, keepers)) return false;
      deletedLayers.add(digest);
      countDeleted(report, 'layerLinks');
      return true;
    },
    (digests) => registry.blobs.deleteLinks(name, digests.map((d) => parseDigest(d)!)),
  );
  countKept(report, 'layerLinks', mark.layers.size - deletedLayers.size);

  const held = new Set<string>([...mark.live, ...mark.liveBlobs]);
  for (const digest of mark.revisions) if (!deletedRevisions.has(digest)) held.add(digest);
  for (const digest of mark.layers) if (!deletedLayers.has(digest)) held.add(digest);
  return held;
}

/** Deletes stored blobs that no repository holds. */
export async function sweepBlobs(ctx: SweepContext, held: Set<string>, onProgress?: () => void): Promise<void> {
  const { driver, registry, report } = ctx;
  let candidates: ParsedDigest[] = [];
  const flush = async () => {
    const batch = new Map(candidates.map((d) => [d.digest, d]));
    candidates = [];
    await inBatches(
      ctx,
      [...batch.keys()],
      async (digest, keepers) => {
        const parsed = batch.get(digest)!;
        let info;
        try {
          info = await driver.stat(paths.blobData(parsed), { file: true });
        } catch (error) {
          if (!isNotFound(error)) throw error;
          await removeEmptyDir(ctx, paths.blobData(parsed).replace(/\/data$/, ''));
          return false;
        }
        if (protectedNow(ctx, digest, info.modTime.getTime(), keepers)) {
          countKept(report, 'blobs');
          return false;
        }
        countDeleted(report, 'blobs', info.size);
        return true;
      },
      (digests) => registry.blobs.deleteData(digests.map((d) => batch.get(d)!)),
    );
    onProgress?.();
  };
  for await (const prefix of storedBlobs(driver)) {
    ctx.signal?.throwIfAborted();
    for (const digest of prefix) {
      if (held.has(digest.digest)) countKept(report, 'blobs');
      else candidates.push(digest);
    }
    if (candidates.length >= ctx.batchSize) await flush();
  }
  if (candidates.length > 0) await flush();
}
