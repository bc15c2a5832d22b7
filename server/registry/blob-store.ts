// Blobs: stored once, content-addressed, and visible in a repository only through its link.
import type { Readable, Writable } from 'node:stream';
import { exists, isNotFound, type StorageDriver } from '../../storage-drivers/driver.js';
import { blobUnknown } from './errors.js';
import type { ParsedDigest } from './digest.js';
import { paths } from './paths.js';
import { cacheKeys, DescriptorCache } from './descriptor-cache.js';

export interface BlobInfo {
  digest: string;
  size: number;
}

export class BlobStore {
  constructor(
    private readonly driver: StorageDriver,
    private readonly cache = new DescriptorCache(),
  ) {}

  /** The blob as seen through `name`; BLOB_UNKNOWN unless it is linked there and its data exists. */
  async stat(name: string, digest: ParsedDigest): Promise<BlobInfo> {
    // Both lookups at once: with Redis they leave in one round trip.
    const [linked, size] = await Promise.all([this.isLinked(name, digest), this.statGlobal(digest)]);
    if (!linked || size === undefined) throw blobUnknown(digest.digest);
    return { digest: digest.digest, size };
  }

  /** Size of the stored data whatever repository holds it, or undefined. */
  async statGlobal(digest: ParsedDigest): Promise<number | undefined> {
    const size = await this.cache.read(cacheKeys.blobSize(digest.digest), async () => {
      try {
        return String((await this.driver.stat(paths.blobData(digest))).size);
      } catch (error) {
        if (isNotFound(error)) return undefined;
        throw error;
      }
    });
    return size === undefined ? undefined : Number(size);
  }

  async read(digest: ParsedDigest, offset?: number, length?: number): Promise<Readable> {
    try {
      return await this.driver.reader(paths.blobData(digest), offset, length);
    } catch (error) {
      if (isNotFound(error)) throw blobUnknown(digest.digest);
      throw error;
    }
  }

  /** True when the driver can write blob ranges to a socket through reused buffers (then use `sendTo`). */
  canSend(): boolean {
    return this.driver.copyTo !== undefined;
  }

  /** Writes a range of the blob to `out` (not ending it) through the driver's buffer-reusing fast path. */
  async sendTo(digest: ParsedDigest, offset: number, length: number, out: Writable): Promise<void> {
    if (!this.driver.copyTo) throw new Error(`${this.driver.name} driver cannot send directly`);
    await this.driver.copyTo(paths.blobData(digest), offset, length, out);
  }

  redirectURL(digest: ParsedDigest, method: 'GET' | 'HEAD'): Promise<string | undefined> {
    return this.driver.redirectURL(paths.blobData(digest), method);
  }

  /** Makes stored data visible in `name`. The data must exist. */
  async link(name: string, digest: ParsedDigest): Promise<void> {
    await this.cache.write(cacheKeys.link(name, digest.digest), '1', () => this.driver.putContent(paths.layerLink(name, digest), digest.digest));
  }

  async isLinked(name: string, digest: ParsedDigest): Promise<boolean> {
    const linked = await this.cache.read(cacheKeys.link(name, digest.digest), async () =>
      (await exists(this.driver, paths.layerLink(name, digest))) ? '1' : undefined,
    );
    return linked !== undefined;
  }

  /**
   * Cross-repository mount. With `from`, the blob must be linked there; without it (automatic mount),
   * anywhere in the registry (without auth every repository is readable; auth will narrow this).
   * Returns the blob when mounted, undefined when the caller must upload it.
   */
  async mount(name: string, digest: ParsedDigest, from: string | undefined): Promise<BlobInfo | undefined> {
    if (from !== undefined && !(await this.isLinked(from, digest))) return undefined;
    const size = await this.statGlobal(digest);
    if (size === undefined) return undefined;
    await this.link(name, digest);
    return { digest: digest.digest, size };
  }

  /** Removes the repository's link; the data stays until garbage collection finds it unreferenced. */
  async unlink(name: string, digest: ParsedDigest): Promise<void> {
    if (!(await this.isLinked(name, digest))) throw blobUnknown(digest.digest);
    await this.cache.delete([cacheKeys.link(name, digest.digest)], () => this.driver.delete(paths.layer(name, digest)));
  }

  /** Stores bytes that were already verified against `digest` (small content such as manifests). */
  async putVerified(digest: ParsedDigest, content: Buffer): Promise<void> {
    const existing = await this.statGlobal(digest);
    if (existing === content.length) return;
    await this.driver.putContent(paths.blobData(digest), content);
  }
}
