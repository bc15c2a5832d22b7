// Online garbage collection against a real registry process, on every test backend (TEST_BACKENDS):
// docker pushes sharing layers, untag and delete, GC through the admin API, then exactly the unreachable
// blobs are gone (the storage is listed) and every remaining image pulls with docker; GC in a loop while a
// client pushes and pulls; SIGKILL during a sweep of a large store, then a new run; retention and immutable
// tags through the admin API and docker push.
import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'chai';
import type { StorageDriver } from '../../storage-drivers/driver.js';
import { FilesystemDriver } from '../../storage-drivers/filesystem.js';
import { startBuildah, type ContainerClient } from '../helpers/clients.js';
import { startDockerd, type RunningDockerd } from '../helpers/dockerd.js';
import { buildBusyboxImage } from '../helpers/images.js';
import {
  describeReply,
  descriptorOf,
  expectOciError,
  expectStatus,
  gzipLayer,
  imageConfig,
  imageManifest,
  OciClient,
  sha256,
  sleep,
  type Content,
} from '../helpers/oci.js';
import { tempDir } from '../helpers/process.js';
import { removeTree } from '../helpers/cleanup.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';
import { testBackends } from '../helpers/targets.js';

const ROOT = '/docker/registry/v2';

interface Job {
  id: string;
  kind: string;
  state: string;
  result: GcReport | null;
  error: { code: string; message: string } | null;
}

interface GcReport {
  dryRun: boolean;
  kinds: Record<string, { kept: number; deleted: number; freedBytes: number }>;
  freedBytes: number;
}

interface Manifest {
  config?: { digest: string };
  layers?: Array<{ digest: string }>;
  manifests?: Array<{ digest: string }>;
}

/** The registry under test, restartable on the same storage, with a driver to look at that storage. */
interface Target {
  registry: RunningRegistry;
  url: string;
  hostPort: string;
  storage: StorageDriver;
  restart(): Promise<void>;
  stop(): Promise<void>;
}

const CONFIG = {
  log: { level: 'warn' },
  gc: { untagged: '0s' },
  retention: {
    rules: [
      { repository: 'ret/**', keeplast: 2, keeptags: ['stable'] },
      { repository: 'imm/**', immutable: ['v*'] },
    ],
  },
};

async function startTarget(backend: 'filesystem' | 's3'): Promise<Target> {
  let storageConfig: Record<string, unknown> = {};
  let storage: StorageDriver;
  const dataDir = await tempDir('gc-data');
  if (backend === 's3') {
    const { s3StorageConfig } = await import('../helpers/shared-s3.js');
    const s3 = await s3StorageConfig();
    storageConfig = { s3 };
    const { S3Driver } = await import('../../storage-drivers/s3.js');
    storage = new S3Driver({
      ...(s3 as { bucket: string; region: string; regionendpoint: string; accesskey: string; secretkey: string; rootdirectory: string }),
      forcepathstyle: true,
      encrypt: false,
      chunksize: 5 * 1024 * 1024,
      checksummode: 'WHEN_REQUIRED',
      uploadconcurrency: 1,
      redirect: { enabled: false, expirySeconds: 60 },
    });
  } else {
    storage = new FilesystemDriver({ rootdirectory: dataDir });
  }
  const config = { ...CONFIG, ...(backend === 's3' ? { storage: storageConfig } : {}) };
  const target: Target = {
    registry: await startRegistry({ config, rootDir: dataDir }),
    get url() { return this.registry.url; },
    get hostPort() { return this.registry.hostPort; },
    storage,
    async restart() {
      this.registry = await startRegistry({ config, rootDir: dataDir });
    },
    async stop() {
      await this.registry.stop();
      if (!process.env.TEST_KEEP_TMP) await removeTree(dataDir);
    },
  };
  return target;
}

// --- the storage, listed -----------------------------------------------------------------------------

async function list(storage: StorageDriver, dir: string): Promise<string[]> {
  return storage.list(dir).then((l) => l.map((p) => p.slice(p.lastIndexOf('/') + 1)), () => []);
}

/** Every blob with data in storage. */
async function storedBlobs(storage: StorageDriver): Promise<Set<string>> {
  const found = new Set<string>();
  for (const prefix of await list(storage, `${ROOT}/blobs/sha256`)) {
    const hexes = await list(storage, `${ROOT}/blobs/sha256/${prefix}`);
    await Promise.all(hexes.map(async (hex) => {
      if (await storage.stat(`${ROOT}/blobs/sha256/${prefix}/${hex}/data`).then(() => true, () => false)) found.add(`sha256:${hex}`);
    }));
  }
  return found;
}

// --- HTTP: catalog crawl, pulls, admin API ---------------------------------------------------------

async function allPages(client: OciClient, path: string, key: string): Promise<string[]> {
  const reply = await client.get(path, { query: { n: 10000 } });
  expectStatus(reply, 200);
  return (reply.json<Record<string, string[] | null>>()[key] ?? []);
}

/** Pulls a manifest and everything it reaches, checking every digest; returns the digests. */
async function pullVerified(client: OciClient, repo: string, reference: string, into = new Set<string>()): Promise<Set<string>> {
  const reply = await client.getManifest(repo, reference);
  expect(reply.status, describeReply(reply)).to.equal(200);
  const digest = sha256(reply.body);
  if (reference.startsWith('sha256:')) expect(digest).to.equal(reference);
  into.add(digest);
  const manifest = reply.json<Manifest>();
  for (const child of manifest.manifests ?? []) await pullVerified(client, repo, child.digest, into);
  for (const blob of [...(manifest.config ? [manifest.config] : []), ...(manifest.layers ?? [])]) {
    const got = await client.getBlob(repo, blob.digest);
    expect(got.status, describeReply(got)).to.equal(200);
    expect(sha256(got.body), `${repo}@${blob.digest}`).to.equal(blob.digest);
    into.add(blob.digest);
  }
  return into;
}

/** Every blob reachable from a tag, each image pulled and verified on the way. */
async function reachableFromTags(client: OciClient): Promise<Set<string>> {
  const reachable = new Set<string>();
  for (const repo of await allPages(client, '/v2/_catalog', 'repositories')) {
    for (const tag of await allPages(client, `/v2/${repo}/tags/list`, 'tags')) await pullVerified(client, repo, tag, reachable);
  }
  return reachable;
}

async function startGc(client: OciClient, body: Record<string, unknown>): Promise<Job> {
  const reply = await client.request('POST', '/admin/v1/gc', { headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  expectStatus(reply, 202);
  expect(reply.headers.get('location')).to.match(/^\/admin\/v1\/jobs\//);
  const job = reply.json<Job>();
  expect(job.kind).to.equal('gc');
  return job;
}

async function waitForJob(client: OciClient, id: string, timeoutMs = 120_000): Promise<Job> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const reply = await client.get(`/admin/v1/jobs/${id}`);
    expectStatus(reply, 200);
    const job = reply.json<Job>();
    if (['succeeded', 'failed', 'cancelled'].includes(job.state)) return job;
    if (Date.now() > deadline) throw new Error(`job ${id} still ${job.state}`);
    await sleep(50);
  }
}

async function runGc(client: OciClient, body: Record<string, unknown> = { gracePeriod: '0s' }): Promise<GcReport> {
  const job = await waitForJob(client, (await startGc(client, body)).id);
  expect(job.state, JSON.stringify(job.error)).to.equal('succeeded');
  return job.result!;
}

/** Pushes config, layers (uploading each) and a manifest; returns the manifest. */
async function pushImage(client: OciClient, repo: string, tag: string, layers: Content[]): Promise<{ manifest: Content; blobs: Content[] }> {
  const config = imageConfig();
  const manifest = imageManifest({ config: descriptorOf(config), layers: layers.map((l) => descriptorOf(l)) });
  await client.pushManifest(repo, tag, manifest, [config, ...layers]);
  return { manifest, blobs: [config, ...layers] };
}

for (const backend of testBackends()) {
  describe(`garbage collection on ${backend}`, function () {
    this.timeout(300_000);
    let target: Target;
    let client: OciClient;
    let dockerd: RunningDockerd;
    let buildah: ContainerClient;
    let work: string;

    async function removeAllImages(): Promise<void> {
      const ids = (await dockerd.docker(['images', '-aq', '--no-trunc'])).stdout.split('\n').filter(Boolean);
      if (ids.length > 0) await dockerd.docker(['rmi', '--force', ...new Set(ids)]);
    }

    /** docker build FROM the base in the registry, with one COPY layer of its own. */
    async function dockerBuild(ref: string, file: string): Promise<void> {
      const ctx = join(work, createHash('sha256').update(`${ref} ${file}`).digest('hex').slice(0, 12));
      await mkdir(ctx, { recursive: true });
      await writeFile(join(ctx, 'file.txt'), file);
      await writeFile(join(ctx, 'Dockerfile'), `FROM ${target.hostPort}/gc/base:1\nCOPY file.txt /file.txt\n`);
      await dockerd.docker(['build', '--network', 'none', '-t', ref, ctx]);
    }

    /** dockerBuild, then docker push; returns the pushed digest. */
    async function dockerPush(ref: string, file: string): Promise<string> {
      await dockerBuild(ref, file);
      const pushed = (await dockerd.docker(['push', ref])).stdout;
      const match = /digest: (sha256:[0-9a-f]{64})/.exec(pushed);
      expect(match, pushed).to.not.equal(null);
      return match![1]!;
    }

    before(async function () {
      target = await startTarget(backend);
      client = new OciClient(target.url);
      dockerd = await startDockerd();
      buildah = await startBuildah({ insecureRegistries: [target.hostPort] });
      work = await tempDir('gc-test');
    });

    after(async function () {
      const results = await Promise.allSettled([dockerd?.stop(), buildah?.stop(), work ? removeTree(work) : undefined]);
      await target?.stop();
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
    });

    it('deletes exactly the unreachable blobs of untagged and deleted images; the rest pulls with docker', async function () {
      await buildBusyboxImage(buildah, { arch: 'amd64', ref: `${target.hostPort}/gc/base:1` });
      await removeAllImages();
      await dockerd.docker(['pull', `${target.hostPort}/gc/base:1`]);
      const hp = target.hostPort;
      const app1 = await dockerPush(`${hp}/gc/app:1`, 'one');
      await dockerPush(`${hp}/gc/app:2`, 'two');
      const other = await dockerPush(`${hp}/gc/other:1`, 'three');
      const gone1 = await pullVerified(client, 'gc/app', app1);
      const gone2 = await pullVerified(client, 'gc/other', other);

      expectStatus(await client.delete('/v2/gc/app/manifests/1'), 202); // untag: the manifest stays, untagged
      expectStatus(await client.delete(`/v2/gc/other/manifests/${other}`), 202); // the manifest and its tag
      const before = await storedBlobs(target.storage);
      const reachable = await reachableFromTags(client);
      const unreachable = [...before].filter((d) => !reachable.has(d)).sort();
      // Each deleted image had its own manifest, config and COPY layer; the busybox layer is shared.
      const expected = [...new Set([...gone1, ...gone2])].filter((d) => !reachable.has(d)).sort();
      expect(unreachable).to.deep.equal(expected);
      expect(unreachable).to.have.length(6);

      const dry = await runGc(client, { dryRun: true, gracePeriod: '0s' });
      expect(dry.dryRun).to.equal(true);
      expect(dry.kinds.blobs!.deleted).to.equal(6);
      expect([...(await storedBlobs(target.storage))].sort()).to.deep.equal([...before].sort());

      const report = await runGc(client, { gracePeriod: '0s' });
      expect(report.kinds.blobs!.deleted).to.equal(6);
      expect(report.kinds.manifests!.deleted, 'the untagged one (DELETE by digest removed the other)').to.equal(1);
      expect(report.freedBytes).to.be.greaterThan(0);
      expect([...(await storedBlobs(target.storage))].sort()).to.deep.equal([...reachable].sort());

      for (const ref of ['gc/base:1', 'gc/app:2']) {
        await removeAllImages();
        const out = (await dockerd.docker(['pull', `${hp}/${ref}`])).stdout;
        expect(out).to.match(/Downloaded newer image/);
      }
      expect((await dockerd.runImage(`${hp}/gc/app:2`, ['cat', '/file.txt'])).trim()).to.equal('two');
      const missing = await dockerd.docker(['pull', `${hp}/gc/app:1`], { allowFailure: true });
      expect(missing.code).to.not.equal(0);
      await removeAllImages();
    });

    it('keeps every image a client pushes while GC runs in a loop (several hundred operations)', async function () {
      const shared = Array.from({ length: 4 }, () => gzipLayer(2048));
      await pushImage(client, 'conc/base', 'keep', shared); // keeps the shared layers live
      const live = new Map<string, { repo: string; tag: string; manifest: Content; blobs: Content[] }>();
      let operations = 0;
      let retries = 0;
      let done = false;

      const push = async (worker: number, i: number) => {
        const repo = `conc/r${i % 3}`;
        const tag = `w${worker}-${i}`;
        const own = gzipLayer(1024);
        const reuse = shared.slice(i % 4, (i % 4) + 1 + (i % 2));
        const config = imageConfig();
        const manifest = imageManifest({ config: descriptorOf(config), layers: [own, ...reuse].map((l) => descriptorOf(l)) });
        // Three ways to a layer the registry already has: upload it again, mount it, or HEAD and skip it.
        for (const layer of reuse) {
          if (i % 3 === 0) await client.pushBlob(repo, layer);
          else if (i % 3 === 1) {
            const mounted = await client.startUpload(repo, { query: { mount: layer.digest, from: 'conc/base' }, headers: { 'Content-Length': '0' } });
            operations++;
            if (mounted.status !== 201) await client.pushBlob(repo, layer);
          } else if ((await client.headBlob(repo, layer.digest)).status !== 200) await client.pushBlob(repo, layer);
          operations += 2;
        }
        for (const blob of [config, own]) {
          await client.pushBlob(repo, blob);
          operations += 2;
        }
        let reply = await client.putManifest(repo, tag, manifest);
        operations++;
        if (reply.status === 400) {
          // A skipped layer's link went away between HEAD and this PUT (its last manifest had been deleted):
          // the registry refuses the manifest rather than reference nothing; push the layers and try again.
          expectOciError(reply, 400, 'MANIFEST_BLOB_UNKNOWN');
          retries++;
          for (const layer of reuse) await client.pushBlob(repo, layer);
          reply = await client.putManifest(repo, tag, manifest);
        }
        expectStatus(reply, 201);
        live.set(`${repo}:${tag}`, { repo, tag, manifest, blobs: [config, own, ...reuse] });
      };

      const pullOne = async () => {
        const images = [...live.values()];
        const image = images[Math.floor(Math.random() * images.length)];
        if (!image) return;
        const key = `${image.repo}:${image.tag}`;
        const reply = await client.getManifest(image.repo, image.tag);
        if (reply.status !== 200 && !live.has(key)) return; // deleted meanwhile by the other worker
        expect(reply.status, describeReply(reply)).to.equal(200);
        expect(sha256(reply.body)).to.equal(image.manifest.digest);
        for (const blob of image.blobs) {
          const got = await client.getBlob(image.repo, blob.digest);
          if (got.status !== 200 && !live.has(key)) return;
          expect(got.status, describeReply(got)).to.equal(200);
          expect(sha256(got.body)).to.equal(blob.digest);
        }
        operations += 1 + image.blobs.length;
      };

      const deleteOne = async () => {
        const key = [...live.keys()][0];
        if (!key) return;
        const image = live.get(key)!;
        live.delete(key);
        expectStatus(await client.delete(`/v2/${image.repo}/manifests/${image.tag}`), 202);
        operations++;
      };

      const worker = async (id: number) => {
        for (let i = 0; i < 25; i++) {
          await push(id, i);
          await pullOne();
          if (i % 4 === 3) await deleteOne();
        }
      };

      let runs = 0;
      let deleted = 0;
      const gcLoop = (async () => {
        while (!done) {
          // The grace period covers the time between a client's layer uploads and its manifest.
          const report = await runGc(client, { gracePeriod: '2s' });
          deleted += report.kinds.blobs!.deleted;
          runs++;
        }
      })();
      try {
        await Promise.all([worker(1), worker(2)]);
        await sleep(3000); // the last deletions age past the grace period
        const report = await runGc(client, { gracePeriod: '2s' });
        deleted += report.kinds.blobs!.deleted;
      } finally {
        done = true;
        await gcLoop;
      }
      expect(operations, 'HTTP operations').to.be.greaterThan(300);
      expect(runs, 'GC runs during the pushes').to.be.at.least(3);
      expect(deleted, 'blobs deleted by the runs').to.be.greaterThan(0);
      console.log(`      ${operations} operations, ${runs} GC runs, ${deleted} blobs deleted, ${retries} manifest retries`);

      for (const image of live.values()) {
        const digests = await pullVerified(client, image.repo, image.tag);
        expect([...digests].sort()).to.deep.equal([image.manifest.digest, ...image.blobs.map((b) => b.digest)].sort());
      }
    });

    it('retention keeps the newest tags and keeptags through the admin API; immutable tags refuse docker push', async function () {
      for (const tag of ['stable', 'a', 'b', 'c', 'd']) {
        await pushImage(client, 'ret/app', tag, [gzipLayer(256)]);
        await sleep(1100); // push times one second apart (S3 keeps seconds)
      }
      const dry = await runGc(client, { dryRun: true, gracePeriod: '0s' });
      expect(dry.kinds.tags!.deleted).to.equal(2);
      expect((await allPages(client, '/v2/ret/app/tags/list', 'tags')).sort()).to.deep.equal(['a', 'b', 'c', 'd', 'stable']);
      const report = await runGc(client, { gracePeriod: '0s' });
      expect(report.kinds.tags!.deleted).to.equal(2);
      expect((await allPages(client, '/v2/ret/app/tags/list', 'tags')).sort()).to.deep.equal(['c', 'd', 'stable']);

      // Immutable: the first push creates v1; moving it is denied, through HTTP and through docker.
      const hp = target.hostPort;
      await dockerPush(`${hp}/imm/app:v1`, 'first');
      const moved = await pushImage(client, 'imm/app', 'latest', [gzipLayer(256)]);
      const denied = await client.putManifest('imm/app', 'v1', moved.manifest);
      const body = expectOciError(denied, 403, 'DENIED');
      expect(body!.errors[0]!.message).to.include('immutable').and.include('imm/**');
      await dockerBuild(`${hp}/imm/app:v1`, 'second');
      const push = await dockerd.docker(['push', `${hp}/imm/app:v1`], { allowFailure: true });
      expect(push.code).to.not.equal(0);
      expect(`${push.stdout}\n${push.stderr}`).to.match(/denied: tag "v1" is immutable/);
      expectStatus(await client.delete('/v2/imm/app/manifests/v1'), 403);
      await removeAllImages();
    });

    it('a registry killed during a sweep of a large store leaves it consistent, and the next run finishes it', async function () {
      // A large store written straight into the layout, half of the images untagged: 16 repositories of 80
      // images on the filesystem, 8 of 60 on S3 (where each delete is a round trip, so a sweep lasts longer).
      const storage = target.storage;
      const [repoCount, perRepo] = backend === 's3' ? [8, 60] : [16, 80];
      const repos = Array.from({ length: repoCount }, (_, i) => `crash/r${String(i).padStart(2, '0')}`);
      const garbageRevisions: string[] = [];
      const writes: Array<() => Promise<void>> = [];
      const put = (path: string, data: Buffer | string) => writes.push(() => storage.putContent(path, data));
      const hexOf = (digest: string) => digest.slice('sha256:'.length);
      for (const repo of repos) {
        const base = `${ROOT}/repositories/${repo}`;
        const sharedLayer = gzipLayer(128);
        put(`${ROOT}/blobs/sha256/${hexOf(sharedLayer.digest).slice(0, 2)}/${hexOf(sharedLayer.digest)}/data`, sharedLayer.bytes);
        put(`${base}/_layers/sha256/${hexOf(sharedLayer.digest)}/link`, sharedLayer.digest);
        for (let i = 0; i < perRepo; i++) {
          const config = imageConfig();
          const layer = gzipLayer(128);
          const manifest = imageManifest({ config: descriptorOf(config), layers: [descriptorOf(layer), descriptorOf(sharedLayer)] });
          for (const c of [config, layer, manifest]) put(`${ROOT}/blobs/sha256/${hexOf(c.digest).slice(0, 2)}/${hexOf(c.digest)}/data`, c.bytes);
          for (const c of [config, layer]) put(`${base}/_layers/sha256/${hexOf(c.digest)}/link`, c.digest);
          put(`${base}/_manifests/revisions/sha256/${hexOf(manifest.digest)}/link`, manifest.digest);
          if (i % 2 === 0) put(`${base}/_manifests/tags/t${i}/current/link`, manifest.digest);
          else garbageRevisions.push(`${base}/_manifests/revisions/sha256/${hexOf(manifest.digest)}/link`);
        }
      }
      let next = 0;
      await Promise.all(Array.from({ length: 32 }, async () => {
        while (next < writes.length) await writes[next++]!();
      }));
      await sleep(1100); // everything is older than the run's start

      const job = await startGc(client, { gracePeriod: '0s' });
      const watched = garbageRevisions.filter((path) => path.includes('/crash/r00/')).slice(0, 12);
      const deadline = Date.now() + 60_000;
      for (;;) {
        const gone = await Promise.all(watched.map((path) => storage.stat(path).then(() => false, () => true)));
        if (gone.some(Boolean)) break;
        if (Date.now() > deadline) throw new Error('the sweep never started');
        await sleep(5);
      }
      target.registry.kill('SIGKILL');
      await target.registry.daemon.exited;
      const leftAfterKill = (await Promise.all(garbageRevisions.map((path) => storage.stat(path).then(() => 1, () => 0)))).reduce<number>((a, b) => a + b, 0);
      console.log(`      killed with ${leftAfterKill} of ${garbageRevisions.length} garbage manifests left`);
      expect(leftAfterKill, 'killed during the sweep, not after it').to.be.greaterThan(0);

      await target.registry.stop();
      await target.restart();
      client = new OciClient(target.url);
      // Right after the crash: every tagged image is whole.
      await reachableFromTags(client);
      const interrupted = await waitForJob(client, job.id, 10_000).catch(() => undefined);
      if (interrupted) expect(interrupted.state).to.not.equal('succeeded');

      await runGc(client, { gracePeriod: '0s' });
      const reachable = await reachableFromTags(client);
      const stored = await storedBlobs(storage);
      expect([...stored].filter((d) => !reachable.has(d)), 'stored but unreachable').to.deep.equal([]);
      expect([...stored].sort()).to.deep.equal([...reachable].sort());
      for (const path of garbageRevisions) expect(await storage.stat(path).then(() => true, () => false), path).to.equal(false);
      // No link to nothing: every layer link left has its data.
      for (const repo of repos) {
        for (const hex of await list(storage, `${ROOT}/repositories/${repo}/_layers/sha256`)) {
          expect(reachable.has(`sha256:${hex}`), `${repo} links sha256:${hex}`).to.equal(true);
        }
      }
    });
  });
}
