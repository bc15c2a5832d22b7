// Unit tests of the observability pieces: route labels, log scrubbing and text format, webhook delivery
// with retries, storage and job instrumentation, and the exposition of the metrics registry.
import { expect } from 'chai';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { templateOfPath } from '../../server/metrics/route-template.js';
import { scrubLogObject, scrubText, shownRecord } from '../../server/logging/redact.js';
import { textLine } from '../../server/logging/text-format.js';
import { logstashLine } from '../../server/logging/logstash-format.js';
import { loggerOptions } from '../../server/logger.js';
import { accessLineWriter } from '../../server/logging/access-line.js';
import { accessLog } from '../../server/http/access-log.js';
import { observeRequests } from '../../server/http/observe.js';
import Koa from 'koa';
import { loadConfig } from '../../server/config.js';
import { NotificationEndpoint } from '../../server/notifications/endpoint.js';
import type { RegistryEvent } from '../../server/notifications/events.js';
import { collectProcessMetrics, metricsRegistry } from '../../server/metrics/registry.js';
import { instrumentDriver } from '../../server/metrics/storage-metrics.js';
import { instrumentJobQueue } from '../../server/metrics/job-metrics.js';
import { watchRedis } from '../../server/metrics/dependency-metrics.js';
import '../../server/metrics/setup.js';
import '../../server/metrics/http-metrics.js';
import { FilesystemDriver } from '../../storage-drivers/filesystem.js';
import { LocalJobQueue } from '../../server/jobs/local-queue.js';
import { RetryableJobError } from '../../server/jobs/job.js';
import { checkHistogram, parseExposition, valueOf } from '../helpers/prometheus.js';

const silent = pino({ level: 'silent' });

describe('observability: route labels', () => {
  it('maps /v2 paths to templates, never to names or digests', () => {
    const digest = `sha256:${'a'.repeat(64)}`;
    expect(templateOfPath('/v2/')).to.equal('/v2/');
    expect(templateOfPath('/v2')).to.equal('/v2/');
    expect(templateOfPath('/v2/_catalog')).to.equal('/v2/_catalog');
    expect(templateOfPath('/v2/a/b/c/manifests/latest')).to.equal('/v2/*name/manifests/:reference');
    expect(templateOfPath(`/v2/a/blobs/${digest}`)).to.equal('/v2/*name/blobs/:digest');
    expect(templateOfPath('/v2/a/blobs/uploads/')).to.equal('/v2/*name/blobs/uploads/');
    expect(templateOfPath('/v2/a/blobs/uploads/0b4e1e9a-58c2-4a43-a6b4-1d0b0e5b7b8f')).to.equal('/v2/*name/blobs/uploads/:id');
    expect(templateOfPath('/v2/a/tags/list')).to.equal('/v2/*name/tags/list');
    expect(templateOfPath(`/v2/a/referrers/${digest}`)).to.equal('/v2/*name/referrers/:digest');
    expect(templateOfPath('/v2/a/unknown/thing')).to.equal('unmatched');
    expect(templateOfPath('/wp-login.php')).to.equal('unmatched');
  });
});

describe('observability: log scrubbing and format', () => {
  it('scrubs tokens, credentials and signatures from free text', () => {
    const jwt = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ';
    const text = [
      `Authorization: Bearer ${jwt}`,
      'Basic YWxpY2U6aHVudGVyMg==',
      'GET /token?service=x&refresh_token=abcdef123456&scope=repository:a:pull',
      'https://s3/bucket/key?X-Amz-Credential=AKIA%2F2024&X-Amz-Signature=0123456789abcdef',
      'redis://user:s3cret@redis:6379/0',
      `raw ${jwt}`,
    ].join('\n');
    const out = scrubText(text);
    for (const secret of [jwt, 'YWxpY2U6aHVudGVyMg==', 'abcdef123456', '0123456789abcdef', 'AKIA', 's3cret']) {
      expect(out, secret).not.to.contain(secret);
    }
    expect(out).to.contain('service=x');
    expect(out).to.contain('scope=repository:a:pull');
    expect(out).to.contain('redis://[redacted]@redis:6379/0');
    expect(scrubText('fetching 1.12.1 from https://ghs_SECRETTOKEN@github.com/o/r.git')).to.equal('fetching 1.12.1 from https://[redacted]@github.com/o/r.git');
  });

  it('shows job records without credentials: secret-named build args hidden, URLs and text scrubbed', () => {
    const request = {
      context: { git: 'https://x-access-token:ghp_SECRET@github.com/o/r.git', ref: 'main' },
      buildArgs: { DEBIAN_MIRROR: 'http://mirror/debian', NPM_TOKEN: 'npm_SECRET', PIP_INDEX_URL: 'https://ghp_SECRET@pypi.example/simple', API_KEY: 'k', DB_PASSWORD: 'p' },
      children: [{ request: { buildArgs: { GITHUB_TOKEN: 'ghp_SECRET' } } }],
    };
    const shown = shownRecord(request);
    expect(JSON.stringify(shown)).to.not.match(/SECRET|"k"|"p"/);
    expect(shown).to.deep.equal({
      context: { git: 'https://[redacted]@github.com/o/r.git', ref: 'main' },
      buildArgs: { DEBIAN_MIRROR: 'http://mirror/debian', NPM_TOKEN: '[redacted]', PIP_INDEX_URL: 'https://[redacted]@pypi.example/simple', API_KEY: '[redacted]', DB_PASSWORD: '[redacted]' },
      children: [{ request: { buildArgs: { GITHUB_TOKEN: '[redacted]' } } }],
    });
  });

  it('leaves ordinary fields alone (no copy) and scrubs errors', () => {
    const entry = { method: 'GET', route: '/v2/*name/manifests/:reference', status: 200, user: 'alice' };
    expect(scrubLogObject(entry)).to.equal(entry);
    const scrubbed = scrubLogObject({ err: new Error('fetch https://x/y?token=topsecret failed') });
    expect(JSON.stringify(scrubbed)).not.to.contain('topsecret');
    expect((scrubbed.err as { message: string }).message).to.contain('token=[redacted]');
  });

  it('the logger redacts credential fields and scrubs messages', () => {
    const lines: string[] = [];
    const logger = pino(loggerOptions(loadConfig(undefined, {})), { write: (line: string) => void lines.push(line) });
    logger.info(
      { authorization: 'Basic YWxpY2U6aHVudGVyMg==', refresh_token: 'refresh-1', user: { password: 'hunter2' }, note: 'Bearer abcdefghijkl' },
      'login of https://alice:hunter2@example.com/?token=tok123456',
    );
    logger.warn({ err: new Error('upstream said Bearer abcdefghijkl is invalid') }, 'failed');
    const out = lines.join('');
    for (const secret of ['YWxpY2U6aHVudGVyMg==', 'refresh-1', 'hunter2', 'abcdefghijkl', 'tok123456']) expect(out, secret).not.to.contain(secret);
    expect(lines.map((line) => JSON.parse(line) as { msg: string }).map((line) => line.msg)).to.have.length(2);
  });

  it('the access line is the line pino would write, on the logger\'s destination and level', () => {
    const lines: string[] = [];
    const config = loadConfig(undefined, {});
    config.log.fields = { service: 'registry' };
    const logger = pino(loggerOptions(config), { write: (line: string) => void lines.push(line) });
    const entry = {
      requestId: 'r-1',
      method: 'GET',
      route: '/v2/*name/manifests/:reference',
      status: 200,
      repository: 'a/b',
      user: 'alice "the admin"',
      bytesIn: 120,
      bytesOut: 1234,
      durationMs: 0.25,
      remote: '127.0.0.1',
      userAgent: 'docker/20.10 Bearer abcdefghijklmnop',
    };
    const writeLine = accessLineWriter(logger.child({ component: 'http' }));
    writeLine(() => entry);
    expect(lines, 'queued until its batch is written').to.have.length(0);
    writeLine.flush();
    logger.child({ component: 'http' }).info(entry, 'request');
    const [fast, viaPino] = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(Object.keys(fast!)).to.deep.equal(Object.keys(viaPino!));
    expect({ ...fast, time: 0, userAgent: 0 }).to.deep.equal({ ...viaPino, time: 0, userAgent: 0 });
    expect(fast!.userAgent).to.equal('docker/20.10 Bearer [redacted]');
    logger.level = 'warn';
    const quiet = accessLineWriter(logger);
    quiet(() => entry);
    quiet.flush();
    expect(lines).to.have.length(2);
  });

  it('the access line names the peer of a request that ran before the client-address middleware, after its socket closed', async () => {
    const lines: string[] = [];
    const logger = pino(loggerOptions(loadConfig(undefined, {})), { write: (line: string) => void lines.push(line) });
    const app = new Koa();
    app.use(observeRequests([accessLog(logger)]));
    app.use((ctx) => {
      ctx.body = { status: 'ok' }; // as /healthz: answered before clientAddress sets ctx.state.clientAddress
    });
    const server = app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    try {
      const port = (server.address() as AddressInfo).port;
      await new Promise<void>((resolve, reject) => {
        http.get({ host: '127.0.0.1', port, path: '/healthz', agent: false }, (res) => res.resume().on('end', resolve)).on('error', reject);
      });
      await new Promise((resolve) => setTimeout(resolve, 100)); // past the batch: the socket is closed by then
    } finally {
      server.close();
    }
    const line = lines.map((text) => JSON.parse(text) as Record<string, unknown>).find((entry) => entry.msg === 'request');
    expect(line).to.include({ status: 200, remote: '127.0.0.1' });
  });

  it('text format: time, level, msg, then key=value', () => {
    const line = textLine(JSON.stringify({ level: 30, time: '2026-01-01T00:00:00.000Z', pid: 7, msg: 'request', route: '/v2/', user: 'a b' }));
    expect(line).to.equal('time=2026-01-01T00:00:00.000Z level=info msg=request pid=7 route=/v2/ user="a b"\n');
  });

  it('logstash format: @timestamp, @version, level by name, message, then the fields', () => {
    const line = logstashLine(JSON.stringify({ level: 40, time: '2026-01-01T00:00:00.000Z', pid: 7, msg: 'slow', route: '/v2/' }));
    expect(line.endsWith('\n')).to.equal(true);
    expect(JSON.parse(line)).to.deep.equal({ '@timestamp': '2026-01-01T00:00:00.000Z', '@version': '1', level: 'warning', message: 'slow', pid: 7, route: '/v2/' });
    expect(loadConfig(undefined, { REGISTRY_LOG_FORMATTER: 'logstash' }).log.formatter).to.equal('logstash');
  });
});

describe('observability: webhook endpoint', () => {
  let server: http.Server;
  let url: string;
  let received: Array<{ body: { events: RegistryEvent[] }; headers: http.IncomingHttpHeaders }> = [];
  let failFirst = 0;
  /** Events the receiver refuses with this status (a 4xx), by id. */
  let refuse: Record<string, number> = {};

  before(async () => {
    server = http.createServer((req, res) => {
      const parts: Buffer[] = [];
      req.on('data', (part: Buffer) => parts.push(part));
      req.on('end', () => {
        received.push({ body: JSON.parse(Buffer.concat(parts).toString('utf8')) as { events: RegistryEvent[] }, headers: req.headers });
        const refused = refuse[received.at(-1)!.body.events[0]!.id];
        if (refused) res.writeHead(refused).end();
        else if (failFirst > 0) {
          failFirst--;
          res.writeHead(500).end();
        } else res.writeHead(200).end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  beforeEach(() => {
    received = [];
    failFirst = 0;
    refuse = {};
  });

  const event = (n: number): RegistryEvent => ({
    id: `event-${n}`,
    timestamp: new Date().toISOString(),
    action: 'push',
    target: { repository: 'a/b', mediaType: 'application/octet-stream', digest: `sha256:${String(n).padStart(64, '0')}` },
    request: { id: 'r', addr: '127.0.0.1', host: 'h', method: 'PUT', useragent: 'test' },
    actor: {},
    source: { addr: 'h:5000', instanceID: 'i' },
  });

  const waitFor = async (check: () => boolean | Promise<boolean>, ms = 5_000) => {
    const deadline = Date.now() + ms;
    while (!(await check())) {
      if (Date.now() > deadline) throw new Error('timed out');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  };

  it('delivers in order with the envelope media type and configured headers', async () => {
    const endpoint = new NotificationEndpoint(
      { name: 'ordered', url, headers: { 'X-Hook': ['a', 'b'] }, timeoutMs: 1_000, threshold: 3, backoffMs: 10, queueSize: 10 },
      silent,
    );
    for (let i = 0; i < 3; i++) endpoint.enqueue(event(i));
    await waitFor(() => received.length === 3);
    expect(received.map((r) => r.body.events[0]!.id)).to.deep.equal(['event-0', 'event-1', 'event-2']);
    expect(received[0]!.headers['content-type']).to.equal('application/vnd.docker.distribution.events.v2+json');
    expect(received[0]!.headers['x-hook']).to.equal('a, b');
    await endpoint.close(100);
  });

  it('retries a failing receiver with backoff until it accepts, and counts the failures', async () => {
    const before = parseExposition(await metricsRegistry.metrics());
    failFirst = 3;
    const endpoint = new NotificationEndpoint({ name: 'flaky-unit', url, headers: {}, timeoutMs: 1_000, threshold: 2, backoffMs: 20, queueSize: 10 }, silent);
    endpoint.enqueue(event(7));
    endpoint.enqueue(event(8));
    await waitFor(() => received.length === 5);
    expect(received.map((r) => r.body.events[0]!.id)).to.deep.equal(['event-7', 'event-7', 'event-7', 'event-7', 'event-8']);
    let after = parseExposition(await metricsRegistry.metrics());
    const delta = (name: string, labels: Record<string, string>) => valueOf(after, name, labels) - valueOf(before, name, labels);
    // The receiver has the last event before the endpoint has read its answer and counted it.
    await waitFor(async () => {
      after = parseExposition(await metricsRegistry.metrics());
      return delta('registry_notifications_delivered_total', { endpoint: 'flaky-unit' }) === 2;
    });
    expect(delta('registry_notifications_failures_total', { endpoint: 'flaky-unit', reason: 'http_5xx' })).to.equal(3);
    expect(delta('registry_notifications_delivered_total', { endpoint: 'flaky-unit' })).to.equal(2);
    expect(valueOf(after, 'registry_notifications_pending', { endpoint: 'flaky-unit' })).to.equal(0);
    await endpoint.close(100);
  });

  it('drops an event the receiver refuses (4xx) instead of holding every later one behind it; 408 and 429 are retried', async () => {
    refuse = { 'event-1': 400 };
    failFirst = 0;
    const warnings: unknown[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => warnings.push(JSON.parse(line)) });
    const endpoint = new NotificationEndpoint({ name: 'refusing', url, headers: {}, timeoutMs: 1_000, threshold: 3, backoffMs: 10, queueSize: 10 }, logger);
    for (let i = 0; i < 3; i++) endpoint.enqueue(event(i));
    await waitFor(() => received.filter((r) => r.body.events[0]!.id === 'event-2').length === 1);
    expect(received.map((r) => r.body.events[0]!.id)).to.deep.equal(['event-0', 'event-1', 'event-2']);
    expect(JSON.stringify(warnings)).to.contain('refused an event');
    refuse = { 'event-3': 429 };
    endpoint.enqueue(event(3));
    await waitFor(() => received.length >= 5);
    refuse = {};
    await waitFor(() => endpoint.length === 0);
    expect(received.slice(3).map((r) => r.body.events[0]!.id).every((id) => id === 'event-3'), 'a 429 is retried').to.equal(true);
    await endpoint.close(100);
  });

  it('says in the log how many events a shutdown dropped', async () => {
    failFirst = 1_000;
    const warnings: Array<Record<string, unknown>> = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => warnings.push(JSON.parse(line) as Record<string, unknown>) });
    const endpoint = new NotificationEndpoint({ name: 'closing', url, headers: {}, timeoutMs: 1_000, threshold: 100, backoffMs: 10_000, queueSize: 10 }, logger);
    for (let i = 0; i < 4; i++) endpoint.enqueue(event(i));
    await endpoint.close(0);
    expect(warnings.find((w) => w.dropped === 4 && w.endpoint === 'closing')).to.not.equal(undefined);
  });

  it('keeps memory bounded: a full queue drops its oldest events', async () => {
    failFirst = 1_000;
    const endpoint = new NotificationEndpoint({ name: 'full', url, headers: {}, timeoutMs: 1_000, threshold: 1, backoffMs: 10_000, queueSize: 2 }, silent);
    for (let i = 0; i < 5; i++) endpoint.enqueue(event(i));
    expect(endpoint.length).to.equal(2);
    const families = parseExposition(await metricsRegistry.metrics());
    expect(valueOf(families, 'registry_notifications_dropped_total', { endpoint: 'full' })).to.equal(3);
    await endpoint.close(0);
  });

  it('counts timeouts of a receiver that never answers', async () => {
    const hanging = http.createServer(() => undefined);
    await new Promise<void>((resolve) => hanging.listen(0, '127.0.0.1', resolve));
    const port = (hanging.address() as AddressInfo).port;
    const endpoint = new NotificationEndpoint(
      { name: 'slow', url: `http://127.0.0.1:${port}/`, headers: {}, timeoutMs: 100, threshold: 1, backoffMs: 50, queueSize: 5 },
      silent,
    );
    endpoint.enqueue(event(1));
    await waitFor(() => false, 400).catch(() => undefined);
    const families = parseExposition(await metricsRegistry.metrics());
    expect(valueOf(families, 'registry_notifications_failures_total', { endpoint: 'slow', reason: 'timeout' })).to.be.greaterThan(0);
    await endpoint.close(0);
    hanging.closeAllConnections();
    await new Promise<void>((resolve) => hanging.close(() => resolve()));
  });
});

describe('observability: instrumentation', () => {
  let dir: string;
  before(async () => (dir = await mkdtemp(join(tmpdir(), 'obs-unit-'))));
  after(() => rm(dir, { recursive: true, force: true }));

  it('times storage operations and counts errors, not "not found"', async () => {
    const driver = instrumentDriver(new FilesystemDriver({ rootdirectory: dir }));
    const before = parseExposition(await metricsRegistry.metrics());
    await driver.putContent('/a/b', 'x');
    expect((await driver.getContent('/a/b')).toString()).to.equal('x');
    await driver.getContent('/missing').catch(() => undefined);
    await driver.getContent('/../escape').catch(() => undefined);
    const after = parseExposition(await metricsRegistry.metrics());
    const labels = { driver: 'filesystem', operation: 'get_content' };
    const count = checkHistogram(after, 'registry_storage_operation_duration_seconds', labels).count;
    expect(count - valueOf(before, 'registry_storage_operation_duration_seconds_count', labels)).to.equal(3);
    expect(valueOf(after, 'registry_storage_operation_errors_total', labels) - valueOf(before, 'registry_storage_operation_errors_total', labels)).to.equal(1);
  });

  it('measures job runs by outcome and logs with the job id', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
    const driver = new FilesystemDriver({ rootdirectory: join(dir, 'jobs') });
    const queue = instrumentJobQueue(new LocalJobQueue(driver, { pollIntervalMs: 20, standbyIntervalMs: 20, backoffMs: 10, attempts: 2, flushIntervalMs: 10 }), logger);
    let calls = 0;
    queue.register('gc', async (ctx) => {
      ctx.log('sweeping');
      if (++calls === 1) throw new RetryableJobError('try again');
      return { ok: true };
    });
    await queue.start();
    const before = parseExposition(await metricsRegistry.metrics());
    const job = await queue.submit('gc', {});
    const deadline = Date.now() + 10_000;
    while ((await queue.get(job.id))?.state !== 'succeeded') {
      if (Date.now() > deadline) throw new Error('job did not finish');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const after = parseExposition(await metricsRegistry.metrics());
    const delta = (outcome: string) =>
      valueOf(after, 'registry_job_runs_total', { kind: 'gc', queue: 'jobs-gc', outcome }) -
      valueOf(before, 'registry_job_runs_total', { kind: 'gc', queue: 'jobs-gc', outcome });
    expect(delta('retried')).to.equal(1);
    expect(delta('succeeded')).to.equal(1);
    checkHistogram(after, 'registry_job_duration_seconds', { kind: 'gc', outcome: 'succeeded' });
    expect(valueOf(after, 'registry_job_queue_depth', { queue: 'jobs-gc' })).to.equal(0);
    const ofJob = lines.filter((line) => line.jobId === job.id);
    expect(ofJob.map((line) => line.msg)).to.include.members(['job started', 'sweeping', 'job ended']);
    expect(ofJob.every((line) => line.jobKind === 'gc')).to.equal(true);
    await queue.close();
  });

  it('the whole registry parses as the exposition format, with process metrics', async () => {
    collectProcessMetrics();
    const families = parseExposition(await metricsRegistry.metrics());
    for (const name of ['process_cpu_user_seconds_total', 'nodejs_heap_size_total_bytes', 'registry_http_requests_total', 'registry_cache_hits_total', 'registry_gc_runs_total']) {
      expect(families.has(name), name).to.equal(true);
    }
    for (const family of families.values()) {
      expect(family.name, 'Prometheus naming').to.match(/^[a-z_:][a-z0-9_:]*$/);
      if (family.type === 'counter') expect(family.name).to.match(/_total$/);
    }
  });
});

describe('observability: the Grafana dashboard', () => {
  it('queries only metrics the registry exposes, with valid panel layout', async () => {
    const stop = watchRedis({ isReady: () => true } as never);
    collectProcessMetrics();
    const families = parseExposition(await metricsRegistry.metrics());
    stop();
    const dashboard = JSON.parse(await readFile(new URL('../../charts/dify-registry/dashboards/registry.json', import.meta.url), 'utf8')) as {
      uid: string;
      panels: Array<{ type: string; title: string; gridPos: { x: number; w: number }; targets?: Array<{ expr: string }> }>;
    };
    expect(dashboard.uid).to.equal('dify-registry');
    const used = new Set<string>();
    for (const panel of dashboard.panels) {
      expect(panel.gridPos.x + panel.gridPos.w, panel.title).to.be.at.most(24);
      for (const target of panel.targets ?? []) {
        for (const name of target.expr.match(/\b(?:registry|process|nodejs)_[a-z0-9_]+/g) ?? []) used.add(name);
      }
    }
    expect(used.size).to.be.greaterThan(20);
    for (const name of used) {
      const family = name.replace(/_(bucket|count|sum)$/, '');
      expect(families.has(family) || families.has(name), name).to.equal(true);
    }
  });
});
