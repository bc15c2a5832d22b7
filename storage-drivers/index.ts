// Picks the configured storage driver.
import type { Config } from '../server/config.js';
import type { StorageDriver } from './driver.js';
import { FilesystemDriver } from './filesystem.js';

export function createStorageDriver(config: Config): StorageDriver {
  return new FilesystemDriver({ rootdirectory: config.storage.filesystem.rootdirectory });
}
