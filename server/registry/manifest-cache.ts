// Manifest bytes by digest, bounded by total size. Content-addressed bytes never change, so this cache
// needs no invalidation: deletion is checked through the repository's revision link, which is never cached.
export interface CachedManifest {
  bytes: Buffer;
  mediaType: string;
}

/** Lookups of every ManifestCache of the process; read by server/metrics. */
export const manifestCacheStats = { hits: 0, misses: 0 };

export class ManifestCache {
  private readonly entries = new Map<string, CachedManifest>();
  private bytes = 0;

  constructor(private readonly maxBytes: number) {}

  get(digest: string): CachedManifest | undefined {
    const entry = this.entries.get(digest);
    if (entry) {
      manifestCacheStats.hits++;
      this.entries.delete(digest);
      this.entries.set(digest, entry);
    } else manifestCacheStats.misses++;
    return entry;
  }

  set(digest: string, entry: CachedManifest): void {
    if (entry.bytes.length > this.maxBytes || this.entries.has(digest)) return;
    this.entries.set(digest, entry);
    this.bytes += entry.bytes.length;
    for (const [key, value] of this.entries) {
      if (this.bytes <= this.maxBytes) break;
      this.entries.delete(key);
      this.bytes -= value.bytes.length;
    }
  }
}
