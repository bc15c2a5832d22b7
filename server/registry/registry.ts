// The registry domain as one object: the stores wired to one storage driver and one deletion policy.
import type { StorageDriver } from '../../storage-drivers/driver.js';
import { BlobStore } from './blob-store.js';
import { listRepositories } from './catalog.js';
import { ManifestStore } from './manifest-store.js';
import { ReferrerStore } from './referrer-store.js';
import { TagStore } from './tag-store.js';
import { UploadStore } from './upload-store.js';

export interface RegistryOptions {
  deleteEnabled: boolean;
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
    this.blobs = new BlobStore(driver);
    this.uploads = new UploadStore(driver, this.blobs);
    this.tags = new TagStore(driver);
    this.referrers = new ReferrerStore(driver);
    this.manifests = new ManifestStore(driver, this.blobs, this.tags, this.referrers);
  }

  repositories(): Promise<string[]> {
    return listRepositories(this.driver);
  }
}
