import { expect } from 'chai';
import { LocalJobQueue, type LocalJobQueueOptions } from '../../server/jobs/local-queue.js';
import { newJobId } from '../../server/jobs/ids.js';
import type { JobRecord } from '../../server/jobs/job.js';
import { FilesystemDriver } from '../../storage-drivers/filesystem.js';
import { deferred, finished, jobQueueContract, until, type QueueBackend } from './job-queue-contract.js';
import { tempDir } from './support.js';

const FAST: LocalJobQueueOptions = { pollIntervalMs: 20, standbyIntervalMs: 20, flushIntervalMs: 20, shutdownGraceMs: 2_000 };

async function localBackend(): Promise<QueueBackend & { driver: FilesystemDriver; openLocal(options?: LocalJobQueueOptions): LocalJobQueue }> {
  const dir = await tempDir('jobs');
  const driver = new FilesystemDriver({ rootdirectory: dir.path });
  const opened: LocalJobQueue[] = [];
  const openLocal = (options: LocalJobQueueOptions = {}) => {
    const queue = new LocalJobQueue(driver, { ...FAST, ...options });
    opened.push(queue);
    return queue;
  };
  return {
    driver,
    openLocal,
    open: async (options) => openLocal(options),
    async cleanup() {
      await Promise.all(opened.map((queue) => queue.close()));
      await dir.cleanup();
    },
  };
}

describe('local job queue (filesystem storage)', () => {
  jobQueueContract(localBackend);

  describe('one runner among processes', () => {
    let backend: Awaited<ReturnType<typeof localBackend>>;
    beforeEach(async () => {
      backend = await localBackend();
    });
    afterEach(() => backend.cleanup());

    it('runs jobs in the instance that holds the runner lock; a standby takes over when it closes', async () => {
      const ranBy: Array<[string, string]> = [];
      const handlerOf = (name: string) => async (ctx: { id: string }) => {
        ranBy.push([ctx.id, name]);
        return name;
      };
      const first = backend.openLocal();
      const second = backend.openLocal();
      first.register('gc', handlerOf('first'));
      second.register('gc', handlerOf('second'));
      await first.start();
      await second.start(); // stands by: the lock is taken

      const one = await second.submit('gc', {});
      expect((await finished(second, one.id)).result).to.equal('first');
      await first.close();
      const two = await second.submit('gc', {});
      expect((await finished(second, two.id)).result).to.equal('second');
      expect(ranBy).to.deep.equal([
        [one.id, 'first'],
        [two.id, 'second'],
      ]);
    });

    it('fails jobs left running by a runner that died, and runs the queued ones', async () => {
      const id = newJobId();
      const record: JobRecord = {
        id,
        kind: 'mirror',
        state: 'running',
        request: {},
        progress: { units: { done: 3, total: 9 } },
        result: null,
        error: null,
        createdAt: new Date().toISOString(),
        startedAt: new Date().toISOString(),
        finishedAt: null,
        attempts: 1,
      };
      await backend.driver.putContent(`/_jobs/${id}/job.json`, JSON.stringify({ record, runner: 'a-runner-that-died' }));
      await backend.driver.putContent(`/_jobs/${id}/log`, 'x copying\n');
      await backend.driver.putContent(`/_jobs/_open/${id}`, '');
      const submitter = backend.openLocal();
      const queued = await submitter.submit('mirror', {});

      const runner = backend.openLocal();
      runner.register('mirror', async () => 'done');
      await runner.start();
      const interrupted = await finished(runner, id);
      expect(interrupted).to.include({ state: 'failed' });
      expect(interrupted.error?.code).to.equal('INTERRUPTED');
      expect(interrupted.progress).to.deep.equal({ units: { done: 3, total: 9 } });
      const lines = await runner.logs(id);
      expect(lines?.[0]).to.equal('x copying');
      expect(lines?.[1]).to.include('INTERRUPTED');
      expect((await finished(runner, queued.id)).state).to.equal('succeeded');
    });

    it('keeps progress and logs of a running job readable by another process', async () => {
      const runner = backend.openLocal();
      const reader = backend.openLocal();
      const gate = deferred();
      runner.register('build', async (ctx) => {
        for (let i = 1; i <= 3; i++) {
          ctx.progress({ units: { done: i, total: 3 } });
          ctx.log(`step ${i}`);
        }
        await gate.promise;
        return null;
      });
      await runner.start();
      const job = await runner.submit('build', {});
      const seen = await until('the stored progress', async () => {
        const current = await reader.get(job.id);
        return JSON.stringify(current?.progress) === JSON.stringify({ units: { done: 3, total: 3 } }) ? current : undefined;
      });
      expect(seen.state).to.equal('running');
      expect(await until('the stored log', async () => ((await reader.logs(job.id))?.length === 3 ? true : undefined))).to.equal(true);
      gate.resolve();
      expect((await finished(reader, job.id)).state).to.equal('succeeded');
    });

    it('deletes jobs that finished longer ago than the retention', async () => {
      const runner = backend.openLocal({ retentionMs: 1 });
      runner.register('gc', async () => null);
      await runner.start();
      const job = await runner.submit('gc', {});
      await finished(runner, job.id);
      await runner.close();
      await new Promise((resolve) => setTimeout(resolve, 5));
      const next = backend.openLocal({ retentionMs: 1 });
      await next.start(); // prunes when it becomes the runner
      expect(await next.get(job.id)).to.equal(undefined);
      expect((await next.list()).jobs).to.deep.equal([]);
    });
  });
});
