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
// Flows (submit with children): a BullMQ flow whose children wait on their work queues (`build-linux-arm64`)
// for a process that registered them (registerWork; a lost child may run again, `restartsAfterLoss`), and
// whose parent runs in `jobs-<kind>` once all have ended. The API shows the parent only: running while a
// child runs, the children's progress under `progress.children`, their lines in its log as `[key] line`.
import { setTimeout as sleep } from 'node:timers/promises';
import { FlowProducer, Queue, UnrecoverableError, Worker, type Job } from 'bullmq';
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
  type ChildOutcome,
  type JobErrorInfo,
  type JobHandler,
  type JobKind,
  type JobProgress,
  type JobRecord,
  type JobState,
} from './job.js';
import {
  cancelledView,
  checkedChildren,
  childJobId,
  WORK_QUEUE_PATTERN,
  type ChildView,
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

interface JobData {
  request: unknown;
  /** A flow's parent: its children, to read their state, logs and results. */
  children?: FlowChild[];
  /** A flow's child: its parent, and the kind of job the flow is. */
  parent?: { id: string; key: string; kind: JobKind };
}

interface FlowChild {
  key: string;
  /** The work queue. */
  queue: string;
  id: string;
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

type StopReason = 'cancel' | 'shutdown' | 'abandon';

interface ActiveJob {
  controller: AbortController;
  stop?: StopReason;
  /** A flow's child: its parent's id, and where BullMQ records the failures of its siblings. */
  parent?: { id: string; failedKey: string };
}

/** A BullMQ worker's queue and what runs its jobs: a kind's handler, or a work queue's. */
interface Lane {
  name: string;
  handler(): { handler: JobHandler; concurrency: number } | undefined;
  maxStalledCount: number;
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
  /** By BullMQ queue name: `jobs-<kind>`, or a work queue's name. */
  private readonly queues = new Map<string, Queue<JobData>>();
  private readonly handlers = new Map<JobKind, { handler: JobHandler; concurrency: number }>();
  private readonly work = new Map<string, { handler: JobHandler; concurrency: number; restarts: number }>();
  private readonly workers = new Map<string, Worker<JobData>>();
  private flows: FlowProducer | undefined;
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
    const worker = this.workers.get(queueName(kind));
    if (worker) worker.concurrency = concurrency;
    else if (this.started && !this.closed) this.startWorker(this.kindLane(kind));
  }

  registerWork<Request, Result>(queue: string, handler: JobHandler<Request, Result>, options: WorkOptions = {}): void {
    if (!WORK_QUEUE_PATTERN.test(queue)) throw new TypeError(`invalid work queue name: ${queue}`);
    const concurrency = Math.max(1, options.concurrency ?? 1);
    this.work.set(queue, { handler: handler as JobHandler, concurrency, restarts: Math.max(0, options.restartsAfterLoss ?? 0) });
    const worker = this.workers.get(queue);
    if (worker) worker.concurrency = concurrency;
    else if (this.started && !this.closed) this.startWorker(this.workLane(queue));
  }

  async submit(kind: JobKind, request: unknown, options: SubmitOptions = {}): Promise<JobRecord> {
    if (!isJobKind(kind)) throw new TypeError(`unknown job kind: ${String(kind)}`);
    const id = newJobId();
    const created = jobIdTime(id);
    const data: JobData = { request: toJson(request ?? null) };
    const retention = { age: Math.ceil(this.options.retentionMs / 1000) };
    const opts = {
      jobId: id,
      timestamp: created,
      attempts: this.options.attempts,
      backoff: { type: 'exponential', delay: this.options.backoffMs },
      removeOnComplete: retention,
      removeOnFail: retention,
    };
    const children = checkedChildren(options.children);
    if (children) data.children = children.map((child) => ({ key: child.key, queue: child.queue, id: childJobId(id, child.key) }));
    await shared('submit job', async () => {
      // Index first: a job BullMQ runs is always listable.
      await this.client.hset(this.keys.kinds, id, kind);
      await this.client.zadd(this.keys.index, 0, id);
      if (!children) {
        await (await this.queue(kind)).add(kind, data, opts);
        return;
      }
      // A flow: the parent waits in `jobs-<kind>` until every child has ended, failed ones included
      // (ignoreDependencyOnFailure), so its handler can clean up after a partial failure.
      await this.flowProducer().add({
        name: kind,
        queueName: queueName(kind),
        prefix: this.bullPrefix,
        data,
        opts,
        children: children.map((child, i) => ({
          name: child.key,
          queueName: child.queue,
          prefix: this.bullPrefix,
          data: { request: child.request, parent: { id, key: child.key, kind } } satisfies JobData,
          opts: {
            ...opts,
            jobId: data.children![i]!.id,
            attempts: child.attempts ?? this.options.attempts,
            backoff: { type: 'exponential', delay: child.backoffMs ?? this.options.backoffMs },
            ignoreDependencyOnFailure: true,
          },
        })),
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
    return shared('list jobs', () => collectPage(this.indexBatches(query), query));
  }

  /** The index in id order from `query.last`, a batch of records at a time (a job of another kind is not loaded). */
  private async *indexBatches(query: JobListQuery): AsyncGenerator<Array<JobRecord | undefined>> {
    let from = query.last === undefined ? '-' : `(${query.last}`;
    for (;;) {
      const ids = await this.client.zrangebylex(this.keys.index, from, '+', 'LIMIT', 0, LIST_BATCH);
      if (ids.length === 0) return;
      from = `(${ids.at(-1)!}`;
      const kinds = await this.client.hmget(this.keys.kinds, ...ids);
      yield await Promise.all(
        ids.map((id, i) => {
          const kind = kinds[i];
          if (!isJobKind(kind)) return this.forget(id).then(() => undefined);
          return query.kind && kind !== query.kind ? undefined : this.load(kind, id);
        }),
      );
      if (ids.length < LIST_BATCH) return;
    }
  }

  async logs(id: string): Promise<string[] | undefined> {
    if (!isJobId(id)) return undefined;
    return shared('read job logs', async () => {
      const kind = await this.client.hget(this.keys.kinds, id);
      if (!isJobKind(kind)) return undefined;
      const queue = await this.queue(kind);
      const job = (await queue.getJob(id)) as BullJob | undefined;
      if (!job) return undefined;
      // A flow's log is its own and its children's, each child's lines marked `[key]`, in time order.
      return mergeByTime(await this.logSources(kind, job, new Map()));
    });
  }

  followLogs(id: string, signal?: AbortSignal): AsyncIterable<string> {
    // Per source (the job, each child of a flow): how many lines were passed on already.
    const offsets = new Map<string, number>();
    let sources: { job: BullJob; kind: JobKind } | undefined;
    return pollLogs(
      () =>
        shared('follow job logs', async () => {
          if (!isJobId(id)) return undefined;
          const kind = await this.client.hget(this.keys.kinds, id);
          if (!isJobKind(kind)) return undefined;
          const record = await this.load(kind, id); // state before lines: see follow.ts
          if (!record) return undefined;
          if (!sources) {
            const job = (await (await this.queue(kind)).getJob(id)) as BullJob | undefined;
            if (!job) return undefined;
            sources = { job, kind };
          }
          const lines = mergeByTime(await this.logSources(sources.kind, sources.job, offsets));
          return { finished: isFinished(record.state), lines };
        }),
      signal,
      this.options.followIntervalMs,
    );
  }

  /** New lines of the job and of each child of a flow since `offsets` (which it advances). */
  private async logSources(kind: JobKind, job: BullJob, offsets: Map<string, number>): Promise<string[][]> {
    const sources: Array<{ source: string; queue: string; id: string; mark?: string }> = [{ source: '', queue: queueName(kind), id: job.id! }];
    for (const child of job.data.children ?? []) sources.push({ source: child.key, queue: child.queue, id: child.id, mark: child.key });
    const out: string[][] = [];
    for (const { source, queue, id, mark } of sources) {
      const from = offsets.get(source) ?? 0;
      const { logs } = await (await this.queueNamed(queue)).getJobLogs(id, from, -1);
      offsets.set(source, from + logs.length);
      out.push(mark === undefined ? logs : logs.map((line) => markLine(line, mark)));
    }
    return out;
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
    await this.removeWaitingChildren(record);
    return record.state === 'queued' ? cancelledView(record, now, JOB_ERROR.cancelled) : record;
  }

  /**
   * A cancelled flow's children that no worker took yet are removed, so the parent does not wait for
   * a worker that may never come (a platform without workers); its handler counts them as cancelled.
   * Running children see the cancel request and stop.
   */
  private async removeWaitingChildren(record: JobRecord): Promise<void> {
    const children = Object.keys(asProgress(record.progress.children));
    if (children.length === 0) return;
    await shared('cancel job', async () => {
      const job = (await (await this.queue(record.kind)).getJob(record.id)) as BullJob | undefined;
      for (const child of job?.data.children ?? []) {
        const queue = await this.queueNamed(child.queue);
        if (WAITING_STATES.has(await queue.getJobState(child.id))) await queue.remove(child.id).catch(() => undefined);
      }
    });
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
    for (const kind of this.handlers.keys()) this.startWorker(this.kindLane(kind));
    for (const queue of this.work.keys()) this.startWorker(this.workLane(queue));
    this.cancelTimer = setInterval(() => void this.checkCancelRequests(), this.options.cancelCheckMs);
    this.cancelTimer.unref();
  }

  /** From BullMQ's own counts, the same on every replica: the queues this process registered or used. */
  async counts(): Promise<JobCounts[]> {
    const names = new Set<string>([...this.handlers.keys()].map(queueName));
    for (const name of this.work.keys()) names.add(name);
    for (const name of this.queues.keys()) names.add(name);
    return shared('count jobs', () =>
      Promise.all(
        [...names].map(async (queue) => {
          const c = await (await this.queueNamed(queue)).getJobCounts('waiting', 'prioritized', 'delayed', 'waiting-children', 'active');
          const queued = (c.waiting ?? 0) + (c.prioritized ?? 0) + (c.delayed ?? 0) + (c['waiting-children'] ?? 0);
          return { queue, queued, running: c.active ?? 0 };
        }),
      ),
    );
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
    await this.flows?.close().catch(() => undefined);
    await Promise.all(
      [this.subscriber, this.workerConnection].map((connection) => connection?.quit().catch(() => connection.disconnect())),
    );
  }

  // --- reading ---

  async workersOn(name: string): Promise<number | undefined> {
    try {
      // BullMQ's worker list is Redis's CLIENT LIST (workers name their connections); managed Redis
      // services that refuse the command answer with a placeholder entry, which counts as one.
      return await (await this.queueNamed(name)).getWorkersCount();
    } catch {
      return undefined;
    }
  }

  /**
   * The BullMQ queue of a kind, on the registry's main connection: commands fail fast while Redis is away
   * (503), never hang a request. A queue whose start failed (Redis was away) stays broken in BullMQ, so it
   * is dropped and made again on the next call.
   */
  private queue(kind: JobKind): Promise<Queue<JobData>> {
    return this.queueNamed(queueName(kind));
  }

  /** A kind's queue (`jobs-<kind>`) or a work queue, by its BullMQ name. */
  private async queueNamed(name: string): Promise<Queue<JobData>> {
    let queue = this.queues.get(name);
    if (!queue) {
      queue = new Queue<JobData>(name, { connection: this.client, prefix: this.bullPrefix, skipWaitingForReady: true });
      queue.on('error', (error: Error) => this.logger.warn({ err: error.message, queue: name }, 'job queue error'));
      this.queues.set(name, queue);
    }
    try {
      await queue.waitUntilReady();
    } catch (error) {
      if (this.queues.get(name) === queue) this.queues.delete(name);
      void queue.close().catch(() => undefined);
      throw error;
    }
    return queue;
  }

  private flowProducer(): FlowProducer {
    if (!this.flows) {
      this.flows = new FlowProducer({ connection: this.client, prefix: this.bullPrefix });
      this.flows.on('error', (error: Error) => this.logger.warn({ err: error.message }, 'job flow producer error'));
    }
    return this.flows;
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
    let record = toRecord(kind, job, state);
    if (job.data.children) record = await this.flowView(record, job.data.children);
    if (record.state === 'queued') {
      // Cancelled while waiting: it will never start (a worker that picks it fails it at once).
      const requested = await this.client.get(this.keys.cancel(id));
      if (requested) return cancelledView(record, requested, JOB_ERROR.cancelled);
    }
    return record;
  }

  /**
   * A flow's parent as the API shows it: running as soon as a child runs (BullMQ keeps the parent in
   * waiting-children), with each child's state and progress in `progress.children`.
   */
  private async flowView(record: JobRecord, children: FlowChild[]): Promise<JobRecord> {
    const views: Record<string, ChildView> = {};
    for (const child of children) {
      const queue = await this.queueNamed(child.queue);
      const bullState = await queue.getJobState(child.id);
      const job = bullState === 'unknown' ? undefined : ((await queue.getJob(child.id)) as BullJob | undefined);
      const state = job ? stateOf(bullState, job.failedReason) : undefined;
      if (!job || !state) {
        // Removed: cancelled before it started, or past its retention like its parent.
        const gone: JobState = record.state === 'succeeded' ? 'succeeded' : 'cancelled';
        views[child.key] = { state: gone, progress: {}, error: gone === 'cancelled' ? { ...JOB_ERROR.cancelled } : null, startedAt: null, finishedAt: null, attempts: 0 };
        continue;
      }
      const view = toRecord(record.kind, job, state);
      views[child.key] = {
        state,
        progress: view.progress,
        error: view.error,
        startedAt: view.startedAt,
        finishedAt: view.finishedAt,
        attempts: view.attempts,
      };
    }
    const progress: JobProgress = { ...record.progress, children: views as unknown as JobProgress };
    const started = Object.values(views).map((view) => view.startedAt).filter((at): at is string => at !== null).sort()[0];
    const moving = Object.values(views).some((view) => view.state !== 'queued');
    return {
      ...record,
      progress,
      ...(record.state === 'queued' && moving ? { state: 'running' as const } : {}),
      startedAt: [record.startedAt, started].filter((at): at is string => at !== null && at !== undefined).sort()[0] ?? null,
    };
  }

  private async forget(id: string): Promise<void> {
    await this.client.zrem(this.keys.index, id);
    await this.client.hdel(this.keys.kinds, id);
  }

  // --- running ---

  private kindLane(kind: JobKind): Lane {
    return { name: queueName(kind), handler: () => this.handlers.get(kind), maxStalledCount: 0 };
  }

  private workLane(queue: string): Lane {
    return { name: queue, handler: () => this.work.get(queue), maxStalledCount: this.work.get(queue)?.restarts ?? 0 };
  }

  private startWorker(lane: Lane): void {
    const worker = new Worker<JobData>(lane.name, (job: BullJob) => this.process(lane, job), {
      connection: this.workerConnection!,
      prefix: this.bullPrefix,
      concurrency: lane.handler()?.concurrency ?? 1,
      maxStalledCount: lane.maxStalledCount,
    });
    worker.on('error', (error: Error) => this.logger.warn({ err: error.message, queue: lane.name }, 'job worker error'));
    this.workers.set(lane.name, worker);
  }

  private async process(lane: Lane, job: BullJob): Promise<unknown> {
    const id = job.id!;
    const { parent, children } = job.data;
    const kind: JobKind = parent?.kind ?? (job.name as JobKind);
    const active: ActiveJob = { controller: new AbortController() };
    if (parent && job.parentKey) active.parent = { id: parent.id, failedKey: `${job.parentKey}:failed` };
    this.active.set(id, active);
    try {
      // Cancelled while it waited; the message, if any, came before this job was active here.
      const stop = await this.stopRequested(id, active);
      if (stop) active.stop ??= stop;
      if (active.stop && !children) throw failure(stopped(active.stop));
      // A flow's parent runs even then, with its signal aborted: it cleans up after its children.
      if (active.stop) active.controller.abort(new JobError(stopped(active.stop).code, stopped(active.stop).message));
      const registration = lane.handler();
      if (!registration) throw failure({ code: 'NO_HANDLER', message: `no handler for ${lane.name} jobs in this process` });
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
        ...(parent ? { parent: { id: parent.id, key: parent.key } } : {}),
        ...(children ? { children: await this.childOutcomes(job, children) } : {}),
      });
      if (attempt > 1) running.note(`attempt ${attempt} of ${attempts}`);
      let result: unknown;
      let error: Error | undefined;
      try {
        result = toJson(await registration.handler(running.context));
        // A handler that returns did its work, even if a stop came late (see local-queue.ts).
        if (active.stop) running.note(`finished before the ${active.stop} took effect`);
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

  /** Aborts the job `id` if it runs here, and any child of the flow `id` that runs here. */
  private abortLocal(id: string, why: StopReason): void {
    for (const [activeId, active] of this.active) {
      if (active.stop || (activeId !== id && active.parent?.id !== id)) continue;
      active.stop = why;
      const info = stopped(why);
      active.controller.abort(new JobError(info.code, info.message));
    }
  }

  /** Whether a job should stop: cancelled (itself or its flow), or a flow child whose sibling failed. */
  private async stopRequested(id: string, active: ActiveJob): Promise<StopReason | undefined> {
    if (await this.client.get(this.keys.cancel(id))) return 'cancel';
    if (!active.parent) return undefined;
    if (await this.client.get(this.keys.cancel(active.parent.id))) return 'cancel';
    if ((await this.client.hlen(active.parent.failedKey)) > 0) return 'abandon';
    return undefined;
  }

  private async checkCancelRequests(): Promise<void> {
    try {
      for (const [id, active] of [...this.active]) {
        if (active.stop) continue;
        const stop = await this.stopRequested(id, active);
        if (stop) this.abortLocal(id, stop);
      }
    } catch {
      // Redis away: the next check, or the pub/sub message, will do.
    }
  }

  /** How a flow's children ended: results of the processed ones, failures BullMQ kept, the rest removed. */
  private async childOutcomes(job: BullJob, children: FlowChild[]): Promise<Record<string, ChildOutcome>> {
    const values = (await job.getChildrenValues()) ?? {};
    const failures = ((await job.getIgnoredChildrenFailures()) ?? {}) as Record<string, string>;
    const outcomes: Record<string, ChildOutcome> = {};
    for (const child of children) {
      const key = `${this.bullPrefix}:${child.queue}:${child.id}`;
      if (key in values) outcomes[child.key] = { state: 'succeeded', result: values[key] ?? null };
      else if (key in failures) {
        const error = decodeFailure(failures[key]);
        outcomes[child.key] = { state: error.code === JOB_ERROR.cancelled.code ? 'cancelled' : 'failed', error };
      } else outcomes[child.key] = { state: 'cancelled', error: { ...JOB_ERROR.cancelled } };
    }
    return outcomes;
  }
}

export function queueName(kind: JobKind): string {
  return `jobs-${kind}`;
}

function stopped(why: StopReason): JobErrorInfo {
  return why === 'cancel' ? JOB_ERROR.cancelled : why === 'abandon' ? JOB_ERROR.abandoned : JOB_ERROR.interrupted;
}

/** BullMQ states of a job no worker has taken yet. */
const WAITING_STATES = new Set(['waiting', 'wait', 'delayed', 'prioritized', 'paused']);

/** `<stamp> line` -> `<stamp> [mark] line`: a child's line in its flow's log. */
function markLine(line: string, mark: string): string {
  const space = line.indexOf(' ');
  return space < 0 ? `[${mark}] ${line}` : `${line.slice(0, space)} [${mark}] ${line.slice(space + 1)}`;
}

/** Lines of several sources in timestamp order (each line starts with its ISO time; ties keep source order). */
function mergeByTime(sources: string[][]): string[] {
  if (sources.length === 1) return sources[0]!;
  const stamped = sources.flatMap((lines, source) => lines.map((line, index) => ({ line, source, index, at: line.slice(0, line.indexOf(' ')) })));
  stamped.sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : a.source - b.source || a.index - b.index));
  return stamped.map((entry) => entry.line);
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
