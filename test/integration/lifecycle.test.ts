// The registry as an operator runs it: configuration errors, TLS, readiness, request ids and logs,
// the /admin guard, several worker processes sharing uploads, and draining on SIGTERM.
import { expect } from 'chai';
import { readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml, stringify } from 'yaml';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';
import { run, tempDir } from '../helpers/process.js';
import { randomBlob, sha256 } from '../helpers/oci.js';

const MAIN = fileURLToPath(new URL('../../server/main.ts', import.meta.url));

/**
 * Runs `serve` with a config that should be refused; returns exit code and stderr. `args` places the
 * file on the command line (`--config FILE` by default).
 */
async function refusedStart(config: unknown, env: NodeJS.ProcessEnv = {}, args = (file: string) => ['--config', file]): Promise<{ code: number; stderr: string }> {
  const dir = await tempDir('config');
  const file = join(dir, 'config.yml');
  await writeFile(file, typeof config === 'string' ? config : stringify(config));
  const result = await run(process.execPath, ['--import=tsx', MAIN, 'serve', ...args(file)], {
    env: { ...process.env, ...env },
    allowFailure: true,
  });
  return { code: result.code, stderr: result.stderr };
}

/** An HTTP request on its own connection (no keep-alive), so node:cluster may hand it to any worker. */
function request(url: string, method: string, body?: Buffer, headers: Record<string, string> = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, agent: false, headers: { ...headers, ...(body ? { 'Content-Length': String(body.length) } : {}) } }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(parts).toString() }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('lifecycle', function () {
  this.timeout(60_000);

  describe('configuration', () => {
    it('refuses an unknown key and names it', async () => {
      const { code, stderr } = await refusedStart({ storage: { filesystem: { rootdirectory: '/tmp/x', bogus: 1 } } });
      expect(code).to.equal(2);
      expect(stderr).to.contain('storage.filesystem.bogus: unknown key');
    });

    it('refuses a bad value and names the key', async () => {
      const { code, stderr } = await refusedStart({ http: { workers: -3, draintimeout: 'soon' } });
      expect(code).to.equal(2);
      expect(stderr).to.contain('http.workers');
      expect(stderr).to.contain('http.draintimeout');
    });

    it("reads the file named as Distribution's `registry serve FILE`, and refuses two files", async () => {
      const bad = { storage: { filesystem: { rootdirectory: '/tmp/x', bogus: 1 } } };
      const positional = await refusedStart(bad, {}, (file) => [file]);
      expect(positional.code).to.equal(2);
      expect(positional.stderr, 'the file was read').to.contain('storage.filesystem.bogus: unknown key');
      const both = await refusedStart({}, {}, (file) => [file, '--config', file]);
      expect(both.code).to.equal(2);
      expect(both.stderr).to.contain('one configuration file');
    });

    it('applies REGISTRY_* environment overrides, typed, and names them in errors', async () => {
      const { code, stderr } = await refusedStart({}, { REGISTRY_HTTP_WORKERS: '-1' });
      expect(code).to.equal(2);
      expect(stderr).to.contain('http.workers');
    });

    it('starts despite REGISTRY_* variables that are not config keys (Kubernetes service links), warning about them', async () => {
      const registry = await startRegistry({
        env: { REGISTRY_PORT: 'tcp://10.0.0.1:5000', REGISTRY_SERVICE_HOST: '10.0.0.1', REGISTRY_LOG_FIELDS_DEPLOYMENT: 'canary' },
      });
      try {
        expect((await fetch(`${registry.url}/v2/`)).status).to.equal(200);
        const log = await readFile(registry.daemon.logFile, 'utf8');
        expect(log).to.contain('ignoring environment variable REGISTRY_PORT');
        expect(log).to.contain('ignoring environment variable REGISTRY_SERVICE_HOST');
        expect(log).to.contain('"deployment":"canary"'); // the override that is a key took effect
      } finally {
        await registry.stop();
      }
    });

    it('starts on the configuration Debian ships for Distribution (without its auth section)', async () => {
      const root = await tempDir('debian-config');
      const debian = (await readFile('/etc/docker/registry/config.yml', 'utf8').catch(() => ''))
        .replace(/^auth:\n(?:[ \t]+.*\n)+/m, '');
      if (!debian) throw new Error('/etc/docker/registry/config.yml is missing: is docker-registry installed?');
      const registry = await startRegistry({
        config: withoutListenAddress(parseYaml(debian) as { http?: Record<string, unknown> }),
        rootDir: root,
      });
      try {
        const res = await fetch(`${registry.url}/v2/`);
        expect(res.status).to.equal(200);
        expect(res.headers.get('x-content-type-options')).to.equal('nosniff');
      } finally {
        await registry.stop();
      }
    });
  });

  describe('TLS', () => {
    it('serves HTTPS with http.tls.certificate and http.tls.key', async () => {
      const dir = await tempDir('tls');
      const cert = join(dir, 'cert.pem');
      const key = join(dir, 'key.pem');
      await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
        '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert]);
      const registry = await startRegistry({ tls: { certificate: cert, key } });
      try {
        expect(registry.url).to.match(/^https:/);
        const ca = await readFile(cert);
        const status = await new Promise<number>((resolve, reject) =>
          https.get(`${registry.url}/v2/`, { ca }, (res) => { res.resume(); resolve(res.statusCode!); }).on('error', reject));
        expect(status).to.equal(200);
      } finally {
        await registry.stop();
      }
    });
  });

  it('with the access log off: still request ids, and failures are still logged (no line per request)', async () => {
    const registry = await startRegistry({ config: { log: { accesslog: { disabled: true } } } });
    try {
      const ok = await fetch(`${registry.url}/v2/`);
      expect(ok.headers.get('x-request-id')).to.match(/^[0-9a-f-]{36}$/);
      // A file where the driver needs a directory: every write fails, a server error.
      const tmp = join(registry.root, '_tmp');
      await rm(tmp, { recursive: true, force: true });
      await writeFile(tmp, 'in the way');
      const failed = await request(`${registry.url}/v2/errlog/blobs/uploads/?digest=${sha256(Buffer.from('x'))}`, 'POST', Buffer.from('x'));
      expect(failed.status).to.be.at.least(500);
      const id = failed.headers['x-request-id'];
      await new Promise((r) => setTimeout(r, 200));
      const entries = (await readFile(registry.daemon.logFile, 'utf8')).split('\n').filter(Boolean).map((line) => JSON.parse(line) as Record<string, unknown>);
      expect(entries.find((e) => e.msg === 'request failed' && e.requestId === id), 'the failure, with its request id').to.not.equal(undefined);
      expect(entries.filter((e) => e.msg === 'request'), 'no access lines').to.deep.equal([]);
    } finally {
      await registry.stop();
    }
  });

  describe('one registry', () => {
    let registry: RunningRegistry;
    before(async () => {
      registry = await startRegistry({
        config: { health: { storagedriver: { interval: '100ms', threshold: 1 } } },
        listenAll: true,
      });
    });
    after(async () => registry?.stop());

    it('returns the X-Request-Id it was given, or a new one, and logs one JSON line per request without credentials', async () => {
      const given = await fetch(`${registry.url}/v2/`, { headers: { 'X-Request-Id': 'trace-abc.123', Authorization: 'Basic c2VjcmV0LXVzZXI6aHVudGVyMg==' } });
      expect(given.headers.get('x-request-id')).to.equal('trace-abc.123');
      const generated = await fetch(`${registry.url}/v2/nothing/here/manifests/latest`);
      expect(generated.headers.get('x-request-id')).to.match(/^[0-9a-f-]{36}$/);
      await new Promise((r) => setTimeout(r, 200));
      const lines = (await readFile(registry.daemon.logFile, 'utf8')).split('\n').filter(Boolean);
      const entries = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
      const first = entries.find((e) => e.requestId === 'trace-abc.123');
      expect(first).to.include({ method: 'GET', route: '/v2/', status: 200 });
      expect(first).to.have.property('durationMs').that.is.a('number');
      const second = entries.find((e) => e.requestId === generated.headers.get('x-request-id'));
      expect(second).to.include({ status: 404, repository: 'nothing/here', route: '/v2/*name/manifests/:reference', error: 'MANIFEST_UNKNOWN' });
      const log = lines.join('\n');
      expect(log).not.to.contain('c2VjcmV0LXVzZXI6aHVudGVyMg');
      expect(log).not.to.contain('hunter2');
    });

    it('reports not ready while the storage is unusable, and ready again after', async () => {
      expect((await fetch(`${registry.url}/readyz`)).status).to.equal(200);
      // A file where the driver needs a directory makes every write fail, even for root.
      const tmp = join(registry.root, '_tmp');
      await rm(tmp, { recursive: true, force: true });
      await writeFile(tmp, 'in the way');
      try {
        await waitForStatus(`${registry.url}/readyz`, 503);
        const report = (await (await fetch(`${registry.url}/readyz`)).json()) as { ready: boolean; checks: { storage: { ok: boolean; error?: string } } };
        expect(report.ready).to.equal(false);
        expect(report.checks.storage.ok).to.equal(false);
        expect(report.checks.storage.error).to.be.a('string');
      } finally {
        await rm(tmp, { force: true });
        await mkdir(tmp, { recursive: true });
      }
      await waitForStatus(`${registry.url}/readyz`, 200);
      expect((await fetch(`${registry.url}/healthz`)).status).to.equal(200);
    });

    it('answers /admin only to loopback clients', async function () {
      // Loopback: the admin API answers (without auth, it is this machine's operators only).
      expect((await fetch(`${registry.url}/admin/v1/jobs`)).status).to.equal(200);
      // Through a proxy on this machine (nginx, a mesh sidecar) the peer is loopback, the client is not.
      const proxyHeaders: Array<Record<string, string>> = [
        { 'X-Forwarded-For': '203.0.113.5' }, { Forwarded: 'for=203.0.113.5' }, { 'X-Real-IP': '203.0.113.5' }, { 'X-Envoy-Attempt-Count': '1' },
      ];
      for (const header of proxyHeaders) {
        const proxied = await request(`${registry.url}/admin/v1/jobs`, 'GET', undefined, header);
        expect(proxied.status, JSON.stringify(header)).to.equal(403);
        expect(JSON.parse(proxied.body).errors[0].code).to.equal('DENIED');
      }
      const external = Object.values(networkInterfaces()).flat().find((a) => a && a.family === 'IPv4' && !a.internal);
      if (!external) return this.skip(); // no non-loopback address on this machine to call from
      const port = registry.hostPort.split(':')[1];
      const res = await request(`http://${external.address}:${port}/admin/v1/jobs`, 'GET');
      expect(res.status).to.equal(403);
      expect(JSON.parse(res.body).errors[0].code).to.equal('DENIED');
      // The registry itself stays open to everyone.
      expect((await request(`http://${external.address}:${port}/v2/`, 'GET')).status).to.equal(200);
    });
  });

  it('refuses deletes with 405 UNSUPPORTED when storage.delete.enabled is false', async () => {
    const registry = await startRegistry({ config: { storage: { delete: { enabled: false } } } });
    try {
      const blob = randomBlob(100);
      const digest = sha256(blob);
      expect((await request(`${registry.url}/v2/nodelete/blobs/uploads/?digest=${digest}`, 'POST', blob)).status).to.equal(201);
      const res = await request(`${registry.url}/v2/nodelete/blobs/${digest}`, 'DELETE');
      expect(res.status).to.equal(405);
      expect(JSON.parse(res.body).errors[0].code).to.equal('UNSUPPORTED');
      expect(res.headers.allow, 'RFC 9110: a 405 names the methods there are').to.equal('GET, HEAD');
      expect((await request(`${registry.url}/v2/nodelete/blobs/${digest}`, 'HEAD')).status).to.equal(200);
    } finally {
      await registry.stop();
    }
  });

  describe('two worker processes', () => {
    let registry: RunningRegistry;
    before(async () => {
      registry = await startRegistry({ workers: 2 });
    });
    after(async () => registry?.stop());

    it('continues one upload across processes, chunk by chunk, and verifies the digest at the end', async () => {
      const blob = randomBlob(3 * 1024 * 1024 + 17);
      const digest = sha256(blob);
      const started = await request(`${registry.url}/v2/cluster/test/blobs/uploads/`, 'POST');
      expect(started.status).to.equal(202);
      let location = started.headers.location!;
      const chunk = 256 * 1024;
      for (let offset = 0; offset < blob.length; offset += chunk) {
        const part = blob.subarray(offset, Math.min(blob.length, offset + chunk));
        const res = await request(`${registry.url}${location}`, 'PATCH', part, {
          'Content-Range': `${offset}-${offset + part.length - 1}`,
          'Content-Type': 'application/octet-stream',
        });
        expect(res.status, res.body).to.equal(202);
        expect(res.headers.range).to.equal(`0-${offset + part.length - 1}`);
        location = res.headers.location!;
      }
      const done = await request(`${registry.url}${location}${location.includes('?') ? '&' : '?'}digest=${digest}`, 'PUT');
      expect(done.status, done.body).to.equal(201);
      const pulled = await fetch(`${registry.url}/v2/cluster/test/blobs/${digest}`);
      expect(sha256(Buffer.from(await pulled.arrayBuffer()))).to.equal(digest);

      // The chunks really were served by both workers.
      await new Promise((r) => setTimeout(r, 200));
      const pids = new Set(
        (await readFile(registry.daemon.logFile, 'utf8')).split('\n').filter(Boolean)
          .map((line) => JSON.parse(line) as { method?: string; route?: string; pid?: number })
          .filter((e) => e.method === 'PATCH' && e.route === '/v2/*name/blobs/uploads/:id')
          .map((e) => e.pid),
      );
      expect(pids.size).to.equal(2);
    });
  });

  it('drains on SIGTERM: an upload in flight completes, then the process exits 0', async () => {
    const registry = await startRegistry({ workers: 2 });
    const blob = randomBlob(2 * 1024 * 1024);
    const digest = sha256(blob);
    const status = new Promise<number>((resolve, reject) => {
      const req = http.request(`${registry.url}/v2/drain/test/blobs/uploads/?digest=${digest}`, {
        method: 'POST',
        agent: false,
        headers: { 'Content-Length': String(blob.length) },
      }, (res) => { res.resume(); resolve(res.statusCode!); });
      req.on('error', reject);
      req.write(blob.subarray(0, 1024 * 1024));
      // The signal arrives while half the body is still to come.
      setTimeout(() => {
        registry.kill('SIGTERM');
        setTimeout(() => req.end(blob.subarray(1024 * 1024)), 500);
      }, 300);
    });
    expect(await status).to.equal(201);
    expect(await registry.daemon.exited).to.equal(0);
    // The blob was committed before the exit: a new process on the same storage serves it.
    const again = await startRegistry({ rootDir: registry.root });
    try {
      const res = await fetch(`${again.url}/v2/drain/test/blobs/${digest}`, { method: 'HEAD' });
      expect(res.status).to.equal(200);
    } finally {
      await again.stop();
    }
  });
});

async function waitForStatus(url: string, status: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  let last = 0;
  while (Date.now() < deadline) {
    last = (await fetch(url)).status;
    if (last === status) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${url} stayed ${last}, expected ${status}`);
}

/** The Debian file listens on :5000; the helper picks a free port instead. */
function withoutListenAddress(config: { http?: Record<string, unknown> }): Record<string, unknown> {
  const { addr: _addr, ...http } = config.http ?? {};
  return { ...config, http };
}
