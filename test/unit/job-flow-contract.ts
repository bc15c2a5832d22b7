// What every JobQueue does with flows (a parent job that runs after per-queue children), run once per
// backend like job-queue-contract.ts. Not a test file itself.
import { expect } from 'chai';
import { flowFailure, isFinished, JOB_ERROR, JobError, RetryableJobError, type ChildOutcome, type JobContext } from '../../server/jobs/job.js';
import type { ChildView, JobQueue } from '../../server/jobs/queue.js';
import { aborted, deferred, finished, messages, until, type QueueBackend } from './job-queue-contract.js';

type Outcomes = Readonly<Record<string, ChildOutcome>>;

/** A parent that records how its children ended, then ends as the flow did. */
function recordingParent(seen: Array<{ outcomes: Outcomes; aborted: boolean }>) {
  return async (ctx: JobContext) => {
    seen.push({ outcomes: structuredClone(ctx.children ?? {}), aborted: ctx.signal.aborted });
    ctx.log('parent ran');
    const failure = flowFailure(ctx.children ?? {});
    if (failure) throw failure;
    return Object.fromEntries(Object.entries(ctx.children ?? {}).map(([key, outcome]) => [key, outcome.result]));
  };
}

export function jobFlowContract(makeBackend: () => Promise<QueueBackend>): void {
  let backend: QueueBackend;
  beforeEach(async () => {
    backend = await makeBackend();
  });
  afterEach(async () => {
    await backend.cleanup();
  });

  const children = (...keys: string[]) => keys.map((key) => ({ key, queue: `work-${key.replace('/', '-')}`, request: { key } }));

  it('runs each child on its work queue, then the parent with their results; progress and log show each child', async () => {
    const queue = await backend.open();
    const seen: Array<{ outcomes: Outcomes; aborted: boolean }> = [];
    for (const key of ['linux/amd64', 'linux/arm64']) {
      queue.registerWork<{ key: string }, string>(`work-${key.replace('/', '-')}`, async (ctx) => {
        expect(ctx.parent?.key).to.equal(key);
        ctx.log(`building ${ctx.request.key}`);
        ctx.progress({ steps: { done: 1, total: 1 } });
        return `digest-${ctx.request.key}`;
      });
    }
    queue.register('build', recordingParent(seen));
    await queue.start();
    const job = await queue.submit('build', { what: 'both' }, { children: children('linux/amd64', 'linux/arm64') });
    expect(job.state).to.equal('queued');
    const done = await finished(queue, job.id);
    expect(done.state, JSON.stringify(done.error)).to.equal('succeeded');
    expect(done.result).to.deep.equal({ 'linux/amd64': 'digest-linux/amd64', 'linux/arm64': 'digest-linux/arm64' });
    expect(done.request).to.deep.equal({ what: 'both' });
    expect(seen).to.have.length(1);
    expect(seen[0]!.aborted).to.equal(false);
    const views = done.progress.children as unknown as Record<string, ChildView>;
    expect(Object.keys(views).sort()).to.deep.equal(['linux/amd64', 'linux/arm64']);
    for (const view of Object.values(views)) {
      expect(view).to.include({ state: 'succeeded', error: null, attempts: 1 });
      expect(view.progress).to.deep.equal({ steps: { done: 1, total: 1 } });
      expect(view.startedAt).to.be.a('string');
      expect(view.finishedAt).to.be.a('string');
    }
    expect(done.startedAt).to.be.a('string');
    const lines = messages(await queue.logs(job.id));
    expect(lines).to.include('[linux/amd64] building linux/amd64');
    expect(lines).to.include('[linux/arm64] building linux/arm64');
    expect(lines).to.include('parent ran');
    expect(lines.indexOf('parent ran')).to.be.greaterThan(lines.indexOf('[linux/arm64] building linux/arm64'));
    // The children are not jobs of their own.
    expect((await queue.list()).jobs.map((j) => j.id)).to.deep.equal([job.id]);
  });

  it('shows the flow running while its children run, and follows their log lines live', async () => {
    const queue = await backend.open();
    const release = deferred();
    queue.registerWork('work-a', async (ctx) => {
      ctx.log('a started');
      await release.promise;
      ctx.log('a done');
      return 1;
    });
    queue.register('build', recordingParent([]));
    await queue.start();
    const job = await queue.submit('build', {}, { children: [{ key: 'a', queue: 'work-a', request: {} }] });
    await until('the flow to run', async () => (await queue.get(job.id))?.state === 'running');
    const followed: string[] = [];
    const following = (async () => {
      for await (const line of queue.followLogs(job.id)) followed.push(line);
    })();
    await until('the first child line', async () => followed.some((line) => line.endsWith('[a] a started')));
    release.resolve();
    await following;
    const all = messages(followed);
    expect(all).to.include('[a] a done');
    expect(all).to.include('parent ran');
    expect((await queue.get(job.id))?.state).to.equal('succeeded');
  });

  it('a failing child fails the flow with its error; its siblings stop; the parent still runs to clean up', async () => {
    const queue = await backend.open({ attempts: 3, backoffMs: 10 });
    const seen: Array<{ outcomes: Outcomes; aborted: boolean }> = [];
    const slowStarted = deferred();
    let failingCalls = 0;
    queue.registerWork('work-slow', async (ctx) => {
      slowStarted.resolve();
      await aborted(ctx);
      throw ctx.signal.reason;
    });
    queue.registerWork('work-bad', async () => {
      failingCalls++;
      await slowStarted.promise;
      throw new JobError('BUILD_FAILED', 'RUN exited 1');
    });
    queue.register('build', recordingParent(seen));
    await queue.start();
    const job = await queue.submit('build', {}, {
      children: [
        { key: 'slow', queue: 'work-slow', request: {} },
        { key: 'bad', queue: 'work-bad', request: {} },
      ],
    });
    const done = await finished(queue, job.id);
    expect(done.state).to.equal('failed');
    expect(done.error?.code).to.equal('BUILD_FAILED');
    expect(done.error?.message).to.include('RUN exited 1');
    expect(failingCalls, 'a JobError is not retried').to.equal(1);
    expect(seen).to.have.length(1);
    expect(seen[0]!.outcomes.bad).to.deep.include({ state: 'failed' });
    expect(seen[0]!.outcomes.slow?.state).to.equal('failed');
    expect(seen[0]!.outcomes.slow?.error?.code).to.equal(JOB_ERROR.abandoned.code);
    const views = done.progress.children as unknown as Record<string, ChildView>;
    expect(views.bad?.state).to.equal('failed');
    expect(views.slow?.error?.code).to.equal('ABANDONED');
    expect(messages(await queue.logs(job.id))).to.include('parent ran');
  });

  it('retries a child that throws RetryableJobError, up to its own attempts', async () => {
    const queue = await backend.open({ attempts: 1, backoffMs: 10 });
    const attempts: number[] = [];
    queue.registerWork('work-flaky', async (ctx) => {
      attempts.push(ctx.attempt);
      if (ctx.attempt < 2) throw new RetryableJobError('git unreachable');
      return 'ok';
    });
    queue.register('build', recordingParent([]));
    await queue.start();
    const job = await queue.submit('build', {}, { children: [{ key: 'x', queue: 'work-flaky', request: {}, attempts: 2, backoffMs: 10 }] });
    const done = await finished(queue, job.id);
    expect(done.state, JSON.stringify(done.error)).to.equal('succeeded');
    expect(attempts).to.deep.equal([1, 2]);
    expect((done.progress.children as unknown as Record<string, ChildView>).x?.attempts).to.equal(2);
  });

  it('cancelling a running flow stops its children and runs the parent with an aborted signal; it ends cancelled', async () => {
    const queue = await backend.open();
    const other = await backend.open();
    const seen: Array<{ outcomes: Outcomes; aborted: boolean }> = [];
    const started = deferred();
    queue.registerWork('work-long', async (ctx) => {
      ctx.log('long work');
      started.resolve();
      await aborted(ctx);
      throw ctx.signal.reason;
    });
    queue.register('build', recordingParent(seen));
    await queue.start();
    const job = await queue.submit('build', {}, { children: [{ key: 'long', queue: 'work-long', request: {} }] });
    await started.promise;
    await until('running', async () => (await other.get(job.id))?.state === 'running');
    await other.cancel(job.id);
    const done = await finished(other, job.id);
    expect(done.state).to.equal('cancelled');
    expect(done.error?.code).to.equal('CANCELLED');
    expect(seen).to.have.length(1);
    expect(seen[0]!.aborted).to.equal(true);
    expect(seen[0]!.outcomes.long?.state).to.equal('cancelled');
  });

  it('finished flows never change again', async () => {
    const queue = await backend.open();
    queue.registerWork('work-a', async () => 'a');
    queue.register('build', recordingParent([]));
    await queue.start();
    const job = await queue.submit('build', {}, { children: [{ key: 'a', queue: 'work-a', request: {} }] });
    const done = await finished(queue, job.id);
    expect(isFinished(done.state)).to.equal(true);
    expect(await queue.get(job.id)).to.deep.equal(done);
  });
}

/** For backends where another process may take a work queue: children run where their queue is registered. */
export function jobFlowWorkerContract(makeBackend: () => Promise<QueueBackend>): void {
  let backend: QueueBackend;
  beforeEach(async () => {
    backend = await makeBackend();
  });
  afterEach(async () => {
    await backend.cleanup();
  });

  it('runs each child only in a process that registered its work queue, and the parent where the kind is registered', async () => {
    const server = await backend.open();
    const amd = await backend.open();
    const arm = await backend.open();
    const ran: string[] = [];
    amd.registerWork('build-linux-amd64', async () => (ran.push('amd'), 'amd'));
    arm.registerWork('build-linux-arm64', async () => (ran.push('arm'), 'arm'));
    server.register('build', recordingParent([]));
    for (const queue of [server, amd, arm]) await queue.start();
    const job = await server.submit('build', {}, {
      children: [
        { key: 'linux/amd64', queue: 'build-linux-amd64', request: {} },
        { key: 'linux/arm64', queue: 'build-linux-arm64', request: {} },
      ],
    });
    const done = await finished(server, job.id);
    expect(done.state, JSON.stringify(done.error)).to.equal('succeeded');
    expect(done.result).to.deep.equal({ 'linux/amd64': 'amd', 'linux/arm64': 'arm' });
    expect(ran.sort()).to.deep.equal(['amd', 'arm']);
  });

  it('cancelling a flow whose child no worker takes removes that child, and the flow ends cancelled', async () => {
    const server = await backend.open();
    const seen: Array<{ outcomes: Outcomes; aborted: boolean }> = [];
    const started = deferred();
    server.registerWork('build-linux-amd64', async (ctx) => {
      started.resolve();
      await aborted(ctx);
      throw ctx.signal.reason;
    });
    server.register('build', recordingParent(seen));
    await server.start();
    const job = await server.submit('build', {}, {
      children: [
        { key: 'linux/amd64', queue: 'build-linux-amd64', request: {} },
        { key: 'linux/riscv64', queue: 'build-linux-riscv64', request: {} }, // nobody builds it
      ],
    });
    await started.promise;
    await server.cancel(job.id);
    const done = await finished(server, job.id);
    expect(done.state).to.equal('cancelled');
    expect(seen[0]?.outcomes['linux/riscv64']?.state).to.equal('cancelled');
    const views = done.progress.children as unknown as Record<string, ChildView>;
    expect(views['linux/riscv64']?.state).to.equal('cancelled');
  });
}
