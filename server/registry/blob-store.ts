// Blobs: stored once, content-addressed, and visible in a repository only through its link.
import type { Readable, Writable } from 'node:stream';
import { exists, isNotFound, type StorageDriver } from '../../storage-drivers/driver.js';
import { blobUnknown, OciError } from './errors.js';
import type { ParsedDigest } from './digest.js';
import { paths } from './paths.js';
import { cacheKeys, DescriptorCache } from './descriptor-cache.js';
import { removeFile, removeFiles } from './remove-file.js';
import type { ReferenceFence } from '../gc/fence.js';

/** Garbage collection deleted the data while it was being linked (server/gc/fence.ts); the link was taken back. */
export class BlobDataGoneError extends OciError {
  constructor(digest: string) {
    super(503, 'UNAVAILABLE', 'garbage collection removed this content while it was being linked; push it again', { digest }, { 'Retry-After': '1' });
  }
}

export interface BlobInfo {
  digest: string;
  size: number;
}

export class BlobStore {
  constructor(
    private readonly driver: StorageDriver,
    private readonly cache = new DescriptorCache(),
    /** Garbage collection's writer side: links made while a collection runs are pinned and checked. */
    private readonly fence?: ReferenceFence,
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
        return String((await this.driver.stat(paths.blobData(digest), { file: true })).size);
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
    await this.writeLink(name, digest);
    if (await this.fence?.protect(name, [digest.digest])) {
      // A collection is running: an earlier delete batch may have taken the link or the data meanwhile.
      await this.writeLink(name, digest);
      if ((await this.statGlobal(digest)) === undefined) {
        await this.deleteLink(name, digest);
        throw new BlobDataGoneError(digest.digest);
      }
    }
  }

  private async writeLink(name: string, digest: ParsedDigest): Promise<void> {
    await this.cache.write(cacheKeys.link(name, digest.digest), '1', () => this.driver.putContent(paths.layerLink(name, digest), digest.digest));
  }

  async isLinked(name: string, digest: ParsedDigest): Promise<boolean> {
    const linked = await this.cache.read(cacheKeys.link(name, digest.digest), async () =>
      (await exists(this.driver, paths.layerLink(name, digest), { file: true })) ? '1' : undefined,
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
    try {
      await this.link(name, digest);
    } catch (error) {
      if (error instanceof BlobDataGoneError) return undefined; // collected meanwhile: the client uploads it
      throw error;
    }
    return { digest: digest.digest, size };
  }

  /** Removes the repository's link; the data stays until garbage collection finds it unreferenced. */
  async unlink(name: string, digest: ParsedDigest): Promise<void> {
    if (!(await this.isLinked(name, digest))) throw blobUnknown(digest.digest);
    await this.cache.delete([cacheKeys.link(name, digest.digest)], () => this.driver.delete(paths.layer(name, digest)));
  }

  /** Removes the repository's link (no existence check; missing is not an error). */
  async deleteLink(name: string, digest: ParsedDigest): Promise<void> {
    await this.cache.delete([cacheKeys.link(name, digest.digest)], () => removeFile(this.driver, paths.layerLink(name, digest)));
  }

  /** Garbage collection: removes links of the repository, in as few requests as the driver allows. */
  async deleteLinks(name: string, digests: ParsedDigest[]): Promise<void> {
    const keys = digests.map((d) => cacheKeys.link(name, d.digest));
    await this.cache.delete(keys, () => removeFiles(this.driver, digests.map((d) => paths.layerLink(name, d))));
  }

  /** Garbage collection: removes stored data that no repository links any more. */
  async deleteData(digests: ParsedDigest[]): Promise<void> {
    const keys = digests.map((d) => cacheKeys.blobSize(d.digest));
    await this.cache.delete(keys, () => removeFiles(this.driver, digests.map((d) => paths.blobData(d))));
  }

  /** Stores bytes that were already verified against `digest` (small content such as manifests). */
  async putVerified(digest: ParsedDigest, content: Buffer): Promise<void> {
    const existing = await this.statGlobal(digest);
    if (existing === content.length) return;
    await this.storeData(digest, content.length, () => this.driver.putContent(paths.blobData(digest), content));
  }

  /**
   * Runs the storage write that puts the blob's data in place, and records its size in the shared cache: after
   * garbage collection deleted the data, a tombstone would otherwise hide the new copy for a minute.
   */
  async storeData(digest: ParsedDigest, size: number, write: () => Promise<void>): Promise<void> {
    await this.cache.write(cacheKeys.blobSize(digest.digest), String(size), write);
  }
}
