// Tags: one link file per tag, replaced atomically, so concurrent pushes leave one winner and never an empty link.
import { isNotFound, type StorageDriver } from '../../storage-drivers/driver.js';
import { manifestUnknown, nameUnknown } from './errors.js';
import { parseDigest, type ParsedDigest } from './digest.js';
import { paths } from './paths.js';
import { compareCodeUnits } from './pagination.js';

export class TagStore {
  constructor(private readonly driver: StorageDriver) {}

  async resolve(name: string, tag: string): Promise<ParsedDigest> {
    try {
      const digest = parseDigest((await this.driver.getContent(paths.tagLink(name, tag))).toString().trim());
      if (!digest) throw manifestUnknown(tag);
      return digest;
    } catch (error) {
      if (isNotFound(error)) throw manifestUnknown(tag);
      throw error;
    }
  }

  async set(name: string, tag: string, digest: ParsedDigest): Promise<void> {
    await this.driver.putContent(paths.tagLink(name, tag), digest.digest);
  }

  async delete(name: string, tag: string): Promise<void> {
    try {
      await this.driver.stat(paths.tagLink(name, tag));
    } catch (error) {
      if (isNotFound(error)) throw manifestUnknown(tag);
      throw error;
    }
    await this.driver.delete(paths.tag(name, tag));
  }

  /** All tags, sorted; NAME_UNKNOWN when the repository does not exist. */
  async all(name: string): Promise<string[]> {
    let entries: string[];
    try {
      entries = await this.driver.list(paths.tags(name));
    } catch (error) {
      if (!isNotFound(error)) throw error;
      if (!(await this.repositoryExists(name))) throw nameUnknown(name);
      return [];
    }
    return entries.map((entry) => entry.slice(entry.lastIndexOf('/') + 1)).sort(compareCodeUnits);
  }

  /** Tags that point at `digest` (for manifest deletion). */
  async pointingAt(name: string, digest: string): Promise<string[]> {
    const tags = await this.all(name).catch(() => [] as string[]);
    const hits = await Promise.all(
      tags.map(async (tag) => ((await this.resolve(name, tag).catch(() => undefined))?.digest === digest ? tag : undefined)),
    );
    return hits.filter((tag): tag is string => tag !== undefined);
  }

  private async repositoryExists(name: string): Promise<boolean> {
    try {
      return (await this.driver.stat(paths.repository(name))).isDir;
    } catch (error) {
      if (isNotFound(error)) return false;
      throw error;
    }
  }
}
