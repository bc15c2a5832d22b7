// Garbage collection as the registry runs it: from the config (gc.*, retention.rules, upload purging), one run
// at a time across processes and replicas (the `gc` lock), scheduled in every process (the lock and the last
// run's time decide which one runs), as an admin job, or from the CLI.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { isNotFound, type StorageDriver } from '../../storage-drivers/driver.js';
import { durationMs, type Config } from '../config.js';
import type { LeaseStore } from '../registry/leases.js';
import type { Registry } from '../registry/registry.js';
import type { HeldLock, Locks } from '../state/locks.js';
import { collectGarbage, type CollectOptions } from './collector.js';
import { GC_ROOT } from './fence.js';
import { recordRun, type GcReport } from './report.js';
import { RetentionRules } from './retention.js';

export interface GcServiceDeps {
  driver: StorageDriver;
  registry: Registry;
  leases: LeaseStore;
  locks: Locks;
  logger: Logger;
}

/** What a run may override of the configuration (the admin API's body, the CLI's options). */
export interface GcRunRequest {
  dryRun?: boolean;
  gracePeriodMs?: number;
  untagged?: 'keep' | number;
  /** Storage operations in flight (default gc.concurrency). */
  concurrency?: number;
}

export interface GcRunHooks {
  signal?: AbortSignal;
  log?(line: string): void;
  progress?: CollectOptions['progress'];
  /** How long to wait for a run elsewhere to finish; 0: give up at once (undefined is returned). */
  waitMs?: number;
}

const LOCK = 'gc';
const LAST_RUN = `${GC_ROOT}/last-run.json`;
/** Scheduled runs check this often at most (and at the interval when it is shorter). */
const CHECK_MS = 5 * 60_000;

export class GcBusyError extends Error {
  constructor() {
    super('another garbage collection is running');
    this.name = 'GcBusyError';
  }
}

export class GcService {
  readonly retention: RetentionRules;

  constructor(
    private readonly config: Config,
    private readonly deps: GcServiceDeps,
  ) {
    this.retention = new RetentionRules(config.retention.rules);
  }

  /** One run with the lock held; throws GcBusyError when it stayed taken for `waitMs`. */
  async run(request: GcRunRequest = {}, hooks: GcRunHooks = {}): Promise<GcReport> {
    const lock = await this.acquire(hooks.waitMs ?? 0, hooks.signal);
    if (!lock) throw new GcBusyError();
    try {
      return await this.runLocked(request, hooks, lock);
    } finally {
      await lock.release().catch(() => undefined);
    }
  }

  /** Checks now and then whether a scheduled run is due; returns the stopper. */
  schedule(): () => void {
    const gc = this.config.gc;
    if (!gc.enabled) return () => undefined;
    const intervalMs = durationMs(gc.interval);
    const checkMs = Math.max(1000, Math.min(intervalMs, CHECK_MS));
    let stopped = false;
    let timer: NodeJS.Timeout;
    const tick = async () => {
      try {
        await this.runIfDue(intervalMs);
      } catch (error) {
        this.deps.logger.error({ err: error }, 'scheduled garbage collection failed');
      }
      if (!stopped) timer = setTimeout(() => void tick(), checkMs).unref();
    };
    // Jittered, so replicas started together do not all list the store at once.
    timer = setTimeout(() => void tick(), Math.min(checkMs, 60_000) * (1 + Math.random())).unref();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }

  private async runIfDue(intervalMs: number): Promise<void> {
    const lock = await this.deps.locks.tryLock(LOCK).catch(() => undefined);
    if (!lock) return;
    try {
      const last = await this.lastRun();
      if (last !== undefined && Date.now() - last < intervalMs) return;
      await this.runLocked({}, {}, lock);
    } finally {
      await lock.release().catch(() => undefined);
    }
  }

  private async runLocked(request: GcRunRequest, hooks: GcRunHooks, lock: HeldLock): Promise<GcReport> {
    const { config, deps } = this;
    const purging = config.storage.maintenance.uploadpurging;
    const concurrency = request.concurrency ?? config.gc.concurrency;
    const options: CollectOptions = {
      dryRun: request.dryRun ?? config.gc.dryrun,
      gracePeriodMs: request.gracePeriodMs ?? durationMs(config.gc.graceperiod),
      untagged: request.untagged ?? (config.gc.untagged === 'keep' ? 'keep' : durationMs(config.gc.untagged)),
      uploadPurgeAgeMs: purging.enabled ? durationMs(purging.age) : undefined,
      concurrency,
      // Repositories one at a time when few operations are in flight, so that each still gets several.
      repositoryConcurrency: concurrency >= 8 ? 2 : 1,
      signal: hooks.signal,
      lockHeld: () => lock.isHeld?.() ?? true,
      log: hooks.log,
      progress: hooks.progress,
    };
    let report: GcReport | undefined;
    try {
      report = await collectGarbage({ driver: deps.driver, registry: deps.registry, leases: deps.leases, retention: this.retention }, options);
    } finally {
      recordRun(report);
    }
    deps.logger.info({ gc: report }, options.dryRun ? 'garbage collection dry run' : 'garbage collection');
    if (!options.dryRun) await deps.driver.putContent(LAST_RUN, JSON.stringify({ startedAt: report.startedAt, finishedAt: report.finishedAt }));
    return report;
  }

  private async lastRun(): Promise<number | undefined> {
    try {
      const record = JSON.parse((await this.deps.driver.getContent(LAST_RUN)).toString()) as { startedAt?: string };
      const at = Date.parse(record.startedAt ?? '');
      return Number.isNaN(at) ? undefined : at;
    } catch (error) {
      if (isNotFound(error) || error instanceof SyntaxError) return undefined;
      throw error;
    }
  }

  private async acquire(waitMs: number, signal?: AbortSignal): Promise<HeldLock | undefined> {
    const deadline = Date.now() + waitMs;
    for (;;) {
      signal?.throwIfAborted();
      const lock = await this.deps.locks.tryLock(LOCK);
      if (lock || Date.now() >= deadline) return lock;
      await sleep(Math.min(1000, Math.max(0, deadline - Date.now())), undefined, { signal });
    }
  }
}
