// A cache of small facts that storage answers slowly on S3 (tag -> digest, "this repository links this
// blob/manifest", blob sizes), shared by replicas through Redis. Storage stays the truth; the protocol keeps
// every replica's view consistent with it:
// - read: cached value, else storage, then fill only-if-absent (a concurrent writer's newer value wins);
// - write: drop the entry first (must succeed, or the write is refused), write storage, then set the new value;
// - delete: drop the entry, delete in storage, then leave a short tombstone, so a reader that loaded the old
//   value just before the delete cannot put it back.
// Any cache failure on a read falls back to storage: pulls keep working while Redis is away.
export interface CacheBackend {
  /** False while the backend is unreachable: skip it rather than wait. */
  isReady(): boolean;
  get(key: string): Promise<string | null>;
  set(key: string, value: string, ttlMs: number, onlyIfAbsent: boolean): Promise<void>;
  del(key: string): Promise<void>;
}

const TOMBSTONE = '\u0000deleted';
const VALUE_TTL_MS = 3_600_000;
const TOMBSTONE_TTL_MS = 60_000;

export const cacheKeys = {
  tag: (name: string, tag: string) => `tag:${name}:${tag}`,
  revision: (name: string, digest: string) => `rev:${name}@${digest}`,
  link: (name: string, digest: string) => `link:${name}@${digest}`,
  blobSize: (digest: string) => `blob:${digest}`,
};

/** Lookups answered by the shared cache and those that went to storage; read by server/metrics. */
export const descriptorCacheStats = { hits: 0, misses: 0 };

export class DescriptorCache {
  constructor(private readonly backend?: CacheBackend) {}

  /** The value under `key`, from the cache or else from `load` (undefined: absent). */
  async read(key: string, load: () => Promise<string | undefined>): Promise<string | undefined> {
    const backend = this.usable();
    if (!backend) return load();
    const cached = await backend.get(key).catch(() => null);
    if (cached === TOMBSTONE) {
      descriptorCacheStats.hits++;
      return undefined;
    }
    if (cached !== null) {
      descriptorCacheStats.hits++;
      return cached;
    }
    descriptorCacheStats.misses++;
    const value = await load();
    if (value !== undefined) await backend.set(key, value, VALUE_TTL_MS, true).catch(() => undefined);
    return value;
  }

  /** Runs a storage write that gives `key` the value `value`. */
  async write(key: string, value: string, write: () => Promise<void>): Promise<void> {
    if (!this.backend) return write();
    await this.backend.del(key); // unreachable cache: refuse the write rather than leave a stale entry
    await write();
    await this.backend.set(key, value, VALUE_TTL_MS, false).catch(() => undefined);
  }

  /** Runs a storage delete of what `keys` describe. */
  async delete(keys: string[], remove: () => Promise<void>): Promise<void> {
    const backend = this.backend;
    if (!backend) return remove();
    for (const key of keys) await backend.del(key);
    await remove();
    await Promise.all(keys.map((key) => backend.set(key, TOMBSTONE, TOMBSTONE_TTL_MS, false).catch(() => undefined)));
  }

  private usable(): CacheBackend | undefined {
    return this.backend?.isReady() ? this.backend : undefined;
  }
}
