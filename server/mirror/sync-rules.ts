// Sync rules (`mirror.sync`, zot's sync is the model): each rule mirrors the listed upstream repositories'
// matching tags every `interval`, and on demand through POST /admin/v1/mirror {"sync": "<name>"}.
// Every process checks the schedule; a lock and a last-run record in storage make one of them submit.
import type { Logger } from 'pino';
import { isNotFound, type StorageDriver } from '../../storage-drivers/driver.js';
import type { Config } from '../config.js';
import { durationMs } from '../config.js';
import { isFinished, type JobRecord } from '../jobs/job.js';
import type { JobQueue } from '../jobs/queue.js';
import type { Locks } from '../state/locks.js';
import { parseMirrorRequest, type MirrorJobRequest } from './mirror-request.js';

type SyncRuleConfig = Config['mirror']['sync'][number];

interface Rule {
  name: string;
  intervalMs: number;
  requests: MirrorJobRequest[];
}

const CHECK_EVERY_MS = 60_000;

export class SyncRules {
  private readonly rules: Map<string, Rule>;

  constructor(
    configured: SyncRuleConfig[],
    private readonly queue: JobQueue,
    private readonly locks: Locks,
    private readonly driver: StorageDriver,
    private readonly logger: Logger,
  ) {
    this.rules = new Map(configured.map((rule) => [rule.name, compile(rule)]));
  }

  names(): string[] {
    return [...this.rules.keys()];
  }

  /** Submits the rule's jobs (one per repository); undefined for an unknown rule. */
  async runNow(name: string): Promise<JobRecord[] | undefined> {
    const rule = this.rules.get(name);
    if (!rule) return undefined;
    const jobs: JobRecord[] = [];
    for (const request of rule.requests) jobs.push(await this.queue.submit('mirror', request));
    await this.driver.putContent(lastRunPath(name), JSON.stringify({ lastRun: new Date().toISOString(), jobs: jobs.map((j) => j.id) }));
    return jobs;
  }

  /** Starts the periodic checks; returns their stopper. */
  schedule(): () => void {
    if (this.rules.size === 0) return () => undefined;
    const timer = setInterval(() => void this.runDue(), CHECK_EVERY_MS);
    timer.unref();
    const first = setTimeout(() => void this.runDue(), 5_000 + Math.random() * 5_000);
    first.unref();
    return () => {
      clearInterval(timer);
      clearTimeout(first);
    };
  }

  async runDue(now = Date.now()): Promise<string[]> {
    const ran: string[] = [];
    for (const rule of this.rules.values()) {
      const lock = await this.locks.tryLock(`mirror-sync/${rule.name}`).catch(() => undefined);
      if (!lock) continue;
      try {
        const last = await this.lastRun(rule.name);
        if (last !== undefined && last.at + rule.intervalMs > now) continue;
        // A run that outlasts its interval (a slow upstream, a large repository) is not joined by another
        // that would fetch the same content beside it; the queue would grow without end.
        const unfinished = last ? await this.unfinished(last.jobs) : [];
        if (unfinished.length > 0) {
          this.logger.warn({ rule: rule.name, jobs: unfinished }, 'sync rule due, but its last run is still going: skipped');
          continue;
        }
        const jobs = await this.runNow(rule.name);
        this.logger.info({ rule: rule.name, jobs: jobs?.map((j) => j.id) }, 'sync rule submitted');
        ran.push(rule.name);
      } catch (error) {
        this.logger.error({ rule: rule.name, err: error }, 'sync rule failed to submit');
      } finally {
        await lock.release().catch(() => undefined);
      }
    }
    return ran;
  }

  /** The ids of `jobs` still queued or running (a job the queue forgot is finished). */
  private async unfinished(jobs: string[]): Promise<string[]> {
    const records = await Promise.all(jobs.map((id) => this.queue.get(id)));
    return records.filter((job): job is JobRecord => job !== undefined && !isFinished(job.state)).map((job) => job.id);
  }

  private async lastRun(name: string): Promise<{ at: number; jobs: string[] } | undefined> {
    try {
      const record = JSON.parse((await this.driver.getContent(lastRunPath(name))).toString()) as { lastRun?: string; jobs?: unknown };
      const at = Date.parse(record.lastRun ?? '');
      const jobs = Array.isArray(record.jobs) ? record.jobs.filter((id): id is string => typeof id === 'string') : [];
      return Number.isNaN(at) ? undefined : { at, jobs };
    } catch (error) {
      if (isNotFound(error) || error instanceof SyntaxError) return undefined;
      throw error;
    }
  }
}

function lastRunPath(name: string): string {
  return `/_mirror/sync/${name}.json`;
}

/** The rule's mirror requests, validated at start: a bad rule fails the configuration, not a job at 3 am. */
function compile(rule: SyncRuleConfig): Rule {
  const filters = rule.tags ? { tags: rule.tags } : rule.semver ? { semver: rule.semver } : { tagRegex: rule.tagregex ?? '.*' };
  const requests = rule.repositories.map((repository) => {
    try {
      return parseMirrorRequest({
        source: `${rule.upstream}/${repository}`,
        ...filters,
        ...(rule.platforms ? { platforms: rule.platforms } : {}),
        layouts: rule.layouts,
      });
    } catch (error) {
      throw new Error(`mirror.sync rule "${rule.name}": ${(error as Error).message}`);
    }
  });
  return { name: rule.name, intervalMs: durationMs(rule.interval), requests };
}
