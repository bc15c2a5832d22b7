import { expect } from 'chai';
import { LocalJobQueue } from '../../server/jobs/local-queue.js';
import { FilesystemDriver } from '../../storage-drivers/filesystem.js';
import { jobFlowContract } from './job-flow-contract.js';
import { finished, type QueueBackend } from './job-queue-contract.js';
import { tempDir } from './support.js';

async function localBackend(): Promise<QueueBackend> {
  const dir = await tempDir('flows');
  const driver = new FilesystemDriver({ rootdirectory: dir.path });
  const opened: LocalJobQueue[] = [];
  return {
    async open(options = {}) {
      const queue = new LocalJobQueue(driver, { pollIntervalMs: 20, standbyIntervalMs: 20, flushIntervalMs: 20, shutdownGraceMs: 2_000, ...options });
      opened.push(queue);
      return queue;
    },
    async cleanup() {
      await Promise.all(opened.map((queue) => queue.close()));
      await dir.cleanup();
    },
  };
}

describe('local job queue: flows', () => {
  jobFlowContract(localBackend);

  it('fails a child whose work queue this process does not take (NO_WORKER)', async () => {
    const backend = await localBackend();
    try {
      const queue = await backend.open();
      queue.register('build', async (ctx) => {
        const outcome = ctx.children?.['linux/s390x'];
        throw new Error(`${outcome?.state} ${outcome?.error?.code}`);
      });
      await queue.start();
      const job = await queue.submit('build', {}, { children: [{ key: 'linux/s390x', queue: 'build-linux-s390x', request: {} }] });
      const done = await finished(queue, job.id);
      expect(done.error?.message).to.equal('failed NO_WORKER');
    } finally {
      await backend.cleanup();
    }
  });
});
