import type { AddressInfo } from 'node:net';
import http from 'node:http';
import { expect } from 'chai';
import Koa from 'koa';
import { pino } from 'pino';
import { clientAddress, TrustedProxies } from '../../server/http/client-address.js';
import { ociErrors } from '../../server/http/errors.js';
import { rateLimits, type RateLimitConfig } from '../../server/http/rate-limit.js';
import { MemoryTokenBuckets } from '../../server/state/token-bucket.js';

const silent = pino({ enabled: false });

describe('rate limit middleware', () => {
  let time: number;
  let server: http.Server;
  let url: string;

  /** ociErrors, client address, per-client limit, a stand-in for authorization (X-User), per-user limit. */
  async function serve(config: RateLimitConfig): Promise<void> {
    const limits = rateLimits(config, undefined, silent, new MemoryTokenBuckets(1000, () => time))!;
    const koa = new Koa();
    koa.use(ociErrors);
    koa.use(clientAddress(new TrustedProxies(config.trustedproxies)));
    koa.use(limits.perClient);
    koa.use(async (ctx, next) => {
      ctx.state.user = ctx.get('X-User') || undefined;
      await next();
    });
    koa.use(limits.perUser);
    koa.use((ctx) => {
      ctx.body = { ok: true };
    });
    server = http.createServer(koa.callback());
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  const config = (over: Partial<RateLimitConfig> = {}): RateLimitConfig => ({
    enabled: true,
    perclient: { rate: 1, burst: 3 },
    peruser: { rate: 1, burst: 5 },
    trustedproxies: ['127.0.0.1'],
    ...over,
  });
  const get = (path: string, headers: Record<string, string> = {}) => fetch(`${url}${path}`, { headers });

  beforeEach(() => {
    time = 1_000_000;
  });
  afterEach(stop);

  async function stop(): Promise<void> {
    if (!server?.listening) return;
    const closed = new Promise((resolve) => server.close(resolve));
    server.closeAllConnections(); // fetch keeps connections alive
    await closed;
  }

  it('is off unless enabled', () => {
    expect(rateLimits(config({ enabled: false }), undefined, silent)).to.equal(undefined);
  });

  it('per client: 429 TOOMANYREQUESTS with Retry-After in whole seconds once the burst is spent', async () => {
    await serve(config({ perclient: { rate: 0.4, burst: 3 } }));
    for (let i = 0; i < 3; i++) expect((await get('/v2/')).status).to.equal(200);
    const refused = await get('/v2/');
    expect(refused.status).to.equal(429);
    expect(refused.headers.get('retry-after')).to.equal('3'); // 2.5 s until the next token, rounded up
    expect(await refused.json()).to.deep.equal({
      errors: [{ code: 'TOOMANYREQUESTS', message: 'too many requests from this address; slow down', detail: { limit: 'client', retryAfter: 3 } }],
    });
    time += 2_500;
    expect((await get('/v2/')).status).to.equal(200);
  });

  it('never limits /healthz, /readyz and /metrics', async () => {
    await serve(config({ perclient: { rate: 0.001, burst: 1 }, peruser: { rate: 0.001, burst: 1 } }));
    for (let i = 0; i < 10; i++) {
      for (const path of ['/healthz', '/readyz', '/metrics']) expect((await get(path, { 'X-User': 'alice' })).status, path).to.equal(200);
    }
    expect((await get('/v2/')).status).to.equal(200);
    expect((await get('/v2/')).status).to.equal(429);
  });

  it('per client means per resolved address: X-Forwarded-For from a trusted proxy, the peer otherwise', async () => {
    await serve(config({ perclient: { rate: 0.001, burst: 1 } }));
    expect((await get('/', { 'X-Forwarded-For': '203.0.113.1' })).status).to.equal(200);
    expect((await get('/', { 'X-Forwarded-For': '203.0.113.1' })).status).to.equal(429);
    expect((await get('/', { 'X-Forwarded-For': '203.0.113.2' })).status).to.equal(200);
    await stop();
    await serve(config({ perclient: { rate: 0.001, burst: 1 }, trustedproxies: [] }));
    expect((await get('/', { 'X-Forwarded-For': '203.0.113.3' })).status).to.equal(200);
    expect((await get('/', { 'X-Forwarded-For': '203.0.113.4' })).status, 'a spoofed header buys no new bucket').to.equal(429);
  });

  it('per user: one budget across addresses; other users and anonymous requests unaffected', async () => {
    await serve(config({ perclient: { rate: 1, burst: 100 }, peruser: { rate: 0.5, burst: 4 } }));
    for (let i = 0; i < 4; i++) expect((await get('/', { 'X-User': 'alice', 'X-Forwarded-For': `203.0.113.${i}` })).status).to.equal(200);
    const refused = await get('/', { 'X-User': 'alice', 'X-Forwarded-For': '203.0.113.99' });
    expect(refused.status).to.equal(429);
    expect(refused.headers.get('retry-after')).to.equal('2');
    expect(((await refused.json()) as { errors: Array<{ code: string; detail: unknown }> }).errors[0]).to.deep.include({
      code: 'TOOMANYREQUESTS',
      detail: { limit: 'user', retryAfter: 2 },
    });
    expect((await get('/', { 'X-User': 'bob' })).status).to.equal(200);
    for (let i = 0; i < 6; i++) expect((await get('/')).status, 'anonymous').to.equal(200);
  });
});
