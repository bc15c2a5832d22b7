// The registry on S3 with a fault-injecting proxy between it and the Ceph RGW: throttling, 5xx and dropped
// connections are retried; what still fails is a clear 503, and nothing half-written becomes visible.
import { HeadObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { get as httpGet } from 'node:http';
import { readFile } from 'node:fs/promises';
import { expect } from 'chai';
import { waitUntil } from '../helpers/process.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';
import { s3StorageConfig, sharedS3 } from '../helpers/shared-s3.js';
import { s3ClientConfig } from '../helpers/s3.js';
import { content, expectOciError, expectStatus, imageConfig, OciClient, randomBlob, sha256, uniqueNamespace } from '../helpers/oci.js';
import { testBackends } from '../helpers/targets.js';

const MiB = 1024 * 1024;

/** A GET read to its end, or until `leaveAfter` bytes (then the client closes): how it ended. */
function rawGet(url: string, leaveAfter?: number): Promise<{ status: number; requestId: string; received: number; ended: 'complete' | 'connection cut' | 'client left' }> {
  return new Promise((resolve, reject) => {
    const req = httpGet(url, (res) => {
      let received = 0;
      const result = (ended: 'complete' | 'connection cut' | 'client left') =>
        resolve({ status: res.statusCode ?? 0, requestId: String(res.headers['x-request-id']), received, ended });
      res.on('data', (chunk: Buffer) => {
        received += chunk.length;
        if (leaveAfter !== undefined && received >= leaveAfter && !req.destroyed) {
          req.destroy();
          result('client left');
        }
      });
      res.on('end', () => result('complete'));
      res.on('error', () => result('connection cut'));
      res.on('aborted', () => result('connection cut'));
    });
    req.on('error', (error) => (req.destroyed ? undefined : reject(error)));
  });
}

if (testBackends().includes('s3')) {
  describe('S3 faults: a proxy between the registry and the gateway', function () {
    this.timeout(120_000);
    let proxy: FaultProxy;
    let registry: RunningRegistry;
    let oci: OciClient;
    let storage: { s3: Record<string, unknown> } & Record<string, unknown>;
    const ns = uniqueNamespace('faults');

    before(async () => {
      const s3 = await sharedS3();
      proxy = await startFaultProxy(s3.endpoint);
      // Streaming through the registry (no redirect), so every pull byte passes the proxy too.
      storage = { s3: await s3StorageConfig({ regionendpoint: proxy.endpoint }), redirect: { disable: true } };
      registry = await startRegistry({ config: { storage, health: { storagedriver: { interval: '200ms', threshold: 1 } } } });
      oci = new OciClient(registry.url);
    });
    afterEach(() => proxy.reset());

    /** Whether the blob's data object is in the bucket, asked of the gateway itself. */
    const blobDataStored = async (digest: string): Promise<boolean> => {
      const client = new S3Client(s3ClientConfig(await sharedS3()));
      const hex = digest.slice('sha256:'.length);
      const { bucket } = storage.s3 as { bucket: string };
      try {
        await client.send(new HeadObjectCommand({ Bucket: bucket, Key: `registry/docker/registry/v2/blobs/sha256/${hex.slice(0, 2)}/${hex}/data` }));
        return true;
      } catch {
        return false;
      } finally {
        client.destroy();
      }
    };
    after(async () => {
      await registry?.stop();
      await proxy?.stop();
    });

    it('retries 503 SlowDown and 500s on part uploads: the streamed push succeeds with the right bytes', async () => {
      const blob = randomBlob(12 * MiB + 3);
      proxy.failNext(2, { status: 503, code: 'SlowDown', match: { method: 'PUT', query: 'partNumber' } });
      proxy.failNext(1, { status: 500, code: 'InternalError', match: { method: 'POST', query: 'uploadId' } });
      await oci.pushBlobStreamed(`${ns}/retry`, blob);
      expect(proxy.requests.filter((r) => r.fault === 'fail')).to.have.length(3);
      const pulled = await oci.getBlob(`${ns}/retry`, sha256(blob));
      expectStatus(pulled, 200);
      expect(sha256(pulled.body)).to.equal(sha256(blob));
    });

    it('survives a lost answer to CompleteMultipartUpload (the upload did complete)', async () => {
      const blob = randomBlob(11 * MiB);
      proxy.dropNext(1, { at: 'response', match: { method: 'POST', query: 'uploadId' } });
      await oci.pushBlobStreamed(`${ns}/lost-answer`, blob);
      expect(proxy.requests.some((r) => r.fault === 'drop')).to.equal(true);
      const pulled = await oci.getBlob(`${ns}/lost-answer`, sha256(blob));
      expect(sha256(pulled.body)).to.equal(sha256(blob));
    });

    it('survives a lost answer to the create-only write of an upload claim (the retry finds its own claim)', async () => {
      const blob = randomBlob(64 * 1024);
      const { location } = await oci.openSession(`${ns}/lost-claim`);
      // The first chunk's claim (claim-0) is stored, its answer lost; the SDK sends it again and gets 412.
      proxy.dropNext(1, { at: 'response', match: { method: 'PUT', path: /\/claim-0$/ } });
      const patched = await oci.patchChunk(location, blob, { start: 0 });
      expectStatus(patched, 202);
      expect(proxy.requests.some((r) => r.fault === 'drop')).to.equal(true);
      expectStatus(await oci.closeUpload(patched.headers.get('location') ?? location, sha256(blob)), 201);
    });

    it('answers 503 UNAVAILABLE when the store keeps failing, and leaves no blob, manifest or tag behind', async () => {
      const repo = `${ns}/down`;
      const blob = randomBlob(64 * 1024);
      proxy.failNext(1000, { status: 503, code: 'SlowDown' });
      const started = Date.now();
      const reply = await oci.startUpload(repo, { query: { digest: sha256(blob) }, body: blob });
      expectOciError(reply, 503, 'UNAVAILABLE');
      expect(reply.headers.get('retry-after')).to.be.a('string');
      expect(Date.now() - started, 'retries are bounded').to.be.below(30_000);

      // A manifest push while the store is down fails the same way.
      const config = imageConfig();
      const manifestReply = await oci.putManifest(repo, 'v1', content(JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: config.mediaType, digest: config.digest, size: config.size },
        layers: [],
      })));
      expectOciError(manifestReply, 503, 'UNAVAILABLE');

      proxy.reset();
      expectStatus(await oci.headBlob(repo, sha256(blob)), 404);
      expectOciError(await oci.get(`/v2/${repo}/manifests/v1`), 404, ['MANIFEST_UNKNOWN', 'NAME_UNKNOWN']);
      // And the registry works again at once.
      await oci.pushBlob(repo, blob);
      expectStatus(await oci.headBlob(repo, sha256(blob)), 200);
    });

    it('a monolithic push streamed in one PutObject: a failed or cut PUT and a wrong digest store nothing', async () => {
      const repo = `${ns}/streamed-put`;
      const blob = randomBlob(9 * MiB + 1); // larger than a part: one streamed PutObject to the blob's own key
      const blobPut = { method: 'PUT', path: /\/blobs\/sha256\//, query: /^(?!.*uploadId)/ } as const;
      proxy.failNext(1, { status: 503, code: 'SlowDown', match: blobPut });
      expectOciError(await oci.startUpload(repo, { query: { digest: sha256(blob) }, body: blob }), 503, 'UNAVAILABLE');
      proxy.dropNext(1, { at: 'request', afterBytes: 4 * MiB, match: blobPut });
      expectOciError(await oci.startUpload(repo, { query: { digest: sha256(blob) }, body: blob }), 503, 'UNAVAILABLE');
      const wrong = Buffer.from(blob);
      wrong[wrong.length - 1]! ^= 1;
      expectOciError(await oci.startUpload(repo, { query: { digest: sha256(blob) }, body: wrong }), 400, 'DIGEST_INVALID');
      expect(proxy.requests.filter((r) => r.fault !== undefined)).to.have.length(2);
      proxy.reset();
      expectStatus(await oci.headBlob(repo, sha256(blob)), 404);
      expect(await blobDataStored(sha256(blob))).to.equal(false);
      // The client pushes again, and the blob arrives whole.
      expectStatus(await oci.startUpload(repo, { query: { digest: sha256(blob) }, body: blob }), 201);
      const pulled = await oci.getBlob(repo, sha256(blob));
      expect(sha256(pulled.body)).to.equal(sha256(blob));
    });

    it('a chunk whose part upload keeps failing is refused; the session resumes from the last good chunk', async () => {
      const repo = `${ns}/resume`;
      const data = randomBlob(15 * MiB);
      const chunk = 6 * MiB;
      const { location } = await oci.openSession(repo);
      const first = await oci.patchChunk(location, data.subarray(0, chunk), { start: 0 });
      expectStatus(first, 202);
      proxy.failNext(100, { status: 500, code: 'InternalError', match: { method: 'PUT' } });
      const failed = await oci.patchChunk(first.headers.get('location') ?? location, data.subarray(chunk, 2 * chunk), { start: chunk });
      expectOciError(failed, 503, 'UNAVAILABLE');
      proxy.reset();
      const status = await oci.get(first.headers.get('location') ?? location);
      expectStatus(status, 204);
      expect(status.headers.get('range')).to.equal(`0-${chunk - 1}`);
      const second = await oci.patchChunk(location, data.subarray(chunk, 2 * chunk), { start: chunk });
      expectStatus(second, 202);
      const third = await oci.patchChunk(location, data.subarray(2 * chunk), { start: 2 * chunk });
      expectStatus(third, 202);
      expectStatus(await oci.closeUpload(location, sha256(data)), 201);
      const pulled = await oci.getBlob(repo, sha256(data));
      expect(sha256(pulled.body)).to.equal(sha256(data));
    });

    it('pulls through transient read errors return verified content', async () => {
      const repo = `${ns}/pull`;
      const pushed = await oci.pushImage(repo, 'v1', { layers: 1 });
      const layer = pushed.layers[0]!;
      proxy.failNext(2, { status: 503, code: 'SlowDown', match: { method: 'GET' } });
      const manifest = await oci.get(`/v2/${repo}/manifests/v1`);
      expectStatus(manifest, 200);
      expect(sha256(manifest.body)).to.equal(pushed.manifest.digest);
      proxy.failNext(2, { status: 500, code: 'InternalError', match: { method: 'GET' } });
      const blob = await oci.getBlob(repo, layer.digest);
      expectStatus(blob, 200);
      expect(sha256(blob.body)).to.equal(layer.digest);
    });

    it('a pull the store cuts off mid-body ends the connection early and is logged as failed; a client that leaves is not', async () => {
      const repo = `${ns}/cut`;
      const data = randomBlob(4 * MiB);
      const digest = sha256(data);
      await oci.pushBlob(repo, data);
      proxy.dropNext(1, { at: 'response-body', afterBytes: 1 * MiB, match: { method: 'GET' } });
      const cut = await rawGet(`${registry.url}/v2/${repo}/blobs/${digest}`);
      expect(cut.status).to.equal(200);
      expect(cut.received, 'fewer bytes than announced').to.be.below(data.length);
      expect(cut.ended).to.equal('connection cut');

      const left = await rawGet(`${registry.url}/v2/${repo}/blobs/${digest}`, 64 * 1024);
      expect(left.ended).to.equal('client left');
      const entry = async (requestId: string) => {
        const lines = (await readFile(registry.daemon.logFile, 'utf8')).split('\n').filter((line) => line.includes(`"requestId":"${requestId}"`));
        return lines.map((line) => JSON.parse(line) as { msg: string; status: number; err?: { message: string } });
      };
      await waitUntil('both requests in the log', async () => (await entry(cut.requestId)).length > 0 && (await entry(left.requestId)).length > 0, { timeoutMs: 10_000 });
      const [failed] = await entry(cut.requestId);
      expect(failed).to.deep.include({ msg: 'request failed', status: 200 });
      expect(failed!.err?.message).to.be.a('string');
      const [gone] = await entry(left.requestId);
      expect(gone).to.deep.include({ msg: 'request', status: 200 });
      // Whole again once the store answers.
      expect(sha256((await oci.getBlob(repo, digest)).body)).to.equal(digest);
    });

    it('reports not ready while the bucket does not answer, and ready again after', async () => {
      expect((await fetch(`${registry.url}/readyz`)).status).to.equal(200);
      proxy.failNext(100_000, { status: 503, code: 'SlowDown', match: { method: 'HEAD' } });
      await waitForStatus(`${registry.url}/readyz`, 503);
      const report = (await (await fetch(`${registry.url}/readyz`)).json()) as { checks: { storage: { ok: boolean; error?: string } } };
      expect(report.checks.storage.ok).to.equal(false);
      expect(report.checks.storage.error).to.match(/s3/i);
      proxy.reset();
      await waitForStatus(`${registry.url}/readyz`, 200);
    });
  });

  describe('S3 misconfiguration', function () {
    this.timeout(60_000);

    it('refuses to start with a wrong secret key, naming the S3 error, without hanging', async () => {
      const storage = { s3: await s3StorageConfig({ secretkey: 'not-the-secret' }) };
      const error = await startRegistry({ config: { storage } }).then(
        async (registry) => {
          await registry.stop();
          return undefined;
        },
        (e: Error) => e,
      );
      expect(error, 'the registry started').to.be.instanceOf(Error);
      expect(error!.message).to.match(/SignatureDoesNotMatch|InvalidAccessKeyId|AccessDenied|HTTP 403/);
    });

    it('refuses to start when the bucket does not exist, naming it', async () => {
      const config = await s3StorageConfig();
      const storage = { s3: { ...config, bucket: 'no-such-bucket-here' } };
      const error = await startRegistry({ config: { storage } }).then(
        async (registry) => {
          await registry.stop();
          return undefined;
        },
        (e: Error) => e,
      );
      expect(error, 'the registry started').to.be.instanceOf(Error);
      expect(error!.message).to.match(/no-such-bucket-here/);
      expect(error!.message).to.match(/NoSuchBucket|NotFound|HTTP 404/);
    });

    it('signs presigned blob URLs for the redirect middleware baseurl host', async () => {
      const storage = { s3: await s3StorageConfig() };
      const registry = await startRegistry({
        config: { storage, middleware: { storage: [{ name: 'redirect', options: { baseurl: 'https://blobs.example.test' } }] } },
      });
      try {
        const oci = new OciClient(registry.url);
        const blob = randomBlob(1000);
        await oci.pushBlob('baseurl/test', blob);
        const reply = await oci.get(`/v2/baseurl/test/blobs/${sha256(blob)}`, { redirect: 'manual' });
        expectStatus(reply, 307);
        const location = new URL(reply.headers.get('location')!);
        expect(location.origin).to.equal('https://blobs.example.test');
        expect(location.searchParams.get('X-Amz-Signature')).to.be.a('string');
        expect(location.pathname).to.contain('/registry/docker/registry/v2/blobs/sha256/');
      } finally {
        await registry.stop();
      }
    });
  });
}

async function waitForStatus(url: string, status: number): Promise<void> {
  const deadline = Date.now() + 20_000;
  let last = 0;
  while (Date.now() < deadline) {
    last = (await fetch(url)).status;
    if (last === status) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} stayed ${last}, expected ${status}`);
}
