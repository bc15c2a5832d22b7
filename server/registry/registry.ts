// The registry domain as one object: the stores wired to one storage driver and one deletion policy.
import type { StorageDriver } from '../../storage-drivers/driver.js';
import { BlobStore } from './blob-store.js';
import { listRepositories } from './catalog.js';
import { ManifestStore } from './manifest-store.js';
import { ReferrerStore } from './referrer-store.js';
import { TagStore } from './tag-store.js';
import { UploadStore } from './upload-store.js';
import { DescriptorCache } from './descriptor-cache.js';
import type { UploadSessions } from './upload-sessions.js';
import type { Locks } from '../state/locks.js';
import { GcFence, type ReferenceFence } from '../gc/fence.js';

export interface RegistryOptions {
  deleteEnabled: boolean;
  /** Shared state of several replicas (Redis); storage alone when absent. */
  shared?: {
    sessions: UploadSessions;
    cache: DescriptorCache;
    locks: Locks;
  };
  /** The immutable-tag rule covering a tag (retention.rules), described for the 403 message. */
  immutableTag?: (name: string, tag: string) => string | undefined;
  /** Garbage collection's writer side; by default the marker and pins in this storage (server/gc/fence.ts). */
  fence?: ReferenceFence;
}

export class Registry {
  readonly blobs: BlobStore;
  readonly uploads: UploadStore;
  readonly tags: TagStore;
  readonly referrers: ReferrerStore;
  readonly manifests: ManifestStore;

  constructor(
    readonly driver: StorageDriver,
    readonly options: RegistryOptions,
  ) {
    const cache = options.shared?.cache ?? new DescriptorCache();
    const fence = options.fence ?? new GcFence(driver);
    this.blobs = new BlobStore(driver, cache, fence);
    this.uploads = new UploadStore(driver, this.blobs, options.shared?.sessions);
    this.tags = new TagStore(driver, cache, options.shared?.locks);
    this.referrers = new ReferrerStore(driver);
    this.manifests = new ManifestStore(driver, this.blobs, this.tags, this.referrers, cache, { fence, immutableTag: options.immutableTag });
  }

  repositories(): Promise<string[]> {
    return listRepositories(this.driver);
  }
}
