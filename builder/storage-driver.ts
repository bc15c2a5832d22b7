// Which containers-storage driver buildah uses (builder.buildah.storagedriver). `auto`, the default, picks
// overlay where buildah can use it in the cache directory, else vfs. vfs stores every layer as a full copy
// of the filesystem below it: with dify-api's 1.9 GB virtual environment, each step after it costs
// seconds and gigabytes of cache, where overlay stores only what the step changed. A storage root that
// exists keeps the driver it was made with (containers-storage refuses to open it with another one).
import { randomBytes } from 'node:crypto';
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { JobError, RetryableJobError } from '../server/jobs/job.js';
import { execStreaming } from './exec.js';

/** The drivers whose storage roots are recognised by their `<driver>-layers` directory. */
const KNOWN = ['overlay', 'vfs'] as const;

/** The driver a storage root was made with; undefined when it does not exist yet. */
export async function existingDriver(root: string): Promise<string | undefined> {
  let entries: string[];
  try {
    entries = await readdir(root);
  } catch (error) {
    // Only a missing root is a new one: guessing on any other error could start a second store beside it.
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  return KNOWN.find((driver) => entries.includes(`${driver}-layers`));
}

/** Probe output that says the machine was short of something, not that overlay is refused. */
const RESOURCE_SHORTAGE = [/no space left on device/i, /too many open files/i, /cannot allocate memory/i, /disk quota exceeded/i];

/**
 * Whether buildah's overlay driver works in `dir`: buildah opens a throw-away store there, with the
 * driver's own checks (the kernel mounts overlay, the filesystem is not overlayfs itself and has d_type).
 * Not in unprivileged containers, nor on a container's root without a volume. "No" only when buildah ran
 * and refused: its answer decides the storage root's driver for good, so a probe that could not tell (it
 * timed out, was killed, the disk was full, buildah could not start) throws instead, and the build fails
 * with an error rather than putting a vfs root where overlay works.
 */
export async function overlayWorks(buildah: string, dir: string, timeoutMs = 60_000): Promise<boolean> {
  const probe = join(dir, `overlay-probe-${randomBytes(6).toString('hex')}`);
  try {
    const result = await execStreaming(buildah, ['--root', join(probe, 'root'), '--runroot', join(probe, 'run'), '--storage-driver', 'overlay', 'images', '--quiet'], { timeoutMs });
    if (result.code === 0) return true;
    const output = result.tail.join('\n');
    if (result.code === null || RESOURCE_SHORTAGE.some((pattern) => pattern.test(output))) {
      const why = result.stopped === 'timeout' ? `no answer in ${timeoutMs / 1000} s` : result.signal ? `killed by ${result.signal}` : (result.tail.at(-1) ?? 'no output');
      throw new RetryableJobError(`could not tell whether buildah's overlay storage driver works in ${dir}: ${why}`, { code: 'BUILDER_UNAVAILABLE' });
    }
    return false;
  } catch (error) {
    if (error instanceof JobError) throw error;
    // Not a passing state (buildah is missing or not executable): no retry, the message says why.
    throw new JobError('BUILDER_UNAVAILABLE', `could not run ${buildah} to probe its overlay storage driver: ${(error as Error).message}`);
  } finally {
    await rm(probe, { recursive: true, force: true }).catch(() => undefined);
  }
}

/** The driver for the storage root `root` when the configuration says `configured`. */
export async function chooseStorageDriver(configured: string, root: string, overlaySupported: () => Promise<boolean>): Promise<string> {
  if (configured !== 'auto') return configured;
  return (await existingDriver(root)) ?? ((await overlaySupported()) ? 'overlay' : 'vfs');
}
