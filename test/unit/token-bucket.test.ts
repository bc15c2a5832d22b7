import { expect } from 'chai';
import { pino, type Logger } from 'pino';
import { loadConfig } from '../../server/config.js';
import { connectRedis, type SharedState } from '../../server/state/redis.js';
import { MemoryTokenBuckets, RedisTokenBuckets } from '../../server/state/token-bucket.js';
import { startRedis, type RunningRedis } from '../helpers/redis.js';
import { waitUntil } from '../helpers/process.js';
import { capturingLogger } from '../helpers/capturing-logger.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('token bucket: in memory', () => {
  let time: number;
  const clock = () => time;
  beforeEach(() => {
    time = 1_000_000;
  });

  it('allows the burst at once, then refuses with the time until the next token', async () => {
    const buckets = new MemoryTokenBuckets(100, clock);
    const limit = { rate: 2, burst: 3 };
    for (let i = 0; i < 3; i++) expect(await buckets.take('a', limit)).to.deep.equal({ allowed: true, retryAfterMs: 0 });
    expect(await buckets.take('a', limit)).to.deep.equal({ allowed: false, retryAfterMs: 500 });
    time += 200;
    expect(await buckets.take('a', limit)).to.deep.equal({ allowed: false, retryAfterMs: 300 });
    time += 300;
    expect((await buckets.take('a', limit)).allowed).to.equal(true);
    expect((await buckets.take('a', limit)).allowed).to.equal(false);
  });

  it('refills at the rate, up to the burst and no further', async () => {
    const buckets = new MemoryTokenBuckets(100, clock);
    const limit = { rate: 10, burst: 5 };
    for (let i = 0; i < 5; i++) await buckets.take('a', limit);
    time += 250; // 2.5 tokens
    expect((await buckets.take('a', limit)).allowed).to.equal(true);
    expect((await buckets.take('a', limit)).allowed).to.equal(true);
    expect(await buckets.take('a', limit)).to.deep.equal({ allowed: false, retryAfterMs: 50 });
    time += 3_600_000;
    let allowed = 0;
    while ((await buckets.take('a', limit)).allowed) allowed++;
    expect(allowed).to.equal(5);
  });

  it('fractional rates: one request every 4 s', async () => {
    const buckets = new MemoryTokenBuckets(100, clock);
    const limit = { rate: 0.25, burst: 1 };
    expect((await buckets.take('a', limit)).allowed).to.equal(true);
    expect(await buckets.take('a', limit)).to.deep.equal({ allowed: false, retryAfterMs: 4_000 });
    time += 3_999;
    expect((await buckets.take('a', limit)).allowed).to.equal(false);
    time += 1;
    expect((await buckets.take('a', limit)).allowed).to.equal(true);
  });

  it('keeps keys apart', async () => {
    const buckets = new MemoryTokenBuckets(100, clock);
    const limit = { rate: 1, burst: 1 };
    expect((await buckets.take('client:1.2.3.4', limit)).allowed).to.equal(true);
    expect((await buckets.take('client:1.2.3.4', limit)).allowed).to.equal(false);
    expect((await buckets.take('client:1.2.3.5', limit)).allowed).to.equal(true);
    expect((await buckets.take('user:1.2.3.4', limit)).allowed).to.equal(true);
  });

  it('is bounded: past maxKeys the least recently used buckets go', async () => {
    const buckets = new MemoryTokenBuckets(3, clock);
    const limit = { rate: 1, burst: 1 };
    for (const key of ['a', 'b', 'c']) await buckets.take(key, limit);
    await buckets.take('a', limit); // a is now the most recently used
    await buckets.take('d', limit); // evicts b
    expect(buckets.size).to.equal(3);
    expect((await buckets.take('a', limit)).allowed, 'a kept its empty bucket').to.equal(false);
    expect((await buckets.take('b', limit)).allowed, 'b was forgotten: a full bucket again').to.equal(true);
    for (let i = 0; i < 1000; i++) await buckets.take(`k${i}`, limit);
    expect(buckets.size).to.equal(3);
  });
});

describe('token bucket: in Redis', function () {
  this.timeout(30_000);
  let redis: RunningRedis;
  let shared: SharedState;
  let other: SharedState;
  let log: ReturnType<typeof capturingLogger>;
  let n = 0;
  const key = () => `test-${++n}`;

  const connect = (logger: Logger) => {
    const config = loadConfig(undefined, { REGISTRY_REDIS_ADDR: redis.addr, REGISTRY_REDIS_KEYPREFIX: 'bucket-test:' }, () => undefined);
    return connectRedis(config.redis!, logger);
  };

  before(async () => {
    redis = await startRedis();
    log = capturingLogger();
    shared = connect(log.logger);
    other = connect(pino({ enabled: false }));
    await waitUntil('redis clients ready', async () => shared.isReady() && other.isReady(), { timeoutMs: 10_000 });
  });

  after(async () => {
    await Promise.allSettled([shared?.close(), other?.close()]);
    await redis?.stop();
  });

  it('allows the burst, then refuses with the time until the next token', async () => {
    const buckets = new RedisTokenBuckets(shared, log.logger);
    const k = key();
    const limit = { rate: 1, burst: 3 };
    for (let i = 0; i < 3; i++) expect((await buckets.take(k, limit)).allowed, `request ${i}`).to.equal(true);
    const refused = await buckets.take(k, limit);
    expect(refused.allowed).to.equal(false);
    expect(refused.retryAfterMs).to.be.within(800, 1_000);
    expect((await buckets.take(key(), limit)).allowed, 'another key').to.equal(true);
  });

  it('refills at the rate (Redis time)', async () => {
    const buckets = new RedisTokenBuckets(shared, log.logger);
    const k = key();
    const limit = { rate: 20, burst: 2 };
    expect((await buckets.take(k, limit)).allowed).to.equal(true);
    expect((await buckets.take(k, limit)).allowed).to.equal(true);
    expect((await buckets.take(k, limit)).allowed).to.equal(false);
    await sleep(120); // 2.4 tokens at 20/s, capped at 2
    expect((await buckets.take(k, limit)).allowed).to.equal(true);
    expect((await buckets.take(k, limit)).allowed).to.equal(true);
    expect((await buckets.take(k, limit)).allowed).to.equal(false);
  });

  it('keeps its keys under the prefix, expiring once the bucket would be full again', async () => {
    const buckets = new RedisTokenBuckets(shared, log.logger);
    const k = key();
    await buckets.take(k, { rate: 2, burst: 10 });
    const ttl = await shared.client.pttl(`bucket-test:ratelimit:${k}`);
    expect(ttl).to.be.within(5_000, 6_000); // 10 tokens at 2/s, plus a second of slack
    expect(await shared.client.hgetall(`bucket-test:ratelimit:${k}`)).to.have.keys('tokens', 'at');
  });

  it('is one bucket for every process: two connections draw from the same budget', async () => {
    const a = new RedisTokenBuckets(shared, log.logger);
    const b = new RedisTokenBuckets(other, pino({ enabled: false }));
    const k = key();
    const limit = { rate: 0.1, burst: 6 };
    const results: boolean[] = [];
    for (let i = 0; i < 8; i++) results.push((await (i % 2 ? a : b).take(k, limit)).allowed);
    expect(results).to.deep.equal([true, true, true, true, true, true, false, false]);
  });

  it('is atomic: concurrent takes never hand out more than the burst', async () => {
    const buckets = new RedisTokenBuckets(shared, log.logger);
    const k = key();
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => new RedisTokenBuckets(i % 2 ? shared : other, log.logger).take(k, { rate: 0.01, burst: 20 })));
    expect(results.filter((r) => r.allowed)).to.have.length(20);
    expect((await buckets.take(k, { rate: 0.01, burst: 20 })).allowed).to.equal(false);
  });

  it('fails open while Redis is down, logging once per outage, and limits again once it is back', async () => {
    const buckets = new RedisTokenBuckets(shared, log.logger);
    const k = key();
    const limit = { rate: 0.01, burst: 2 };
    await buckets.take(k, limit);
    await buckets.take(k, limit);
    expect((await buckets.take(k, limit)).allowed).to.equal(false);
    const before = log.lines.length;

    await redis.halt();
    for (let i = 0; i < 20; i++) expect(await buckets.take(k, limit), `request ${i} during the outage`).to.deep.equal({ allowed: true, retryAfterMs: 0 });
    const outage = log.lines.slice(before).filter((line) => line.msg.startsWith('rate limiting'));
    expect(outage.map((line) => line.msg)).to.deep.equal(['rate limiting suspended (failing open): redis unavailable']);

    await redis.restart(); // a fresh, empty server: every bucket is full again
    await waitUntil('redis reconnected', async () => shared.isReady(), { timeoutMs: 10_000 });
    expect((await buckets.take(k, limit)).allowed).to.equal(true);
    expect((await buckets.take(k, limit)).allowed).to.equal(true);
    expect((await buckets.take(k, limit)).allowed, 'limited again').to.equal(false);
    const all = log.lines.slice(before).filter((line) => line.msg.startsWith('rate limiting')).map((line) => line.msg);
    expect(all).to.deep.equal(['rate limiting suspended (failing open): redis unavailable', 'rate limiting resumed: redis reachable again']);
  });
});
