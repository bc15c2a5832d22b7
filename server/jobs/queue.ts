// The contract every job queue keeps (local-queue.ts on storage, bullmq-queue.ts on Redis), and the
// errors callers map to HTTP answers.
import type { JobHandler, JobKind, JobRecord, JobState } from './job.js';

export interface RegisterOptions {
  /** Jobs of this kind this process runs at once; 1 by default. */
  concurrency?: number;
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

export const DEFAULT_PAGE_SIZE = 100;
export const MAX_PAGE_SIZE = 1000;

export interface JobQueue {
  /** Handlers run only in a process that called start(); others may still submit, read and cancel. */
  register<Request, Result>(kind: JobKind, handler: JobHandler<Request, Result>, options?: RegisterOptions): void;
  /** Stores the job as queued; `request` must be JSON. */
  submit(kind: JobKind, request: unknown): Promise<JobRecord>;
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

/** How a queued job that was asked to cancel looks before its runner has recorded that. */
export function cancelledView(record: JobRecord, at: string, error: { code: string; message: string }): JobRecord {
  return { ...record, state: 'cancelled', finishedAt: at, error: { ...error } };
}
