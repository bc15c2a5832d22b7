// Temporary tags that outlived their build. A build's parent deletes its platforms' `build-tmp-<job>-...`
// tags when it ends, but not when its process died first (the job is then failed as interrupted without
// running its handler), nor when a platform pushed after a cancelled parent had cleaned up. Left alone,
// such a tag shows in tag lists and keeps its image from garbage collection for ever. Swept here: the
// repositories of the build jobs still on record, every temporary tag whose job has finished, or is
// unknown and older than any build could still be running.
import type { Logger } from 'pino';
import { jobIdTime } from '../server/jobs/ids.js';
import { isFinished } from '../server/jobs/job.js';
import type { JobQueue } from '../server/jobs/queue.js';
import type { Registry } from '../server/registry/registry.js';
import { tempTagJob } from './platform-build.js';

/** A temporary tag of a job nobody knows (expired from the job list) goes only after this long. */
const UNKNOWN_AFTER_MS = 7 * 86_400_000;

export interface LeftoverSweep {
  queue: Pick<JobQueue, 'list' | 'get'>;
  registry: Registry;
  logger: Pick<Logger, 'info' | 'warn'>;
  now?: number;
}

/** Removes the leftover temporary tags; returns them as `repository:tag`. */
export async function removeLeftoverTempTags({ queue, registry, logger, now = Date.now() }: LeftoverSweep): Promise<string[]> {
  const removed: string[] = [];
  for (const repository of await buildRepositories(queue)) {
    const tags = await registry.tags.all(repository).catch(() => [] as string[]);
    for (const tag of tags) {
      const id = tempTagJob(tag);
      if (!id || !(await ended(queue, id, now))) continue;
      try {
        await registry.manifests.delete(repository, tag);
        removed.push(`${repository}:${tag}`);
      } catch (error) {
        logger.warn({ err: (error as Error).message, repository, tag }, 'could not remove a leftover temporary build tag');
      }
    }
  }
  if (removed.length > 0) logger.info({ tags: removed }, 'removed temporary build tags whose builds had ended');
  return removed;
}

/** Whether the job can no longer use its temporary tags. A failed lookup says no: the tag waits. */
async function ended(queue: LeftoverSweep['queue'], id: string, now: number): Promise<boolean> {
  const job = await queue.get(id).catch(() => null);
  if (job === null) return false;
  if (job === undefined) return now - jobIdTime(id) > UNKNOWN_AFTER_MS;
  return isFinished(job.state);
}

/** The repositories that build jobs on record pushed to. */
async function buildRepositories(queue: LeftoverSweep['queue']): Promise<Set<string>> {
  const repositories = new Set<string>();
  let last: string | undefined;
  do {
    const page = await queue.list({ kind: 'build', n: 100, ...(last ? { last } : {}) });
    for (const job of page.jobs) {
      const repository = (job.request as { repository?: unknown } | null)?.repository;
      if (typeof repository === 'string') repositories.add(repository);
    }
    last = page.next;
  } while (last);
  return repositories;
}
