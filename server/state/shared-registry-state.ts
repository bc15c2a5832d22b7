// The registry's shared state on Redis: upload sessions, the descriptor cache and locks, one connection.
import type { StorageDriver } from '../../storage-drivers/driver.js';
import { DescriptorCache } from '../registry/descriptor-cache.js';
import type { RegistryOptions } from '../registry/registry.js';
import { RedisLocks } from './locks.js';
import { RedisCacheBackend } from './redis-cache-backend.js';
import { RedisUploadSessions } from './redis-upload-sessions.js';
import type { SharedState } from './redis.js';

export function sharedRegistryState(
  state: SharedState,
  driver: StorageDriver,
  options: { uploadTtlMs: number; descriptorCache: boolean },
): NonNullable<RegistryOptions['shared']> {
  return {
    sessions: new RedisUploadSessions(state, driver, options.uploadTtlMs),
    cache: new DescriptorCache(options.descriptorCache ? new RedisCacheBackend(state) : undefined),
    locks: new RedisLocks(state),
  };
}
