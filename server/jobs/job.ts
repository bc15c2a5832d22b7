// The job model shared by the mirror, builder and GC features: one record shape, one handler signature,
// whatever queue (in-process on storage, or BullMQ on Redis) runs them.

export const JOB_KINDS = ['mirror', 'build', 'gc'] as const;
export type JobKind = (typeof JOB_KINDS)[number];

export const JOB_STATES = ['queued', 'running', 'succeeded', 'failed', 'cancelled'] as const;
export type JobState = (typeof JOB_STATES)[number];

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/**
 * Free-form numbers the CLI can draw, e.g. `{units: {done, total}, bytes: {done, total}, items: {...}}`.
 * Updates merge per top-level key, so a handler may report `bytes` without repeating `units`.
 */
export type JobProgress = { [key: string]: Json };

export interface JobErrorInfo {
  code: string;
  message: string;
}

export interface JobRecord {
  /** Time-ordered (UUIDv7): sorting ids sorts jobs by creation. */
  id: string;
  kind: JobKind;
  state: JobState;
  /** The submitted JSON. */
  request: unknown;
  progress: JobProgress;
  /** What the handler returned (JSON), null until it succeeded. */
  result: unknown;
  error: JobErrorInfo | null;
  /** ISO 8601 timestamps. */
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  /** Attempts started so far (more than 1 only after RetryableJobError). */
  attempts: number;
}

export interface JobContext<Request = unknown> {
  readonly id: string;
  readonly kind: JobKind;
  readonly request: Request;
  /** 1 for the first attempt. */
  readonly attempt: number;
  /** Aborted when the job is cancelled or its process shuts down; handlers stop work and throw. */
  readonly signal: AbortSignal;
  /** One line per event; timestamped and persisted in batches. */
  log(line: string): void;
  /** Merged into the job's progress; persisted at most every flush interval, and once more at the end. */
  progress(update: JobProgress): void;
  /** For a child of a flow (see queue.ts SubmitOptions): its parent's id and its own key there. */
  readonly parent?: { id: string; key: string };
  /**
   * For a flow's parent: how each child ended, by key. The parent's handler runs once every child has
   * ended, also when some failed or the job was cancelled, so it can undo what the others did.
   */
  readonly children?: Readonly<Record<string, ChildOutcome>>;
}

/** How one child of a flow ended; a child removed before it started (a cancel) counts as cancelled. */
export interface ChildOutcome {
  state: 'succeeded' | 'failed' | 'cancelled';
  result?: unknown;
  error?: JobErrorInfo;
}

export type JobHandler<Request = unknown, Result = unknown> = (ctx: JobContext<Request>) => Promise<Result>;

export const FINISHED_STATES: ReadonlySet<JobState> = new Set(['succeeded', 'failed', 'cancelled']);

export function isFinished(state: JobState): boolean {
  return FINISHED_STATES.has(state);
}

export function isJobKind(value: unknown): value is JobKind {
  return typeof value === 'string' && (JOB_KINDS as readonly string[]).includes(value);
}

export function isJobState(value: unknown): value is JobState {
  return typeof value === 'string' && (JOB_STATES as readonly string[]).includes(value);
}

/** A failure with a code the CLI and API clients can act on (`UPSTREAM_UNAUTHORIZED`, ...). */
export class JobError extends Error {
  constructor(
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'JobError';
  }
}

/** A failure worth another attempt (upstream 429/5xx, a network blip): retried with exponential backoff. */
export class RetryableJobError extends JobError {
  constructor(message: string, options?: { cause?: unknown; code?: string }) {
    super(options?.code ?? 'RETRYABLE', message, options);
    this.name = 'RetryableJobError';
  }
}

/** Error codes the queues themselves set. */
export const JOB_ERROR = {
  cancelled: { code: 'CANCELLED', message: 'the job was cancelled' },
  interrupted: {
    code: 'INTERRUPTED',
    message: 'the process running this job stopped before the job finished; submit it again',
  },
  /** A child of a flow stopped because a sibling failed: its own work was fine. */
  abandoned: { code: 'ABANDONED', message: 'stopped because another part of the job failed' },
} as const satisfies Record<string, JobErrorInfo>;

/** How a handler's failure is recorded: its code when it gave one, FAILED otherwise. */
export function errorInfo(error: unknown): JobErrorInfo {
  if (error instanceof JobError) return { code: error.code, message: error.message };
  const message = error instanceof Error ? error.message : String(error);
  return { code: 'FAILED', message: message || 'the job failed' };
}

/** A JSON copy: what the API will show, and a TypeError now rather than a broken record later. */
export function toJson(value: unknown): unknown {
  if (value === undefined) return null;
  return JSON.parse(JSON.stringify(value)) as unknown;
}

/**
 * The error a flow's parent ends with when not every child succeeded: a child's own failure first,
 * then a cancellation, then a sibling's abandonment; undefined when all succeeded.
 */
export function flowFailure(children: Readonly<Record<string, ChildOutcome>>): JobError | undefined {
  const entries = Object.entries(children).filter(([, outcome]) => outcome.state !== 'succeeded');
  const rank = (outcome: ChildOutcome) =>
    outcome.state === 'cancelled' ? 1 : outcome.error?.code === JOB_ERROR.abandoned.code ? 2 : 0;
  const [key, outcome] = entries.sort((a, b) => rank(a[1]) - rank(b[1]))[0] ?? [];
  if (!key || !outcome) return undefined;
  const error = outcome.error ?? { ...JOB_ERROR.cancelled };
  return new JobError(error.code, `${key}: ${error.message}`);
}
