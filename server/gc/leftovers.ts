// Leftovers that no reference ever pointed at: abandoned upload sessions (Distribution's upload purging, with
// their S3 multipart uploads: the driver's delete aborts them) and temporary files of the filesystem driver
// left by a crash between write and rename.
import { isNotFound, type StorageDriver } from '../../storage-drivers/driver.js';
import { TEMP_DIR } from '../../storage-drivers/filesystem.js';
import { purgeUploads } from '../registry/upload-purger.js';
import { mapLimit } from './concurrency.js';
import { countDeleted, type GcReport } from './report.js';

/** A temporary file lives for one write; anything this old was left by a crash. */
export const TEMP_FILE_MIN_AGE_MS = 10 * 60_000;

export async function purgeAbandonedUploads(driver: StorageDriver, report: GcReport, options: { ageMs: number; dryRun: boolean; now: Date }): Promise<void> {
  // The purger's own selection (by session start time), then sizes for the report before deleting.
  const sessions = await purgeUploads(driver, { ageMs: options.ageMs, dryRun: true }, options.now);
  await mapLimit(sessions, 4, async (dir) => {
    const size = await driver.stat(`${dir}/data`).then((info) => info.size, () => 0);
    if (!options.dryRun) await driver.delete(dir);
    countDeleted(report, 'uploads', size);
  });
}

export async function removeTempFiles(driver: StorageDriver, report: GcReport, options: { olderThan: number; dryRun: boolean }): Promise<void> {
  let files: string[];
  try {
    files = await driver.list(TEMP_DIR);
  } catch (error) {
    if (isNotFound(error)) return;
    throw error;
  }
  await mapLimit(files, 4, async (file) => {
    const info = await driver.stat(file).catch(() => undefined);
    if (!info || info.isDir || info.modTime.getTime() >= options.olderThan) return;
    if (!options.dryRun) await driver.deleteFile(file);
    countDeleted(report, 'tempFiles', info.size);
  });
}
