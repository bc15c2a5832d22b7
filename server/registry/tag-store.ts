// Tags: one link file per tag, replaced atomically, so concurrent pushes leave one winner and never an empty link.
// Listing is cached per repository and validated by a version marker that every tag change rewrites, so a
// repository with 10,000 tags costs one small read per listing instead of ten S3 list calls.
import { randomUUID } from 'node:crypto';
import { isNotFound, type StorageDriver } from '../../storage-drivers/driver.js';
import { manifestUnknown, nameUnknown, OciError } from './errors.js';
import { cacheKeys, DescriptorCache } from './descriptor-cache.js';
import type { Locks } from '../state/locks.js';
import { parseDigest, type ParsedDigest } from './digest.js';
import { paths } from './paths.js';
import { compareCodeUnits } from './pagination.js';
import { isRepository } from './catalog.js';

const CACHED_REPOSITORIES = 256;
/** How long a tag update waits for a concurrent update of the same tag on another replica. */
const TAG_LOCK_WAIT_MS = 10_000;

export class TagStore {
  private readonly listings = new Map<string, { version: string; tags: string[] }>();

  constructor(
    private readonly driver: StorageDriver,
    private readonly cache = new DescriptorCache(),
    /** Replicas with a shared cache serialise updates of one tag, so the cache ends on storage's winner. */
    private readonly locks?: Locks,
  ) {}

  async resolve(name: string, tag: string): Promise<ParsedDigest> {
    const value = await this.cache.read(cacheKeys.tag(name, tag), () => this.readLink(name, tag));
    const digest = value === undefined ? undefined : parseDigest(value);
    if (!digest) throw manifestUnknown(tag);
    return digest;
  }

  private async readLink(name: string, tag: string): Promise<string | undefined> {
    try {
      return (await this.driver.getContent(paths.tagLink(name, tag))).toString().trim();
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  async set(name: string, tag: string, digest: ParsedDigest): Promise<void> {
    await this.exclusively(name, tag, () =>
      this.cache.write(cacheKeys.tag(name, tag), digest.digest, () => this.driver.putContent(paths.tagLink(name, tag), digest.digest)),
    );
    await this.bumpVersion(name);
  }

  async delete(name: string, tag: string): Promise<void> {
    try {
      await this.driver.stat(paths.tagLink(name, tag), { file: true });
    } catch (error) {
      if (isNotFound(error)) throw manifestUnknown(tag);
      throw error;
    }
    await this.exclusively(name, tag, () => this.cache.delete([cacheKeys.tag(name, tag)], () => this.driver.delete(paths.tag(name, tag))));
    await this.bumpVersion(name);
  }

  /**
   * Creates the tag only where it does not exist (immutable tags); returns the digest it already names otherwise.
   * Two first pushes at once: exactly one creates it.
   */
  async create(name: string, tag: string, digest: ParsedDigest): Promise<string | undefined> {
    let current: string | undefined;
    await this.exclusively(name, tag, async () => {
      current = await this.readLink(name, tag);
      if (current !== undefined) return;
      try {
        await this.cache.write(cacheKeys.tag(name, tag), digest.digest, async () => {
          if (!(await this.driver.putContentIfAbsent(paths.tagLink(name, tag), digest.digest))) throw new TagExistsError();
        });
      } catch (error) {
        if (!(error instanceof TagExistsError)) throw error;
        current = await this.readLink(name, tag); // the entry was dropped before the write: readers load storage's
      }
    });
    if (current === undefined) await this.bumpVersion(name);
    return current;
  }

  /** Retention: deletes the tag only while it still names `digest` (a tag moved since the decision stays). */
  async deleteIf(name: string, tag: string, digest: string): Promise<boolean> {
    let deleted = false;
    await this.exclusively(name, tag, async () => {
      if ((await this.readLink(name, tag)) !== digest) return;
      await this.cache.delete([cacheKeys.tag(name, tag)], () => this.driver.delete(paths.tag(name, tag)));
      deleted = true;
    });
    if (deleted) await this.bumpVersion(name);
    return deleted;
  }

  private async exclusively(name: string, tag: string, update: () => Promise<void>): Promise<void> {
    if (!this.locks) return update();
    const lock = await this.locks.lock(`tag/${name}/${tag}`, TAG_LOCK_WAIT_MS);
    if (!lock) {
      throw new OciError(503, 'UNAVAILABLE', 'the tag is being updated by another request; try again', { tag }, { 'Retry-After': '1' });
    }
    try {
      await update();
    } finally {
      await lock.release();
    }
  }

  /** All tags, sorted; NAME_UNKNOWN when the repository does not exist. */
  async all(name: string): Promise<string[]> {
    // The version is read before listing: a change after this point bumps it again, so a cached
    // listing is never kept under a version older than its content.
    let version = await this.version(name);
    const cached = this.listings.get(name);
    if (version !== undefined && cached?.version === version) {
      this.listings.delete(name);
      this.listings.set(name, cached);
      return cached.tags;
    }
    const tags = await this.list(name);
    if (version === undefined) {
      // A repository from before versions (or from Distribution). Start a version only if no tag change
      // wrote one meanwhile; otherwise this listing may already be stale and is not cached.
      const fresh = randomUUID();
      if (!(await this.driver.putContentIfAbsent(paths.tagsVersion(name), fresh))) return tags;
      version = fresh;
    }
    this.listings.set(name, { version, tags });
    if (this.listings.size > CACHED_REPOSITORIES) this.listings.delete(this.listings.keys().next().value!);
    return tags;
  }

  private async list(name: string): Promise<string[]> {
    let entries: string[];
    try {
      entries = await this.driver.list(paths.tags(name));
    } catch (error) {
      if (!isNotFound(error)) throw error;
      // Not a parent of nested repositories, nor a name with only uploads: those would answer [] and, by
      // the version written next, become repositories in the catalog.
      if (!(await isRepository(this.driver, name))) throw nameUnknown(name);
      return [];
    }
    return entries.map((entry) => entry.slice(entry.lastIndexOf('/') + 1)).sort(compareCodeUnits);
  }

  private async version(name: string): Promise<string | undefined> {
    try {
      return (await this.driver.getContent(paths.tagsVersion(name))).toString();
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  private async bumpVersion(name: string): Promise<void> {
    await this.driver.putContent(paths.tagsVersion(name), randomUUID());
  }

  /** Tags that point at `digest` (for manifest deletion). */
  async pointingAt(name: string, digest: string): Promise<string[]> {
    const tags = await this.all(name).catch(() => [] as string[]);
    const hits = await Promise.all(
      tags.map(async (tag) => ((await this.resolve(name, tag).catch(() => undefined))?.digest === digest ? tag : undefined)),
    );
    return hits.filter((tag): tag is string => tag !== undefined);
  }
}

class TagExistsError extends Error {}
