// Picks the configured storage driver: S3 when storage.s3 is set, else the filesystem.
import type { Config } from '../server/config.js';
import type { StorageDriver } from './driver.js';
import { FilesystemDriver } from './filesystem.js';

/** Presigned blob URLs live as long as Distribution's. */
const PRESIGN_SECONDS = 20 * 60;

export async function createStorageDriver(config: Config): Promise<StorageDriver> {
  const s3 = config.storage.s3;
  if (!s3) return new FilesystemDriver({ rootdirectory: config.storage.filesystem.rootdirectory });
  // Loaded only when configured: the AWS SDK costs tens of MiB per process.
  const { S3Driver } = await import('./s3.js');
  return new S3Driver({
    ...s3,
    redirect: {
      enabled: !config.storage.redirect.disable,
      baseurl: config.middleware.storage.find((m) => m.name === 'redirect')?.options.baseurl,
      expirySeconds: PRESIGN_SECONDS,
    },
  });
}
