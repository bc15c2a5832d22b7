// The upstream client against real CNCF Distribution 2.8.2 (Debian's docker-registry): anonymous, htpasswd
// (Basic) and token auth (Bearer, with a tiny token server in this file), a multi-arch index pushed over
// HTTP, and faults from the fault proxy and small servers here: 5xx, dropped connections, 429 with
// Retry-After, cut, stalled and corrupted blob bodies, redirects to another host. Tag pagination runs
// against our own registry, because Distribution 2.8 does not paginate tags.
import { createPrivateKey, randomBytes, X509Certificate } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { expect } from 'chai';
import { SignJWT } from 'jose';
import { UpstreamClient, type UpstreamClientOptions } from '../../server/mirror/upstream-client.js';
import { UpstreamError } from '../../server/mirror/upstream-error.js';
import type { RateLimitState } from '../../server/mirror/rate-limit.js';
import { htpasswdLine, libtrustKeyId, makeEcCertificate, type KeyPairFiles } from '../helpers/auth.js';
import { removeTree } from '../helpers/cleanup.js';
import { startDistribution, type RunningDistribution } from '../helpers/distribution.js';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';
import {
  content,
  descriptorOf,
  gzipLayer,
  imageConfig,
  imageManifest,
  indexManifest,
  MediaType,
  OciClient,
  type Content,
} from '../helpers/oci.js';
import { tempDir } from '../helpers/process.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';

const REPO = 'mirror/app';
const OTHER = 'other/app';
const USER = 'mirror';
const PASSWORD = 'upstream-secret';
const SERVICE = 'upstream-test';
const ISSUER = 'upstream-test-issuer';
const FAST_RETRY = { attempts: 4, baseDelayMs: 20, maxDelayMs: 100, maxRetryAfterMs: 5_000 };

interface Pushed {
  index: Content;
  dockerList: Content;
  manifests: Content[];
  blobs: Content[];
  big: Content;
}

/** amd64 + arm64 (v8) images and a BuildKit-style attestation, as an OCI index and as a Docker manifest list. */
async function pushContent(client: OciClient): Promise<Pushed> {
  const big = content(randomBytes(3 * 1024 * 1024 + 17), MediaType.ociLayerGzip);
  const amd64Config = imageConfig({ architecture: 'amd64' });
  const amd64Layers = [gzipLayer(4096), big, gzipLayer(512)];
  const amd64 = imageManifest({ config: descriptorOf(amd64Config), layers: amd64Layers.map((l) => descriptorOf(l)) });
  const arm64Config = imageConfig({ architecture: 'arm64' });
  const arm64Layers = [gzipLayer(2048), gzipLayer(100)];
  const arm64 = imageManifest({ config: descriptorOf(arm64Config), layers: arm64Layers.map((l) => descriptorOf(l)) });
  const statement = content(JSON.stringify({ _type: 'https://in-toto.io/Statement/v0.1', subject: [{ digest: { sha256: amd64.digest.slice(7) } }] }), 'application/vnd.in-toto+json');
  const attestationConfig = imageConfig({ architecture: 'unknown', os: 'unknown' });
  const attestation = imageManifest({ config: descriptorOf(attestationConfig), layers: [descriptorOf(statement)] });
  const index = indexManifest({
    manifests: [
      descriptorOf(amd64, { platform: { os: 'linux', architecture: 'amd64' } }),
      descriptorOf(arm64, { platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } }),
      descriptorOf(attestation, {
        platform: { os: 'unknown', architecture: 'unknown' },
        annotations: { 'vnd.docker.reference.digest': amd64.digest, 'vnd.docker.reference.type': 'attestation-manifest' },
      }),
    ],
  });
  for (const [manifest, blobs] of [[amd64, [amd64Config, ...amd64Layers]], [arm64, [arm64Config, ...arm64Layers]], [attestation, [attestationConfig, statement]]] as const) {
    await client.pushManifest(REPO, manifest.digest, manifest, [...blobs]);
  }
  await client.pushManifest(REPO, '1.0', index);

  const dockerConfig = imageConfig({ architecture: 'amd64', mediaType: MediaType.dockerConfig });
  const dockerLayer = gzipLayer(700, MediaType.dockerLayerGzip);
  const dockerImage = imageManifest({ mediaType: MediaType.dockerManifest, config: descriptorOf(dockerConfig), layers: [descriptorOf(dockerLayer)], indent: 3 });
  await client.pushManifest(REPO, dockerImage.digest, dockerImage, [dockerConfig, dockerLayer]);
  const dockerList = indexManifest({ mediaType: MediaType.dockerManifestList, manifests: [descriptorOf(dockerImage, { platform: { os: 'linux', architecture: 'amd64' } })], indent: 3 });
  await client.pushManifest(REPO, '1.0-docker', dockerList);
  // A second repository, for token scopes.
  await client.pushManifest(OTHER, 'latest', arm64, [arm64Config, ...arm64Layers]);
  return {
    index,
    dockerList,
    manifests: [amd64, arm64, attestation, dockerImage],
    blobs: [amd64Config, ...amd64Layers, arm64Config, ...arm64Layers, attestationConfig, statement, dockerConfig, dockerLayer],
    big,
  };
}

async function readAll(stream: AsyncIterable<Buffer>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return Buffer.concat(chunks);
}

async function rejection(promise: Promise<unknown>): Promise<UpstreamError> {
  const error = await promise.then(() => undefined, (e: unknown) => e);
  expect(error, 'expected a rejection').to.be.instanceOf(UpstreamError);
  return error as UpstreamError;
}

// ---------------------------------------------------------------------------------------------
// A token server as Distribution expects one: ES256, libtrust kid, x5c; pull for anyone, Basic checked.

interface TokenServer {
  url: string;
  requests: Array<{ scopes: string[]; authorization?: string; account?: string }>;
  stop(): Promise<void>;
}

async function startTokenServer(keys: KeyPairFiles, expiresIn: number): Promise<TokenServer> {
  const cert = new X509Certificate(keys.certificatePem);
  const key = createPrivateKey(await readFile(keys.key, 'utf8'));
  const requests: TokenServer['requests'] = [];
  const server = http.createServer((req, res) => {
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://token');
      const scopes = url.searchParams.getAll('scope');
      const authorization = req.headers.authorization;
      requests.push({ scopes, authorization, account: url.searchParams.get('account') ?? undefined });
      let subject = '';
      if (authorization) {
        const [user, password] = Buffer.from(authorization.replace(/^Basic /, ''), 'base64').toString().split(':');
        if (user !== USER || password !== PASSWORD) {
          res.writeHead(401, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ details: 'incorrect username or password' }));
          return;
        }
        subject = user;
      }
      const access = scopes.map((s) => s.split(':')).filter((p) => p[0] === 'repository').map((p) => ({ type: 'repository', name: p[1], actions: ['pull'] }));
      const now = Math.floor(Date.now() / 1000);
      const token = await new SignJWT({ iss: ISSUER, aud: SERVICE, sub: subject, iat: now, nbf: now - 5, exp: now + expiresIn, jti: randomBytes(8).toString('hex'), access })
        .setProtectedHeader({ alg: 'ES256', typ: 'JWT', kid: libtrustKeyId(cert.publicKey), x5c: [cert.raw.toString('base64')] })
        .sign(key);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ token, access_token: token, expires_in: expiresIn, issued_at: new Date().toISOString() }));
    })();
  });
  return listen(server).then((url) => ({ url, requests, stop: () => close(server) }));
}

function listen(server: http.Server, host = '127.0.0.1'): Promise<string> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve(`http://${host}:${(server.address() as AddressInfo).port}`));
  });
}

function close(server: http.Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

// ---------------------------------------------------------------------------------------------
// A proxy that damages blob bodies in ways the fault proxy does not.

type Tamper = 'flip' | 'short' | 'cut' | 'stall-once';

async function startTamperProxy(target: string): Promise<{ url: string; mode: Tamper; requests: Array<{ range?: string }>; stop(): Promise<void> }> {
  const state = { mode: 'flip' as Tamper, requests: [] as Array<{ range?: string }>, stalled: false };
  const server = http.createServer((req, res) => {
    void (async () => {
      state.requests.push({ range: req.headers.range });
      const headers: Record<string, string> = {};
      if (req.headers.range) headers.range = req.headers.range;
      const upstream = await fetch(`${target}${req.url}`, { headers });
      const body = Buffer.from(await upstream.arrayBuffer());
      const out: Record<string, string> = { 'content-type': upstream.headers.get('content-type') ?? 'application/octet-stream' };
      const range = upstream.headers.get('content-range');
      if (range) out['content-range'] = range;
      if (state.mode === 'flip') {
        body[100] = body[100]! ^ 0xff;
      } else if (state.mode === 'short') {
        // Consistently one byte short, Content-Length included: only the digest (or the descriptor's size) can tell.
        res.writeHead(upstream.status, { ...out, 'content-length': String(body.length - 1) });
        res.end(body.subarray(0, body.length - 1));
        return;
      } else if (state.mode === 'cut') {
        res.writeHead(upstream.status, { ...out, 'content-length': String(body.length) });
        res.write(body.subarray(0, Math.min(1000, body.length - 1)), () => setTimeout(() => res.destroy(), 10));
        return;
      } else if (state.mode === 'stall-once' && !state.stalled) {
        state.stalled = true;
        res.writeHead(upstream.status, { ...out, 'content-length': String(body.length) });
        res.write(body.subarray(0, body.length >> 1)); // ... and nothing more, with the connection open
        return;
      }
      res.writeHead(upstream.status, { ...out, 'content-length': String(body.length) });
      res.end(body);
    })();
  });
  const url = await listen(server);
  return {
    url,
    get mode() { return state.mode; },
    set mode(m: Tamper) { state.mode = m; state.stalled = false; state.requests.length = 0; },
    requests: state.requests,
    stop: () => close(server),
  };
}

// ---------------------------------------------------------------------------------------------

describe('mirror upstream client: CNCF Distribution 2.8.2 as upstream', function () {
  this.timeout(120_000);
  let work: string;
  let plain: RunningDistribution;
  let basic: RunningDistribution;
  let bearer: RunningDistribution;
  let tokens: TokenServer;
  let pushed: Pushed;
  const clients: UpstreamClient[] = [];
  const client = (url: string, options: UpstreamClientOptions = {}, credentials?: { username: string; password: string }) => {
    const c = new UpstreamClient({ url, credentials }, { retry: FAST_RETRY, ...options });
    clients.push(c);
    return c;
  };

  before(async function () {
    work = await tempDir('upstream-client');
    plain = await startDistribution();
    pushed = await pushContent(new OciClient(plain.url));
    const htpasswd = join(work, 'htpasswd');
    await writeFile(htpasswd, `${htpasswdLine(USER, PASSWORD)}\n`);
    const keys = await makeEcCertificate(join(work, 'keys'), 'upstream-issuer');
    tokens = await startTokenServer(keys, 300);
    // The same storage behind each: what was pushed to the anonymous one is served by all three.
    const storage = { filesystem: { rootdirectory: plain.root } };
    [basic, bearer] = await Promise.all([
      startDistribution({ storage, auth: { htpasswd: { realm: 'upstream-test', path: htpasswd } } }),
      startDistribution({ storage, auth: { token: { realm: `${tokens.url}/token`, service: SERVICE, issuer: ISSUER, rootcertbundle: keys.certificate } } }),
    ]);
  });

  after(async function () {
    for (const c of clients) c.close();
    await Promise.all([plain?.stop(), basic?.stop(), bearer?.stop(), tokens?.stop()]);
    if (work) await removeTree(work);
  });

  const modes: Array<[string, () => UpstreamClient]> = [
    ['without auth', () => client(plain.url)],
    ['with htpasswd (Basic)', () => client(basic.url, {}, { username: USER, password: PASSWORD })],
    ['with token auth, anonymous (Bearer)', () => client(bearer.url)],
    ['with token auth and credentials (Bearer)', () => client(bearer.url, {}, { username: USER, password: PASSWORD })],
  ];

  for (const [mode, make] of modes) {
    describe(mode, function () {
      it('fetches the index and every manifest byte-exact, by tag and by digest, with matching digests', async function () {
        const c = make();
        const index = await c.getManifest(REPO, '1.0');
        expect(index.bytes.equals(pushed.index.bytes)).to.equal(true);
        expect([index.digest, index.mediaType, index.size]).to.deep.equal([pushed.index.digest, MediaType.ociIndex, pushed.index.size]);
        const list = await c.getManifest(REPO, '1.0-docker');
        expect(list.bytes.equals(pushed.dockerList.bytes)).to.equal(true);
        expect([list.digest, list.mediaType]).to.deep.equal([pushed.dockerList.digest, MediaType.dockerManifestList]);
        for (const m of pushed.manifests) {
          const got = await c.getManifest(REPO, m.digest);
          expect(got.bytes.equals(m.bytes), m.digest).to.equal(true);
          expect([got.digest, got.mediaType]).to.deep.equal([m.digest, m.mediaType]);
        }
      });

      it('HEADs manifests for revalidation', async function () {
        const c = make();
        expect(await c.headManifest(REPO, '1.0')).to.deep.equal({ digest: pushed.index.digest, mediaType: MediaType.ociIndex, size: pushed.index.size });
        const missing = await rejection(c.headManifest(REPO, 'no-such-tag'));
        expect([missing.status, missing.retryable]).to.deep.equal([404, false]);
      });

      it('streams every blob with its digest verified', async function () {
        const c = make();
        for (const b of pushed.blobs) {
          const blob = await c.fetchBlob(REPO, b.digest, { size: b.size });
          expect(blob.size).to.equal(b.size);
          const bytes = await readAll(blob.stream);
          expect(bytes.equals(b.bytes), b.digest).to.equal(true);
        }
        expect(await c.headBlob(REPO, pushed.big.digest)).to.deep.equal({ size: pushed.big.size });
      });

      it('lists tags and reports unknown manifests as typed 404 errors', async function () {
        const c = make();
        expect((await c.listTags(REPO)).sort()).to.deep.equal(['1.0', '1.0-docker']);
        const error = await rejection(c.getManifest(REPO, 'missing'));
        expect([error.status, error.code, error.retryable]).to.deep.equal([404, 'MANIFEST_UNKNOWN', false]);
        const blob = await rejection(c.fetchBlob(REPO, `sha256:${'0'.repeat(64)}`));
        expect([blob.status, blob.code]).to.deep.equal([404, 'BLOB_UNKNOWN']);
      });
    });
  }

  describe('authentication', function () {
    it('htpasswd: no or wrong credentials fail at once with 401 UNAUTHORIZED, not retried', async function () {
      for (const credentials of [undefined, { username: USER, password: 'wrong' }]) {
        const started = Date.now();
        const error = await rejection(client(basic.url, {}, credentials).getManifest(REPO, '1.0'));
        expect([error.status, error.code, error.retryable]).to.deep.equal([401, 'UNAUTHORIZED', false]);
        expect(Date.now() - started).to.be.below(1000);
      }
    });

    it('Bearer: one token per repository scope, fetched anonymously or with Basic, cached across calls', async function () {
      tokens.requests.length = 0;
      const anonymous = client(bearer.url);
      await anonymous.getManifest(REPO, '1.0');
      await anonymous.headManifest(REPO, '1.0');
      await readAll((await anonymous.fetchBlob(REPO, pushed.blobs[0]!.digest)).stream);
      await anonymous.getManifest(OTHER, 'latest');
      await anonymous.getManifest(OTHER, 'latest');
      expect(tokens.requests.map((r) => [r.scopes, r.authorization])).to.deep.equal([
        [[`repository:${REPO}:pull`], undefined],
        [[`repository:${OTHER}:pull`], undefined],
      ]);

      tokens.requests.length = 0;
      await client(bearer.url, {}, { username: USER, password: PASSWORD }).getManifest(REPO, '1.0');
      expect(tokens.requests).to.have.length(1);
      expect(tokens.requests[0]!.authorization).to.equal(`Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}`);
      expect(tokens.requests[0]!.account).to.equal(USER);
    });

    it('Bearer: credentials refused by the token server are a 401 error, not retried', async function () {
      tokens.requests.length = 0;
      const error = await rejection(client(bearer.url, {}, { username: USER, password: 'wrong' }).getManifest(REPO, '1.0'));
      expect([error.status, error.retryable]).to.deep.equal([401, false]);
      expect(tokens.requests).to.have.length(1);
    });
  });

  describe('faults (fault proxy in front of Distribution)', function () {
    let proxy: FaultProxy;
    before(async function () { proxy = await startFaultProxy(plain.url); });
    after(async function () { await proxy?.stop(); });
    beforeEach(function () { proxy.reset(); });
    const manifests = { path: /\/manifests\// };
    const blobs = { path: /\/blobs\/sha256:/ };
    const manifestRequests = () => proxy.requests.filter((r) => manifests.path.test(r.path));

    it('retries 500 and 503 answers', async function () {
      const retries: string[] = [];
      const c = client(proxy.endpoint, { onRetry: (e) => retries.push(`${e.operation}: ${e.error.status}`) });
      proxy.failNext(2, { status: 503, match: manifests });
      proxy.failNext(1, { status: 500, match: manifests });
      const got = await c.getManifest(REPO, '1.0');
      expect(got.digest).to.equal(pushed.index.digest);
      expect(manifestRequests().map((r) => r.status)).to.deep.equal([503, 503, 500, 200]);
      expect(retries).to.deep.equal(['GET manifest mirror/app:1.0: 503', 'GET manifest mirror/app:1.0: 503', 'GET manifest mirror/app:1.0: 500']);
    });

    it('gives up after the attempts with a retryable typed error', async function () {
      proxy.failNext(10, { status: 503, match: manifests });
      const error = await rejection(client(proxy.endpoint).getManifest(REPO, '1.0'));
      expect([error.status, error.retryable]).to.deep.equal([503, true]);
      expect(manifestRequests()).to.have.length(FAST_RETRY.attempts);
    });

    it('retries dropped connections: before the request, and after the upstream answered', async function () {
      const c = client(proxy.endpoint);
      proxy.dropNext(2, { at: 'request', match: manifests });
      expect((await c.getManifest(REPO, '1.0')).digest).to.equal(pushed.index.digest);
      proxy.dropNext(1, { at: 'response', match: manifests });
      expect((await c.getManifest(REPO, pushed.manifests[0]!.digest)).digest).to.equal(pushed.manifests[0]!.digest);
      proxy.dropNext(1, { at: 'response-body', afterBytes: 10, match: manifests });
      expect((await c.getManifest(REPO, pushed.manifests[1]!.digest)).digest).to.equal(pushed.manifests[1]!.digest);
      expect(manifestRequests().map((r) => r.status)).to.deep.equal([null, null, 200, null, 200, null, 200]);
    });

    it('resumes a blob cut in the middle with a Range request and still verifies the whole', async function () {
      const resumes: number[] = [];
      const c = client(proxy.endpoint, { onResume: (e) => resumes.push(e.offset) });
      proxy.dropNext(1, { at: 'response-body', afterBytes: 1_000_000, match: blobs });
      // Marks (without delaying) the request that asks for a range, to prove the resumption used one.
      proxy.delayNext(1, 0, { match: { ...blobs, headers: { range: /^bytes=\d+-$/ } } });
      const blob = await c.fetchBlob(REPO, pushed.big.digest, { size: pushed.big.size });
      const bytes = await readAll(blob.stream);
      expect(bytes.equals(pushed.big.bytes)).to.equal(true);
      expect(resumes).to.have.length(1);
      expect(resumes[0]).to.be.above(0).and.at.most(1_000_000);
      const gets = proxy.requests.filter((r) => blobs.path.test(r.path));
      expect(gets.map((r) => [r.status, r.fault ?? null])).to.deep.equal([[null, 'drop'], [206, 'delay']]);
    });

    it('honours 429 with Retry-After in seconds and as an HTTP date, and exposes the rate-limit headers', async function () {
      const seen: RateLimitState[] = [];
      const c = client(proxy.endpoint, { onRateLimit: (s) => seen.push(s) });
      proxy.failNext(1, { status: 429, headers: { 'Retry-After': '1', 'ratelimit-limit': '100;w=21600', 'ratelimit-remaining': '0;w=21600' }, match: manifests });
      let started = Date.now();
      expect((await c.getManifest(REPO, '1.0')).digest).to.equal(pushed.index.digest);
      expect(Date.now() - started).to.be.at.least(990);
      expect(seen.map((s) => [s.limit, s.remaining, s.windowSeconds])).to.deep.equal([[100, 0, 21600]]);
      expect(c.rateLimit).to.include({ limit: 100, remaining: 0 });

      // HTTP dates have whole seconds: two seconds ahead is at least one second of waiting.
      proxy.failNext(1, { status: 429, headers: { 'Retry-After': new Date(Date.now() + 2000).toUTCString() }, match: manifests });
      started = Date.now();
      expect((await c.getManifest(REPO, '1.0')).digest).to.equal(pushed.index.digest);
      expect(Date.now() - started).to.be.at.least(990);
      expect(manifestRequests().map((r) => r.status)).to.deep.equal([429, 200, 429, 200]);
    });

    it('a Retry-After longer than the policy allows fails at once, carrying the wait for the caller', async function () {
      proxy.failNext(1, { status: 429, headers: { 'Retry-After': '3600' }, match: manifests });
      const started = Date.now();
      const error = await rejection(client(proxy.endpoint).getManifest(REPO, '1.0'));
      expect([error.status, error.code, error.retryable, error.retryAfterMs]).to.deep.equal([429, 'TOOMANYREQUESTS', true, 3_600_000]);
      expect(Date.now() - started).to.be.below(1000);
    });

    it('times out a response that does not come, and retries', async function () {
      const c = client(proxy.endpoint, { responseTimeoutMs: 300 });
      proxy.delayNext(1, 3000, { match: manifests });
      const started = Date.now();
      expect((await c.getManifest(REPO, '1.0')).digest).to.equal(pushed.index.digest);
      expect(Date.now() - started).to.be.below(2500);
    });

    it('times out a connection whose TLS handshake never completes', async function () {
      // Accepts TCP and then says nothing: the connect timeout covers the handshake too.
      const silent = net.createServer(() => undefined);
      await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
      const sockets = new Set<net.Socket>();
      silent.on('connection', (socket) => { sockets.add(socket); socket.on('error', () => undefined); });
      try {
        const c = client(`https://127.0.0.1:${(silent.address() as AddressInfo).port}`, { connectTimeoutMs: 200, retry: { ...FAST_RETRY, attempts: 2 } });
        const started = Date.now();
        const error = await rejection(c.getManifest(REPO, '1.0'));
        expect([error.code, error.retryable]).to.deep.equal(['TIMEOUT', true]);
        expect(sockets.size).to.equal(2);
        expect(Date.now() - started).to.be.within(400, 2000);
      } finally {
        for (const socket of sockets) socket.destroy();
        await new Promise((resolve) => silent.close(resolve));
      }
    });

    it('an AbortSignal ends a call, a wait for Retry-After and a blob stream', async function () {
      const c = client(proxy.endpoint);
      proxy.failNext(1, { status: 429, headers: { 'Retry-After': '4' }, match: manifests });
      const controller = new AbortController();
      setTimeout(() => controller.abort(), 200);
      const started = Date.now();
      const error = await c.getManifest(REPO, '1.0', { signal: controller.signal }).catch((e: Error) => e);
      expect((error as Error).name).to.equal('AbortError');
      expect(Date.now() - started).to.be.below(2000);

      const streaming = new AbortController();
      const blob = await c.fetchBlob(REPO, pushed.big.digest, { signal: streaming.signal });
      const streamed = await (async () => {
        let n = 0;
        for await (const chunk of blob.stream) { n += (chunk as Buffer).length; if (n > 100_000) streaming.abort(); }
        return n;
      })().catch((e: Error) => e);
      expect((streamed as Error).name).to.equal('AbortError');
    });
  });

  describe('damaged blob bodies', function () {
    let tamper: Awaited<ReturnType<typeof startTamperProxy>>;
    before(async function () { tamper = await startTamperProxy(plain.url); });
    after(async function () { await tamper?.stop(); });
    const big = () => pushed.big;

    it('a corrupted blob fails its stream at the end with DIGEST_MISMATCH', async function () {
      tamper.mode = 'flip';
      const blob = await client(tamper.url).fetchBlob(REPO, big().digest, { size: big().size });
      const error = await rejection(readAll(blob.stream));
      expect(error.code).to.equal('DIGEST_MISMATCH');
    });

    it('a consistently short blob is caught by the descriptor size, or else by the digest', async function () {
      tamper.mode = 'short';
      const sized = await rejection(client(tamper.url).fetchBlob(REPO, big().digest, { size: big().size }));
      expect([sized.code, sized.retryable]).to.deep.equal(['SIZE_MISMATCH', false]);
      const blob = await client(tamper.url).fetchBlob(REPO, big().digest);
      expect((await rejection(readAll(blob.stream))).code).to.equal('DIGEST_MISMATCH');
    });

    it('a body cut short on every connection fails after bounded resumptions', async function () {
      tamper.mode = 'cut';
      const blob = await client(tamper.url).fetchBlob(REPO, big().digest, { size: big().size });
      const error = await rejection(readAll(blob.stream));
      expect([error.code, error.retryable]).to.deep.equal(['NETWORK', true]);
      // Each connection delivered its 1000 bytes, and each resumption asked for the rest by Range.
      expect(tamper.requests.length).to.be.within(2, FAST_RETRY.attempts * 4 + 1);
      expect(tamper.requests.slice(1).every((r, i) => r.range === `bytes=${(i + 1) * 1000}-`)).to.equal(true);
    });

    it('a body that stalls is given up after the idle timeout and resumed', async function () {
      tamper.mode = 'stall-once';
      const blob = await client(tamper.url, { idleTimeoutMs: 300 }).fetchBlob(REPO, big().digest, { size: big().size });
      const started = Date.now();
      expect((await readAll(blob.stream)).equals(big().bytes)).to.equal(true);
      expect(Date.now() - started).to.be.below(5000);
      expect(tamper.requests.map((r) => r.range)).to.deep.equal([undefined, `bytes=${big().size >> 1}-`]);
    });
  });

  describe('redirects to blob storage', function () {
    let front: http.Server;
    let storage: http.Server;
    let frontUrl: string;
    const seenByStorage: Array<string | undefined> = [];
    const authorization = `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}`;

    before(async function () {
      // "Storage" on another address (another origin): it notes the Authorization it got, then sends the
      // client on to Distribution, as a CDN in front of a bucket might.
      storage = http.createServer((req, res) => {
        seenByStorage.push(req.headers.authorization);
        res.writeHead(307, { location: `${plain.url}${req.url!.replace(/^\/bucket/, '')}` });
        res.end();
      });
      const storageUrl = await listen(storage, '127.0.0.2');
      // A registry that wants Basic and redirects every blob GET to storage, manifests to Distribution.
      front = http.createServer((req, res) => {
        if (req.headers.authorization !== authorization) {
          res.writeHead(401, { 'www-authenticate': 'Basic realm="front"', 'content-type': 'application/json' });
          res.end('{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}');
          return;
        }
        const location = /\/blobs\//.test(req.url!) ? `${storageUrl}/bucket${req.url}` : `${plain.url}${req.url}`;
        res.writeHead(/\/blobs\//.test(req.url!) ? 307 : 302, { location });
        res.end();
      });
      frontUrl = await listen(front);
    });
    after(async function () {
      if (front) await close(front);
      if (storage) await close(storage);
    });

    it('follows 307 and 302 redirects, dropping Authorization when the host changes', async function () {
      const c = client(frontUrl, {}, { username: USER, password: PASSWORD });
      expect((await c.getManifest(REPO, '1.0')).bytes.equals(pushed.index.bytes)).to.equal(true);
      const blob = await c.fetchBlob(REPO, pushed.big.digest, { size: pushed.big.size });
      expect((await readAll(blob.stream)).equals(pushed.big.bytes)).to.equal(true);
      expect(seenByStorage).to.deep.equal([undefined]);
    });
  });
});

describe('mirror upstream client: tag pagination (our registry as upstream)', function () {
  this.timeout(120_000);
  let registry: RunningRegistry;
  let proxy: FaultProxy;
  const tags = ['a1', 'a2', 'b1', 'b2', 'c1', 'c2', 'd1'];

  before(async function () {
    registry = await startRegistry();
    const oci = new OciClient(registry.url);
    const config = imageConfig();
    const layer = gzipLayer(64);
    const manifest = imageManifest({ config: descriptorOf(config), layers: [descriptorOf(layer)] });
    await oci.pushManifest('paged/app', manifest.digest, manifest, [config, layer]);
    for (const tag of tags) await oci.putManifest('paged/app', tag, manifest);
    proxy = await startFaultProxy(registry.url);
  });
  after(async function () {
    await proxy?.stop();
    await registry?.stop();
  });

  it('follows Link headers page by page, retrying a failed page', async function () {
    const c = new UpstreamClient({ url: proxy.endpoint }, { retry: FAST_RETRY });
    try {
      const pages: string[][] = [];
      for await (const page of c.tagPages('paged/app', { pageSize: 3 })) pages.push(page);
      expect(pages).to.deep.equal([['a1', 'a2', 'b1'], ['b2', 'c1', 'c2'], ['d1']]);
      proxy.reset();
      proxy.failNext(1, { status: 503, match: { query: 'last=b1' } });
      expect(await c.listTags('paged/app', { pageSize: 3 })).to.deep.equal(tags);
      expect(proxy.requests.map((r) => [r.query, r.status])).to.deep.equal([
        ['n=3', 200], ['n=3&last=b1', 503], ['n=3&last=b1', 200], ['n=3&last=c2', 200],
      ]);
    } finally {
      c.close();
    }
  });
});
