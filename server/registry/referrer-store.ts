// The referrers API's index: one small descriptor file per (subject, referrer) pair, written when a
// manifest with a `subject` is pushed, so listing never parses every manifest of the repository.
import { isNotFound, type StorageDriver } from '../../storage-drivers/driver.js';
import type { Descriptor } from './descriptor.js';
import { parseDigest, type ParsedDigest } from './digest.js';
import { paths } from './paths.js';

export class ReferrerStore {
  constructor(private readonly driver: StorageDriver) {}

  async add(name: string, subject: ParsedDigest, referrer: Descriptor): Promise<void> {
    const digest = parseDigest(referrer.digest)!;
    await this.driver.putContent(paths.referrer(name, subject, digest), JSON.stringify(referrer));
  }

  async remove(name: string, subject: ParsedDigest, referrer: ParsedDigest): Promise<void> {
    await this.driver.delete(paths.referrer(name, subject, referrer));
  }

  async list(name: string, subject: ParsedDigest): Promise<Descriptor[]> {
    let files: string[];
    try {
      files = await this.driver.list(paths.referrers(name, subject));
    } catch (error) {
      if (isNotFound(error)) return [];
      throw error;
    }
    const descriptors = await Promise.all(
      files.filter((file) => file.endsWith('.json')).map(async (file) => {
        try {
          return JSON.parse((await this.driver.getContent(file)).toString()) as Descriptor;
        } catch (error) {
          if (isNotFound(error)) return undefined; // removed while listing
          throw error;
        }
      }),
    );
    return descriptors.filter((d): d is Descriptor => d !== undefined).sort((a, b) => a.digest.localeCompare(b.digest));
  }
}
