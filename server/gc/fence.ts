// The safety protocol that lets garbage collection delete while pushes go on. Two rules:
//
// 1. Grace period on creation time. Nothing whose storage modTime (blob data, layer link, revision link) is
//    newer than the run's start minus the grace period is deleted, referenced or not: a push that has
//    uploaded its layers but not yet its manifest is safe if it finishes within the grace period. Every
//    candidate is stat'ed again right before its delete, so a link rewritten since the mark (the same layer
//    pushed again) is kept.
// 2. A fence for what is written while the run goes on, closing the gap between "GC decided this is garbage"
//    and "GC deleted it". The collector writes a marker (/_gc/run.json) before it lists anything, and deletes
//    in batches: marker {epoch: n, deleting: true}, read the pins, re-check and delete, marker {deleting: false}.
//    A writer that creates a reference to content that may already exist (a layer link, a mount, a manifest
//    revision) first writes the reference, then reads the marker (`protect`). No marker: the run had not begun,
//    so its listings (which come after its marker) see the reference. A marker: the writer pins its digests
//    (/_gc/pins/<uuid>.json), waits until a batch that may have listed the pins before its pin ends, and then
//    checks and repairs what it references: every later batch reads the pin and keeps those digests, and what
//    an earlier batch deleted is found missing (links are written again, missing blob data fails the request
//    rather than leaving a reference to nothing). Each side writes before it reads the other's record, so at
//    least one of them sees the other (storage reads after writes are consistent, on S3 too).
// The marker expires unless renewed, so a collector that died releases writers after MARKER_TTL_MS at most;
// a collector stops deleting when it could not renew its marker in time. A run that ends leaves its marker
// (not deleting, no longer renewed) until it expires: a writer that wrote its reference just before the last
// delete and reads the marker just after the end still checks what it references.
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { isNotFound, type StorageDriver } from '../../storage-drivers/driver.js';

export const GC_ROOT = '/_gc';
const MARKER = `${GC_ROOT}/run.json`;
const PINS = `${GC_ROOT}/pins`;
export const MARKER_TTL_MS = 30_000;
const RENEW_MS = 5_000;
const POLL_MS = 50;

interface Marker {
  run: string;
  epoch: number;
  deleting: boolean;
  /** Epoch milliseconds. */
  expiresAt: number;
}

/** The writer side, used by the stores right after they write a reference. */
export interface ReferenceFence {
  /**
   * False when no collection runs: nothing more to do. True when one runs: the digests are pinned for the rest
   * of it, and the caller must check (and repair) what it just wrote and what it references.
   */
  protect(repository: string, digests: string[]): Promise<boolean>;
}

export class GcFence implements ReferenceFence {
  constructor(private readonly driver: StorageDriver) {}

  async protect(repository: string, digests: string[]): Promise<boolean> {
    if (!isLive(await readMarker(this.driver))) return false;
    await this.driver.putContent(`${PINS}/${randomUUID()}.json`, JSON.stringify({ repository, digests }));
    // A batch that read the pins before ours was written may still delete what we reference: let it end.
    const batch = await readMarker(this.driver);
    if (isLive(batch) && batch.deleting) {
      for (;;) {
        await sleep(POLL_MS);
        const now = await readMarker(this.driver);
        if (!isLive(now) || now.run !== batch.run || now.epoch !== batch.epoch || !now.deleting) break;
      }
    }
    return true;
  }
}

/** The collector side: one per run, between `begin` and `end`. */
export class FenceRun {
  private epoch = 0;
  private deleting = false;
  private lastWrite = 0;
  private writes: Promise<void> = Promise.resolve();
  private batches: Promise<unknown> = Promise.resolve();
  private renewal: NodeJS.Timeout | undefined;
  private broken: unknown;
  /** Pins read so far, by file (a pin never changes once written). */
  private readonly seen = new Map<string, string[]>();

  private constructor(
    private readonly driver: StorageDriver,
    readonly run: string,
    private readonly lockHeld: () => boolean,
  ) {}

  /** `lockHeld`: whether the run still holds the collection's lock; a run that lost it stops deleting. */
  static async begin(driver: StorageDriver, lockHeld: () => boolean = () => true): Promise<FenceRun> {
    // Pins of earlier runs protect references that this run's listings see anyway: drop them first.
    await clearPins(driver);
    const fence = new FenceRun(driver, randomUUID(), lockHeld);
    await fence.write();
    fence.renewal = setInterval(() => void fence.write().catch((error: unknown) => (fence.broken = error)), RENEW_MS);
    fence.renewal.unref();
    return fence;
  }

  /**
   * Runs one delete batch with the digests pinned by writers so far. Keep batches short (seconds): writers that
   * pin meanwhile wait for the batch to end.
   */
  batch<T>(work: (pinned: Set<string>) => Promise<T>): Promise<T> {
    // One batch at a time: the marker describes one.
    const result = this.batches.then(() => this.runBatch(work));
    this.batches = result.catch(() => undefined);
    return result;
  }

  private async runBatch<T>(work: (pinned: Set<string>) => Promise<T>): Promise<T> {
    this.assertHealthy();
    this.epoch++;
    this.deleting = true;
    try {
      await this.write();
      const pinned = await this.pins();
      this.assertHealthy();
      return await work(pinned);
    } finally {
      this.deleting = false;
      await this.write();
    }
  }

  /** Digests pinned so far (also for a dry run, which deletes nothing). */
  async pins(): Promise<Set<string>> {
    let files: string[] = [];
    try {
      files = await this.driver.list(PINS);
    } catch (error) {
      if (!isNotFound(error)) throw error;
    }
    await Promise.all(
      files
        .filter((file) => !this.seen.has(file))
        .map(async (file) => {
          try {
            const pin = JSON.parse((await this.driver.getContent(file)).toString()) as { digests?: unknown };
            const digests = Array.isArray(pin.digests) ? pin.digests.filter((d): d is string => typeof d === 'string') : [];
            this.seen.set(file, digests);
          } catch (error) {
            // A pin being written is not readable yet; its writer waits for this batch to end anyway.
            if (!isNotFound(error) && !(error instanceof SyntaxError)) throw error;
          }
        }),
    );
    return new Set([...this.seen.values()].flat());
  }

  async end(): Promise<void> {
    clearInterval(this.renewal);
    this.deleting = false;
    await this.write();
    await clearPins(this.driver);
  }

  /**
   * Refuses to go on deleting when writers may have taken the marker for expired, or when another run may
   * have started (this one lost the lock): that run's begin drops the pins writers left for this one.
   * Called at every batch's start and again right before anything is deleted.
   */
  assertHealthy(): void {
    if (!this.lockHeld()) throw new Error('garbage collection stopped: it lost its lock, another run may have started');
    if (this.broken !== undefined) throw new Error(`garbage collection stopped: could not renew its marker: ${String(this.broken)}`);
    if (Date.now() - this.lastWrite > MARKER_TTL_MS / 2) throw new Error('garbage collection stopped: its marker was not renewed in time');
  }

  private write(): Promise<void> {
    const next = this.writes.then(async () => {
      const at = Date.now();
      const marker: Marker = { run: this.run, epoch: this.epoch, deleting: this.deleting, expiresAt: at + MARKER_TTL_MS };
      await this.driver.putContent(MARKER, JSON.stringify(marker));
      this.lastWrite = at;
    });
    this.writes = next.catch(() => undefined);
    return next;
  }
}

/** File by file: a writer may be adding a pin meanwhile (then it stays for the next run to drop). */
async function clearPins(driver: StorageDriver): Promise<void> {
  const files = await driver.list(PINS).catch((error: unknown) => {
    if (isNotFound(error)) return [] as string[];
    throw error;
  });
  await Promise.all(files.map((file) => driver.deleteFile(file)));
}

async function readMarker(driver: StorageDriver): Promise<Marker | undefined> {
  try {
    return JSON.parse((await driver.getContent(MARKER)).toString()) as Marker;
  } catch (error) {
    if (isNotFound(error) || error instanceof SyntaxError) return undefined;
    throw error;
  }
}

function isLive(marker: Marker | undefined): marker is Marker {
  return marker !== undefined && typeof marker.expiresAt === 'number' && marker.expiresAt > Date.now();
}
