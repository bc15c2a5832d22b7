// The small parsers and policies under the upstream client: challenges, Retry-After, backoff,
// rate-limit headers, Link headers, token caching, upstream configuration.
import { expect } from 'chai';
import { parseChallenges, pickChallenge } from '../../server/mirror/www-authenticate.js';
import { backoffDelay, DEFAULT_RETRY, parseRetryAfter, sleep, withRetries } from '../../server/mirror/retry.js';
import { parseRateLimit } from '../../server/mirror/rate-limit.js';
import { nextLink } from '../../server/mirror/upstream-client.js';
import { parseTokenResponse, UpstreamAuth, type TokenRequest } from '../../server/mirror/upstream-auth.js';
import { isRetryableNetworkError, parseOciErrorBody, UpstreamError } from '../../server/mirror/upstream-error.js';
import { resolveUpstreams, splitSource } from '../../server/mirror/upstreams.js';

describe('mirror upstream: WWW-Authenticate challenges', () => {
  it('parses Docker Hub\'s Bearer challenge', () => {
    const header = 'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull"';
    expect(parseChallenges(header)).to.deep.equal([{
      scheme: 'bearer',
      params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/nginx:pull' },
    }]);
  });

  it('parses Basic, case-insensitive schemes and names, spaces around commas and equals', () => {
    expect(parseChallenges('Basic realm="Registry Realm"')).to.deep.equal([{ scheme: 'basic', params: { realm: 'Registry Realm' } }]);
    expect(parseChallenges('BEARER Realm = "https://a/token" ,  Service="svc"')).to.deep.equal([
      { scheme: 'bearer', params: { realm: 'https://a/token', service: 'svc' } },
    ]);
  });

  it('keeps commas and escaped quotes inside quoted values (several scopes, errors)', () => {
    const header = 'Bearer realm="https://r/t",service="s",scope="repository:a:pull,push repository:b:pull",error="insufficient_scope",error_description="say \\"no\\""';
    const [c] = parseChallenges(header);
    expect(c!.params).to.deep.equal({
      realm: 'https://r/t', service: 's', scope: 'repository:a:pull,push repository:b:pull', error: 'insufficient_scope', error_description: 'say "no"',
    });
  });

  it('reads several challenges in one header or several headers, and prefers Bearer', () => {
    const many = parseChallenges('Basic realm="x", Bearer realm="https://r/t",service="s", Negotiate');
    expect(many.map((c) => c.scheme)).to.deep.equal(['basic', 'bearer', 'negotiate']);
    expect(pickChallenge(many)!.params.realm).to.equal('https://r/t');
    const headers = parseChallenges(['Negotiate abc', 'Basic realm="y"']);
    expect(pickChallenge(headers)).to.deep.equal({ scheme: 'basic', params: { realm: 'y' } });
    expect(pickChallenge(parseChallenges('Negotiate'))).to.equal(undefined);
  });

  it('accepts unquoted token values and survives malformed input', () => {
    expect(parseChallenges('Bearer realm=https://r/t,service=svc')[0]!.params).to.deep.equal({ realm: 'https://r/t', service: 'svc' });
    expect(parseChallenges('')).to.deep.equal([]);
    expect(parseChallenges(undefined)).to.deep.equal([]);
    expect(parseChallenges('Bearer realm="unterminated')[0]!.params).to.deep.equal({ realm: 'unterminated' });
    expect(() => parseChallenges('=,,"==="')).to.not.throw();
  });
});

describe('mirror upstream: Retry-After and backoff', () => {
  const now = Date.parse('2025-06-01T12:00:00Z');

  it('reads delay-seconds', () => {
    expect(parseRetryAfter('0', now)).to.equal(0);
    expect(parseRetryAfter('3', now)).to.equal(3000);
    expect(parseRetryAfter(' 120 ', now)).to.equal(120_000);
    expect(parseRetryAfter(['7', '9'], now)).to.equal(7000);
  });

  it('reads HTTP dates, a past date meaning now', () => {
    expect(parseRetryAfter('Sun, 01 Jun 2025 12:00:30 GMT', now)).to.equal(30_000);
    expect(parseRetryAfter('Sun, 01 Jun 2025 11:00:00 GMT', now)).to.equal(0);
  });

  it('ignores anything else', () => {
    for (const bad of [undefined, null, '', '1.5', '-3', 'soon', '10 seconds']) expect(parseRetryAfter(bad as string, now), String(bad)).to.equal(undefined);
  });

  it('backs off exponentially with jitter, capped', () => {
    const policy = { ...DEFAULT_RETRY, baseDelayMs: 100, maxDelayMs: 1000 };
    expect([1, 2, 3, 4, 5, 6].map((a) => backoffDelay(policy, a, () => 0))).to.deep.equal([50, 100, 200, 400, 500, 500]);
    expect([1, 2, 3, 4, 5, 6].map((a) => backoffDelay(policy, a, () => 1))).to.deep.equal([100, 200, 400, 800, 1000, 1000]);
  });

  it('withRetries retries retryable UpstreamErrors up to the attempts, waits Retry-After, and stops on the rest', async () => {
    const policy = { attempts: 3, baseDelayMs: 1, maxDelayMs: 2, maxRetryAfterMs: 1000 };
    let calls = 0;
    const waits: number[] = [];
    const result = await withRetries(policy, async () => {
      calls++;
      if (calls === 1) throw new UpstreamError('busy', { status: 429, code: 'TOOMANYREQUESTS', retryable: true, retryAfterMs: 30 });
      if (calls === 2) throw new UpstreamError('down', { status: 503, code: 'HTTP_503', retryable: true });
      return 'ok';
    }, { onRetry: (e) => waits.push(e.delayMs) });
    expect(result).to.equal('ok');
    expect(waits[0]).to.equal(30);

    calls = 0;
    const final = await withRetries(policy, async () => { calls++; throw new UpstreamError('down', { status: 503, code: 'HTTP_503', retryable: true }); }).catch((e: unknown) => e);
    expect(final).to.be.instanceOf(UpstreamError);
    expect(calls).to.equal(3);

    calls = 0;
    await withRetries(policy, async () => { calls++; throw new UpstreamError('gone', { status: 404, code: 'MANIFEST_UNKNOWN', retryable: false }); }).catch(() => undefined);
    expect(calls).to.equal(1);

    calls = 0;
    const tooLong = await withRetries(policy, async () => {
      calls++;
      throw new UpstreamError('later', { status: 429, code: 'TOOMANYREQUESTS', retryable: true, retryAfterMs: 60_000 });
    }).catch((e: UpstreamError) => e);
    expect([calls, tooLong.retryAfterMs]).to.deep.equal([1, 60_000]);
  });

  it('sleep and withRetries end at once when the signal aborts', async () => {
    const controller = new AbortController();
    const started = Date.now();
    setTimeout(() => controller.abort(), 20);
    const error = await sleep(10_000, controller.signal).catch((e: Error) => e);
    expect((error as Error).name).to.equal('AbortError');
    expect(Date.now() - started).to.be.below(1000);
  });

  it('classifies dropped connections as retryable', () => {
    const reset = Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
    const hangUp = Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
    const premature = Object.assign(new Error('Premature close'), { code: 'ERR_STREAM_PREMATURE_CLOSE' });
    expect([reset, hangUp, premature, new Error('aborted')].map(isRetryableNetworkError)).to.deep.equal([true, true, true, true]);
    expect(isRetryableNetworkError(Object.assign(new Error('getaddrinfo ENOTFOUND x'), { code: 'ENOTFOUND' }))).to.equal(false);
  });
});

describe('mirror upstream: headers and bodies', () => {
  it('reads Docker Hub rate-limit headers', () => {
    const state = parseRateLimit({ 'ratelimit-limit': '100;w=21600', 'ratelimit-remaining': '76;w=21600', 'docker-ratelimit-source': '1.2.3.4' }, 5);
    expect(state).to.deep.equal({ limit: 100, remaining: 76, windowSeconds: 21600, source: '1.2.3.4', seenAt: 5 });
    expect(parseRateLimit({ 'ratelimit-limit': '200', 'ratelimit-remaining': '0' }, 1)).to.deep.equal({ limit: 200, remaining: 0, seenAt: 1 });
    expect(parseRateLimit({})).to.equal(undefined);
    expect(parseRateLimit({ 'ratelimit-limit': 'lots', 'ratelimit-remaining': '1' })).to.equal(undefined);
  });

  it('finds the next page in a Link header', () => {
    expect(nextLink('</v2/a/tags/list?n=2&last=b>; rel="next"')).to.equal('/v2/a/tags/list?n=2&last=b');
    expect(nextLink('<https://x/v2/a/tags/list?last=b>;rel=next')).to.equal('https://x/v2/a/tags/list?last=b');
    expect(nextLink('</prev>; rel="prev", </next?a=1,2>; rel="next"')).to.equal('/next?a=1,2');
    expect(nextLink('</p>; rel="prev"')).to.equal(undefined);
    expect(nextLink(undefined)).to.equal(undefined);
  });

  it('reads OCI error bodies and token answers', () => {
    expect(parseOciErrorBody('{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}}]}'))
      .to.deep.equal({ code: 'MANIFEST_UNKNOWN', message: 'manifest unknown', detail: { Tag: 'x' } });
    expect(parseOciErrorBody('<html>')).to.deep.equal({});
    expect(parseTokenResponse(Buffer.from('{"token":"t","expires_in":300}'), 'GET x')).to.deep.equal({ token: 't', expiresIn: 300 });
    expect(parseTokenResponse(Buffer.from('{"access_token":"a"}'), 'GET x')).to.deep.equal({ token: 'a', expiresIn: 60 });
    expect(() => parseTokenResponse(Buffer.from('{}'), 'GET x')).to.throw(UpstreamError);
  });
});

describe('mirror upstream: token cache', () => {
  const challenge = { scheme: 'bearer', params: { realm: 'https://auth.example/token', service: 'reg' } };

  function setup(expiresIn = 300) {
    let clock = 1_000_000;
    const requests: TokenRequest[] = [];
    let n = 0;
    const auth = new UpstreamAuth(undefined, async (request) => {
      requests.push(request);
      await new Promise((r) => setTimeout(r, 5));
      return { token: `t${++n}`, expiresIn };
    }, () => clock);
    return { auth, requests, advance: (ms: number) => { clock += ms; } };
  }

  it('answers nothing before a challenge, then fetches one token per scope, anonymously, and reuses it', async () => {
    const { auth, requests } = setup();
    expect(await auth.authorization('repository:a:pull')).to.equal(undefined);
    expect(await auth.answer(challenge, 'repository:a:pull', undefined)).to.equal(true);
    expect(await auth.authorization('repository:a:pull')).to.equal('Bearer t1');
    expect(await auth.authorization('repository:a:pull')).to.equal('Bearer t1');
    // A new repository: a token is fetched up front, without another 401.
    expect(await auth.authorization('repository:b:pull')).to.equal('Bearer t2');
    expect(requests.map((r) => [r.realm.href, r.service, r.scopes, r.authorization])).to.deep.equal([
      ['https://auth.example/token', 'reg', ['repository:a:pull'], undefined],
      ['https://auth.example/token', 'reg', ['repository:b:pull'], undefined],
    ]);
  });

  it('shares one token request between concurrent callers', async () => {
    const { auth, requests } = setup();
    await auth.answer(challenge, 'repository:a:pull', undefined);
    const tokens = await Promise.all([1, 2, 3].map(() => auth.authorization('repository:c:pull')));
    expect(tokens).to.deep.equal(['Bearer t2', 'Bearer t2', 'Bearer t2']);
    expect(requests).to.have.length(2);
  });

  it('renews a token shortly before it expires', async () => {
    const { auth, advance } = setup(60);
    await auth.answer(challenge, 'repository:a:pull', undefined);
    advance(50_000);
    expect(await auth.authorization('repository:a:pull')).to.equal('Bearer t1');
    advance(5_000); // 55 s of 60: inside the renewal margin
    expect(await auth.authorization('repository:a:pull')).to.equal('Bearer t2');
  });

  it('a refused token is replaced once; Basic is answered only with credentials, and not twice', async () => {
    const { auth } = setup();
    await auth.answer(challenge, 'repository:a:pull', undefined);
    expect(await auth.answer(challenge, 'repository:a:pull', 'Bearer t1')).to.equal(true);
    expect(await auth.authorization('repository:a:pull')).to.equal('Bearer t2');

    const anonymous = new UpstreamAuth(undefined, async () => ({ token: 'x', expiresIn: 60 }));
    expect(await anonymous.answer({ scheme: 'basic', params: { realm: 'r' } }, 'repository:a:pull', undefined)).to.equal(false);
    const withCredentials = new UpstreamAuth({ username: 'u', password: 'p' }, async () => ({ token: 'x', expiresIn: 60 }));
    expect(await withCredentials.answer({ scheme: 'basic', params: { realm: 'r' } }, 'repository:a:pull', undefined)).to.equal(true);
    const basic = await withCredentials.authorization('repository:a:pull');
    expect(basic).to.equal(`Basic ${Buffer.from('u:p').toString('base64')}`);
    expect(await withCredentials.answer({ scheme: 'basic', params: {} }, 'repository:a:pull', basic)).to.equal(false);
    expect(await withCredentials.answer({ scheme: 'negotiate', params: {} }, 'repository:a:pull', undefined)).to.equal(false);
  });

  it('one caller cancelling a shared token request fails only that caller', async () => {
    const { auth, requests } = setup();
    const cancelled = new AbortController();
    const first = auth.answer(challenge, 'repository:a:pull', undefined, cancelled.signal);
    const second = auth.answer(challenge, 'repository:a:pull', undefined);
    cancelled.abort(new Error('job cancelled'));
    expect(((await first.catch((error: unknown) => error)) as Error).message).to.equal('job cancelled');
    expect(await second).to.equal(true);
    expect(requests).to.have.length(1);
    expect(await auth.authorization('repository:a:pull')).to.equal('Bearer t1');
  });

  it('sends configured credentials to the token realm as Basic', async () => {
    const requests: TokenRequest[] = [];
    const auth = new UpstreamAuth({ username: 'me', password: 'secret' }, async (r) => { requests.push(r); return { token: 't', expiresIn: 60 }; });
    await auth.answer(challenge, 'repository:a:pull', undefined);
    expect(requests[0]!.authorization).to.equal(`Basic ${Buffer.from('me:secret').toString('base64')}`);
  });
});

describe('mirror upstream: configuration', () => {
  it('has docker.io built in; a configured entry adds credentials or replaces its URL', () => {
    const builtIn = resolveUpstreams();
    expect(builtIn.get('docker.io')!.url.href).to.equal('https://registry-1.docker.io/');
    const configured = resolveUpstreams([
      { name: 'docker.io', username: 'me', password: 'pw' },
      { name: 'local', url: 'http://127.0.0.1:5000' },
    ]);
    expect(configured.get('docker.io')).to.deep.include({ credentials: { username: 'me', password: 'pw' } });
    expect(configured.get('local')!.url.protocol).to.equal('http:');
    expect(splitSource('docker.io/langgenius/dify-api', configured)).to.deep.include({ repository: 'langgenius/dify-api' });
    expect(splitSource('docker.io/nginx', configured)!.upstream.name).to.equal('docker.io');
    expect(splitSource('ghcr.io/x', configured)).to.equal(undefined);
  });

  it('refuses names with ports or slashes, bad URLs, half credentials and duplicates', () => {
    expect(() => resolveUpstreams([{ name: 'host:5000', url: 'http://h' }])).to.throw(/name/);
    expect(() => resolveUpstreams([{ name: 'a/b', url: 'http://h' }])).to.throw(/name/);
    expect(() => resolveUpstreams([{ name: 'x', url: 'ftp://h' }])).to.throw(/http/);
    expect(() => resolveUpstreams([{ name: 'x', url: 'http://u:p@h' }])).to.throw(/credentials/);
    expect(() => resolveUpstreams([{ name: 'x' }])).to.throw(/url/);
    expect(() => resolveUpstreams([{ name: 'x', url: 'http://h', username: 'u' }])).to.throw(/both/);
    expect(() => resolveUpstreams([{ name: 'x', url: 'http://h' }, { name: 'x', url: 'http://i' }])).to.throw(/twice/);
  });
});
