// Observability end to end (issue 9): /metrics after a docker push and pull (parsed, counters and
// histograms moved), the JSON log of a push (fields present, no credential or token), webhooks of the
// push (a receiver that fails gets retries), readiness of storage and Redis, and one merged scrape of
// several cluster workers.
import { expect } from 'chai';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { bcryptHash, makeTinyImage, type AuthRegistry, startAuthRegistry, type TinyImage } from '../helpers/auth.js';
import { startDockerd, type RunningDockerd } from '../helpers/dockerd.js';
import { removeTree } from '../helpers/cleanup.js';
import { sleep } from '../helpers/oci.js';
import { freePort, tempDir } from '../helpers/process.js';
import { startRedis, type RunningRedis } from '../helpers/redis.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';
import { checkHistogram, parseExposition, samplesOf, valueOf, type Family } from '../helpers/prometheus.js';

interface Envelope {
  events: Array<{
    id: string;
    timestamp: string;
    action: string;
    target: { mediaType?: string; size?: number; length?: number; digest?: string; repository: string; url?: string; tag?: string };
    request: { id: string; addr: string; host: string; method: string; useragent: string };
    actor: { name?: string };
    source: { addr: string; instanceID: string };
  }>;
}

interface Receiver {
  url: string;
  envelopes: Array<{ body: Envelope; headers: http.IncomingHttpHeaders; status: number }>;
  /** Answer this many requests with 500 first. */
  failNext: number;
  close(): Promise<void>;
}

async function startReceiver(failFirst = 0): Promise<Receiver> {
  const receiver: Receiver = { url: '', envelopes: [], failNext: failFirst, close: async () => undefined };
  const server = http.createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (part: Buffer) => parts.push(part));
    req.on('end', () => {
      const status = receiver.failNext > 0 ? 500 : 200;
      if (status === 500) receiver.failNext--;
      receiver.envelopes.push({ body: JSON.parse(Buffer.concat(parts).toString('utf8')) as Envelope, headers: req.headers, status });
      res.writeHead(status).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  receiver.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/events`;
  receiver.close = () => new Promise<void>((resolve) => server.close(() => resolve()));
  return receiver;
}

async function scrape(url: string): Promise<Map<string, Family>> {
  const res = await fetch(url);
  expect(res.status, `GET ${url}`).to.equal(200);
  expect(res.headers.get('content-type')).to.match(/^text\/plain; version=0\.0\.4/);
  return parseExposition(await res.text());
}

async function waitFor(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function readiness(url: string): Promise<{ status: number; body: { ready: boolean; failed: string[]; degraded: string[]; checks: Record<string, { ok: boolean; critical?: boolean; error?: string; scope?: string; upstreams?: Record<string, { state: string }> }> } }> {
  const res = await fetch(`${url}/readyz`);
  return { status: res.status, body: (await res.json()) as never };
}

// -------------------------------------------------------------------------------------------------
describe('observability: docker push and pull with auth (metrics, logs, webhooks)', function () {
  this.timeout(180_000);
  const password = 'alice-observability-pw';
  const hookSecret = 'hook-secret-3f9a1c7e5b2d4068';
  const repository = 'obs/app';
  let registry: AuthRegistry;
  let dockerd: RunningDockerd;
  let receiver: Receiver;
  let flaky: Receiver;
  let work: string;
  let image: TinyImage;
  let hp: string;
  let deadPort: number;
  let beforePush: Map<string, Family>;
  let afterPush: Map<string, Family>;
  let afterPull: Map<string, Family>;
  let pushLog: string[] = [];
  let pushedDigest: string;
  /** The blobs docker pushed (its own gzip of the imported tar, and its config). */
  let layer: { digest: string; size: number };
  let config: { digest: string; size: number };

  const docker = (args: string[], input?: string) => dockerd.docker(args, { input, allowFailure: true });

  before(async function () {
    this.timeout(240_000);
    work = await tempDir('observability');
    receiver = await startReceiver();
    flaky = await startReceiver(3);
    deadPort = await freePort();
    registry = await startAuthRegistry({
      config: {
        log: { level: 'info', formatter: 'json' },
        auth: {
          users: [{ name: 'alice', password: bcryptHash(password) }],
          access: [{ repository: 'obs/*', pull: ['alice'], push: ['alice'], delete: ['alice'] }],
          admins: ['alice'],
        },
        mirror: { upstreams: [{ name: 'dead', url: `http://127.0.0.1:${deadPort}` }] },
        notifications: {
          endpoints: [
            { name: 'receiver', url: receiver.url, headers: { Authorization: [`Bearer ${hookSecret}`] }, timeout: '2s', backoff: '100ms' },
            // Fails its first answers: the same events come again, with backoff.
            { name: 'flaky', url: flaky.url, timeout: '2s', backoff: '50ms', threshold: 2, ignore: { actions: ['pull'] } },
          ],
        },
      },
    });
    hp = registry.hostPort;
    dockerd = await startDockerd();
    image = await makeTinyImage(work, 'observability');
    const imported = await docker(['import', '--change', 'ENV PATH=/bin', '--change', 'CMD ["sh"]', image.tarFile, `${hp}/${repository}:1`]);
    expect(imported.code, imported.stderr).to.equal(0);
    const login = await docker(['login', '--username', 'alice', '--password-stdin', hp], password);
    expect(login.code, login.stderr).to.equal(0);

    beforePush = await scrape(`${registry.url}/metrics`);
    const logBefore = (await readFile(registry.logFile, 'utf8')).length;
    const push = await docker(['push', `${hp}/${repository}:1`]);
    expect(push.code, `${push.stdout}${push.stderr}`).to.equal(0);
    pushedDigest = /digest: (sha256:[0-9a-f]{64})/.exec(push.stdout)![1]!;
    // The access log line of a request is written when its response ends: give the last one a moment.
    await new Promise((resolve) => setTimeout(resolve, 300));
    pushLog = (await readFile(registry.logFile, 'utf8')).slice(logBefore).split('\n').filter((line) => line.trim() !== '');
    afterPush = await scrape(`${registry.url}/metrics`);
    const pushed = (await (
      await fetch(`${registry.url}/v2/${repository}/manifests/${pushedDigest}`, {
        headers: { authorization: `Basic ${Buffer.from(`alice:${password}`).toString('base64')}`, accept: 'application/vnd.docker.distribution.manifest.v2+json' },
      })
    ).json()) as { config: { digest: string; size: number }; layers: Array<{ digest: string; size: number }> };
    layer = pushed.layers[0]!;
    config = pushed.config;
    afterPush = await scrape(`${registry.url}/metrics`); // after that GET too: the pull below is measured from here

    await dockerd.rmi(`${hp}/${repository}:1`);
    const pull = await docker(['pull', `${hp}/${repository}:1`]);
    expect(pull.code, pull.stderr).to.equal(0);
    afterPull = await scrape(`${registry.url}/metrics`);
  });

  after(async function () {
    this.timeout(120_000);
    await Promise.allSettled([dockerd?.stop(), work ? removeTree(work) : undefined, receiver?.close(), flaky?.close()]);
    await registry?.stop();
  });

  const delta = (from: Map<string, Family>, to: Map<string, Family>, name: string, labels: Record<string, string>) =>
    valueOf(to, name, labels) - valueOf(from, name, labels);

  it('counts the push by route template, method and status, with duration histograms and bytes', function () {
    const manifestPut = { method: 'PUT', route: '/v2/*name/manifests/:reference', status: '201' };
    expect(delta(beforePush, afterPush, 'registry_http_requests_total', manifestPut)).to.equal(1);
    const blobPut = { method: 'PUT', route: '/v2/*name/blobs/uploads/:id', status: '201' };
    expect(delta(beforePush, afterPush, 'registry_http_requests_total', blobPut)).to.equal(2); // the layer and the config
    const histogram = checkHistogram(afterPush, 'registry_http_request_duration_seconds', manifestPut);
    expect(histogram.count - valueOf(beforePush, 'registry_http_request_duration_seconds_count', manifestPut)).to.equal(1);
    expect(histogram.sum).to.be.greaterThan(0);
    // The layer's bytes came in as PATCH bodies.
    const received = delta(beforePush, afterPush, 'registry_http_request_bytes_total', { route: '/v2/*name/blobs/uploads/:id' });
    expect(received).to.be.at.least(layer.size);
    expect(valueOf(afterPush, 'registry_uploads_in_progress')).to.equal(0);
    // Storage operations of the push were measured.
    expect(delta(beforePush, afterPush, 'registry_storage_operation_duration_seconds_count', { operation: 'move' })).to.be.at.least(2);
    checkHistogram(afterPush, 'registry_storage_operation_duration_seconds', { driver: 'filesystem', operation: 'put_content' });
  });

  it('counts the pull: manifest and blob GETs, bytes sent, cache lookups', function () {
    const manifestGet = { method: 'GET', route: '/v2/*name/manifests/:reference', status: '200' };
    expect(delta(afterPush, afterPull, 'registry_http_requests_total', manifestGet)).to.be.at.least(1);
    const blobGet = { method: 'GET', route: '/v2/*name/blobs/:digest', status: '200' };
    expect(delta(afterPush, afterPull, 'registry_http_requests_total', blobGet)).to.equal(2);
    checkHistogram(afterPull, 'registry_http_request_duration_seconds', blobGet);
    expect(delta(afterPush, afterPull, 'registry_http_response_bytes_total', { method: 'GET', route: '/v2/*name/blobs/:digest' })).to.equal(
      layer.size + config.size,
    );
    const lookups = (families: Map<string, Family>) =>
      valueOf(families, 'registry_cache_hits_total', { cache: 'manifest' }) + valueOf(families, 'registry_cache_misses_total', { cache: 'manifest' });
    expect(lookups(afterPull) - lookups(afterPush)).to.be.at.least(1);
  });

  it('has no unbounded labels (no repository names or digests) and exposes process metrics', function () {
    for (const family of afterPull.values()) {
      for (const sample of family.samples) {
        for (const value of Object.values(sample.labels)) {
          expect(value, `${sample.name} ${JSON.stringify(sample.labels)}`).not.to.match(/obs\/app|sha256:|[0-9a-f]{32}/);
        }
      }
    }
    for (const name of ['process_cpu_user_seconds_total', 'process_resident_memory_bytes', 'nodejs_heap_size_used_bytes', 'nodejs_eventloop_lag_seconds']) {
      expect(afterPull.has(name), name).to.equal(true);
    }
  });

  it('logs every request of the push as one JSON line with the user, and no credential or token', async function () {
    expect(pushLog.length).to.be.greaterThan(5);
    const entries = pushLog.map((line) => JSON.parse(line) as Record<string, unknown>);
    const requests = entries.filter((entry) => entry.msg === 'request');
    expect(requests.length).to.be.greaterThan(5);
    for (const entry of requests) {
      for (const field of ['time', 'level', 'pid', 'requestId', 'method', 'route', 'status', 'durationMs', 'remote', 'bytesIn', 'bytesOut']) {
        expect(entry, `${field} in ${JSON.stringify(entry)}`).to.have.property(field);
      }
    }
    const authorized = requests.filter((entry) => String(entry.route).startsWith('/v2/*name') && Number(entry.status) < 400);
    expect(authorized.length).to.be.greaterThan(3);
    for (const entry of authorized) {
      expect(entry.user, JSON.stringify(entry)).to.equal('alice');
      expect(entry.repository, JSON.stringify(entry)).to.equal(repository);
    }
    expect(requests.some((entry) => entry.method === 'PUT' && entry.route === '/v2/*name/manifests/:reference' && entry.status === 201)).to.equal(true);

    // Neither the password, nor Basic credentials, nor any token docker held, nor the webhook's secret.
    const stored = JSON.parse(await readFile(join(dockerd.dir, 'client', 'config.json'), 'utf8')) as {
      auths?: Record<string, { auth?: string; identitytoken?: string }>;
    };
    const secrets = [password, Buffer.from(`alice:${password}`).toString('base64'), hookSecret];
    const held = stored.auths?.[hp];
    if (held?.identitytoken) secrets.push(held.identitytoken);
    if (held?.auth) secrets.push(held.auth);
    const whole = await readFile(registry.logFile, 'utf8');
    for (const secret of secrets) expect(whole.includes(secret), `log holds ${secret.slice(0, 12)}…`).to.equal(false);
    expect(whole).not.to.match(/eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}/); // no JWT (access or refresh token)
    expect(whole).not.to.match(/Bearer [A-Za-z0-9._-]{12,}|Basic [A-Za-z0-9+/=]{12,}/);
  });

  it('sends the push to the webhook receiver in Distribution\'s envelope, blobs before the manifest', async function () {
    await waitFor('the manifest push event', () =>
      receiver.envelopes.some((e) => e.body.events.some((event) => event.action === 'push' && event.target.tag === '1')),
    );
    const events = receiver.envelopes.flatMap((e) => e.body.events);
    const pushes = events.filter((event) => event.action === 'push' && event.target.repository === repository);
    const manifest = pushes.find((event) => event.target.tag === '1')!;
    expect(manifest.target).to.include({
      mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
      digest: pushedDigest,
      repository,
      tag: '1',
      url: `${registry.url}/v2/${repository}/manifests/${pushedDigest}`,
    });
    expect(manifest.target.size).to.be.a('number').and.equal(manifest.target.length);
    expect(manifest.actor).to.deep.equal({ name: 'alice' });
    expect(manifest.request.method).to.equal('PUT');
    expect(manifest.request.useragent).to.match(/docker/i);
    expect(manifest.request.id).to.match(/^[0-9a-f-]{36}$/);
    expect(manifest.source.instanceID).to.be.a('string');
    expect(Date.parse(manifest.timestamp)).to.be.greaterThan(0);
    // The request id ties the event to its access log line.
    expect(pushLog.some((line) => line.includes(manifest.request.id))).to.equal(true);

    const blobs = pushes.filter((event) => event.target.mediaType === 'application/octet-stream');
    expect(blobs.map((event) => event.target.digest).sort()).to.deep.equal([layer.digest, config.digest].sort());
    const layerEvent = blobs.find((event) => event.target.digest === layer.digest)!;
    expect(layerEvent.target).to.include({ size: layer.size, length: layer.size, url: `${registry.url}/v2/${repository}/blobs/${layer.digest}` });
    expect(events.indexOf(layerEvent)).to.be.lessThan(events.indexOf(manifest));
    const envelope = receiver.envelopes[0]!;
    expect(envelope.headers['content-type']).to.equal('application/vnd.docker.distribution.events.v2+json');
    expect(envelope.headers.authorization).to.equal(`Bearer ${hookSecret}`);
  });

  it('sends pulls too, and a failing receiver gets the same events again until it accepts them', async function () {
    // docker resolves the tag with HEAD (no event, as HEADs are not pulls) and GETs the manifest by digest.
    await waitFor('the pull events', () => {
      const pulled = new Set(receiver.envelopes.flatMap((e) => e.body.events).filter((event) => event.action === 'pull').map((event) => event.target.digest));
      return [pushedDigest, layer.digest, config.digest].every((digest) => pulled.has(digest));
    });
    const pulls = receiver.envelopes.flatMap((e) => e.body.events).filter((event) => event.action === 'pull');
    expect(pulls.map((event) => event.target.digest)).to.include.members([pushedDigest, layer.digest, config.digest]);
    const manifestPull = pulls.find((event) => event.target.digest === pushedDigest)!;
    expect(manifestPull.target.mediaType).to.equal('application/vnd.docker.distribution.manifest.v2+json');

    // flaky answered 500 three times: the first event came four times; pulls were filtered out for it.
    await waitFor('every push event at the flaky receiver', () => flaky.envelopes.filter((e) => e.status === 200).length >= 3);
    const first = flaky.envelopes[0]!.body.events[0]!.id;
    expect(flaky.envelopes.slice(0, 4).map((e) => e.body.events[0]!.id)).to.deep.equal([first, first, first, first]);
    expect(flaky.envelopes.slice(0, 4).map((e) => e.status)).to.deep.equal([500, 500, 500, 200]);
    expect(flaky.envelopes.every((e) => e.body.events[0]!.action === 'push')).to.equal(true);
    const families = await scrape(`${registry.url}/metrics`);
    expect(valueOf(families, 'registry_notifications_failures_total', { endpoint: 'flaky', reason: 'http_5xx' })).to.equal(3);
    expect(valueOf(families, 'registry_notifications_delivered_total', { endpoint: 'flaky' })).to.equal(3);
    expect(valueOf(families, 'registry_notifications_delivered_total', { endpoint: 'receiver' })).to.be.at.least(6);
    expect(valueOf(families, 'registry_notifications_events_total', { endpoint: 'receiver', action: 'pull' })).to.be.at.least(3);
  });

  it('logs jobs with their id: the access log of the request that made it, and the job\'s own lines', async function () {
    const basic = `Basic ${Buffer.from(`alice:${password}`).toString('base64')}`;
    const res = await fetch(`${registry.url}/admin/v1/mirror`, {
      method: 'POST',
      headers: { authorization: basic, 'content-type': 'application/json' },
      body: JSON.stringify({ source: 'dead/library/nothing', tags: ['1'] }),
    });
    expect(res.status, await res.clone().text()).to.equal(202);
    const job = (await res.json()) as { id: string };
    await waitFor('job lines in the log', async () => (await readFile(registry.logFile, 'utf8')).includes('"msg":"job started"'));
    const entries = (await readFile(registry.logFile, 'utf8'))
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    const created = entries.find((entry) => entry.msg === 'request' && entry.route === '/admin/v1/mirror');
    expect(created, 'access log of POST /admin/v1/mirror').to.include({ jobId: job.id, user: 'alice', status: 202 });
    const started = entries.find((entry) => entry.msg === 'job started');
    expect(started).to.include({ jobId: job.id, jobKind: 'mirror' });
    // The dead upstream shows in /readyz as information, without making the registry unready.
    await waitFor('the upstream to be seen down', async () => (await readiness(registry.url)).body.checks.upstreams?.upstreams?.dead?.state === 'down');
    const ready = await readiness(registry.url);
    expect(ready.status).to.equal(200);
    expect(ready.body.degraded).to.include('upstreams');
    expect(ready.body.checks.upstreams!.critical).to.equal(false);
    await fetch(`${registry.url}/admin/v1/jobs/${job.id}`, { method: 'DELETE', headers: { authorization: basic } });
  });
});

// -------------------------------------------------------------------------------------------------
describe('observability: readiness of storage and Redis', function () {
  this.timeout(120_000);
  let redis: RunningRedis;
  let strict: RunningRegistry;
  let partition: RunningRegistry;
  const fast = { interval: '200ms', threshold: 1 };

  before(async function () {
    this.timeout(120_000);
    redis = await startRedis();
    const config = (readinessMode: string) => ({
      redis: { addr: redis.addr },
      health: { storagedriver: { ...fast, enabled: true }, redis: { ...fast, readiness: readinessMode } },
    });
    [strict, partition] = await Promise.all([startRegistry({ config: config('always') }), startRegistry({ config: config('partition') })]);
  });

  after(async function () {
    await Promise.allSettled([strict?.stop(), partition?.stop()]);
    await redis?.stop();
  });

  const status = async (registry: RunningRegistry) => (await readiness(registry.url)).status;

  it('goes unready when the storage root is renamed away, and ready again when it is back', async function () {
    expect(await status(strict)).to.equal(200);
    const moved = `${strict.root}.moved`;
    await rename(strict.root, moved);
    try {
      await waitFor('readiness to fail', async () => (await status(strict)) === 503, 10_000);
      const { body } = await readiness(strict.url);
      expect(body.ready).to.equal(false);
      expect(body.failed).to.deep.equal(['storage']);
      expect(body.checks.storage!.ok).to.equal(false);
      expect(body.checks.storage!.error).to.match(/ENOENT|no such file/);
    } finally {
      await rm(strict.root, { recursive: true, force: true });
      await rename(moved, strict.root);
    }
    await waitFor('readiness to recover', async () => (await status(strict)) === 200, 10_000);
  });

  it('halted Redis: strict mode goes unready; partition mode stays ready (a shared outage) and serves pulls', async function () {
    // Something to pull while Redis is away.
    const manifest = JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [] });
    const put = await fetch(`${partition.url}/v2/ready/check/manifests/1`, {
      method: 'PUT',
      headers: { 'content-type': 'application/vnd.oci.image.index.v1+json' },
      body: manifest,
    });
    expect(put.status).to.equal(201);
    expect(await status(strict)).to.equal(200);
    expect(await status(partition)).to.equal(200);
    expect(valueOf(await scrape(`${partition.url}/metrics`), 'registry_redis_up')).to.equal(1);

    await redis.halt();
    try {
      await waitFor('strict readiness to fail', async () => (await status(strict)) === 503, 15_000);
      const { body } = await readiness(strict.url);
      expect(body.failed).to.deep.equal(['redis']);
      expect(body.checks.redis!.ok).to.equal(false);

      // Partition mode: no replica reaches Redis, so this one stays in service, reporting the failure.
      await waitFor('partition mode to see Redis down', async () => (await readiness(partition.url)).body.degraded.includes('redis'), 15_000);
      const degraded = await readiness(partition.url);
      expect(degraded.status).to.equal(200);
      expect(degraded.body.checks.redis!.scope).to.match(/every replica/);
      const pull = await fetch(`${partition.url}/v2/ready/check/manifests/1`, { headers: { accept: 'application/vnd.oci.image.index.v1+json' } });
      expect(pull.status).to.equal(200);
      expect(await pull.text()).to.equal(manifest);
      expect(valueOf(await scrape(`${partition.url}/metrics`), 'registry_redis_up')).to.equal(0);

      // Another replica that still reaches Redis (it keeps beating in the shared storage): this one is cut off.
      const heartbeats = join(partition.root, '_health', 'redis');
      await mkdir(heartbeats, { recursive: true });
      let beat: Promise<void> = Promise.resolve();
      const beating = setInterval(() => (beat = writeFile(join(heartbeats, 'other-replica'), JSON.stringify({ at: Date.now() }))), 200);
      try {
        await waitFor('partition mode to go unready', async () => (await status(partition)) === 503, 15_000);
      } finally {
        clearInterval(beating);
        await beat;
      }
      const cut = await readiness(partition.url);
      expect(cut.body.failed).to.deep.equal(['redis']);
      expect(cut.body.checks.redis!.scope).to.match(/this replica/);
      await rm(join(heartbeats, 'other-replica'));
    } finally {
      await redis.restart();
    }
    await waitFor('strict readiness to recover', async () => (await status(strict)) === 200, 20_000);
    await waitFor('partition readiness to recover', async () => {
      const { status: code, body } = await readiness(partition.url);
      return code === 200 && body.degraded.length === 0;
    }, 20_000);
  });

  it('partition mode: two replicas on one storage root both stay ready through a Redis outage they share', async function () {
    const config = { redis: { addr: redis.addr }, health: { storagedriver: { ...fast, enabled: true }, redis: { ...fast, readiness: 'partition' } } };
    const second = await startRegistry({ rootDir: partition.root, config });
    try {
      // Both have reached Redis and beat: each sees the other's fresh heartbeat when Redis goes.
      await waitFor('both heartbeats', async () => (await readdir(join(partition.root, '_health', 'redis'))).length >= 2, 10_000);
      await redis.halt();
      const seen: string[] = [];
      const started = Date.now();
      while (Date.now() - started < 5_000) {
        for (const replica of [partition, second]) {
          const { status: code, body } = await readiness(replica.url);
          seen.push(`${code} ${body.checks.redis?.scope ?? (body.checks.redis?.ok ? 'ok' : '?')}`);
          expect(code, seen.join('\n')).to.equal(200);
        }
        await sleep(200);
      }
      expect(seen.at(-1), 'Redis seen down').to.match(/every replica/);
    } finally {
      await redis.restart();
      await second.stop();
    }
    await waitFor('partition readiness to recover', async () => (await readiness(partition.url)).body.degraded.length === 0, 20_000);
  });
});

// -------------------------------------------------------------------------------------------------
describe('observability: one scrape merges every cluster worker', function () {
  this.timeout(120_000);
  let registry: RunningRegistry;
  let debugPort: number;

  before(async function () {
    this.timeout(60_000);
    debugPort = await freePort();
    registry = await startRegistry({
      workers: 2,
      config: { http: { debug: { addr: `127.0.0.1:${debugPort}`, prometheus: { enabled: true, path: '/debug/metrics' } } } },
    });
  });

  after(async () => registry?.stop());

  it('counts requests served by either worker in every scrape, on the main port and the debug port', async function () {
    const route = { method: 'GET', route: '/v2/', status: '200' };
    const before = valueOf(await scrape(`${registry.url}/metrics`), 'registry_http_requests_total', route);
    const requests = 40;
    // New connections, so both workers serve some.
    await Promise.all(Array.from({ length: requests }, () => fetch(`${registry.url}/v2/`, { headers: { connection: 'close' } }).then((r) => r.arrayBuffer())));
    for (let i = 0; i < 6; i++) {
      const main = await scrape(`${registry.url}/metrics`);
      expect(valueOf(main, 'registry_http_requests_total', route) - before).to.equal(requests);
    }
    const debug = await scrape(`http://127.0.0.1:${debugPort}/debug/metrics`);
    expect(valueOf(debug, 'registry_http_requests_total', route) - before).to.equal(requests);
    // Process metrics of the workers and the primary, summed: more than one process's worth of memory.
    const resident = samplesOf(debug, 'process_resident_memory_bytes');
    expect(resident).to.have.length(1);
    expect(resident[0]!.value).to.be.greaterThan(100 * 1024 * 1024);
    expect((await fetch(`http://127.0.0.1:${debugPort}/other`)).status).to.equal(404);
    // Served by the workers: the access log shows both pids among the /v2/ requests.
    const pids = new Set(
      (await readFile(registry.daemon.logFile, 'utf8'))
        .split('\n')
        .filter((line) => line.includes('"route":"/v2/"'))
        .map((line) => (JSON.parse(line) as { pid: number }).pid),
    );
    expect(pids.size).to.equal(2);
  });
});
