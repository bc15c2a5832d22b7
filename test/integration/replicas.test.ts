// Several registry replicas on one S3 bucket behind a round-robin TCP proxy (a Kubernetes Service), run
// once with state in storage only and once with Redis (issue 5): uploads whose requests land on
// different replicas, real clients through the proxy, a replica SIGKILLed mid-push, Redis lost and
// restarted under load, and racing pushes to one tag. Every check reads back from every replica.
import { expect } from 'chai';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import http from 'node:http';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { startBuildah, type ContainerClient } from '../helpers/clients.js';
import { removeTree } from '../helpers/cleanup.js';
import { startDockerd, type RunningDockerd } from '../helpers/dockerd.js';
import { buildBusyboxImage, buildMultiArchIndex, UNAME_M, type Arch } from '../helpers/images.js';
import {
  MediaType,
  OciClient,
  describeReply,
  descriptorOf,
  expectOciError,
  expectStatus,
  gzipLayer,
  imageConfig,
  imageManifest,
  pathOf,
  randomBlob,
  rawRequest,
  sha256,
  sleep,
  uniqueNamespace,
  type Content,
  type Descriptor,
  type PushedImage,
  type Reply,
  type RequestOptions,
} from '../helpers/oci.js';
import { tempDir } from '../helpers/process.js';
import { assertReplicaPrerequisites, startReplicas, type Replica, type ReplicaSet } from '../helpers/replicas.js';
import { startRoundRobinProxy } from '../helpers/round-robin-proxy.js';
import { testBackends } from '../helpers/targets.js';

const MiB = 1024 * 1024;
const REPLICAS = 3;

/**
 * An OciClient whose every request opens its own connection (no keep-alive), as `Connection: close`
 * does: through the round-robin proxy, consecutive requests land on consecutive replicas, and a killed
 * replica leaves no pooled socket behind. Follows a 307 to storage (S3 presigned URLs) itself.
 */
class FreshConnectionClient extends OciClient {
  override async request(method: string, path: string, options: RequestOptions = {}): Promise<Reply> {
    const u = this.url(path, options.query);
    const headers: Record<string, string> = { ...options.headers };
    if (options.body !== undefined) headers['Content-Length'] = String(Buffer.byteLength(options.body));
    let reply = await rawRequest(u.origin, method, `${u.pathname}${u.search}`, { headers, body: options.body });
    if (options.redirect !== 'manual' && (method === 'GET' || method === 'HEAD')) {
      for (let hops = 0; hops < 3 && [301, 302, 303, 307, 308].includes(reply.status); hops++) {
        const next = new URL(reply.headers.get('location') ?? '', u);
        reply = await rawRequest(next.origin, method, `${next.pathname}${next.search}`, { headers: options.headers });
      }
    }
    return reply;
  }
}

const ACCEPT = [MediaType.ociIndex, MediaType.ociManifest, MediaType.dockerManifestList, MediaType.dockerManifest].join(', ');

interface StoredManifest { digest: string; body: { config?: Descriptor; layers?: Descriptor[]; manifests?: Descriptor[]; mediaType?: string } }

/** GET a manifest from one replica; its bytes must hash to the Docker-Content-Digest it sends. */
async function manifestOn(replica: Replica, repo: string, ref: string): Promise<StoredManifest> {
  const reply = await new OciClient(replica.url).getManifest(repo, ref, ACCEPT);
  expect(reply.status, `replica ${replica.index}: ${describeReply(reply)}`).to.equal(200);
  const digest = sha256(reply.body);
  expect(reply.headers.get('docker-content-digest'), `replica ${replica.index}: ${reply.request}`).to.equal(digest);
  return { digest, body: reply.json() };
}

/** Every live replica answers `repo:ref` with `digest`, and serves each blob it references. */
async function expectOnEveryReplica(set: ReplicaSet, repo: string, ref: string, digest: string): Promise<void> {
  for (const replica of set.live()) {
    const stored = await manifestOn(replica, repo, ref);
    expect(stored.digest, `${repo}:${ref} on replica ${replica.index}`).to.equal(digest);
    const oci = new OciClient(replica.url);
    for (const blob of [...(stored.body.config ? [stored.body.config] : []), ...(stored.body.layers ?? [])]) {
      const head = await oci.headBlob(repo, blob.digest);
      expect(head.status, `replica ${replica.index}: ${describeReply(head)}`).to.equal(200);
      expect(Number(head.headers.get('content-length')), `${blob.digest} size on replica ${replica.index}`).to.equal(blob.size);
    }
    for (const child of stored.body.manifests ?? []) {
      expect((await manifestOn(replica, repo, child.digest)).digest).to.equal(child.digest);
    }
  }
}

/** `TAG: digest: sha256:… size: N`, the last line of a successful `docker push`. */
function pushedDigest(output: string): string {
  const match = /digest: (sha256:[0-9a-f]{64}) size: \d+/.exec(output);
  expect(match, `docker push output:\n${output}`).to.not.equal(null);
  return match![1]!;
}

/** Writes `size` random bytes in pieces and returns their hex sha256. */
async function writeRandomFile(path: string, size: number): Promise<string> {
  const hash = createHash('sha256');
  const out = createWriteStream(path);
  for (let written = 0; written < size; written += 4 * MiB) {
    const data = randomBytes(Math.min(4 * MiB, size - written));
    hash.update(data);
    if (!out.write(data)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
  return hash.digest('hex');
}

/**
 * A PATCH whose body of `pieces` × `pieceSize` random bytes trickles in every `intervalMs`, with
 * Content-Length up front (as docker streams a layer). `sent(n)` resolves once n pieces are written.
 */
function slowPatch(base: string, location: string, options: { pieces: number; pieceSize: number; intervalMs: number }) {
  const body = randomBytes(options.pieces * options.pieceSize);
  const u = new URL(pathOf(location), base);
  let written = 0;
  const waiters: Array<{ n: number; resolve: () => void }> = [];
  const done = new Promise<Reply>((resolve, reject) => {
    const req = http.request(u, {
      method: 'PATCH',
      agent: false,
      headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': String(body.length) },
    }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => {
        const headers = new Headers();
        for (const [k, v] of Object.entries(res.headers)) if (typeof v === 'string') headers.set(k, v);
        const data = Buffer.concat(parts);
        resolve({
          request: `PATCH ${u.pathname} (slow)`, status: res.statusCode ?? 0, headers, body: data,
          text: () => data.toString(), json: <T>() => JSON.parse(data.toString()) as T,
        });
      });
    });
    req.on('error', reject);
    const tick = () => {
      const piece = body.subarray(written * options.pieceSize, (written + 1) * options.pieceSize);
      written++;
      for (const w of waiters.filter((w) => w.n <= written)) w.resolve();
      if (written === options.pieces) req.end(piece);
      else req.write(piece, () => setTimeout(tick, options.intervalMs));
    };
    tick();
  });
  return {
    body,
    done,
    sent: (n: number) => new Promise<void>((resolve) => (n <= written ? resolve() : waiters.push({ n, resolve }))),
  };
}

/** Waits until some proxied connection has carried more than `bytes` from the client (a layer upload). */
async function busyBackend(set: ReplicaSet, bytes: number, until: Promise<unknown>, timeoutMs = 60_000): Promise<string | undefined> {
  let finished = false;
  void until.finally(() => { finished = true; });
  const deadline = Date.now() + timeoutMs;
  while (!finished && Date.now() < deadline) {
    const busy = set.proxy.active().find((c) => c.bytesIn > bytes);
    if (busy) return busy.backend;
    await sleep(5);
  }
  return undefined;
}

function replicaAt(set: ReplicaSet, hostPort: string): Replica {
  const replica = set.replicas.find((r) => r.hostPort === hostPort);
  if (!replica) throw new Error(`no replica at ${hostPort}`);
  return replica;
}

/** Backends that took at least one connection since the proxy's last resetCounts(). */
function backendsUsed(set: ReplicaSet): string[] {
  return Object.entries(set.proxy.stats()).filter(([, s]) => s.connections > 0).map(([b]) => b);
}

// ---------------------------------------------------------------------------------------------
// The proxy itself, against tiny HTTP servers: cheap, and it needs neither S3 nor a registry.

describe('round-robin proxy (test helper)', () => {
  it('alternates requests without keep-alive, skips a refused backend, and follows backend changes', async () => {
    const servers = await Promise.all(['a', 'b', 'c'].map(async (name) => {
      const server = http.createServer((_req, res) => res.end(name));
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
      const address = server.address();
      return { name, server, hostPort: `127.0.0.1:${typeof address === 'object' && address ? address.port : 0}` };
    }));
    // A port nobody listens on: a dead pod still in the endpoints.
    const dead = await (async () => {
      const s = http.createServer();
      await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
      const a = s.address();
      await new Promise<void>((r) => s.close(() => r()));
      return `127.0.0.1:${typeof a === 'object' && a ? a.port : 0}`;
    })();
    const [a, b, c] = servers as [typeof servers[0], typeof servers[0], typeof servers[0]];
    const proxy = await startRoundRobinProxy([a.hostPort, dead, b.hostPort]);
    const get = async () => (await rawRequest(proxy.url, 'GET', '/')).text();
    try {
      const answers: string[] = [];
      for (let i = 0; i < 6; i++) answers.push(await get());
      expect(answers).to.deep.equal(['a', 'b', 'a', 'b', 'a', 'b']);
      expect(proxy.stats()[dead]?.refused).to.equal(3);
      expect(proxy.stats()[a.hostPort]?.connections).to.equal(3);

      proxy.setBackends([c.hostPort, a.hostPort]);
      const next: string[] = [];
      for (let i = 0; i < 4; i++) next.push(await get());
      expect(next.sort()).to.deep.equal(['a', 'a', 'c', 'c']);

      // Keep-alive: one connection, one backend, whatever the number of requests.
      proxy.resetCounts();
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      for (let i = 0; i < 3; i++) {
        await new Promise<void>((resolve, reject) => {
          http.get(`${proxy.url}/`, { agent }, (res) => { res.resume(); res.on('end', resolve); }).on('error', reject);
        });
      }
      agent.destroy();
      expect(Object.values(proxy.stats()).reduce((n, s) => n + s.connections, 0)).to.equal(1);

      proxy.setBackends([dead]);
      const refused = await rawRequest(proxy.url, 'GET', '/').then(() => 'answered', () => 'closed');
      expect(refused).to.equal('closed');
      expect(proxy.unrouted).to.equal(1);
    } finally {
      await proxy.stop();
      for (const s of servers) await new Promise<void>((r) => s.server.close(() => r()));
    }
  });
});

// ---------------------------------------------------------------------------------------------

if (testBackends().includes('s3')) {
  describe('replicas behind a round-robin load balancer, on one S3 bucket', function () {
    this.timeout(120_000);
    let dockerd: RunningDockerd;
    let buildah: ContainerClient;
    let work: string;
    let baseArchive: string;
    const BASE = 'local/replicas-base:1';

    /** Empties dockerd's image store, so a pull must fetch every layer; then reloads the build base. */
    async function withCleanImageStore<T>(action: () => Promise<T>): Promise<T> {
      const ids = (await dockerd.docker(['images', '-aq', '--no-trunc'])).stdout.split('\n').filter(Boolean);
      if (ids.length > 0) await dockerd.docker(['rmi', '--force', ...new Set(ids)]);
      expect((await dockerd.docker(['images', '-aq'])).stdout.trim()).to.equal('');
      try {
        return await action();
      } finally {
        await dockerd.docker(['load', '-i', baseArchive]);
      }
    }

    /** docker build FROM the local busybox base, with a random file of `size` bytes as a second layer. */
    async function buildImage(ref: string, size: number): Promise<{ sha: string; id: string }> {
      const ctx = await tempDir('replicas-build');
      try {
        const sha = await writeRandomFile(join(ctx, 'payload.bin'), size);
        await writeFile(join(ctx, 'Dockerfile'), `FROM ${BASE}\nCOPY payload.bin /payload.bin\n`);
        await dockerd.docker(['build', '--network', 'none', '-t', ref, ctx]);
        const id = (await dockerd.docker(['image', 'inspect', '--format', '{{.Id}}', ref])).stdout.trim();
        return { sha, id };
      } finally {
        await removeTree(ctx);
      }
    }

    /** From an empty image store: pull `ref`, check the digest and image id, and read the payload back. */
    async function verifyPull(ref: string, digest: string, image: { sha: string; id: string }): Promise<void> {
      await withCleanImageStore(async () => {
        const pull = (await dockerd.docker(['pull', ref])).stdout;
        expect(pull).to.not.match(/Already exists/);
        expect(pull).to.include(`Digest: ${digest}`);
        expect((await dockerd.docker(['image', 'inspect', '--format', '{{.Id}}', ref])).stdout.trim()).to.equal(image.id);
        const out = await dockerd.runImage(ref, ['sha256sum', '/payload.bin']);
        expect(out.trim()).to.equal(`${image.sha}  /payload.bin`);
      });
    }

    before(async function () {
      this.timeout(300_000);
      assertReplicaPrerequisites();
      dockerd = await startDockerd();
      buildah = await startBuildah();
      work = await tempDir('replicas-test');
      // The amd64 busybox made with buildah, handed to dockerd as an archive: docker builds on it locally.
      const base = await buildBusyboxImage(buildah, { arch: 'amd64', localName: 'localhost/dify-test/replicas-base:1' });
      baseArchive = join(work, 'base.tar');
      await buildah.run(['push', base.localName, `docker-archive:${baseArchive}:${BASE}`]);
      await buildah.run(['rmi', base.localName]);
      await dockerd.docker(['load', '-i', baseArchive]);
    });

    after(async function () {
      this.timeout(120_000);
      const results = await Promise.allSettled([dockerd?.stop(), buildah?.stop(), work ? removeTree(work) : undefined]);
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
    });

    for (const withRedis of [false, true]) {
      describe(withRedis ? 'with Redis' : 'without Redis (state in storage)', function () {
        let set: ReplicaSet;
        let lb: FreshConnectionClient;
        const ns = uniqueNamespace(withRedis ? 'rr-redis' : 'rr-storage');

        before(async function () {
          this.timeout(120_000);
          set = await startReplicas(REPLICAS, { redis: withRedis });
          lb = new FreshConnectionClient(set.url);
        });

        after(async function () {
          this.timeout(60_000);
          await set?.stop();
        });

        // Make sure a test that killed a replica or halted Redis leaves the next one a whole set.
        afterEach(async function () {
          this.timeout(60_000);
          for (const replica of set.replicas) if (!replica.alive) await set.restart(replica.index);
          if (set.redis && !(await redisAnswers(set))) await set.redis.restart();
        });

        const combos = [
          { range: true, lastInPut: true },
          { range: true, lastInPut: false },
          { range: false, lastInPut: true },
          { range: false, lastInPut: false },
        ];
        for (const { range, lastInPut } of combos) {
          it(`continues a chunked upload on whichever replica gets the next request (${range ? 'with' : 'without'} Content-Range, ${lastInPut ? 'last chunk in the PUT' : 'body-less PUT'})`, async () => {
            const repo = `${ns}/chunked`;
            const sizes = [3 * MiB + 7, 5 * MiB, 6 * MiB - 5, 2 * MiB + 11];
            const data = randomBlob(sizes.reduce((a, b) => a + b, 0));
            const digest = sha256(data);
            // Request k goes to replica k mod n: POST on 0, then every PATCH and the PUT on the next one.
            let turn = 0;
            const nextReplica = () => set.replicas[turn++ % REPLICAS]!;
            const started = await new OciClient(nextReplica().url).openSession(repo);
            let location = started.location;
            let offset = 0;
            const patched = lastInPut ? sizes.slice(0, -1) : sizes;
            for (const size of patched) {
              const replica = nextReplica();
              const oci = new OciClient(replica.url);
              // The status of the session, asked of the replica about to take the next chunk.
              const status = await oci.get(pathOf(location));
              expectStatus(status, 204);
              expect(status.headers.get('range'), `replica ${replica.index}: ${describeReply(status)}`).to.equal(`0-${Math.max(0, offset - 1)}`);
              const chunk = data.subarray(offset, offset + size);
              const reply = await oci.patchChunk(pathOf(location), chunk, range ? { start: offset } : undefined);
              expect(reply.status, `chunk at ${offset} on replica ${replica.index}: ${describeReply(reply)}`).to.equal(202);
              offset += size;
              expect(reply.headers.get('range'), describeReply(reply)).to.equal(`0-${offset - 1}`);
              location = reply.headers.get('location') ?? location;
            }
            const closer = nextReplica();
            const last = lastInPut ? data.subarray(offset) : undefined;
            const done = await new OciClient(closer.url).closeUpload(pathOf(location), digest, last);
            expect(done.status, `PUT on replica ${closer.index}: ${describeReply(done)}`).to.equal(201);
            expect(done.headers.get('docker-content-digest')).to.equal(digest);

            for (const replica of set.replicas) {
              const oci = new OciClient(replica.url);
              const head = await oci.headBlob(repo, digest);
              expect(head.status, `replica ${replica.index}: ${describeReply(head)}`).to.equal(200);
              expect(Number(head.headers.get('content-length'))).to.equal(data.length);
              const blob = await oci.getBlob(repo, digest);
              expect(blob.status, `replica ${replica.index}: ${blob.request}`).to.equal(200);
              expect(blob.body.length, `replica ${replica.index}`).to.equal(data.length);
              expect(sha256(blob.body), `bytes served by replica ${replica.index}`).to.equal(digest);
            }
            // The session is over on every replica.
            for (const replica of set.replicas) {
              expectOciError(await new OciClient(replica.url).get(pathOf(location)), 404, 'BLOB_UPLOAD_UNKNOWN');
            }
          });
        }

        // The replica that took the earlier chunks remembers where the session was; it must notice that
        // another replica finished or cancelled it meanwhile, and neither fail with a 500 nor bring it back.
        const stale = [
          { ending: 'finished', firstChunk: 0 },
          { ending: 'finished', firstChunk: 1 * MiB }, // S3: data continued from a tail object
          { ending: 'finished', firstChunk: 5 * MiB }, // S3: data continued in a multipart upload
          { ending: 'cancelled', firstChunk: 0 },
          { ending: 'cancelled', firstChunk: 5 * MiB },
        ];
        for (const { ending, firstChunk } of stale) {
          it(`answers 404 to a PATCH on a session ${ending} by another replica (${firstChunk / MiB} MiB written before), on every replica`, async () => {
            const repo = `${ns}/stale`;
            const [r0, r1] = set.replicas as [Replica, Replica];
            const data = randomBlob(firstChunk + 1024);
            const first = new OciClient(r0.url);
            const { location } = await first.openSession(repo);
            let at = pathOf(location);
            if (firstChunk > 0) {
              const reply = await first.patchChunk(at, data.subarray(0, firstChunk), { start: 0 });
              expect(reply.status, describeReply(reply)).to.equal(202);
              at = pathOf(reply.headers.get('location') ?? location);
            }
            const other = new OciClient(r1.url);
            const ended = ending === 'finished' ? await other.closeUpload(at, sha256(data.subarray(0, firstChunk))) : await other.delete(at);
            expectStatus(ended, ending === 'finished' ? 201 : 204);
            expectOciError(await first.patchChunk(at, data.subarray(firstChunk), { start: firstChunk }), 404, 'BLOB_UPLOAD_UNKNOWN');
            for (const replica of set.replicas) {
              expectOciError(await new OciClient(replica.url).get(at), 404, 'BLOB_UPLOAD_UNKNOWN');
            }
          });
        }

        it('refuses a second PATCH to a session with 416 on every replica while one streams, never interleaving bytes', async () => {
          const repo = `${ns}/concurrent`;
          const [r0, r1, r2] = set.replicas as [Replica, Replica, Replica];
          const { location } = await new OciClient(r0.url).openSession(repo);
          // 2 MiB over about 2.4 s, on replica 1.
          const slow = slowPatch(r1.url, location, { pieces: 16, pieceSize: 128 * 1024, intervalMs: 150 });
          await slow.sent(3);
          await sleep(500); // the first PATCH holds the session by now
          const intruder = randomBlob(64 * 1024);
          const attempts = await Promise.all([
            new OciClient(r2.url).patchChunk(pathOf(location), intruder),
            new OciClient(r0.url).patchChunk(pathOf(location), intruder, { start: 0 }),
            new OciClient(r1.url).patchChunk(pathOf(location), intruder),
          ]);
          const stillStreaming = await Promise.race([slow.done.then(() => false), sleep(0).then(() => true)]);
          expect(stillStreaming, 'the slow PATCH ended before the concurrent ones were answered').to.equal(true);
          for (const attempt of attempts) expectOciError(attempt, 416, null);

          const first = await slow.done;
          expect(first.status, describeReply(first)).to.equal(202);
          expect(first.headers.get('range')).to.equal(`0-${slow.body.length - 1}`);
          const done = await new OciClient(r2.url).closeUpload(pathOf(location), sha256(slow.body));
          expect(done.status, describeReply(done)).to.equal(201);
          for (const replica of set.replicas) {
            const blob = await new OciClient(replica.url).getBlob(repo, sha256(slow.body));
            expect(blob.status).to.equal(200);
            expect(blob.body.equals(slow.body), `replica ${replica.index} serves exactly the streamed bytes`).to.equal(true);
          }
        });

        it('docker push and pull through the proxy, checked on every replica', async () => {
          const ref = `${set.hostPort}/${ns}/docker:1`;
          const image = await buildImage(ref, 4 * MiB);
          set.proxy.resetCounts();
          const digest = pushedDigest((await dockerd.docker(['push', ref])).stdout);
          await expectOnEveryReplica(set, `${ns}/docker`, '1', digest);
          await verifyPull(ref, digest, image);
          expect(backendsUsed(set).length, `connections per replica: ${JSON.stringify(set.proxy.stats())}`).to.be.greaterThan(1);
        });

        it('buildah manifest push --all of a multi-arch index through the proxy; every replica serves it; docker pulls each platform', async () => {
          const repo = `${ns}/multi`;
          const ref = `${set.hostPort}/${repo}:1`;
          set.proxy.resetCounts();
          const index = await buildMultiArchIndex(buildah, { ref, arches: ['amd64', 'arm64'] });
          expect(backendsUsed(set).length, JSON.stringify(set.proxy.stats())).to.be.greaterThan(1);
          await expectOnEveryReplica(set, repo, '1', index.digest);
          const stored = await manifestOn(set.replicas[0]!, repo, '1');
          expect(stored.body.mediaType).to.equal(MediaType.ociIndex);
          const platforms = (stored.body.manifests ?? []).map((m) => `${m.platform?.os}/${m.platform?.architecture}`).sort();
          expect(platforms).to.deep.equal(['linux/amd64', 'linux/arm64']);
          await withCleanImageStore(async () => {
            for (const arch of ['arm64', 'amd64'] as Arch[]) {
              const pull = (await dockerd.docker(['pull', '--platform', `linux/${arch}`, ref])).stdout;
              expect(pull).to.include(`Digest: ${index.digest}`);
              expect((await dockerd.runImage(ref, ['uname', '-m'])).trim()).to.equal(UNAME_M[arch]);
              await dockerd.docker(['rmi', '--force', ref]);
            }
          });
        });

        it('a replica SIGKILLed in the middle of a docker push: the push still succeeds and the image verifies', async function () {
          this.timeout(180_000);
          const ref = `${set.hostPort}/${ns}/killed:1`;
          const image = await buildImage(ref, 64 * MiB);
          const push = dockerd.docker(['push', ref], { allowFailure: true });
          // The replica that is receiving the big layer right now.
          const busy = await busyBackend(set, 4 * MiB, push);
          expect(busy, 'the push ended before a replica could be killed').to.be.a('string');
          const victim = replicaAt(set, busy!);
          // Out of the proxy only after docker's first retry (5 s back-off), as a slow endpoints update
          // would be: new connections meanwhile meet a refusing port, which the proxy skips.
          await set.kill(victim.index, { removeAfterMs: 6_000 });
          const first = await push;
          const stats = set.proxy.stats()[victim.hostPort];
          console.log(`      killed replica ${victim.index} mid-layer; docker ${first.code === 0 ? 'finished the push itself' : 'failed, a second push ran'}` +
            `${/Retrying in/.test(first.stdout) ? ' (after "Retrying in …")' : ''}; the dead port refused ${stats?.refused ?? 0} connection(s)`);
          let digest: string;
          if (first.code === 0) {
            digest = pushedDigest(first.stdout);
          } else {
            // docker gave up after its own retries: a second push (what a user or CI job does) must work.
            expect(`${first.stdout}\n${first.stderr}`).to.not.match(/500 Internal Server Error/);
            digest = pushedDigest((await dockerd.docker(['push', ref])).stdout);
          }
          await expectOnEveryReplica(set, `${ns}/killed`, '1', digest);
          await verifyPull(ref, digest, image);
          // And the replica comes back on the same bucket and agrees.
          await set.restart(victim.index);
          await expectOnEveryReplica(set, `${ns}/killed`, '1', digest);
        });

        it('two clients pushing different manifests to one tag at the same moment: every replica agrees on the winner', async () => {
          const repo = `${ns}/race`;
          const config = imageConfig();
          const layer = gzipLayer(1024);
          for (const blob of [config, layer]) await lb.pushBlob(repo, blob);
          const manifestFor = (round: number, side: string): Content => imageManifest({
            config: descriptorOf(config),
            layers: [descriptorOf(layer)],
            annotations: { round: String(round), side },
          });
          const wins = { a: 0, b: 0 };
          for (let round = 0; round < 20; round++) {
            const a = manifestFor(round, 'a');
            const b = manifestFor(round, 'b');
            const [ra, rb] = [set.replicas[round % REPLICAS]!, set.replicas[(round + 1) % REPLICAS]!];
            const [pa, pb] = await Promise.all([
              new OciClient(ra.url).putManifest(repo, 'race', a),
              new OciClient(rb.url).putManifest(repo, 'race', b),
            ]);
            expect(pa.status, `round ${round}, replica ${ra.index}: ${describeReply(pa)}`).to.equal(201);
            expect(pb.status, `round ${round}, replica ${rb.index}: ${describeReply(pb)}`).to.equal(201);
            const seen: string[] = [];
            for (const replica of set.replicas) {
              const oci = new OciClient(replica.url);
              const got = await oci.getManifest(repo, 'race');
              expect(got.status, `round ${round}, replica ${replica.index}: ${describeReply(got)}`).to.equal(200);
              // Never a tag pointing at bytes that are not (yet) the manifest it names.
              expect(got.headers.get('docker-content-digest'), `round ${round}, replica ${replica.index}`).to.equal(sha256(got.body));
              const head = await oci.headManifest(repo, 'race');
              expect(head.status).to.equal(200);
              expect(head.headers.get('docker-content-digest'), `HEAD on replica ${replica.index}, round ${round}`).to.equal(sha256(got.body));
              seen.push(sha256(got.body));
            }
            expect([a.digest, b.digest], `round ${round}: tag points at neither pushed manifest`).to.include(seen[0]);
            expect(new Set(seen).size, `round ${round}: replicas disagree: ${seen.join(', ')}`).to.equal(1);
            // Through the load balancer too, several times (several replicas).
            for (let i = 0; i < REPLICAS; i++) {
              const got = await lb.getManifest(repo, 'race');
              expect(sha256(got.body), `round ${round}, through the proxy`).to.equal(seen[0]);
            }
            // The other one is stored, untagged but readable by digest.
            for (const m of [a, b]) expect((await lb.getManifest(repo, m.digest)).status).to.equal(200);
            wins[seen[0] === a.digest ? 'a' : 'b']++;
          }
          const tags = await lb.tags(repo);
          expect(tags.json<{ tags: string[] }>().tags).to.deep.equal(['race']);
          // Not an assertion on who wins: only recorded, for the report.
          console.log(`      tag race: a won ${wins.a}, b won ${wins.b} of 20`);
        });

        if (withRedis) {
          it('keeps an open upload session in the configured Redis (keys under redis.keyprefix), not only in storage', async () => {
            const repo = `${ns}/session-in-redis`;
            const { location } = await new OciClient(set.replicas[0]!.url).openSession(repo);
            const id = pathOf(location).split('/').pop()!;
            expectStatus(await new OciClient(set.replicas[1]!.url).patchChunk(pathOf(location), randomBlob(MiB), { start: 0 }), 202);
            const keys = await redisKeys(set.redis!.port, 'registry:*');
            expect(keys.length, 'no key under the default keyprefix "registry:" while an upload is open').to.be.greaterThan(0);
            expect(keys.some((k) => k.includes(id)), `no key names session ${id}: ${keys.slice(0, 20).join(', ')}`).to.equal(true);
            await new OciClient(set.replicas[2]!.url).delete(pathOf(location));
          });

          it('Redis halted and restarted during a pull storm: every pull through the proxy answers 200', async function () {
            this.timeout(120_000);
            const repo = `${ns}/storm`;
            const images: PushedImage[] = [];
            for (let i = 0; i < 3; i++) images.push(await lb.pushImage(repo, `v${i}`, { layers: 2 }));
            const results: Array<{ at: number; what: string; status: number | string }> = [];
            const t0 = Date.now();
            let stop = false;
            const worker = async (w: number) => {
              for (let i = w; !stop; i++) {
                const image = images[i % images.length]!;
                const tag = `v${i % images.length}`;
                const at = Date.now() - t0;
                try {
                  const m = await lb.getManifest(repo, tag);
                  results.push({ at, what: `GET ${tag}`, status: m.status === 200 && sha256(m.body) === image.manifest.digest ? 200 : `${m.status} ${m.text().slice(0, 200)}` });
                  const h = await lb.headManifest(repo, tag);
                  results.push({ at, what: `HEAD ${tag}`, status: h.headers.get('docker-content-digest') === image.manifest.digest ? h.status : `${h.status} wrong digest` });
                  const layer = image.layers[i % image.layers.length]!;
                  const b = await lb.getBlob(repo, layer.digest);
                  results.push({ at, what: `GET blob`, status: b.status === 200 && sha256(b.body) === layer.digest ? 200 : `${b.status} ${b.text().slice(0, 200)}` });
                } catch (error) {
                  results.push({ at, what: 'request', status: (error as Error).message });
                }
              }
            };
            const workers = Array.from({ length: 12 }, (_, w) => worker(w));
            await sleep(1_000);
            const haltAt = Date.now() - t0;
            await set.redis!.halt();
            await sleep(2_500);
            const restartAt = Date.now() - t0;
            await set.redis!.restart();
            await sleep(2_500);
            stop = true;
            await Promise.all(workers);
            const during = results.filter((r) => r.at > haltAt && r.at < restartAt);
            const after = results.filter((r) => r.at > restartAt);
            expect(during.length, 'pulls while Redis was down').to.be.greaterThan(20);
            expect(after.length, 'pulls after Redis came back').to.be.greaterThan(20);
            console.log(`      pull storm: ${results.length} requests, ${during.length} while Redis was down, ${after.length} after`);
            const bad = results.filter((r) => r.status !== 200);
            expect(bad.slice(0, 10), `${bad.length} of ${results.length} pulls failed (halt at ${haltAt} ms, restart at ${restartAt} ms)`).to.deep.equal([]);
          });

          it('Redis halted during a push: uploads fail cleanly (503 UNAVAILABLE) or carry on; after Redis returns, pushes succeed and nothing committed is lost', async function () {
            this.timeout(180_000);
            const repo = `${ns}/outage`;
            const [r0, r1, r2] = set.replicas as [Replica, Replica, Replica];
            const before = await lb.pushImage(repo, 'before', { layers: 1 });
            const data = randomBlob(12 * MiB);
            const { location } = await new OciClient(r0.url).openSession(repo);
            const firstChunk = await new OciClient(r1.url).patchChunk(pathOf(location), data.subarray(0, 6 * MiB), { start: 0 });
            expectStatus(firstChunk, 202);

            await set.redis!.halt();
            /** Success, or the clean refusal the issue asks for: 503 with the OCI error body and UNAVAILABLE. */
            const seen: string[] = [];
            const cleanly = (reply: Reply, ...ok: number[]) => {
              seen.push(`${reply.request.split('?')[0]!.replace(/[0-9a-f-]{36}/, '<id>')} -> ${reply.status}`);
              if (ok.includes(reply.status)) return;
              expectOciError(reply, 503, 'UNAVAILABLE');
            };
            const t = Date.now();
            const second = await new OciClient(r2.url).patchChunk(pathOf(location), data.subarray(6 * MiB), { start: 6 * MiB });
            cleanly(second, 202);
            cleanly(await new OciClient(r0.url).startUpload(repo, { headers: { 'Content-Length': '0' } }), 202);
            const config = imageConfig();
            cleanly(await new OciClient(r1.url).startUpload(repo, { query: { digest: config.digest }, body: config.bytes }), 201);
            const manifest = imageManifest({ config: descriptorOf(before.config), layers: before.layers.map((l) => descriptorOf(l)), annotations: { during: 'outage' } });
            cleanly(await new OciClient(r2.url).putManifest(repo, 'during', manifest), 201);
            expect(Date.now() - t, 'answers during the outage come quickly, not after timeouts').to.be.below(20_000);
            console.log(`      while Redis was down: ${seen.join('; ')}`);
            // Committed content stays readable on every replica while Redis is down.
            await expectOnEveryReplica(set, repo, 'before', before.manifest.digest);

            // A docker push that starts (and may still run) during the outage.
            const ref = `${set.hostPort}/${repo}:docker`;
            const image = await buildImage(ref, 24 * MiB);
            const push = dockerd.docker(['push', ref], { allowFailure: true });
            await sleep(1_500);
            await set.redis!.restart();
            const first = await push;
            console.log(`      docker push across the Redis restart: ${first.code === 0 ? 'succeeded' : `failed: ${(first.stderr.trim().split('\n').pop() ?? '').slice(0, 200)}`}`);
            if (first.code !== 0) expect(`${first.stdout}\n${first.stderr}`).to.not.match(/500 Internal Server Error/);

            // After the restart: the old session either continues or is unknown (its state was in Redis);
            // either way a fresh upload through the proxy works.
            const resumed = await new OciClient(r0.url).closeUpload(pathOf(location), sha256(data));
            if (resumed.status !== 201) expectOciError(resumed, [404, 416, 400], ['BLOB_UPLOAD_UNKNOWN', 'BLOB_UPLOAD_INVALID', 'DIGEST_INVALID']);
            await lb.pushBlobChunked(repo, data, 6 * MiB);
            for (const replica of set.replicas) {
              const blob = await new OciClient(replica.url).getBlob(repo, sha256(data));
              expect(sha256(blob.body), `replica ${replica.index}`).to.equal(sha256(data));
            }
            const after = await lb.pushImage(repo, 'after', { layers: 1 });
            await expectOnEveryReplica(set, repo, 'after', after.manifest.digest);
            await expectOnEveryReplica(set, repo, 'before', before.manifest.digest);

            const digest = first.code === 0 ? pushedDigest(first.stdout) : pushedDigest((await dockerd.docker(['push', ref])).stdout);
            await expectOnEveryReplica(set, repo, 'docker', digest);
            await verifyPull(ref, digest, image);
          });
        }
      });
    }
  });
}

/** KEYS over RESP on a raw socket (no redis-cli needed): the key names matching `pattern`. */
function redisKeys(port: number, pattern: string): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ host: '127.0.0.1', port }, () => {
      socket.write(`*2\r\n$4\r\nKEYS\r\n$${Buffer.byteLength(pattern)}\r\n${pattern}\r\n`);
    });
    let buffer = '';
    socket.on('data', (d: Buffer) => {
      buffer += d.toString('latin1');
      const count = /^\*(-?\d+)\r\n/.exec(buffer);
      if (!count) {
        if (buffer.startsWith('-')) { socket.destroy(); reject(new Error(buffer.trim())); }
        return;
      }
      const names = [...buffer.matchAll(/\$\d+\r\n([^\r]*)\r\n/g)].map((m) => m[1]!);
      if (names.length >= Number(count[1])) {
        socket.destroy();
        resolve(names);
      }
    });
    socket.once('error', reject);
  });
}

async function redisAnswers(set: ReplicaSet): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port: set.redis!.port }, () => socket.write('PING\r\n'));
    socket.once('data', (d) => { socket.destroy(); resolve(d.toString().startsWith('+PONG')); });
    socket.once('error', () => resolve(false));
  });
}
