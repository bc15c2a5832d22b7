// Which containers-storage driver buildah uses (builder.buildah.storagedriver). `auto`, the default, picks
// overlay where the kernel can mount it on the cache directory, else vfs. vfs stores every layer as a full
// copy of the filesystem below it: with dify-api's 1.9 GB virtual environment, each step after it costs
// seconds and gigabytes of cache, where overlay stores only what the step changed. A storage root that
// exists keeps the driver it was made with (containers-storage refuses to open it with another one).
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { execStreaming } from './exec.js';

/** The drivers whose storage roots are recognised by their `<driver>-layers` directory. */
const KNOWN = ['overlay', 'vfs'] as const;

/** The driver a storage root was made with, if it exists. */
export async function existingDriver(root: string): Promise<string | undefined> {
  const entries = await readdir(root).catch(() => [] as string[]);
  return KNOWN.find((driver) => entries.includes(`${driver}-layers`));
}

/**
 * Whether an overlay filesystem mounts in `dir`: not in unprivileged containers, nor where `dir` is itself
 * on overlayfs (a container's root without a volume).
 */
export async function overlayMounts(dir: string, mountPath = 'mount', umountPath = 'umount'): Promise<boolean> {
  const probe = join(dir, `overlay-probe-${randomBytes(6).toString('hex')}`);
  const [lower, upper, work, merged] = ['lower', 'upper', 'work', 'merged'].map((name) => join(probe, name)) as [string, string, string, string];
  try {
    for (const sub of [lower, upper, work, merged]) await mkdir(sub, { recursive: true });
    const mounted = await execStreaming(mountPath, ['-t', 'overlay', 'overlay', '-o', `lowerdir=${lower},upperdir=${upper},workdir=${work}`, merged], { timeoutMs: 10_000 });
    if (mounted.code !== 0) return false;
    await execStreaming(umountPath, [merged], { timeoutMs: 10_000 });
    return true;
  } catch {
    return false;
  } finally {
    await rm(probe, { recursive: true, force: true }).catch(() => undefined);
  }
}

/** The driver for the storage root `root` when the configuration says `configured`. */
export async function chooseStorageDriver(configured: string, root: string, overlaySupported: () => Promise<boolean>): Promise<string> {
  if (configured !== 'auto') return configured;
  return (await existingDriver(root)) ?? ((await overlaySupported()) ? 'overlay' : 'vfs');
}
