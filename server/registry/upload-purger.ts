// Upload purging, as Distribution's storage.maintenance.uploadpurging: sessions older than `age` are
// removed every `interval`. Every process schedules it; a lock (storage or Redis) lets one of them run it at a time.
import type { Logger } from 'pino';
import { isNotFound, type StorageDriver } from '../../storage-drivers/driver.js';
import { BLOBS, REPOSITORIES } from './paths.js';
import type { Locks } from '../state/locks.js';

export interface PurgeOptions {
  ageMs: number;
  dryRun: boolean;
}

const LOCK = 'maintenance/uploadpurging';

/**
 * Removes abandoned upload sessions; returns the session directories it removed (or would remove). Also
 * aborts unfinished writes older than the age that no session accounts for: what a crashed process left of
 * a blob written straight to its content-addressed path (monolithic pushes on S3), and multipart uploads of
 * sessions that lost track of them (invisible, but paid for).
 */
export async function purgeUploads(driver: StorageDriver, options: PurgeOptions, now = new Date()): Promise<string[]> {
  const purged: string[] = [];
  const cutoff = now.getTime() - options.ageMs;
  for (const sessionDir of await uploadSessions(driver)) {
    const started = await startedAt(driver, sessionDir);
    if (started === undefined || started > cutoff) continue;
    purged.push(sessionDir);
    if (!options.dryRun) await driver.delete(sessionDir);
  }
  if (!options.dryRun && driver.abortStaleWriters) {
    await driver.abortStaleWriters(BLOBS, new Date(cutoff));
    // Also what no session names any more: a part whose state was never saved, a commit that failed half-way.
    await driver.abortStaleWriters(REPOSITORIES, new Date(cutoff));
  }
  return purged;
}

export function schedulePurging(driver: StorageDriver, locks: Locks, options: PurgeOptions & { intervalMs: number }, logger: Logger): () => void {
  const run = async () => {
    const lock = await locks.tryLock(LOCK).catch(() => undefined);
    if (!lock) return;
    try {
      const purged = await purgeUploads(driver, options);
      if (purged.length > 0) logger.info({ count: purged.length, dryRun: options.dryRun }, 'purged abandoned uploads');
    } catch (error) {
      logger.error({ err: error }, 'upload purging failed');
    } finally {
      await lock.release().catch(() => undefined);
    }
  };
  // A jittered first run, as Distribution does, so replicas started together do not all walk at once.
  const first = setTimeout(() => void run(), 60_000 + Math.random() * 60_000);
  const every = setInterval(() => void run(), options.intervalMs);
  first.unref();
  every.unref();
  return () => {
    clearTimeout(first);
    clearInterval(every);
  };
}

async function uploadSessions(driver: StorageDriver): Promise<string[]> {
  const sessions: string[] = [];
  async function visit(dir: string): Promise<void> {
    const children = await driver.list(dir).catch((error) => {
      if (isNotFound(error)) return [] as string[];
      throw error;
    });
    for (const child of children) {
      const base = child.slice(child.lastIndexOf('/') + 1);
      if (base === '_uploads') sessions.push(...(await driver.list(child).catch(() => [] as string[])));
      else if (!base.startsWith('_')) await visit(child);
    }
  }
  await visit(REPOSITORIES);
  return sessions;
}

/** The session's start time from its state, or its directory's age when the state was never written. */
async function startedAt(driver: StorageDriver, sessionDir: string): Promise<number | undefined> {
  try {
    const state = JSON.parse((await driver.getContent(`${sessionDir}/state.json`)).toString()) as { startedAt?: string };
    const time = Date.parse(state.startedAt ?? '');
    if (!Number.isNaN(time)) return time;
  } catch {
    // fall back to the directory's modification time
  }
  try {
    return (await driver.stat(sessionDir)).modTime.getTime();
  } catch {
    return undefined;
  }
}
