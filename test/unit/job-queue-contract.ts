// What every JobQueue does, run once per backend (local-queue on storage, BullMQ on Redis). Not a test
// file itself: the backend suites call `jobQueueContract` with a way to open queue instances that share
// one store, each instance standing for a process.
import { expect } from 'chai';
import { JOB_ID_PATTERN, newJobId } from '../../server/jobs/ids.js';
import { isFinished, JobError, RetryableJobError, type JobContext, type JobRecord } from '../../server/jobs/job.js';
import { JobFinishedError, JobNotFoundError, type JobQueue } from '../../server/jobs/queue.js';
import { rejectsWith } from './support.js';

export interface QueueOptionsForTests {
  attempts?: number;
  backoffMs?: number;
}

export interface QueueBackend {
  /** A new instance (a "process") over the same store as every other instance of this backend. */
  open(options?: QueueOptionsForTests): Promise<JobQueue>;
  /** Closes every instance opened and removes the store. */
  cleanup(): Promise<void>;
}

/** Polls `check` until it returns something, failing with `what` after the deadline. */
export async function until<T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

export function finished(queue: JobQueue, id: string): Promise<JobRecord> {
  return until(`job ${id} to finish`, async () => {
    const job = await queue.get(id);
    return job && isFinished(job.state) ? job : undefined;
  });
}

export function deferred<T = void>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/** Resolves when the job's signal aborts. */
export function aborted(ctx: JobContext): Promise<void> {
  return new Promise((resolve) => {
    if (ctx.signal.aborted) resolve();
    else ctx.signal.addEventListener('abort', () => resolve(), { once: true });
  });
}

/** Log lines carry a timestamp; tests compare what follows it. */
export function messages(lines: string[] | undefined): string[] {
  return (lines ?? []).map((line) => line.replace(/^\S+ /, ''));
}

export function jobQueueContract(makeBackend: () => Promise<QueueBackend>): void {
  let backend: QueueBackend;
  beforeEach(async () => {
    backend = await makeBackend();
  });
  afterEach(async () => {
    await backend.cleanup();
  });

  it('runs a job to success, with its result, progress and log', async () => {
    const queue = await backend.open();
    queue.register<{ n: number }, { copied: number }>('mirror', async (ctx) => {
      ctx.progress({ units: { done: 0, total: 2 } });
      ctx.log('one');
      ctx.progress({ units: { done: 1, total: 2 } });
      ctx.progress({ bytes: { done: 10, total: 10 } });
      ctx.log('two\nthree');
      return { copied: ctx.request.n };
    });
    await queue.start();
    const job = await queue.submit('mirror', { n: 2 });
    expect(job.id).to.match(JOB_ID_PATTERN);
    expect(job).to.include({ kind: 'mirror', state: 'queued', result: null, error: null, startedAt: null, finishedAt: null });
    expect(job.request).to.deep.equal({ n: 2 });

    const done = await finished(queue, job.id);
    expect(done).to.include({ id: job.id, kind: 'mirror', state: 'succeeded', error: null, attempts: 1 });
    expect(done.result).to.deep.equal({ copied: 2 });
    expect(done.request).to.deep.equal({ n: 2 });
    expect(done.progress).to.deep.equal({ units: { done: 1, total: 2 }, bytes: { done: 10, total: 10 } });
    expect(Date.parse(done.startedAt!)).to.be.at.least(Date.parse(done.createdAt));
    expect(Date.parse(done.finishedAt!)).to.be.at.least(Date.parse(done.startedAt!));
    const lines = await queue.logs(job.id);
    expect(messages(lines)).to.deep.equal(['one', 'two', 'three']);
    expect(lines![0]).to.match(/^\d{4}-\d\d-\d\dT[\d:.]+Z one$/);
  });

  it('records a failing handler as failed, with its error, and does not retry it', async () => {
    const queue = await backend.open({ attempts: 3, backoffMs: 10 });
    let calls = 0;
    queue.register<{ coded: boolean }, never>('build', async (ctx) => {
      calls++;
      if (ctx.request.coded) throw new JobError('UPSTREAM_DENIED', 'upstream said no');
      throw new Error('boom');
    });
    await queue.start();
    const plain = await queue.submit('build', { coded: false });
    const failed = await finished(queue, plain.id);
    expect(failed).to.include({ state: 'failed', result: null, attempts: 1 });
    expect(failed.error).to.deep.equal({ code: 'FAILED', message: 'boom' });
    expect(calls).to.equal(1);

    const coded = await finished(queue, (await queue.submit('build', { coded: true })).id);
    expect(coded.error).to.deep.equal({ code: 'UPSTREAM_DENIED', message: 'upstream said no' });
    expect(calls).to.equal(2);
    expect(messages(await queue.logs(coded.id)).at(-1)).to.include('UPSTREAM_DENIED');
  });

  it('retries a RetryableJobError with backoff, up to the attempts allowed', async () => {
    const queue = await backend.open({ attempts: 3, backoffMs: 20 });
    const calls = new Map<string, number[]>();
    queue.register<{ failures: number }, string>('mirror', async (ctx) => {
      const attempts = calls.get(ctx.id) ?? [];
      attempts.push(ctx.attempt);
      calls.set(ctx.id, attempts);
      if (attempts.length <= ctx.request.failures) throw new RetryableJobError(`upstream 503 (${attempts.length})`);
      return 'ok';
    });
    await queue.start();
    const flaky = await queue.submit('mirror', { failures: 2 });
    const hopeless = await queue.submit('mirror', { failures: 10 });

    const recovered = await finished(queue, flaky.id);
    expect(recovered).to.include({ state: 'succeeded', result: 'ok', attempts: 3 });
    expect(calls.get(flaky.id)).to.deep.equal([1, 2, 3]);

    const gaveUp = await finished(queue, hopeless.id);
    expect(gaveUp).to.include({ state: 'failed', attempts: 3 });
    expect(gaveUp.error).to.deep.equal({ code: 'RETRYABLE', message: 'upstream 503 (3)' });
    expect(calls.get(hopeless.id)).to.have.length(3);
  });

  it('cancels a queued job at once, and never runs it', async () => {
    const queue = await backend.open();
    await queue.start(); // no gc handler yet: gc jobs stay queued
    const job = await queue.submit('gc', {});
    const answer = await queue.cancel(job.id);
    expect(answer).to.include({ id: job.id, state: 'cancelled' });
    expect(answer.error?.code).to.equal('CANCELLED');
    expect(answer.finishedAt).to.be.a('string');
    expect((await queue.get(job.id))?.state).to.equal('cancelled');

    const ran: string[] = [];
    queue.register('gc', async (ctx) => {
      ran.push(ctx.id);
      return null;
    });
    const next = await queue.submit('gc', {});
    expect((await finished(queue, next.id)).state).to.equal('succeeded');
    expect(ran).to.deep.equal([next.id]);
    const cancelled = await finished(queue, job.id);
    expect(cancelled).to.include({ state: 'cancelled', result: null });
    expect(cancelled.error?.code).to.equal('CANCELLED');
  });

  it('cancels a running job from another process: the handler sees the abort and the job ends cancelled', async () => {
    const runner = await backend.open();
    const other = await backend.open();
    const started = deferred();
    let sawAbort = false;
    runner.register('build', async (ctx) => {
      ctx.log('working');
      started.resolve();
      await aborted(ctx);
      sawAbort = ctx.signal.aborted;
      ctx.log('stopping');
      throw ctx.signal.reason;
    });
    await runner.start();
    const job = await runner.submit('build', {});
    await started.promise;
    await until('the job to be running', async () => (await other.get(job.id))?.state === 'running');

    const answer = await other.cancel(job.id);
    expect(answer.state).to.equal('running');
    const done = await finished(other, job.id);
    expect(sawAbort).to.equal(true);
    expect(done).to.include({ state: 'cancelled', result: null });
    expect(done.error?.code).to.equal('CANCELLED');
    expect(messages(await other.logs(job.id)).slice(0, 2)).to.deep.equal(['working', 'stopping']);

    const again = await rejectsWith(other.cancel(job.id), JobFinishedError);
    expect(again.job.state).to.equal('cancelled');
    await rejectsWith(other.cancel(newJobId()), JobNotFoundError);
    await rejectsWith(other.cancel('../../etc'), JobNotFoundError);
  });

  it('a handler that finishes its work despite a cancel (past its last cancel point) ends succeeded, with its result', async () => {
    const runner = await backend.open();
    const started = deferred();
    runner.register('build', async (ctx) => {
      started.resolve();
      await aborted(ctx);
      ctx.log('tags moved anyway');
      return { tagged: true };
    });
    await runner.start();
    const job = await runner.submit('build', {});
    await started.promise;
    await until('the job to be running', async () => (await runner.get(job.id))?.state === 'running');
    await runner.cancel(job.id);
    const done = await finished(runner, job.id);
    expect(done).to.deep.include({ state: 'succeeded', result: { tagged: true } });
    expect(messages(await runner.logs(job.id)).join('\n')).to.match(/finished before the cancel took effect/);
  });

  it('lists jobs in creation order, paginated with n and last, filtered by kind and state', async () => {
    const queue = await backend.open();
    const ids: string[] = [];
    for (const kind of ['mirror', 'build', 'mirror', 'build', 'mirror'] as const) ids.push((await queue.submit(kind, { kind })).id);
    expect([...ids].sort()).to.deep.equal(ids);
    await queue.cancel(ids[2]!);

    const all = await queue.list();
    expect(all.jobs.map((job) => job.id)).to.deep.equal(ids);
    expect(all.next).to.equal(undefined);

    const first = await queue.list({ n: 2 });
    expect(first.jobs.map((job) => job.id)).to.deep.equal(ids.slice(0, 2));
    expect(first.next).to.equal(ids[1]);
    const second = await queue.list({ n: 2, last: first.next });
    expect(second.jobs.map((job) => job.id)).to.deep.equal(ids.slice(2, 4));
    const third = await queue.list({ n: 2, last: second.next });
    expect(third.jobs.map((job) => job.id)).to.deep.equal(ids.slice(4));
    expect(third.next).to.equal(undefined);

    expect((await queue.list({ kind: 'build' })).jobs.map((job) => job.id)).to.deep.equal([ids[1], ids[3]]);
    expect((await queue.list({ state: 'cancelled' })).jobs.map((job) => job.id)).to.deep.equal([ids[2]]);
    const mirrors = await queue.list({ kind: 'mirror', state: 'queued', n: 1 });
    expect(mirrors.jobs.map((job) => job.id)).to.deep.equal([ids[0]]);
    const rest = await queue.list({ kind: 'mirror', state: 'queued', n: 1, last: mirrors.next });
    expect(rest.jobs.map((job) => job.id)).to.deep.equal([ids[4]]);
    expect(rest.next).to.equal(undefined);
    expect((await queue.list({ kind: 'gc' })).jobs).to.deep.equal([]);
  });

  it('follows the logs from another process until the job ends, and reads its state there', async () => {
    const runner = await backend.open();
    const reader = await backend.open();
    const gate = deferred();
    runner.register('mirror', async (ctx) => {
      ctx.log('line 1');
      ctx.progress({ units: { done: 1, total: 2 } });
      await gate.promise;
      ctx.log('line 2');
      return { ok: true };
    });
    await runner.start();
    const job = await runner.submit('mirror', {});

    const followed: string[] = [];
    const following = (async () => {
      for await (const line of reader.followLogs(job.id)) followed.push(line);
    })();
    await until('the first line', async () => followed.length > 0);
    const running = await reader.get(job.id);
    expect(running?.state).to.equal('running');
    await until('progress from the other process', async () => (await reader.get(job.id))?.progress.units !== undefined);
    gate.resolve();
    await following; // ends by itself once the job has finished
    expect(messages(followed)).to.deep.equal(['line 1', 'line 2']);
    expect(await reader.logs(job.id)).to.deep.equal(followed);
    const done = await reader.get(job.id);
    expect(done).to.include({ state: 'succeeded' });
    expect(done?.result).to.deep.equal({ ok: true });

    // A finished job's log is followed to its end at once; an unknown one yields nothing.
    const again: string[] = [];
    for await (const line of reader.followLogs(job.id)) again.push(line);
    expect(again).to.deep.equal(followed);
    for await (const line of reader.followLogs(newJobId())) expect.fail(`unexpected line ${line}`);
    expect(await reader.logs(newJobId())).to.equal(undefined);
    expect(await reader.get('not-an-id')).to.equal(undefined);
  });

  it('stops following when the reader aborts', async () => {
    const queue = await backend.open();
    const job = await queue.submit('gc', {}); // never runs: nothing started
    const reader = new AbortController();
    const following = (async () => {
      const lines: string[] = [];
      for await (const line of queue.followLogs(job.id, reader.signal)) lines.push(line);
      return lines;
    })();
    setTimeout(() => reader.abort(), 50);
    expect(await following).to.deep.equal([]);
  });

  it('interrupts running jobs on close: they end failed (INTERRUPTED)', async () => {
    const runner = await backend.open();
    const reader = await backend.open();
    const started = deferred();
    runner.register('build', async (ctx) => {
      started.resolve();
      await aborted(ctx);
      throw ctx.signal.reason;
    });
    await runner.start();
    const job = await runner.submit('build', {});
    await started.promise;
    await runner.close();
    const done = await finished(reader, job.id);
    expect(done.state).to.equal('failed');
    expect(done.error?.code).to.equal('INTERRUPTED');
  });
}
