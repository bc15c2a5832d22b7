// Jobs without Redis: one process (the runner) runs them; state and logs live in storage, so every
// process and replica answers GET for any job. Layout, under the driver's root:
//   /_jobs/<id>/job.json    the record (plus which runner ran it), written by the submitter once, then
//                           only by the runner
//   /_jobs/<id>/log         the log, kept in the runner's memory and rewritten with putContent in batches
//                           (the driver has no append); the last lines are written before the final state
//   /_jobs/_open/<id>       jobs not finished yet: what the runner polls, so it never lists all jobs
//   /_jobs/_open/<id>.cancel  a cancel request from a process that is not the runner (same directory:
//                           one listing per poll, which is what S3 charges for)
//   /_jobs/_runner.lock     who the runner is (upload-lock.ts: expiry, renewal, takeover of a dead holder)
// Any process may call start(); the one that holds the lock runs jobs, the others stand by and take
// over when it stops or dies.
// Flows (submit with children) run in the runner too: a flow's children run inside their parent's run, all
// at once, then the parent's handler (local-flow.ts); the record stores the children with the parent.
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino, type Logger } from 'pino';
import { isNotFound, type StorageDriver } from '../../storage-drivers/driver.js';
import { tryLock, type HeldLock } from '../registry/upload-lock.js';
import { createJobContext } from './context.js';
import { runLocalFlow } from './local-flow.js';
import { pollLogs } from './follow.js';
import { isJobId, jobIdTime, newJobId } from './ids.js';
import {
  errorInfo,
  isFinished,
  isJobKind,
  JOB_ERROR,
  JobError,
  RetryableJobError,
  toJson,
  type ChildOutcome,
  type JobErrorInfo,
  type JobContext,
  type JobHandler,
  type JobKind,
  type JobRecord,
} from './job.js';
import {
  cancelledView,
  checkedChildren,
  WORK_QUEUE_PATTERN,
  type ChildJob,
  type SubmitOptions,
  type WorkOptions,
  JobFinishedError,
  JobNotFoundError,
  collectPage,
  type JobCounts,
  type JobListQuery,
  type JobPage,
  type JobQueue,
  type RegisterOptions,
} from './queue.js';

const ROOT = '/_jobs';
const CANCEL_SUFFIX = '.cancel';
const at = {
  dir: (id: string) => `${ROOT}/${id}`,
  record: (id: string) => `${ROOT}/${id}/job.json`,
  log: (id: string) => `${ROOT}/${id}/log`,
  open: `${ROOT}/_open`,
  openMarker: (id: string) => `${ROOT}/_open/${id}`,
  cancelMarker: (id: string) => `${ROOT}/_open/${id}${CANCEL_SUFFIX}`,
  lock: `${ROOT}/_runner.lock`,
};

interface StoredJob {
  record: JobRecord;
  /** The runner instance that set it running. */
  runner?: string;
  /** A retry waits until then (ms). */
  runAfter?: number;
  /** A flow's children (local-flow.ts), and how they ended once they have (a retry of the parent reuses it). */
  children?: ChildJob[];
  childOutcomes?: Record<string, ChildOutcome>;
}

interface LiveJob {
  record: JobRecord;
  lines: string[];
  /** Lines already in storage. */
  stored: number;
  controller: AbortController;
  stop?: 'cancel' | 'shutdown';
  /** Given up on at close(): its late ending must not overwrite the interrupted record. */
  abandoned?: boolean;
  done?: Promise<void>;
  children?: ChildJob[];
  childOutcomes?: Record<string, ChildOutcome>;
}

type Outcome =
  | { state: 'succeeded'; result: unknown }
  | { state: 'failed' | 'cancelled'; error: JobErrorInfo }
  | { retryInMs: number; error: JobErrorInfo };

export interface LocalJobQueueOptions {
  /** How often the runner looks for jobs and cancel requests from other processes. */
  pollIntervalMs?: number;
  /** How often a standby checks whether the runner is gone (it takes over then). */
  standbyIntervalMs?: number;
  /** Progress and log writes, at most this often per job. */
  flushIntervalMs?: number;
  /** Tries in all for a handler that throws RetryableJobError. */
  attempts?: number;
  /** First retry delay; doubles with every attempt. */
  backoffMs?: number;
  /** Finished jobs are deleted this long after they finished. */
  retentionMs?: number;
  /** close() waits this long for interrupted handlers to return. */
  shutdownGraceMs?: number;
  logger?: Pick<Logger, 'warn' | 'error'>;
}

const FINISHED_CACHE = 5_000;
const PRUNE_EVERY_MS = 3_600_000;
const READ_BATCH = 16;

export class LocalJobQueue implements JobQueue {
  private readonly options: Required<Omit<LocalJobQueueOptions, 'logger'>>;
  private readonly logger: Pick<Logger, 'warn' | 'error'>;
  /** Tells the runs of this instance from those of a runner that died. */
  private readonly runnerId = randomUUID();
  private readonly handlers = new Map<JobKind, { handler: JobHandler; concurrency: number }>();
  /** Work queues of flows' children: run inside their parent's run (local-flow.ts). */
  private readonly work = new Map<string, JobHandler>();
  private readonly live = new Map<string, LiveJob>();
  /** Open jobs the runner knows: after submit, only the runner writes a record, so this stays true. */
  private readonly known = new Map<string, StoredJob>();
  /** Finished records never change again. */
  private readonly finished = new Map<string, JobRecord>();
  private readonly retryTimers = new Set<NodeJS.Timeout>();
  private lock: HeldLock | undefined;
  private started = false;
  private closed = false;
  private pollTimer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> = Promise.resolve();
  private tickQueued = false;
  private lastPrune = 0;
  private lastLockTry = 0;

  constructor(
    private readonly driver: StorageDriver,
    options: LocalJobQueueOptions = {},
  ) {
    this.options = {
      pollIntervalMs: options.pollIntervalMs ?? 1_000,
      standbyIntervalMs: options.standbyIntervalMs ?? 10_000,
      flushIntervalMs: options.flushIntervalMs ?? 500,
      attempts: options.attempts ?? 3,
      backoffMs: options.backoffMs ?? 5_000,
      retentionMs: options.retentionMs ?? 30 * 86_400_000,
      shutdownGraceMs: options.shutdownGraceMs ?? 10_000,
    };
    this.logger = options.logger ?? pino({ level: 'silent' });
  }

  register<Request, Result>(kind: JobKind, handler: JobHandler<Request, Result>, options: RegisterOptions = {}): void {
    this.handlers.set(kind, { handler: handler as JobHandler, concurrency: Math.max(1, options.concurrency ?? 1) });
    this.poke();
  }

  registerWork<Request, Result>(queue: string, handler: JobHandler<Request, Result>, _options: WorkOptions = {}): void {
    if (!WORK_QUEUE_PATTERN.test(queue)) throw new TypeError(`invalid work queue name: ${queue}`);
    this.work.set(queue, handler as JobHandler);
  }

  async submit(kind: JobKind, request: unknown, options: SubmitOptions = {}): Promise<JobRecord> {
    if (!isJobKind(kind)) throw new TypeError(`unknown job kind: ${String(kind)}`);
    const children = checkedChildren(options.children);
    const id = newJobId();
    const record: JobRecord = {
      id,
      kind,
      state: 'queued',
      request: toJson(request ?? null),
      progress: {},
      result: null,
      error: null,
      createdAt: new Date(jobIdTime(id)).toISOString(),
      startedAt: null,
      finishedAt: null,
      attempts: 0,
    };
    // Record first: a marker always points at a readable record.
    await this.writeStored({ record, ...(children ? { children } : {}) });
    await this.driver.putContent(at.openMarker(id), '');
    this.poke();
    return structuredClone(record);
  }

  async get(id: string): Promise<JobRecord | undefined> {
    if (!isJobId(id)) return undefined;
    const live = this.live.get(id);
    if (live) return structuredClone(live.record);
    const done = this.finished.get(id);
    if (done) return structuredClone(done);
    const stored = await this.readStored(id);
    if (!stored) return undefined;
    const { record } = stored;
    if (isFinished(record.state)) {
      this.remember(record);
    } else if (record.state === 'queued') {
      // Cancelled by another process and not yet recorded by the runner: it will never start.
      const requested = await this.cancelRequestedAt(id);
      if (requested) return cancelledView(record, requested, JOB_ERROR.cancelled);
    }
    return record;
  }

  async list(query: JobListQuery = {}): Promise<JobPage> {
    const ids = (await this.listIds(ROOT)).filter((id) => query.last === undefined || id > query.last);
    const get = (id: string) => this.get(id);
    return collectPage(
      (async function* () {
        for (let i = 0; i < ids.length; i += READ_BATCH) yield await Promise.all(ids.slice(i, i + READ_BATCH).map(get));
      })(),
      query,
    );
  }

  async logs(id: string): Promise<string[] | undefined> {
    if (!isJobId(id)) return undefined;
    const live = this.live.get(id);
    if (live) return [...live.lines];
    const lines = await this.readLines(id);
    if (lines) return lines;
    return (await this.get(id)) ? [] : undefined;
  }

  followLogs(id: string, signal?: AbortSignal): AsyncIterable<string> {
    return pollLogs(
      async (offset) => {
        const record = await this.get(id); // state before lines: see follow.ts
        if (!record) return undefined;
        const lines = (await this.logs(id)) ?? [];
        return { finished: isFinished(record.state), lines: lines.slice(offset) };
      },
      signal,
      Math.min(250, this.options.flushIntervalMs),
    );
  }

  async cancel(id: string): Promise<JobRecord> {
    const record = await this.get(id);
    if (!record) throw new JobNotFoundError(id);
    if (isFinished(record.state)) throw new JobFinishedError(record);
    const live = this.live.get(id);
    if (live) {
      this.abort(live, 'cancel');
      return structuredClone(live.record);
    }
    // The runner (this process or another) records it: only the runner writes records of open jobs.
    const now = new Date().toISOString();
    await this.driver.putContent(at.cancelMarker(id), now);
    this.poke();
    return record.state === 'queued' ? cancelledView(record, now, JOB_ERROR.cancelled) : record;
  }

  async start(): Promise<void> {
    if (this.started || this.closed) return;
    this.started = true;
    this.pollTimer = setInterval(() => this.poke(), this.options.pollIntervalMs);
    this.pollTimer.unref();
    this.poke();
    await this.ticking;
  }

  /** Only the runner knows: it holds every open job in memory. Queues are named as BullMQ's (`jobs-<kind>`). */
  async counts(): Promise<JobCounts[] | undefined> {
    if (!this.lock) return undefined;
    const counts = new Map<JobKind, JobCounts>();
    const of = (kind: JobKind) => counts.get(kind) ?? counts.set(kind, { queue: `jobs-${kind}`, queued: 0, running: 0 }).get(kind)!;
    for (const kind of this.handlers.keys()) of(kind);
    for (const { record } of this.known.values()) if (record.state === 'queued') of(record.kind).queued++;
    for (const { record } of this.live.values()) of(record.kind).running++;
    return [...counts.values()];
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.pollTimer);
    for (const timer of this.retryTimers) clearTimeout(timer);
    await this.ticking;
    const running = [...this.live.values()];
    for (const live of running) this.abort(live, 'shutdown');
    const settled = Promise.allSettled(running.map((live) => live.done));
    const grace = new AbortController();
    await Promise.race([settled, sleep(this.options.shutdownGraceMs, undefined, { signal: grace.signal }).catch(() => undefined)]);
    grace.abort();
    for (const live of this.live.values()) {
      // A handler that ignores its signal: record the interruption now and ignore its late ending.
      live.abandoned = true;
      await this.finishLive(live, { state: 'failed', error: JOB_ERROR.interrupted }).catch(() => undefined);
    }
    await this.lock?.release().catch(() => undefined);
    this.lock = undefined;
  }

  // --- the runner ---

  /** Runs the runner's loop once more, soon; calls while one is pending coalesce. */
  private poke(): void {
    if (!this.started || this.closed || this.tickQueued) return;
    this.tickQueued = true;
    this.ticking = this.ticking.then(async () => {
      this.tickQueued = false;
      if (this.closed) return;
      try {
        await this.tick();
      } catch (error) {
        this.logger.warn({ err: (error as Error).message }, 'job runner: storage unavailable; trying again');
      }
    });
  }

  private async tick(): Promise<void> {
    if (this.lock?.isHeld?.() === false) {
      // Our renewals failed long enough that another process may be the runner now (it marks our running
      // jobs interrupted): stop ours, leave their records to it, and stand by.
      this.logger.warn({ jobs: [...this.live.keys()] }, 'job runner: lost the runner lock; stopping its jobs');
      for (const live of this.live.values()) {
        live.abandoned = true;
        this.abort(live, 'shutdown');
      }
      this.lock = undefined;
    }
    if (!this.lock) {
      if (Date.now() - this.lastLockTry < this.options.standbyIntervalMs) return;
      this.lastLockTry = Date.now();
      this.lock = await tryLock(this.driver, at.lock);
      if (!this.lock) return; // another process runs jobs
      await this.recover();
    }
    const open = await this.scanOpen();
    await this.applyCancelRequests(open.cancels);
    await this.launchQueued(open.ids);
    if (Date.now() - this.lastPrune > PRUNE_EVERY_MS) await this.prune();
  }

  /**
   * On becoming the runner, jobs still `running` belong to a runner that died: they are marked failed
   * (INTERRUPTED), not requeued. The runner also serves the registry, and a job that crashed its process
   * (a build out of memory) would crash it again on every start; mirror, build and GC jobs may also
   * have half-done side effects that an operator should see before running them again.
   */
  private async recover(): Promise<void> {
    for (const id of (await this.scanOpen()).ids) {
      const stored = await this.readStored(id);
      if (!stored) continue;
      if (stored.record.state === 'running' && stored.runner !== this.runnerId) {
        await this.finishStored(stored, 'failed', JOB_ERROR.interrupted);
      } else if (!isFinished(stored.record.state)) {
        this.known.set(id, stored);
      }
    }
    await this.prune();
  }

  private async applyCancelRequests(cancels: string[]): Promise<void> {
    for (const id of cancels) {
      const live = this.live.get(id);
      if (live) {
        this.abort(live, 'cancel'); // its marker goes when it ends
        continue;
      }
      const stored = this.known.get(id) ?? (await this.readStored(id));
      if (stored && !isFinished(stored.record.state)) await this.finishStored(stored, 'cancelled', JOB_ERROR.cancelled);
      else await this.driver.deleteFile(at.cancelMarker(id));
    }
  }

  private async launchQueued(ids: string[]): Promise<void> {
    for (const id of ids) {
      if (this.live.has(id)) continue;
      let stored = this.known.get(id);
      if (!stored) {
        stored = await this.readStored(id);
        if (!stored) continue;
        this.known.set(id, stored);
      }
      const { record } = stored;
      if (isFinished(record.state)) {
        await this.driver.deleteFile(at.openMarker(id));
        this.known.delete(id);
        continue;
      }
      if (record.state !== 'queued' || (stored.runAfter ?? 0) > Date.now()) continue;
      const registration = this.handlers.get(record.kind);
      if (!registration || this.runningCount(record.kind) >= registration.concurrency) continue;
      await this.launch(stored, registration.handler);
    }
  }

  private async launch(stored: StoredJob, handler: JobHandler): Promise<void> {
    const id = stored.record.id;
    if (await this.cancelRequestedAt(id)) {
      await this.finishStored(stored, 'cancelled', JOB_ERROR.cancelled);
      return;
    }
    const record: JobRecord = {
      ...stored.record,
      state: 'running',
      startedAt: stored.record.startedAt ?? new Date().toISOString(),
      attempts: stored.record.attempts + 1,
    };
    const flow = { ...(stored.children ? { children: stored.children } : {}), ...(stored.childOutcomes ? { childOutcomes: stored.childOutcomes } : {}) };
    await this.writeStored({ record, runner: this.runnerId, ...flow });
    this.known.delete(id);
    const lines = record.attempts > 1 ? ((await this.readLines(id)) ?? []) : [];
    const live: LiveJob = { record, lines, stored: lines.length, controller: new AbortController(), ...flow };
    this.live.set(id, live);
    live.done = this.run(live, handler);
  }

  private async run(live: LiveJob, handler: JobHandler): Promise<void> {
    const { record } = live;
    const running = createJobContext({
      id: record.id,
      kind: record.kind,
      request: record.request,
      attempt: record.attempts,
      signal: live.controller.signal,
      progress: record.progress,
      intervalMs: this.options.flushIntervalMs,
      sink: {
        flush: async (batch) => {
          if (batch.progress) live.record.progress = batch.progress;
          live.lines.push(...batch.lines);
          if (!live.abandoned) await this.persistLive(live);
        },
      },
      onFlushError: (error) => this.logger.warn({ job: record.id, err: (error as Error).message }, 'job progress not stored'),
    });
    if (record.attempts > 1) running.note(`attempt ${record.attempts} of ${this.options.attempts}`);
    let outcome: Outcome;
    try {
      const result = toJson(await (live.children ? this.runFlow(live, running.context, handler) : handler(running.context)));
      // A handler that returns did its work, even if a stop came late (a build past its last cancel point
      // has moved tags): calling that cancelled would hide what changed.
      if (live.stop) running.note(`finished before the ${live.stop} took effect`);
      outcome = { state: 'succeeded', result };
    } catch (error) {
      if (live.stop) outcome = stopped(live.stop);
      else if (error instanceof RetryableJobError && record.attempts < this.options.attempts) {
        outcome = { retryInMs: this.options.backoffMs * 2 ** (record.attempts - 1), error: errorInfo(error) };
      } else outcome = { state: 'failed', error: errorInfo(error) };
    }
    if ('retryInMs' in outcome) running.note(`attempt ${record.attempts} failed: ${outcome.error.message}; retrying in ${outcome.retryInMs} ms`);
    else if (outcome.state !== 'succeeded') running.note(`${outcome.state}: ${outcome.error.code}: ${outcome.error.message}`);
    await running.drain();
    if (live.abandoned) return;
    try {
      await this.finishLive(live, outcome);
    } catch (error) {
      this.logger.error({ job: record.id, err: (error as Error).message }, 'job state not stored');
    }
  }

  /** A flow: its children first (once, even over retries of the parent), then the parent's handler. */
  private async runFlow(live: LiveJob, context: JobContext, handler: JobHandler): Promise<unknown> {
    live.childOutcomes ??= await runLocalFlow({
      parent: context,
      children: live.children!,
      work: (queue) => this.work.get(queue),
      defaults: { attempts: this.options.attempts, backoffMs: this.options.backoffMs },
    });
    return handler({ ...context, children: live.childOutcomes });
  }

  /** Stores the end of an attempt: the last lines first, then the state (see follow.ts). */
  private async finishLive(live: LiveJob, outcome: Outcome): Promise<void> {
    const { record } = live;
    const id = record.id;
    if ('retryInMs' in outcome) {
      const stored: StoredJob = {
        record: { ...record, state: 'queued' },
        runAfter: Date.now() + outcome.retryInMs,
        ...(live.children ? { children: live.children } : {}),
        ...(live.childOutcomes ? { childOutcomes: live.childOutcomes } : {}),
      };
      live.record = stored.record;
      await persistently(() => this.persistLive(live, stored.runAfter));
      this.known.set(id, stored);
      this.live.delete(id);
      const timer = setTimeout(() => {
        this.retryTimers.delete(timer);
        this.poke();
      }, outcome.retryInMs);
      timer.unref();
      this.retryTimers.add(timer);
    } else {
      live.record = {
        ...record,
        state: outcome.state,
        result: outcome.state === 'succeeded' ? outcome.result : null,
        error: outcome.state === 'succeeded' ? null : outcome.error,
        finishedAt: new Date().toISOString(),
      };
      this.remember(live.record); // answers from memory even if storage is down now
      try {
        await persistently(() => this.persistLive(live));
      } finally {
        this.live.delete(id);
      }
      await this.driver.deleteFile(at.openMarker(id));
      await this.driver.deleteFile(at.cancelMarker(id));
    }
    this.poke();
  }

  /** Ends a job that is not running here (queued, or left running by a dead runner). */
  private async finishStored(stored: StoredJob, state: 'failed' | 'cancelled', error: JobErrorInfo): Promise<void> {
    const id = stored.record.id;
    const lines = (await this.readLines(id)) ?? [];
    lines.push(`${new Date().toISOString()} ${state}: ${error.code}: ${error.message}`);
    await this.driver.putContent(at.log(id), joinLines(lines));
    const record: JobRecord = { ...stored.record, state, result: null, error: { ...error }, finishedAt: new Date().toISOString() };
    await this.writeStored({ ...stored, record });
    this.remember(record);
    this.known.delete(id);
    await this.driver.deleteFile(at.openMarker(id));
    await this.driver.deleteFile(at.cancelMarker(id));
  }

  private async persistLive(live: LiveJob, runAfter?: number): Promise<void> {
    const { record } = live;
    if (live.lines.length !== live.stored) {
      const count = live.lines.length;
      await this.driver.putContent(at.log(record.id), joinLines(live.lines));
      live.stored = count;
    }
    await this.writeStored({
      record,
      runner: this.runnerId,
      ...(runAfter === undefined ? {} : { runAfter }),
      ...(live.children ? { children: live.children } : {}),
      ...(live.childOutcomes ? { childOutcomes: live.childOutcomes } : {}),
    });
  }

  private abort(live: LiveJob, why: 'cancel' | 'shutdown'): void {
    if (live.stop) return;
    live.stop = why;
    const info = why === 'cancel' ? JOB_ERROR.cancelled : JOB_ERROR.interrupted;
    live.controller.abort(new JobError(info.code, info.message));
  }

  private runningCount(kind: JobKind): number {
    let count = 0;
    for (const live of this.live.values()) if (live.record.kind === kind) count++;
    return count;
  }

  /** Deletes jobs that finished longer ago than the retention; ids sort by creation, so the scan stops early. */
  private async prune(): Promise<void> {
    this.lastPrune = Date.now();
    const cutoff = Date.now() - this.options.retentionMs;
    for (const id of await this.listIds(ROOT)) {
      if (jobIdTime(id) >= cutoff) break;
      const stored = await this.readStored(id);
      const finishedAt = stored?.record.finishedAt ? Date.parse(stored.record.finishedAt) : undefined;
      if (!stored || (finishedAt !== undefined && finishedAt < cutoff)) {
        await this.driver.delete(at.dir(id));
        this.finished.delete(id);
      }
    }
  }

  // --- storage ---

  private async readStored(id: string): Promise<StoredJob | undefined> {
    try {
      return JSON.parse((await this.driver.getContent(at.record(id))).toString('utf8')) as StoredJob;
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  private async writeStored(stored: StoredJob): Promise<void> {
    await this.driver.putContent(at.record(stored.record.id), JSON.stringify(stored));
  }

  private async readLines(id: string): Promise<string[] | undefined> {
    try {
      const text = (await this.driver.getContent(at.log(id))).toString('utf8');
      return text === '' ? [] : text.replace(/\n$/, '').split('\n');
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  private async cancelRequestedAt(id: string): Promise<string | undefined> {
    try {
      return (await this.driver.getContent(at.cancelMarker(id))).toString('utf8') || new Date().toISOString();
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  /** Job ids in a directory, in id (= creation) order; other entries (_open, the lock) are skipped. */
  private async listIds(dir: string): Promise<string[]> {
    return (await this.listNames(dir)).filter(isJobId).sort();
  }

  /** Open jobs and cancel requests, from one listing. */
  private async scanOpen(): Promise<{ ids: string[]; cancels: string[] }> {
    const names = await this.listNames(at.open);
    const cancels = names.filter((name) => name.endsWith(CANCEL_SUFFIX)).map((name) => name.slice(0, -CANCEL_SUFFIX.length));
    return { ids: names.filter(isJobId).sort(), cancels: cancels.filter(isJobId).sort() };
  }

  private async listNames(dir: string): Promise<string[]> {
    try {
      return (await this.driver.list(dir)).map((path) => path.slice(path.lastIndexOf('/') + 1));
    } catch (error) {
      if (isNotFound(error)) return [];
      throw error;
    }
  }

  private remember(record: JobRecord): void {
    this.finished.delete(record.id);
    this.finished.set(record.id, record);
    if (this.finished.size > FINISHED_CACHE) this.finished.delete(this.finished.keys().next().value!);
  }
}

function stopped(why: 'cancel' | 'shutdown'): Outcome {
  return why === 'cancel' ? { state: 'cancelled', error: JOB_ERROR.cancelled } : { state: 'failed', error: JOB_ERROR.interrupted };
}

function joinLines(lines: string[]): string {
  return lines.length === 0 ? '' : `${lines.join('\n')}\n`;
}

/** Final states matter more than a storage blip: a few tries, a second apart. */
async function persistently(write: () => Promise<void>, tries = 5): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await write();
    } catch (error) {
      if (attempt >= tries) throw error;
      await sleep(1_000);
    }
  }
}
