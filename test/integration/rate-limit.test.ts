// Rate limits across replicas: two registry processes sharing one Redis draw from the same token buckets
// (per client address and per user) and the same failed-login counts. Refusals are 429 TOOMANYREQUESTS
// with Retry-After; health endpoints are never limited; X-Forwarded-For counts only from trusted proxies;
// with Redis down the limits fail open instead of taking pulls down.
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'chai';
import { basicAuth, bcryptHash, bearer, getToken, tokenFor } from '../helpers/auth.js';
import { tempDir, waitUntil } from '../helpers/process.js';
import { startRedis, type RunningRedis } from '../helpers/redis.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';

interface Reply {
  status: number;
  headers: Headers;
  text: string;
}

async function request(url: string, headers: Record<string, string> = {}): Promise<Reply> {
  const res = await fetch(url, { headers });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

const xff = (address: string) => ({ 'X-Forwarded-For': address });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Requests spread over `registries` in turn until one is refused; the 200s before it and the refusal. */
async function untilRefused(
  registries: RunningRegistry[],
  path: string,
  headers: (i: number) => Record<string, string>,
  max = 60,
): Promise<{ allowed: number; refused: Reply | undefined; seconds: number; servedBy: Set<number> }> {
  const started = Date.now();
  const servedBy = new Set<number>();
  for (let i = 0; i < max; i++) {
    const which = i % registries.length;
    const reply = await request(`${registries[which]!.url}${path}`, headers(i));
    if (reply.status === 429) return { allowed: i, refused: reply, seconds: (Date.now() - started) / 1000, servedBy };
    expect(reply.status, `request ${i}: ${reply.text}`).to.equal(200);
    servedBy.add(which);
  }
  return { allowed: max, refused: undefined, seconds: (Date.now() - started) / 1000, servedBy };
}

function expectTooManyRequests(reply: Reply | undefined, limit: 'client' | 'user', retryAfter: number): void {
  expect(reply, 'a request was refused').to.not.equal(undefined);
  expect(reply!.status).to.equal(429);
  expect(reply!.headers.get('retry-after')).to.equal(String(retryAfter));
  const body = JSON.parse(reply!.text) as { errors: Array<{ code: string; message: string; detail: unknown }> };
  expect(body.errors).to.have.length(1);
  expect(body.errors[0]!.code).to.equal('TOOMANYREQUESTS');
  expect(body.errors[0]!.message).to.be.a('string').and.not.equal('');
  expect(body.errors[0]!.detail).to.deep.equal({ limit, retryAfter });
}

async function logLines(registry: RunningRegistry): Promise<Array<{ msg?: string }>> {
  return (await readFile(registry.daemon.logFile, 'utf8'))
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as { msg?: string });
}

// -------------------------------------------------------------------------------------------------
describe('rate limits: per client, shared by two replicas through Redis', function () {
  this.timeout(120_000);
  const BURST = 10;
  let redis: RunningRedis;
  let a: RunningRegistry;
  let b: RunningRegistry;
  /** Trusts no proxy: X-Forwarded-For must not matter there. */
  let untrusting: RunningRegistry;
  let n = 0;
  /** A fresh client address per test, so tests do not share buckets. */
  const client = () => `203.0.113.${++n}`;

  before(async function () {
    redis = await startRedis();
    const ratelimit = { enabled: true, perclient: { rate: 1, burst: BURST }, trustedproxies: ['127.0.0.1'] };
    [a, b, untrusting] = await Promise.all([
      startRegistry({ config: { redis: { addr: redis.addr }, ratelimit } }),
      startRegistry({ config: { redis: { addr: redis.addr }, ratelimit } }),
      startRegistry({ config: { redis: { addr: redis.addr, keyprefix: 'untrusting:' }, ratelimit: { enabled: true, perclient: { rate: 0.1, burst: 5 } } } }),
    ]);
  });

  after(async function () {
    await Promise.allSettled([a?.stop(), b?.stop(), untrusting?.stop()]);
    await redis?.stop();
  });

  it('requests spread over both replicas exhaust one budget; then 429 TOOMANYREQUESTS with Retry-After', async function () {
    const address = client();
    const run = await untilRefused([a, b], '/v2/', () => xff(address));
    expect(run.servedBy.size, 'both replicas answered').to.equal(2);
    // One shared bucket: the burst plus what refilled meanwhile; two separate buckets would allow 2 x BURST.
    expect(run.allowed).to.be.within(BURST, BURST + Math.ceil(run.seconds) + 1);
    expect(run.allowed).to.be.below(2 * BURST);
    expectTooManyRequests(run.refused, 'client', 1);
    expect(run.refused!.headers.get('docker-distribution-api-version')).to.equal('registry/2.0');
    // Another client is unaffected.
    expect((await request(`${a.url}/v2/`, xff(client()))).status).to.equal(200);
    expect((await request(`${b.url}/v2/`, xff(client()))).status).to.equal(200);
  });

  it('recovers after the refill: one token a second', async function () {
    const address = client();
    const run = await untilRefused([a, b], '/v2/', () => xff(address));
    const wait = Number(run.refused!.headers.get('retry-after'));
    expect(wait).to.equal(1);
    await sleep(wait * 1000 + 100);
    expect((await request(`${b.url}/v2/`, xff(address))).status, 'a token refilled').to.equal(200);
    // The bucket held less than one token when refused, so at most one more has refilled since.
    const again = await untilRefused([a, b], '/v2/', () => xff(address));
    expect(again.allowed).to.be.at.most(1 + Math.ceil(again.seconds));
    await sleep(3_100);
    const later = await untilRefused([a, b], '/v2/', () => xff(address));
    expect(later.allowed, 'three seconds: three tokens').to.be.within(3, 4 + Math.ceil(later.seconds));
  });

  it('never limits /healthz and /readyz, even for an exhausted client', async function () {
    const address = client();
    await untilRefused([a, b], '/v2/', () => xff(address));
    for (let i = 0; i < 3 * BURST; i++) {
      for (const registry of [a, b]) {
        expect((await request(`${registry.url}/healthz`, xff(address))).status).to.equal(200);
        expect((await request(`${registry.url}/readyz`, xff(address))).status).to.equal(200);
      }
    }
  });

  it('honours X-Forwarded-For only from trusted proxies, and only its right-most untrusted entry', async function () {
    // Trusted peer: each forwarded client has its own budget.
    for (let i = 0; i < 2 * BURST; i++) expect((await request(`${a.url}/v2/`, xff(client()))).status, `client ${i}`).to.equal(200);
    // Entries the client wrote itself (left of what the proxy appended) buy nothing.
    const address = client();
    const spoofed = await untilRefused([a, b], '/v2/', (i) => xff(`198.51.100.${i % 250}, ${address}`));
    expect(spoofed.allowed).to.be.within(BURST, BURST + Math.ceil(spoofed.seconds) + 1);
    // No trusted proxies: the header is ignored, every request is the peer's (127.0.0.1).
    const ignored = await untilRefused([untrusting], '/v2/', () => xff(client()));
    expect(ignored.allowed).to.equal(5);
    expectTooManyRequests(ignored.refused, 'client', 10);
  });

  it('fails open while Redis is down (logged once per replica) and limits again once it is back', async function () {
    const address = client();
    await untilRefused([a, b], '/v2/', () => xff(address));
    await redis.halt();
    try {
      for (let i = 0; i < 3 * BURST; i++) {
        const reply = await request(`${[a, b][i % 2]!.url}/v2/`, xff(address));
        expect(reply.status, `request ${i} during the outage: ${reply.text}`).to.equal(200);
      }
    } finally {
      await redis.restart();
    }
    // Each replica logs 'redis connected' at start and again on reconnecting.
    await waitUntil(
      'both replicas reconnected to redis',
      async () => {
        for (const registry of [a, b]) {
          if ((await logLines(registry)).filter((line) => line.msg === 'redis connected').length < 2) return false;
        }
        return true;
      },
      { timeoutMs: 15_000, intervalMs: 100 },
    );
    // A fresh (empty) Redis: the client starts with a full bucket again.
    const after = await untilRefused([a, b], '/v2/', () => xff(address));
    expect(after.allowed).to.be.within(BURST, BURST + Math.ceil(after.seconds) + 1);
    for (const registry of [a, b]) {
      const messages = (await logLines(registry)).map((line) => line.msg ?? '').filter((msg) => msg.startsWith('rate limiting'));
      expect(messages, registry.url).to.deep.equal([
        'rate limiting suspended (failing open): redis unavailable',
        'rate limiting resumed: redis reachable again',
      ]);
    }
  });
});

// -------------------------------------------------------------------------------------------------
describe('rate limits: per user and failed logins, shared by two replicas through Redis', function () {
  this.timeout(120_000);
  const SERVICE = 'rate-limit-test';
  const USER_BURST = 6;
  const pw = { alice: 'alice-Secret-1', bob: 'bob-Secret-2', erin: 'erin-Secret-3' };
  let redis: RunningRedis;
  let root: string;
  let a: RunningRegistry;
  let b: RunningRegistry;

  before(async function () {
    redis = await startRedis();
    // One storage root, as replicas share storage: the generated token key is one for both.
    root = await tempDir('rate-limit-root');
    const config = {
      redis: { addr: redis.addr },
      auth: {
        issuer: { service: SERVICE },
        users: (['alice', 'bob', 'erin'] as const).map((name) => ({ name, password: bcryptHash(pw[name]) })),
      },
      ratelimit: {
        enabled: true,
        perclient: { rate: 100, burst: 1000 },
        peruser: { rate: 0.5, burst: USER_BURST },
        trustedproxies: ['127.0.0.0/8', '::1'],
      },
    };
    a = await startRegistry({ config, rootDir: root });
    b = await startRegistry({ config, rootDir: root });
  });

  after(async function () {
    await Promise.allSettled([a?.stop(), b?.stop()]);
    await Promise.allSettled([redis?.stop(), root ? rm(root, { recursive: true, force: true }) : undefined]);
  });

  it('one budget per user over both replicas and every address; other users unaffected', async function () {
    const alice = { Authorization: basicAuth('alice', pw.alice) };
    const run = await untilRefused([a, b], '/v2/', (i) => ({ ...alice, ...xff(`198.51.100.${i + 1}`) }));
    expect(run.servedBy.size).to.equal(2);
    expect(run.allowed).to.be.within(USER_BURST, USER_BURST + Math.ceil(run.seconds / 2) + 1);
    expect(run.allowed).to.be.below(2 * USER_BURST);
    expectTooManyRequests(run.refused, 'user', 2);
    // A token does not escape the user's budget either (tokens are issued without counting against it).
    const token = await tokenFor(a.url, 'alice', pw.alice, ['repository:some/repo:pull'], SERVICE);
    expect((await request(`${b.url}/v2/some/repo/tags/list`, { Authorization: bearer(token) })).status).to.equal(429);
    // bob from the same address, and anonymous requests, are not alice.
    expect((await request(`${a.url}/v2/`, { Authorization: basicAuth('bob', pw.bob), ...xff('198.51.100.1') })).status).to.equal(200);
    expect((await request(`${b.url}/v2/`, xff('198.51.100.1'))).status, 'anonymous: challenged, not limited').to.equal(401);
  });

  it('counts failed logins once for both replicas, per user and client address', async function () {
    const statuses: number[] = [];
    let refused: Reply | undefined;
    for (let i = 0; i < 12 && !refused; i++) {
      const registry = [a, b][i % 2]!;
      const reply = await getToken(registry.url, { user: 'erin', password: `wrong-${i}`, service: SERVICE });
      statuses.push(reply.status);
      if (reply.status === 429) refused = { status: reply.status, headers: reply.headers, text: reply.text };
    }
    // Five failures a minute per user and address, wherever they land: the sixth attempt is refused.
    expect(statuses, statuses.join(',')).to.deep.equal([401, 401, 401, 401, 401, 429]);
    expect(Number(refused!.headers.get('retry-after'))).to.be.within(55, 60);
    expect(JSON.parse(refused!.text).errors[0].code).to.equal('TOOMANYREQUESTS');
    // The right password does not get through on either replica, on /token nor on /v2/.
    expect((await getToken(a.url, { user: 'erin', password: pw.erin, service: SERVICE })).status).to.equal(429);
    expect((await request(`${b.url}/v2/`, { Authorization: basicAuth('erin', pw.erin) })).status).to.equal(429);
    // The address is the client behind the trusted proxy: erin from elsewhere may log in.
    const elsewhere = await fetch(`${b.url}/token?service=${SERVICE}`, { headers: { Authorization: basicAuth('erin', pw.erin), ...xff('192.0.2.44') } });
    expect(elsewhere.status).to.equal(200);
  });
});
