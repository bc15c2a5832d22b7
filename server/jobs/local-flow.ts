// Flows without Redis: the process that runs the parent runs every child itself, all at once, before
// the parent's handler. Children report into the parent: their lines go to its log as `[key] line`,
// their state and progress to `progress.children[key]`, the same shape the BullMQ queue shows.
import { setTimeout as sleep } from 'node:timers/promises';
import {
  errorInfo,
  JOB_ERROR,
  JobError,
  RetryableJobError,
  toJson,
  type ChildOutcome,
  type JobContext,
  type JobErrorInfo,
  type JobHandler,
  type JobProgress,
} from './job.js';
import { childJobId, type ChildJob, type ChildView } from './queue.js';

export interface LocalFlowOptions {
  /** The parent's running context: its log, progress and signal. */
  parent: JobContext;
  children: ChildJob[];
  /** The handler of a work queue, when this process registered it. */
  work(queue: string): JobHandler | undefined;
  defaults: { attempts: number; backoffMs: number };
}

/** Runs the children to their end; resolves with how each ended (never rejects). */
export async function runLocalFlow(options: LocalFlowOptions): Promise<Record<string, ChildOutcome>> {
  const { parent } = options;
  const views: Record<string, ChildView> = {};
  for (const child of options.children) {
    views[child.key] = { state: 'queued', progress: {}, error: null, startedAt: null, finishedAt: null, attempts: 0 };
  }
  const publish = () => parent.progress({ children: structuredClone(views) as unknown as JobProgress });
  publish();

  const controllers = new Map(options.children.map((child) => [child.key, new AbortController()]));
  const stopAll = (reason: unknown, except?: string) => {
    for (const [key, controller] of controllers) if (key !== except && !controller.signal.aborted) controller.abort(reason);
  };
  const onParentAbort = () => stopAll(parent.signal.reason);
  parent.signal.addEventListener('abort', onParentAbort, { once: true });

  try {
    const outcomes = await Promise.all(
      options.children.map(async (child): Promise<[string, ChildOutcome]> => {
        const controller = controllers.get(child.key)!;
        if (parent.signal.aborted) controller.abort(parent.signal.reason);
        const outcome = await runChild(child, controller.signal, views[child.key]!, options, publish);
        // One failure dooms the flow: the others stop rather than build for nothing.
        if (outcome.state === 'failed' && outcome.error?.code !== JOB_ERROR.abandoned.code) {
          stopAll(new JobError(JOB_ERROR.abandoned.code, JOB_ERROR.abandoned.message), child.key);
        }
        return [child.key, outcome];
      }),
    );
    return Object.fromEntries(outcomes);
  } finally {
    parent.signal.removeEventListener('abort', onParentAbort);
    publish();
  }
}

async function runChild(
  child: ChildJob,
  signal: AbortSignal,
  view: ChildView,
  options: LocalFlowOptions,
  publish: () => void,
): Promise<ChildOutcome> {
  const { parent } = options;
  const log = (line: string) => {
    for (const part of String(line).split(/\r?\n/)) parent.log(`[${child.key}] ${part}`);
  };
  const end = (outcome: ChildOutcome): ChildOutcome => {
    view.state = outcome.state;
    view.error = outcome.error ?? null;
    view.finishedAt = new Date().toISOString();
    publish();
    log(outcome.state === 'succeeded' ? 'succeeded' : `${outcome.state}: ${outcome.error!.code}: ${outcome.error!.message}`);
    return outcome;
  };
  const handler = options.work(child.queue);
  if (!handler) {
    return end({ state: 'failed', error: { code: 'NO_WORKER', message: `no process here takes ${child.queue} work` } });
  }
  const attempts = Math.max(1, child.attempts ?? options.defaults.attempts);
  const backoffMs = child.backoffMs ?? options.defaults.backoffMs;
  for (let attempt = 1; ; attempt++) {
    if (signal.aborted) return end(stoppedOutcome(signal.reason));
    view.state = 'running';
    view.attempts = attempt;
    view.startedAt ??= new Date().toISOString();
    publish();
    if (attempt > 1) log(`attempt ${attempt} of ${attempts}`);
    const context: JobContext = {
      id: childJobId(parent.id, child.key),
      kind: parent.kind,
      request: child.request,
      attempt,
      signal,
      parent: { id: parent.id, key: child.key },
      log,
      progress(update: JobProgress) {
        view.progress = { ...view.progress, ...structuredClone(update) };
        publish();
      },
    };
    try {
      const result = toJson(await handler(context));
      if (signal.aborted) return end(stoppedOutcome(signal.reason));
      return end({ state: 'succeeded', result });
    } catch (error) {
      if (signal.aborted) return end(stoppedOutcome(signal.reason));
      if (!(error instanceof RetryableJobError) || attempt >= attempts) return end({ state: 'failed', error: errorInfo(error) });
      const delay = backoffMs * 2 ** (attempt - 1);
      log(`attempt ${attempt} failed: ${error.message}; retrying in ${delay} ms`);
      await sleep(delay, undefined, { signal }).catch(() => undefined);
    }
  }
}

/** A child stopped from outside: by a cancel (cancelled), a sibling's failure or a shutdown (failed). */
function stoppedOutcome(reason: unknown): ChildOutcome {
  const error: JobErrorInfo = reason instanceof JobError ? errorInfo(reason) : { ...JOB_ERROR.cancelled };
  return { state: error.code === JOB_ERROR.cancelled.code ? 'cancelled' : 'failed', error };
}
