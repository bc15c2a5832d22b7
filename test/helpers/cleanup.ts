// Removes a test's temp directory safely: daemons and chroot builds can leave mounts behind,
// and `rm -rf` through a bind mount would delete whatever it points at.
import { readFile, rm } from 'node:fs/promises';
import { resolve, sep } from 'node:path';
import { run } from './process.js';

/** Mount points at or under `dir`, deepest first. */
async function mountsUnder(dir: string): Promise<string[]> {
  const root = resolve(dir);
  const table = await readFile('/proc/self/mounts', 'utf8').catch(() => '');
  return table
    .split('\n')
    .map((line) => line.split(' ')[1])
    .filter((p): p is string => p !== undefined)
    // /proc/mounts escapes spaces and other bytes as octal.
    .map((p) => p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((p) => p === root || p.startsWith(root + sep))
    .sort((a, b) => b.length - a.length);
}

export async function removeTree(dir: string): Promise<void> {
  for (const mount of await mountsUnder(dir)) {
    // Lazy unmount: a mount still busy for a moment must not stop the cleanup.
    await run('umount', ['-l', mount], { allowFailure: true });
  }
  const left = await mountsUnder(dir);
  if (left.length > 0) throw new Error(`refusing to remove ${dir}: still mounted: ${left.join(', ')}`);
  await rm(dir, { recursive: true, force: true, maxRetries: 3 });
}
