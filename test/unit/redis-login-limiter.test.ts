import { expect } from 'chai';
import { pino } from 'pino';
import { RedisLoginLimiter } from '../../server/auth/redis-login-limiter.js';
import { loadConfig } from '../../server/config.js';
import { connectRedis, type SharedState } from '../../server/state/redis.js';
import { capturingLogger } from '../helpers/capturing-logger.js';
import { waitUntil } from '../helpers/process.js';
import { startRedis, type RunningRedis } from '../helpers/redis.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('auth: LoginLimiter in Redis', function () {
  this.timeout(30_000);
  let redis: RunningRedis;
  let shared: SharedState;
  let other: SharedState;
  let log: ReturnType<typeof capturingLogger>;
  let n = 0;
  const user = () => `user-${++n}`;

  before(async () => {
    redis = await startRedis();
    const config = loadConfig(undefined, { REGISTRY_REDIS_ADDR: redis.addr, REGISTRY_REDIS_KEYPREFIX: 'login-test:' }, () => undefined);
    log = capturingLogger();
    shared = connectRedis(config.redis!, log.logger);
    other = connectRedis(config.redis!, pino({ enabled: false }));
    await waitUntil('redis clients ready', async () => shared.isReady() && other.isReady(), { timeoutMs: 10_000 });
  });

  after(async () => {
    await Promise.allSettled([shared?.close(), other?.close()]);
    await redis?.stop();
  });

  it('allows 4 failures, refuses after the 5th until the oldest leaves the window', async () => {
    const limiter = new RedisLoginLimiter(shared, log.logger, 5, 60_000);
    const alice = user();
    for (let i = 0; i < 4; i++) {
      expect(await limiter.retryAfter(alice, '10.0.0.1')).to.equal(0);
      await limiter.recordFailure(alice, '10.0.0.1');
    }
    expect(await limiter.retryAfter(alice, '10.0.0.1')).to.equal(0);
    await limiter.recordFailure(alice, '10.0.0.1');
    expect(await limiter.retryAfter(alice, '10.0.0.1')).to.be.within(59_000, 60_000);
  });

  it('counts per user and address, and never mixes up names that concatenate alike', async () => {
    const limiter = new RedisLoginLimiter(shared, log.logger, 3, 60_000);
    const alice = user();
    for (let i = 0; i < 3; i++) await limiter.recordFailure(alice, '10.0.0.1');
    expect(await limiter.retryAfter(alice, '10.0.0.1')).to.be.greaterThan(0);
    expect(await limiter.retryAfter(alice, '10.0.0.2')).to.equal(0);
    expect(await limiter.retryAfter(user(), '10.0.0.1')).to.equal(0);
    for (let i = 0; i < 3; i++) await limiter.recordFailure('ab@c', 'd');
    expect(await limiter.retryAfter('ab', 'c@d')).to.equal(0);
    expect(await limiter.retryAfter('ab@c', 'd')).to.be.greaterThan(0);
  });

  it('a success resets the count', async () => {
    const limiter = new RedisLoginLimiter(shared, log.logger, 3, 60_000);
    const alice = user();
    for (let i = 0; i < 2; i++) await limiter.recordFailure(alice, '::1');
    await limiter.recordSuccess(alice, '::1');
    for (let i = 0; i < 2; i++) await limiter.recordFailure(alice, '::1');
    expect(await limiter.retryAfter(alice, '::1')).to.equal(0);
    await limiter.recordFailure(alice, '::1');
    expect(await limiter.retryAfter(alice, '::1')).to.be.greaterThan(0);
  });

  it('forgets failures once the window has passed; keys expire with it and hold at most `limit` entries', async () => {
    const limiter = new RedisLoginLimiter(shared, log.logger, 3, 400);
    const alice = user();
    for (let i = 0; i < 10; i++) await limiter.recordFailure(alice, '10.0.0.1');
    const key = `login-test:login:${alice}@10.0.0.1`;
    expect(await shared.client.zcard(key)).to.equal(3);
    expect(await shared.client.pttl(key)).to.be.within(1, 400);
    expect(await limiter.retryAfter(alice, '10.0.0.1')).to.be.within(1, 400);
    await sleep(450);
    expect(await limiter.retryAfter(alice, '10.0.0.1')).to.equal(0);
    expect(await shared.client.exists(key)).to.equal(0);
  });

  it('is one count for every process: failures on two connections add up', async () => {
    const a = new RedisLoginLimiter(shared, log.logger, 4, 60_000);
    const b = new RedisLoginLimiter(other, pino({ enabled: false }), 4, 60_000);
    const alice = user();
    for (let i = 0; i < 4; i++) await (i % 2 ? a : b).recordFailure(alice, '10.0.0.1');
    expect(await a.retryAfter(alice, '10.0.0.1')).to.be.greaterThan(0);
    expect(await b.retryAfter(alice, '10.0.0.1')).to.be.greaterThan(0);
    await b.recordSuccess(alice, '10.0.0.1');
    expect(await a.retryAfter(alice, '10.0.0.1')).to.equal(0);
  });

  it('fails open while Redis is down (logged once), and counts again once it is back', async () => {
    const limiter = new RedisLoginLimiter(shared, log.logger, 2, 60_000);
    const alice = user();
    await limiter.recordFailure(alice, '10.0.0.1');
    await limiter.recordFailure(alice, '10.0.0.1');
    expect(await limiter.retryAfter(alice, '10.0.0.1')).to.be.greaterThan(0);
    const before = log.lines.length;

    await redis.halt();
    for (let i = 0; i < 5; i++) {
      expect(await limiter.retryAfter(alice, '10.0.0.1')).to.equal(0);
      await limiter.recordFailure(alice, '10.0.0.1');
    }
    await limiter.recordSuccess(alice, '10.0.0.1');
    const messages = () => log.lines.slice(before).map((line) => line.msg).filter((msg) => msg.startsWith('failed-login'));
    expect(messages()).to.deep.equal(['failed-login limiting suspended (failing open): redis unavailable']);

    await redis.restart();
    await waitUntil('redis reconnected', async () => shared.isReady(), { timeoutMs: 10_000 });
    expect(await limiter.retryAfter(alice, '10.0.0.1')).to.equal(0);
    await limiter.recordFailure(alice, '10.0.0.1');
    await limiter.recordFailure(alice, '10.0.0.1');
    expect(await limiter.retryAfter(alice, '10.0.0.1')).to.be.greaterThan(0);
    expect(messages()).to.deep.equal([
      'failed-login limiting suspended (failing open): redis unavailable',
      'failed-login limiting resumed: redis reachable again',
    ]);
  });
});
