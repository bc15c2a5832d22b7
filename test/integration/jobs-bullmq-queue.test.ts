import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import { pino } from 'pino';
import { loadConfig } from '../../server/config.js';
import { BullJobQueue, type BullJobQueueOptions } from '../../server/jobs/bullmq-queue.js';
import { connectRedis, SharedStateUnavailableError, type SharedState } from '../../server/state/redis.js';
import { startRedis, type RunningRedis } from '../helpers/redis.js';
import { finished, jobQueueContract, until, type QueueBackend } from '../unit/job-queue-contract.js';
import { rejectsWith } from '../unit/support.js';

const FAST: BullJobQueueOptions = { flushIntervalMs: 20, followIntervalMs: 20, cancelCheckMs: 200, shutdownGraceMs: 2_000 };

describe('BullMQ job queue (real redis-server)', function () {
  let redis: RunningRedis;
  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    await redis?.stop();
  });

  /** Every instance connects on its own, as another process would; each test has its own key prefix. */
  async function bullBackend(): Promise<QueueBackend & { prefix: string; state(): Promise<SharedState> }> {
    const prefix = `t${randomBytes(4).toString('hex')}:`;
    const states: SharedState[] = [];
    const queues: BullJobQueue[] = [];
    const state = async () => {
      const config = loadConfig(undefined, { REGISTRY_REDIS_URL: redis.url, REGISTRY_REDIS_KEYPREFIX: prefix }, () => undefined);
      const shared = connectRedis(config.redis!, pino({ level: 'silent' }));
      states.push(shared);
      await until('redis to connect', async () => shared.isReady());
      return shared;
    };
    return {
      prefix,
      state,
      async open(options = {}) {
        const queue = new BullJobQueue(await state(), { ...FAST, ...options });
        queues.push(queue);
        return queue;
      },
      async cleanup() {
        await Promise.all(queues.map((queue) => queue.close()));
        await Promise.all(states.map((shared) => shared.close()));
      },
    };
  }

  jobQueueContract(bullBackend);

  describe('layout', () => {
    let backend: Awaited<ReturnType<typeof bullBackend>>;
    beforeEach(async () => {
      backend = await bullBackend();
    });
    afterEach(() => backend.cleanup());

    it('keeps one BullMQ queue per kind, jobs-<kind>, under the configured key prefix', async () => {
      const queue = await backend.open();
      queue.register('gc', async () => null);
      await queue.start();
      const job = await queue.submit('gc', { dryRun: true });
      await finished(queue, job.id);
      const shared = await backend.state();
      const keys = await shared.client.keys(`${backend.prefix.slice(0, -1)}*`);
      expect(keys).to.include(`${backend.prefix}jobs-gc:${job.id}`);
      expect(keys).to.include(`${backend.prefix}jobs:index`);
      expect(keys.every((key) => key.startsWith(backend.prefix))).to.equal(true);
    });

    it('fails fast with SharedStateUnavailableError while Redis is away, and works again once it is back', async () => {
      const runner = await backend.open();
      runner.register('gc', async () => 'collected');
      await runner.start();
      const reader = await backend.open();
      await finished(reader, (await reader.submit('gc', {})).id);

      await redis.halt();
      const started = Date.now();
      await rejectsWith(reader.submit('gc', {}), SharedStateUnavailableError);
      await rejectsWith(reader.list(), SharedStateUnavailableError);
      expect(Date.now() - started).to.be.below(3_000);

      await redis.restart(); // empty: nothing is persisted
      const job = await until('a submission to work again', () => reader.submit('gc', {}).catch(() => undefined), 20_000);
      const done = await finished(reader, job.id);
      expect(done.result, JSON.stringify(done)).to.equal('collected');
    });
  });
});
