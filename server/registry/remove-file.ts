// Removes files and then their directories when nothing else is left in them: where directories are key
// prefixes (S3) the delete is all (and many go in one request); on the filesystem no empty directory is
// left per deleted blob or link. A writer that puts a file back into a directory between the listing and
// the delete loses it; garbage collection's fence (server/gc/fence.ts) makes such writers check and write again.
import { isNotFound, type StorageDriver } from '../../storage-drivers/driver.js';

export async function removeFile(driver: StorageDriver, path: string): Promise<void> {
  await driver.deleteFile(path);
  if (!driver.directoriesArePrefixes) await removeEmptyParent(driver, path);
}

/**
 * Many at once where the driver can (S3's DeleteObjects), else two at a time: hundreds of file system calls
 * queued together would make the reads of pulls served meanwhile wait behind all of them.
 */
export async function removeFiles(driver: StorageDriver, paths: string[]): Promise<void> {
  if (paths.length === 0) return;
  if (driver.deleteFiles) {
    await driver.deleteFiles(paths);
    if (driver.directoriesArePrefixes) return;
  }
  let next = 0;
  const worker = async () => {
    while (next < paths.length) {
      const path = paths[next++]!;
      if (!driver.deleteFiles) await driver.deleteFile(path);
      if (!driver.directoriesArePrefixes) await removeEmptyParent(driver, path);
    }
  };
  await Promise.all([worker(), worker()]);
}

async function removeEmptyParent(driver: StorageDriver, path: string): Promise<void> {
  const dir = path.slice(0, path.lastIndexOf('/'));
  try {
    if ((await driver.list(dir)).length === 0) await driver.delete(dir);
  } catch (error) {
    if (!isNotFound(error)) throw error;
  }
}
