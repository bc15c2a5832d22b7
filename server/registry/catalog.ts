// The repository catalog: a walk of the repositories tree, where a directory holding content
// marker directories is a repository (names nest: `a/b` and `a/b/c` can both exist).
import { isNotFound, type StorageDriver } from '../../storage-drivers/driver.js';
import { paths, REPOSITORIES } from './paths.js';

/** Marker directories of a repository that holds content (an upload alone does not make one). */
const CONTENT_MARKERS = ['_manifests', '_layers'];
import { compareCodeUnits } from './pagination.js';

/**
 * Whether `name` is a repository (as the catalog counts them): a directory of that name may also be only
 * the parent of nested repositories, or hold nothing but upload sessions.
 */
export async function isRepository(driver: StorageDriver, name: string): Promise<boolean> {
  try {
    const children = await driver.list(paths.repository(name));
    return children.some((child) => CONTENT_MARKERS.includes(child.slice(child.lastIndexOf('/') + 1)));
  } catch (error) {
    if (isNotFound(error)) return false;
    throw error;
  }
}

export async function listRepositories(driver: StorageDriver): Promise<string[]> {
  const found: string[] = [];
  async function visit(dir: string, name: string): Promise<void> {
    let children: string[];
    try {
      children = await driver.list(dir);
    } catch (error) {
      if (isNotFound(error)) return;
      throw error;
    }
    const basenames = children.map((child) => child.slice(child.lastIndexOf('/') + 1));
    if (name && basenames.some((base) => CONTENT_MARKERS.includes(base))) found.push(name);
    await Promise.all(
      basenames
        .filter((base) => !base.startsWith('_'))
        .map((base) => visit(`${dir}/${base}`, name ? `${name}/${base}` : base)),
    );
  }
  await visit(REPOSITORIES, '');
  return found.sort(compareCodeUnits);
}
