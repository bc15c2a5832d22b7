// The contract every job queue keeps (local-queue.ts on storage, bullmq-queue.ts on Redis), and the
// errors callers map to HTTP answers.
import { toJson, type JobErrorInfo, type JobHandler, type JobKind, type JobProgress, type JobRecord, type JobState } from './job.js';

export interface RegisterOptions {
  /** Jobs of this kind this process runs at once; 1 by default. */
  concurrency?: number;
}

/**
 * One child of a flow: work on a named work queue (`build-linux-arm64`) that only processes which
 * registered that queue take. The parent job runs once every child has ended (see JobContext.children).
 */
export interface ChildJob {
  /** Unique within the flow, shown in the parent's progress and log (`linux/arm64`). */
  key: string;
  /** A work queue name: lowercase letters, digits and dashes. */
  queue: string;
  /** JSON; never shown by the API (it may carry what the parent's request does not). */
  request: unknown;
  /** Tries in all for a child that throws RetryableJobError; the queue's default when absent. */
  attempts?: number;
  /** First retry delay; doubles with every attempt. */
  backoffMs?: number;
}

export interface SubmitOptions {
  /** Makes the job a flow's parent: these run first, possibly in other processes. */
  children?: ChildJob[];
}

export interface WorkOptions extends RegisterOptions {
  /**
   * Times a child whose process died is run again (BullMQ's stalled check); 0 by default. Build work
   * runs in separate workers, where a lost worker is an infrastructure failure worth another try.
   */
  restartsAfterLoss?: number;
}

export const WORK_QUEUE_PATTERN = /^[a-z0-9]+(-[a-z0-9]+)*$/;

/** A child's job id: its parent's, a dot, and its key made safe (`<id>.linux-arm64`). */
export function childJobId(parentId: string, key: string): string {
  return `${parentId}.${key.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '')}`;
}

/** Children as stored: JSON requests, unique keys, valid queue names. */
export function checkedChildren(children: ChildJob[] | undefined): ChildJob[] | undefined {
  if (!children || children.length === 0) return undefined;
  const keys = new Set<string>();
  return children.map((child) => {
    if (!WORK_QUEUE_PATTERN.test(child.queue)) throw new TypeError(`invalid work queue name: ${child.queue}`);
    if (!child.key || keys.has(child.key)) throw new TypeError(`child keys must be unique and not empty: ${child.key}`);
    keys.add(child.key);
    return { ...child, request: toJson(child.request ?? null) };
  });
}

/**
 * What a flow's parent shows of each child in its progress (`progress.children[key]`), the same with
 * either queue.
 */
export interface ChildView {
  state: JobState;
  progress: JobProgress;
  error: JobErrorInfo | null;
  startedAt: string | null;
  finishedAt: string | null;
  attempts: number;
}

export interface JobListQuery {
  kind?: JobKind;
  state?: JobState;
  /** Page size; DEFAULT_PAGE_SIZE when absent, at most MAX_PAGE_SIZE. */
  n?: number;
  /** Only jobs with ids after this one (the previous page's `next`). */
  last?: string;
}

export interface JobPage {
  /** In id (= creation) order. */
  jobs: JobRecord[];
  /** The last id of this page when more jobs match (the next page's `last`). */
  next?: string;
}

export interface JobCounts {
  /** The queue: `jobs-<kind>`, or a work queue. */
  queue: string;
  /** Waiting to start, including those waiting for a retry. */
  queued: number;
  running: number;
}

export const DEFAULT_PAGE_SIZE = 100;
export const MAX_PAGE_SIZE = 1000;

export interface JobQueue {
  /** Handlers run only in a process that called start(); others may still submit, read and cancel. */
  register<Request, Result>(kind: JobKind, handler: JobHandler<Request, Result>, options?: RegisterOptions): void;
  /** Runs children of flows that name `queue` in this process (after start()). */
  registerWork<Request, Result>(queue: string, handler: JobHandler<Request, Result>, options?: WorkOptions): void;
  /** Stores the job as queued; `request` must be JSON. With children, the job is a flow's parent. */
  submit(kind: JobKind, request: unknown, options?: SubmitOptions): Promise<JobRecord>;
  /** Undefined for an unknown (or malformed) id. */
  get(id: string): Promise<JobRecord | undefined>;
  list(query?: JobListQuery): Promise<JobPage>;
  /** Every log line so far; undefined for an unknown id. */
  logs(id: string): Promise<string[] | undefined>;
  /** Lines so far, then new ones as they come, until the job has finished (or `signal` aborts). */
  followLogs(id: string, signal?: AbortSignal): AsyncIterable<string>;
  /**
   * queued: cancelled at once (the answer says so). running: its signal aborts and it ends `cancelled`
   * shortly after (the answer still says running). Throws JobNotFoundError or JobFinishedError.
   */
  cancel(id: string): Promise<JobRecord>;
  /** This process starts running jobs of the registered kinds. */
  start(): Promise<void>;
  /** Jobs waiting and running per queue (metrics); undefined where this process cannot tell (a standby). */
  counts?(): Promise<JobCounts[] | undefined>;
  /** Processes connected now to take work from `queue`; undefined where the queue cannot tell. */
  workersOn?(queue: string): Promise<number | undefined>;
  /** Stops running jobs (interrupting those in flight) and releases connections. */
  close(): Promise<void>;
}

export class JobNotFoundError extends Error {
  constructor(readonly id: string) {
    super(`job unknown: ${id.slice(0, 100)}`);
    this.name = 'JobNotFoundError';
  }
}

export class JobFinishedError extends Error {
  constructor(readonly job: JobRecord) {
    super(`job ${job.id} already ${job.state}`);
    this.name = 'JobFinishedError';
  }
}

export function pageSize(n: number | undefined): number {
  if (n === undefined) return DEFAULT_PAGE_SIZE;
  return Math.max(0, Math.min(Math.floor(n), MAX_PAGE_SIZE));
}

/**
 * One page of `query`'s jobs from candidate records read in batches (in id order; undefined for a job
 * that is gone or already filtered out): reads batches only until the page is full and one more match
 * shows that another page follows.
 */
export async function collectPage(batches: AsyncIterable<Array<JobRecord | undefined>>, query: JobListQuery): Promise<JobPage> {
  const limit = pageSize(query.n);
  const jobs: JobRecord[] = [];
  for await (const records of batches) {
    for (const record of records) {
      if (!record || (query.kind && record.kind !== query.kind) || (query.state && record.state !== query.state)) continue;
      if (jobs.length === limit) return jobs.length > 0 ? { jobs, next: jobs.at(-1)!.id } : { jobs };
      jobs.push(record);
    }
  }
  return { jobs };
}

/** How a queued job that was asked to cancel looks before its runner has recorded that. */
export function cancelledView(record: JobRecord, at: string, error: { code: string; message: string }): JobRecord {
  return { ...record, state: 'cancelled', finishedAt: at, error: { ...error } };
}
