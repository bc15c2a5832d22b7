// Job metrics and job logs in the process log. Handlers are wrapped where they are registered (in place,
// whatever else the queue offers), so every kind (mirror, build, gc, flow work) is measured the same way:
// runs by outcome, their duration, the ones running now. Queue depth comes from the queue at scrape time.
import type { Logger } from 'pino';
import { Counter, Gauge, Histogram } from 'prom-client';
import { JobError, RetryableJobError, type JobContext, type JobHandler } from '../jobs/job.js';
import type { JobQueue } from '../jobs/queue.js';
import { metricsRegistry } from './registry.js';

const registers = [metricsRegistry];

const runs = new Counter({
  name: 'registry_job_runs_total',
  help: 'Job attempts that ended in this process, by kind, queue and outcome (succeeded, failed, retried, cancelled, interrupted).',
  labelNames: ['kind', 'queue', 'outcome'] as const,
  registers,
});

const duration = new Histogram({
  name: 'registry_job_duration_seconds',
  help: 'How long job attempts ran, by kind, queue and outcome.',
  labelNames: ['kind', 'queue', 'outcome'] as const,
  buckets: [0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400],
  registers,
});

const running = new Gauge({
  name: 'registry_jobs_running',
  help: 'Job attempts running in this process now, by kind and queue.',
  labelNames: ['kind', 'queue'] as const,
  registers,
});

const queues = new Set<JobQueue>();
const COUNT_TIMEOUT_MS = 2_000;

/** One read per scrape for both gauges below. */
const recent = new WeakMap<JobQueue, { at: number; counts: ReturnType<typeof readCounts> }>();

function countsOf(queue: JobQueue): ReturnType<typeof readCounts> {
  const cached = recent.get(queue);
  if (cached && performance.now() - cached.at < 1_000) return cached.counts;
  const counts = readCounts(queue);
  recent.set(queue, { at: performance.now(), counts });
  return counts;
}

async function readCounts(queue: JobQueue) {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), COUNT_TIMEOUT_MS);
  });
  try {
    return await Promise.race([queue.counts?.().catch(() => undefined), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

new Gauge({
  name: 'registry_job_queue_depth',
  help: 'Jobs waiting to run (retries included), by queue; absent where this process cannot tell (a standby without Redis).',
  labelNames: ['queue'] as const,
  // Every worker and replica that can tell sees the same queue: not a sum.
  aggregator: 'max',
  registers,
  async collect() {
    this.reset();
    for (const queue of queues) for (const count of (await countsOf(queue)) ?? []) this.set({ queue: count.queue }, count.queued);
  },
});

new Gauge({
  name: 'registry_jobs',
  help: 'Jobs by queue and state (queued, running), as the queue reports them for all processes and replicas.',
  labelNames: ['queue', 'state'] as const,
  aggregator: 'max',
  registers,
  async collect() {
    this.reset();
    for (const queue of queues) {
      for (const count of (await countsOf(queue)) ?? []) {
        this.set({ queue: count.queue, state: 'queued' }, count.queued);
        this.set({ queue: count.queue, state: 'running' }, count.running);
      }
    }
  },
});

type Outcome = 'succeeded' | 'failed' | 'retried' | 'cancelled' | 'interrupted';

function outcomeOf(ctx: JobContext, error: unknown): Outcome {
  if (ctx.signal.aborted) {
    const reason = ctx.signal.reason as unknown;
    return reason instanceof JobError && reason.code === 'CANCELLED' ? 'cancelled' : 'interrupted';
  }
  return error instanceof RetryableJobError ? 'retried' : 'failed';
}

function instrumentHandler(queueName: string, handler: JobHandler, logger: Logger): JobHandler {
  return async (ctx) => {
    const labels = { kind: ctx.kind, queue: queueName };
    // Every line of the process log about this job carries its id, so a log pipeline can follow one job.
    const log = logger.child({ jobId: ctx.id, jobKind: ctx.kind, ...(ctx.parent ? { parentJobId: ctx.parent.id } : {}) });
    const logged: JobContext = {
      ...ctx,
      log: (line: string) => {
        ctx.log(line);
        log.info({ attempt: ctx.attempt }, String(line));
      },
    };
    const started = performance.now();
    running.inc(labels);
    log.info({ attempt: ctx.attempt, queue: queueName }, 'job started');
    let outcome: Outcome = 'succeeded';
    try {
      return await handler(logged);
    } catch (error) {
      outcome = outcomeOf(ctx, error);
      throw error;
    } finally {
      const seconds = (performance.now() - started) / 1000;
      running.dec(labels);
      runs.inc({ ...labels, outcome });
      duration.observe({ ...labels, outcome }, seconds);
      const level = outcome === 'failed' ? 'warn' : 'info';
      log[level]({ attempt: ctx.attempt, queue: queueName, outcome, durationMs: Math.round(seconds * 1000) }, 'job ended');
    }
  };
}

/**
 * Measures every handler registered on `queue` from now on, and reports its depth. Patches the queue
 * in place rather than wrapping it, so methods added to the queue later need nothing here.
 */
export function instrumentJobQueue<Q extends JobQueue>(queue: Q, logger: Logger): Q {
  const register = queue.register.bind(queue);
  queue.register = (kind, handler, options) => register(kind, instrumentHandler(`jobs-${kind}`, handler as JobHandler, logger), options);
  const registerWork = queue.registerWork.bind(queue);
  queue.registerWork = (name, handler, options) => registerWork(name, instrumentHandler(name, handler as JobHandler, logger), options);
  queues.add(queue);
  const close = queue.close.bind(queue);
  queue.close = async () => {
    queues.delete(queue);
    await close();
  };
  return queue;
}
