// Jobs with Redis: BullMQ 6, one queue per kind (`jobs-<kind>` under the configured key prefix), so any
// replica submits, reads and cancels, and every replica that called start() runs jobs. State comes
// from BullMQ's own job state; progress is job.updateProgress, logs are job.log. Ours, beside BullMQ's:
//   <prefix>jobs:index        sorted set of every job id (score 0: lexicographic = creation order)
//   <prefix>jobs:kinds        hash id -> kind, so GET by id knows the queue
//   <prefix>jobs:cancel:<id>  a cancel request (expires with the job)
//   <prefix>jobs:cancel       pub/sub channel: the worker running that job aborts its signal
// A failure is stored as BullMQ's failedReason `CODE: message`; CANCELLED marks a cancelled job.
// Jobs whose worker died are failed (INTERRUPTED) by BullMQ's stalled check (maxStalledCount 0) rather
// than run again, as in the local queue: see local-queue.ts for why.
import { setTimeout as sleep } from 'node:timers/promises';
import { Queue, UnrecoverableError, Worker, type Job } from 'bullmq';
import { pino, type Logger } from 'pino';
import { shared, type RedisClient, type SharedState } from '../state/redis.js';
import { createJobContext } from './context.js';
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
  type JobErrorInfo,
  type JobHandler,
  type JobKind,
  type JobProgress,
  type JobRecord,
  type JobState,
} from './job.js';
import {
  cancelledView,
  JobFinishedError,
  JobNotFoundError,
  pageSize,
  type JobListQuery,
  type JobPage,
  type JobQueue,
  type RegisterOptions,
} from './queue.js';

interface JobData {
  request: unknown;
}

type BullJob = Job<JobData>;

export interface BullJobQueueOptions {
  /** Progress and log writes, at most this often per job. */
  flushIntervalMs?: number;
  /** Tries in all for a handler that throws RetryableJobError (set when a job is submitted). */
  attempts?: number;
  /** First retry delay; doubles with every attempt (BullMQ's exponential backoff). */
  backoffMs?: number;
  /** Finished jobs are removed this long after they finished. */
  retentionMs?: number;
  /** Besides pub/sub, running jobs check for cancel requests this often (messages lost in a reconnect). */
  cancelCheckMs?: number;
  /** How often followLogs polls. */
  followIntervalMs?: number;
  /** close() waits this long for interrupted handlers to return. */
  shutdownGraceMs?: number;
  logger?: Pick<Logger, 'warn' | 'error'>;
}

interface ActiveJob {
  controller: AbortController;
  stop?: 'cancel' | 'shutdown';
}

const LIST_BATCH = 50;
/** A job id younger than this may be in the index before BullMQ has it (submit in progress). */
const SUBMIT_WINDOW_MS = 60_000;
const STALLED_REASON = 'job stalled more than allowable limit';

export class BullJobQueue implements JobQueue {
  private readonly options: Required<Omit<BullJobQueueOptions, 'logger'>>;
  private readonly logger: Pick<Logger, 'warn' | 'error'>;
  private readonly client: RedisClient;
  private readonly bullPrefix: string;
  private readonly keys: { index: string; kinds: string; channel: string; cancel: (id: string) => string };
  private readonly queues = new Map<JobKind, Queue<JobData>>();
  private readonly handlers = new Map<JobKind, { handler: JobHandler; concurrency: number }>();
  private readonly workers = new Map<JobKind, Worker<JobData>>();
  private readonly active = new Map<string, ActiveJob>();
  private workerConnection: RedisClient | undefined;
  private subscriber: RedisClient | undefined;
  private cancelTimer: NodeJS.Timeout | undefined;
  private started = false;
  private closed = false;

  constructor(
    private readonly state: SharedState,
    options: BullJobQueueOptions = {},
  ) {
    this.options = {
      flushIntervalMs: options.flushIntervalMs ?? 500,
      attempts: options.attempts ?? 3,
      backoffMs: options.backoffMs ?? 5_000,
      retentionMs: options.retentionMs ?? 30 * 86_400_000,
      cancelCheckMs: options.cancelCheckMs ?? 2_000,
      followIntervalMs: options.followIntervalMs ?? 250,
      shutdownGraceMs: options.shutdownGraceMs ?? 10_000,
    };
    this.logger = options.logger ?? pino({ level: 'silent' });
    this.client = state.client;
    // BullMQ joins prefix and queue name with ':'; in a cluster, one hash tag keeps a queue's keys in one slot.
    const base = state.prefix.replace(/:+$/, '') || 'bull';
    this.bullPrefix = state.client.isCluster ? `{${base}}` : base;
    this.keys = {
      index: `${state.prefix}jobs:index`,
      kinds: `${state.prefix}jobs:kinds`,
      channel: `${state.prefix}jobs:cancel`,
      cancel: (id) => `${state.prefix}jobs:cancel:${id}`,
    };
  }

  register<Request, Result>(kind: JobKind, handler: JobHandler<Request, Result>, options: RegisterOptions = {}): void {
    const concurrency = Math.max(1, options.concurrency ?? 1);
    this.handlers.set(kind, { handler: handler as JobHandler, concurrency });
    const worker = this.workers.get(kind);
    if (worker) worker.concurrency = concurrency;
    else if (this.started && !this.closed) this.startWorker(kind);
  }

  async submit(kind: JobKind, request: unknown): Promise<JobRecord> {
    if (!isJobKind(kind)) throw new TypeError(`unknown job kind: ${String(kind)}`);
    const id = newJobId();
    const created = jobIdTime(id);
    const data: JobData = { request: toJson(request ?? null) };
    const retention = { age: Math.ceil(this.options.retentionMs / 1000) };
    await shared('submit job', async () => {
      // Index first: a job BullMQ runs is always listable.
      await this.client.hset(this.keys.kinds, id, kind);
      await this.client.zadd(this.keys.index, 0, id);
      await (await this.queue(kind)).add(kind, data, {
        jobId: id,
        timestamp: created,
        attempts: this.options.attempts,
        backoff: { type: 'exponential', delay: this.options.backoffMs },
        removeOnComplete: retention,
        removeOnFail: retention,
      });
    });
    return {
      id,
      kind,
      state: 'queued',
      request: data.request,
      progress: {},
      result: null,
      error: null,
      createdAt: new Date(created).toISOString(),
      startedAt: null,
      finishedAt: null,
      attempts: 0,
    };
  }

  async get(id: string): Promise<JobRecord | undefined> {
    if (!isJobId(id)) return undefined;
    return shared('read job', async () => {
      const kind = await this.client.hget(this.keys.kinds, id);
      return isJobKind(kind) ? this.load(kind, id) : undefined;
    });
  }

  async list(query: JobListQuery = {}): Promise<JobPage> {
    const limit = pageSize(query.n);
    return shared('list jobs', async () => {
      let from = query.last === undefined ? '-' : `(${query.last}`;
      const jobs: JobRecord[] = [];
      let more = false;
      while (!more) {
        const ids = await this.client.zrangebylex(this.keys.index, from, '+', 'LIMIT', 0, LIST_BATCH);
        if (ids.length === 0) break;
        from = `(${ids.at(-1)!}`;
        const kinds = await this.client.hmget(this.keys.kinds, ...ids);
        const records = await Promise.all(
          ids.map((id, i) => {
            const kind = kinds[i];
            if (!isJobKind(kind)) return this.forget(id).then(() => undefined);
            return query.kind && kind !== query.kind ? undefined : this.load(kind, id);
          }),
        );
        for (const record of records) {
          if (!record || (query.state && record.state !== query.state)) continue;
          if (jobs.length === limit) {
            more = true;
            break;
          }
          jobs.push(record);
        }
        if (ids.length < LIST_BATCH) break;
      }
      return more && jobs.length > 0 ? { jobs, next: jobs.at(-1)!.id } : { jobs };
    });
  }

  async logs(id: string): Promise<string[] | undefined> {
    if (!isJobId(id)) return undefined;
    return shared('read job logs', async () => {
      const kind = await this.client.hget(this.keys.kinds, id);
      if (!isJobKind(kind)) return undefined;
      const queue = await this.queue(kind);
      if (!(await queue.getJob(id))) return undefined;
      return (await queue.getJobLogs(id, 0, -1)).logs;
    });
  }

  followLogs(id: string, signal?: AbortSignal): AsyncIterable<string> {
    return pollLogs(
      (offset) =>
        shared('follow job logs', async () => {
          if (!isJobId(id)) return undefined;
          const kind = await this.client.hget(this.keys.kinds, id);
          if (!isJobKind(kind)) return undefined;
          const record = await this.load(kind, id); // state before lines: see follow.ts
          if (!record) return undefined;
          const { logs } = await (await this.queue(kind)).getJobLogs(id, offset, -1);
          return { finished: isFinished(record.state), lines: logs };
        }),
      signal,
      this.options.followIntervalMs,
    );
  }

  async cancel(id: string): Promise<JobRecord> {
    const record = await this.get(id);
    if (!record) throw new JobNotFoundError(id);
    if (isFinished(record.state)) throw new JobFinishedError(record);
    const now = new Date().toISOString();
    await shared('cancel job', async () => {
      await this.client.set(this.keys.cancel(id), now, 'PX', this.options.retentionMs);
      await this.client.publish(this.keys.channel, id);
    });
    this.abortLocal(id, 'cancel'); // running here: no need to wait for the message
    return record.state === 'queued' ? cancelledView(record, now, JOB_ERROR.cancelled) : record;
  }

  async start(): Promise<void> {
    if (this.started || this.closed) return;
    this.started = true;
    // Workers block on Redis: their own connections, no per-command timeout, retried forever.
    const blocking = { maxRetriesPerRequest: null, enableOfflineQueue: true, commandTimeout: undefined };
    this.workerConnection = this.state.duplicate(blocking);
    this.workerConnection.on('error', () => undefined); // the main connection already reports outages
    this.subscriber = this.state.duplicate(blocking);
    this.subscriber.on('error', () => undefined);
    this.subscriber.on('message', (_channel: string, id: string) => this.abortLocal(id, 'cancel'));
    // Not awaited: with Redis away at start, workers and subscription come up when it is back.
    this.subscriber.subscribe(this.keys.channel).catch((error: Error) => this.logger.warn({ err: error.message }, 'job cancel channel'));
    for (const kind of this.handlers.keys()) this.startWorker(kind);
    this.cancelTimer = setInterval(() => void this.checkCancelRequests(), this.options.cancelCheckMs);
    this.cancelTimer.unref();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.cancelTimer);
    for (const id of this.active.keys()) this.abortLocal(id, 'shutdown');
    // Worker.close waits for running handlers, which now record their interruption and return.
    await Promise.all(
      [...this.workers.values()].map(async (worker) => {
        const grace = new AbortController();
        const closed = worker.close().then(
          () => true,
          () => true,
        );
        const inTime = await Promise.race([closed, sleep(this.options.shutdownGraceMs, false, { signal: grace.signal }).catch(() => false)]);
        grace.abort();
        if (!inTime) await worker.disconnect().catch(() => undefined);
      }),
    );
    await Promise.all([...this.queues.values()].map((queue) => queue.close().catch(() => undefined)));
    await Promise.all(
      [this.subscriber, this.workerConnection].map((connection) => connection?.quit().catch(() => connection.disconnect())),
    );
  }

  // --- reading ---

  /**
   * The BullMQ queue of a kind, on the registry's main connection: commands fail fast while Redis is away
   * (503), never hang a request. A queue whose start failed (Redis was away) stays broken in BullMQ, so it
   * is dropped and made again on the next call.
   */
  private async queue(kind: JobKind): Promise<Queue<JobData>> {
    let queue = this.queues.get(kind);
    if (!queue) {
      queue = new Queue<JobData>(queueName(kind), { connection: this.client, prefix: this.bullPrefix, skipWaitingForReady: true });
      queue.on('error', (error: Error) => this.logger.warn({ err: error.message, kind }, 'job queue error'));
      this.queues.set(kind, queue);
    }
    try {
      await queue.waitUntilReady();
    } catch (error) {
      if (this.queues.get(kind) === queue) this.queues.delete(kind);
      void queue.close().catch(() => undefined);
      throw error;
    }
    return queue;
  }

  private async load(kind: JobKind, id: string): Promise<JobRecord | undefined> {
    const queue = await this.queue(kind);
    // State before data: the job only moves forward, so data read after a finished state has its result.
    const bullState = await queue.getJobState(id);
    const job = bullState === 'unknown' ? undefined : ((await queue.getJob(id)) as BullJob | undefined);
    if (!job) {
      if (Date.now() - jobIdTime(id) > SUBMIT_WINDOW_MS) await this.forget(id); // removed after its retention
      return undefined;
    }
    const state = stateOf(bullState, job.failedReason);
    if (!state) return undefined;
    const record = toRecord(kind, job, state);
    if (state === 'queued') {
      // Cancelled while waiting: it will never start (a worker that picks it fails it at once).
      const requested = await this.client.get(this.keys.cancel(id));
      if (requested) return cancelledView(record, requested, JOB_ERROR.cancelled);
    }
    return record;
  }

  private async forget(id: string): Promise<void> {
    await this.client.zrem(this.keys.index, id);
    await this.client.hdel(this.keys.kinds, id);
  }

  // --- running ---

  private startWorker(kind: JobKind): void {
    const registration = this.handlers.get(kind)!;
    const worker = new Worker<JobData>(queueName(kind), (job: BullJob) => this.process(kind, job), {
      connection: this.workerConnection!,
      prefix: this.bullPrefix,
      concurrency: registration.concurrency,
      maxStalledCount: 0,
    });
    worker.on('error', (error: Error) => this.logger.warn({ err: error.message, kind }, 'job worker error'));
    this.workers.set(kind, worker);
  }

  private async process(kind: JobKind, job: BullJob): Promise<unknown> {
    const id = job.id!;
    const active: ActiveJob = { controller: new AbortController() };
    this.active.set(id, active);
    try {
      // Cancelled while it waited; the message, if any, came before this job was active here.
      if (await this.client.get(this.keys.cancel(id))) active.stop = 'cancel';
      if (active.stop) throw failure(stopped(active.stop));
      const registration = this.handlers.get(kind);
      if (!registration) throw failure({ code: 'NO_HANDLER', message: `no handler for ${kind} jobs in this process` });
      const attempt = Math.max(1, job.attemptsStarted);
      const attempts = job.opts.attempts ?? 1;
      const running = createJobContext({
        id,
        kind,
        request: job.data.request,
        attempt,
        signal: active.controller.signal,
        progress: asProgress(job.progress),
        intervalMs: this.options.flushIntervalMs,
        sink: {
          flush: async (batch) => {
            for (const line of batch.lines) await job.log(line);
            if (batch.progress) await job.updateProgress(batch.progress);
          },
        },
        onFlushError: (error) => this.logger.warn({ job: id, err: (error as Error).message }, 'job progress not stored'),
      });
      if (attempt > 1) running.note(`attempt ${attempt} of ${attempts}`);
      let result: unknown;
      let error: Error | undefined;
      try {
        result = toJson(await registration.handler(running.context));
        if (active.stop) error = failure(stopped(active.stop));
      } catch (caught) {
        if (active.stop) error = failure(stopped(active.stop));
        else if (caught instanceof RetryableJobError && attempt < attempts) {
          running.note(`attempt ${attempt} failed: ${caught.message}; retrying`);
          error = new Error(encodeFailure(errorInfo(caught))); // not Unrecoverable: BullMQ retries it
        } else error = failure(errorInfo(caught));
      }
      if (error instanceof UnrecoverableError) running.note(`${stateOf('failed', error.message)}: ${error.message}`);
      await running.drain(); // the last lines before the final state (see follow.ts)
      if (error) throw error;
      return result;
    } finally {
      this.active.delete(id);
    }
  }

  private abortLocal(id: string, why: 'cancel' | 'shutdown'): void {
    const active = this.active.get(id);
    if (!active || active.stop) return;
    active.stop = why;
    const info = stopped(why);
    active.controller.abort(new JobError(info.code, info.message));
  }

  private async checkCancelRequests(): Promise<void> {
    try {
      for (const id of [...this.active.keys()]) if (await this.client.get(this.keys.cancel(id))) this.abortLocal(id, 'cancel');
    } catch {
      // Redis away: the next check, or the pub/sub message, will do.
    }
  }
}

export function queueName(kind: JobKind): string {
  return `jobs-${kind}`;
}

function stopped(why: 'cancel' | 'shutdown'): JobErrorInfo {
  return why === 'cancel' ? JOB_ERROR.cancelled : JOB_ERROR.interrupted;
}

/** Unrecoverable: BullMQ fails it without another attempt. */
function failure(info: JobErrorInfo): UnrecoverableError {
  return new UnrecoverableError(encodeFailure(info));
}

function encodeFailure(info: JobErrorInfo): string {
  return `${info.code}: ${info.message}`;
}

export function decodeFailure(reason: string | undefined): JobErrorInfo {
  if (!reason) return { code: 'FAILED', message: 'the job failed' };
  if (reason === STALLED_REASON) return { ...JOB_ERROR.interrupted };
  const match = /^([A-Z][A-Z0-9_]*): ([\s\S]*)$/.exec(reason);
  return match ? { code: match[1]!, message: match[2]! } : { code: 'FAILED', message: reason };
}

function stateOf(bullState: string, failedReason: string | undefined): JobState | undefined {
  switch (bullState) {
    case 'completed':
      return 'succeeded';
    case 'failed':
      return decodeFailure(failedReason).code === JOB_ERROR.cancelled.code ? 'cancelled' : 'failed';
    case 'active':
      return 'running';
    case 'waiting':
    case 'wait':
    case 'paused':
    case 'delayed': // waiting for a retry
    case 'prioritized':
    case 'waiting-children':
      return 'queued';
    default:
      return undefined; // 'unknown': removed meanwhile
  }
}

function toRecord(kind: JobKind, job: BullJob, state: JobState): JobRecord {
  const iso = (ms: number | undefined) => (ms ? new Date(ms).toISOString() : null);
  const finished = isFinished(state);
  return {
    id: job.id!,
    kind,
    state,
    request: job.data.request,
    progress: asProgress(job.progress),
    result: state === 'succeeded' ? (job.returnvalue ?? null) : null,
    error: finished && state !== 'succeeded' ? decodeFailure(job.failedReason) : null,
    createdAt: new Date(job.timestamp).toISOString(),
    startedAt: iso(job.processedOn),
    finishedAt: finished ? (iso(job.finishedOn) ?? new Date().toISOString()) : null,
    attempts: job.attemptsStarted ?? job.attemptsMade,
  };
}

function asProgress(progress: unknown): JobProgress {
  return typeof progress === 'object' && progress !== null && !Array.isArray(progress) ? (progress as JobProgress) : {};
}
