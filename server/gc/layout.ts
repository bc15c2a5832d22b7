// Reading the storage layout (server/registry/paths.ts) for garbage collection: which digests a repository
// links as layers and revisions, its tags, its referrers entries, and the stored blobs. Listings only;
// modification times are read (stat) where a decision needs them.
import { isNotFound, type StorageDriver } from '../../storage-drivers/driver.js';
import { parseDigest, type ParsedDigest } from '../registry/digest.js';
import { paths, ROOT } from '../registry/paths.js';

const ALGORITHMS = ['sha256', 'sha512'] as const;

/** Direct children's base names, or none when the directory does not exist. */
export async function children(driver: StorageDriver, dir: string): Promise<string[]> {
  try {
    return (await driver.list(dir)).map((child) => child.slice(child.lastIndexOf('/') + 1));
  } catch (error) {
    if (isNotFound(error)) return [];
    throw error;
  }
}

/** `<dir>/<alg>/<hex>` entries as digests (layer links, revisions). */
async function digestDirs(driver: StorageDriver, dir: string): Promise<string[]> {
  const found: string[] = [];
  for (const algorithm of ALGORITHMS) {
    for (const hex of await children(driver, `${dir}/${algorithm}`)) {
      const digest = parseDigest(`${algorithm}:${hex}`);
      if (digest) found.push(digest.digest);
    }
  }
  return found;
}

export function layerDigests(driver: StorageDriver, repository: string): Promise<string[]> {
  return digestDirs(driver, `${paths.repository(repository)}/_layers`);
}

export function revisionDigests(driver: StorageDriver, repository: string): Promise<string[]> {
  return digestDirs(driver, `${paths.repository(repository)}/_manifests/revisions`);
}

export function tagNames(driver: StorageDriver, repository: string): Promise<string[]> {
  return children(driver, paths.tags(repository));
}

/** What a tag names, or undefined when it is gone or unreadable. */
export async function readTag(driver: StorageDriver, repository: string, tag: string): Promise<string | undefined> {
  try {
    return parseDigest((await driver.getContent(paths.tagLink(repository, tag))).toString().trim())?.digest;
  } catch (error) {
    if (isNotFound(error)) return undefined;
    throw error;
  }
}

/** Modification time in ms, or undefined when the file is gone. */
export async function modTime(driver: StorageDriver, path: string): Promise<number | undefined> {
  try {
    return (await driver.stat(path)).modTime.getTime();
  } catch (error) {
    if (isNotFound(error)) return undefined;
    throw error;
  }
}

export interface ReferrerEntry {
  subject: ParsedDigest;
  referrer: ParsedDigest;
}

/** Every referrers entry of the repository (`_referrers/<alg>/<subject hex>/<alg>-<referrer hex>.json`). */
export async function referrerEntries(driver: StorageDriver, repository: string): Promise<ReferrerEntry[]> {
  const entries: ReferrerEntry[] = [];
  const root = `${paths.repository(repository)}/_referrers`;
  for (const algorithm of ALGORITHMS) {
    for (const hex of await children(driver, `${root}/${algorithm}`)) {
      const subject = parseDigest(`${algorithm}:${hex}`);
      if (!subject) continue;
      for (const file of await children(driver, `${root}/${algorithm}/${hex}`)) {
        const match = /^([a-z0-9]+)-([a-f0-9]+)\.json$/.exec(file);
        const referrer = match ? parseDigest(`${match[1]}:${match[2]}`) : undefined;
        if (referrer) entries.push({ subject, referrer });
      }
    }
  }
  return entries;
}

/** Every stored blob (`blobs/<alg>/<2 hex>/<hex>`), prefix by prefix, so a caller can work as it goes. */
export async function* storedBlobs(driver: StorageDriver): AsyncGenerator<ParsedDigest[]> {
  for (const algorithm of ALGORITHMS) {
    const dir = `${ROOT}/blobs/${algorithm}`;
    for (const prefix of (await children(driver, dir)).sort()) {
      const digests: ParsedDigest[] = [];
      for (const hex of await children(driver, `${dir}/${prefix}`)) {
        const digest = parseDigest(`${algorithm}:${hex}`);
        if (digest && hex.startsWith(prefix)) digests.push(digest);
      }
      yield digests;
    }
  }
}
