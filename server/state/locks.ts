// Named locks for what must not run twice at once (an upload's writer, a tag update, a scheduled job):
// lock files in storage on a single node, Redis keys with expiry when several replicas share Redis.
import type { StorageDriver } from '../../storage-drivers/driver.js';
import { tryLock as tryStorageLock, type HeldLock } from '../registry/upload-lock.js';
import { RedisLock } from './redis-lock.js';
import type { SharedState } from './redis.js';

export type { HeldLock };

export interface Locks {
  /** The lock, or undefined when someone else holds it. `name` is a path-like key such as `tag/<repo>/<tag>`. */
  tryLock(name: string): Promise<HeldLock | undefined>;
  /** Waits up to `waitMs` for the lock; undefined if it stayed taken. */
  lock(name: string, waitMs: number): Promise<HeldLock | undefined>;
}

abstract class PollingLocks implements Locks {
  abstract tryLock(name: string): Promise<HeldLock | undefined>;

  async lock(name: string, waitMs: number): Promise<HeldLock | undefined> {
    const deadline = Date.now() + waitMs;
    for (let delay = 5; ; delay = Math.min(delay * 2, 200)) {
      const held = await this.tryLock(name);
      if (held || Date.now() + delay > deadline) return held;
      await new Promise((resolve) => setTimeout(resolve, delay * (0.5 + Math.random())));
    }
  }
}

export class StorageLocks extends PollingLocks {
  constructor(private readonly driver: StorageDriver) {
    super();
  }

  tryLock(name: string): Promise<HeldLock | undefined> {
    return tryStorageLock(this.driver, `/_locks/${name}.lock`);
  }
}

export class RedisLocks extends PollingLocks {
  constructor(private readonly shared: SharedState) {
    super();
  }

  tryLock(name: string): Promise<HeldLock | undefined> {
    return RedisLock.acquire(this.shared, `lock:${name}`);
  }
}
