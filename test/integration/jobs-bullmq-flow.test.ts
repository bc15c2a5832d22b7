import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { loadConfig } from '../../server/config.js';
import { BullJobQueue } from '../../server/jobs/bullmq-queue.js';
import { connectRedis, type SharedState } from '../../server/state/redis.js';
import { startRedis, type RunningRedis } from '../helpers/redis.js';
import { jobFlowContract, jobFlowWorkerContract } from '../unit/job-flow-contract.js';
import { until, type QueueBackend } from '../unit/job-queue-contract.js';

describe('BullMQ job queue: flows (real redis-server)', function () {
  let redis: RunningRedis;
  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    await redis?.stop();
  });

  /** Each instance connects on its own, as another process would; each test has its own key prefix. */
  async function bullBackend(): Promise<QueueBackend> {
    const prefix = `f${randomBytes(4).toString('hex')}:`;
    const states: SharedState[] = [];
    const queues: BullJobQueue[] = [];
    return {
      async open(options = {}) {
        const config = loadConfig(undefined, { REGISTRY_REDIS_URL: redis.url, REGISTRY_REDIS_KEYPREFIX: prefix }, () => undefined);
        const shared = connectRedis(config.redis!, pino({ level: 'silent' }));
        states.push(shared);
        await until('redis to connect', async () => shared.isReady());
        const queue = new BullJobQueue(shared, { flushIntervalMs: 20, followIntervalMs: 20, cancelCheckMs: 100, shutdownGraceMs: 2_000, ...options });
        queues.push(queue);
        return queue;
      },
      async cleanup() {
        await Promise.all(queues.map((queue) => queue.close()));
        await Promise.all(states.map((shared) => shared.close()));
      },
    };
  }

  jobFlowContract(bullBackend);
  jobFlowWorkerContract(bullBackend);
});
