// The descriptor cache's entries in Redis, under the registry's key prefix.
import type { CacheBackend } from '../registry/descriptor-cache.js';
import { shared, type SharedState } from './redis.js';

export class RedisCacheBackend implements CacheBackend {
  constructor(private readonly state: SharedState) {}

  isReady(): boolean {
    return this.state.isReady();
  }

  get(key: string): Promise<string | null> {
    return this.state.client.get(this.key(key));
  }

  async set(key: string, value: string, ttlMs: number, onlyIfAbsent: boolean): Promise<void> {
    const full = this.key(key);
    await shared('cache set', () =>
      onlyIfAbsent ? this.state.client.set(full, value, 'PX', ttlMs, 'NX') : this.state.client.set(full, value, 'PX', ttlMs),
    );
  }

  async del(key: string): Promise<void> {
    await shared('cache invalidation', () => this.state.client.del(this.key(key)));
  }

  private key(key: string): string {
    return `${this.state.prefix}cache:${key}`;
  }
}
