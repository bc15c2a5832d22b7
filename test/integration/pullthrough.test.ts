// Pull-through caching against CNCF Distribution 2.8.2 (Debian's docker-registry) as the upstream:
// docker pulls through the cache (and again with the upstream stopped), dockerd's registry-mirrors
// and containerd's `?ns=`, the ddn-k8s layout (arm64 under qemu), tag revalidation after the TTL
// (upstream requests counted by the fault proxy), one upstream fetch per blob in one process and across
// two processes on one storage root, failing, missing and corrupt upstream content, and Distribution's
// `proxy.remoteurl` shorthand with htpasswd credentials.
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { join } from 'node:path';
import { expect } from 'chai';
import { htpasswdLine } from '../helpers/auth.js';
import { removeTree } from '../helpers/cleanup.js';
import { startBuildah, type ContainerClient } from '../helpers/clients.js';
import { startDistribution, type RunningDistribution } from '../helpers/distribution.js';
import { startDockerd, type RunningDockerd } from '../helpers/dockerd.js';
import { startFaultProxy, type FaultProxy, type ProxiedRequest } from '../helpers/fault-proxy.js';
import { buildMultiArchIndex } from '../helpers/images.js';
import {
  content,
  describeReply,
  MediaType,
  OciClient,
  parseOciErrors,
  sha256,
  sleep,
  type Content,
  type Reply,
} from '../helpers/oci.js';
import { tempDir } from '../helpers/process.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';

/** The revalidation TTL of the `fast/` rule (the brief's 1 s, doubled so a loaded machine cannot make "before the TTL" flaky). */
const TTL_MS = 2_000;
const UPSTREAM_USER = 'puller';
const UPSTREAM_PASSWORD = 'upstream-secret';

interface Descriptor { mediaType: string; digest: string; size: number; platform?: { architecture: string; os: string; variant?: string } }
interface ManifestDoc { mediaType?: string; config?: Descriptor; layers?: Descriptor[]; manifests?: Descriptor[] }

/** The busybox index as the upstream holds it: bytes of the index and of each platform manifest. */
interface UpstreamImage {
  index: Content;
  amd64: Content;
  arm64: Content;
  /** Config and layers of each platform manifest. */
  blobs: { amd64: Descriptor[]; arm64: Descriptor[] };
}

function parse(c: Content | Reply): ManifestDoc {
  return JSON.parse(('bytes' in c ? c.bytes : c.body).toString('utf8')) as ManifestDoc;
}

async function readManifest(client: OciClient, name: string, reference: string): Promise<Content> {
  const reply = await client.getManifest(name, reference);
  expect(reply.status, describeReply(reply)).to.equal(200);
  return content(reply.body, reply.headers.get('content-type') ?? '');
}

async function readUpstreamImage(url: string, name: string, tag: string): Promise<UpstreamImage> {
  const client = new OciClient(url);
  const index = await readManifest(client, name, tag);
  const entries = parse(index).manifests ?? [];
  const of = async (arch: string) => {
    const entry = entries.find((m) => m.platform?.os === 'linux' && m.platform.architecture === arch);
    expect(entry, `${arch} entry in ${index.bytes.toString()}`).to.not.equal(undefined);
    return readManifest(client, name, entry!.digest);
  };
  const amd64 = await of('amd64');
  const arm64 = await of('arm64');
  const blobsOf = (m: Content) => [parse(m).config!, ...(parse(m).layers ?? [])];
  return { index, amd64, arm64, blobs: { amd64: blobsOf(amd64), arm64: blobsOf(arm64) } };
}

/**
 * A GET over a raw connection that tells a complete body from a cut one (fetch only throws). A connection
 * closed before any response is status 0.
 */
interface RawReply { status: number; headers: http.IncomingHttpHeaders; body: Buffer; complete: boolean }

function rawGet(url: string): Promise<RawReply> {
  return new Promise((resolve) => {
    const req = http.get(url, { agent: false }, (res) => {
      const chunks: Buffer[] = [];
      let settled = false;
      const finish = () => {
        if (settled) return;
        settled = true;
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), complete: res.complete });
      };
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('error', finish);
      res.on('end', finish);
      res.on('close', finish);
    });
    req.on('error', () => resolve({ status: 0, headers: {}, body: Buffer.alloc(0), complete: false }));
  });
}

/** Asserts a whole, verified blob: 200, every byte of Content-Length, and the digest asked for. */
function expectWholeBlob(reply: RawReply, blob: Content, what: string): void {
  expect(reply.status, what).to.equal(200);
  expect(reply.complete, `${what}: response cut after ${reply.body.length} of ${blob.size} bytes`).to.equal(true);
  expect(Number(reply.headers['content-length']), what).to.equal(blob.size);
  expect(sha256(reply.body), what).to.equal(blob.digest);
}

function expectUnavailable(reply: Reply): void {
  expect(reply.status, describeReply(reply)).to.equal(503);
  const body = parseOciErrors(reply);
  expect(body.errors[0]!.code, describeReply(reply)).to.equal('UNAVAILABLE');
}

function expectNotFound(reply: Reply, code: string): void {
  expect(reply.status, describeReply(reply)).to.equal(404);
  if (reply.request.startsWith('HEAD ')) return;
  expect(parseOciErrors(reply).errors[0]!.code, describeReply(reply)).to.equal(code);
}

/** Upstream requests under /v2/<name>/<kind>/ (kind: manifests or blobs). */
function upstreamRequests(proxy: FaultProxy, name: string, kind: 'manifests' | 'blobs'): ProxiedRequest[] {
  return proxy.requests.filter((r) => r.path.startsWith(`/v2/${name}/${kind}/`));
}

const describeRequests = (requests: ProxiedRequest[]) => JSON.stringify(requests.map((r) => `${r.method} ${r.path} -> ${r.status}`));

/** `Digest: sha256:…` of a `docker pull`, asserting every layer came from the registry. */
function expectFreshPull(output: string, digest: string): void {
  expect(output).to.match(/Pull complete/);
  expect(output).to.not.match(/Already exists/);
  expect(output).to.include(`Digest: ${digest}`);
}

describe('pull-through cache (Distribution 2.8.2 upstream)', function () {
  this.timeout(120_000);
  let work: string;
  /** The upstream: Distribution, with the fault proxy in front (which logs every request). */
  let upstream: RunningDistribution;
  let proxy: FaultProxy;
  /** A second Distribution on the same storage, behind its own proxy: the upstream that gets stopped. */
  let stoppable: RunningDistribution;
  let stoppableProxy: FaultProxy;
  /** The same storage once more, with htpasswd: the `proxy.remoteurl` upstream. */
  let basic: RunningDistribution;
  let buildah: ContainerClient;
  let registry: RunningRegistry;
  let dockerd: RunningDockerd;
  let image: UpstreamImage;
  const extra: RunningRegistry[] = [];

  const config = () => ({
    log: { level: 'warn' },
    mirror: {
      upstreams: [
        // A configured docker.io overrides the built-in Docker Hub URL: dockerd's registry-mirrors only
        // applies to docker.io images, so the "Hub" here is the local Distribution.
        { name: 'docker.io', url: proxy.endpoint },
        { name: 'revalidated', url: proxy.endpoint },
        { name: 'stoppable', url: stoppableProxy.endpoint },
      ],
      pullthrough: [
        { upstream: 'docker.io', prefix: '' },
        { upstream: 'docker.io', prefix: 'ddn-k8s/docker.io', layout: 'ddn-k8s' },
        { upstream: 'revalidated', prefix: 'fast', ttl: `${TTL_MS}ms` },
        { upstream: 'stoppable', prefix: 'stoppable', ttl: '1s' },
      ],
    },
  });

  const ours = () => new OciClient(registry.url);
  const hub = () => new OciClient(upstream.url);

  /** Empties dockerd's image store, so a pull cannot reuse a layer. */
  async function removeAllImages(): Promise<void> {
    const ids = (await dockerd.docker(['images', '-aq', '--no-trunc'])).stdout.split('\n').filter(Boolean);
    if (ids.length > 0) await dockerd.docker(['rmi', '--force', ...new Set(ids)]);
    expect((await dockerd.docker(['images', '-aq'])).stdout.trim()).to.equal('');
  }

  before(async function () {
    this.timeout(300_000);
    work = await tempDir('pullthrough-test');
    upstream = await startDistribution();
    proxy = await startFaultProxy(upstream.url);
    const storage = { filesystem: { rootdirectory: upstream.root } };
    stoppable = await startDistribution({ storage });
    stoppableProxy = await startFaultProxy(stoppable.url);
    const htpasswd = join(work, 'htpasswd');
    await writeFile(htpasswd, `${htpasswdLine(UPSTREAM_USER, UPSTREAM_PASSWORD)}\n`);
    basic = await startDistribution({ storage, auth: { htpasswd: { realm: 'pullthrough-test', path: htpasswd } } });
    buildah = await startBuildah({ insecureRegistries: [upstream.hostPort] });
    // A real runnable amd64 + arm64 busybox index, as Docker Hub's library/busybox:latest.
    const built = await buildMultiArchIndex(buildah, { ref: `${upstream.hostPort}/library/busybox:latest`, arches: ['amd64', 'arm64'] });
    image = await readUpstreamImage(upstream.url, 'library/busybox', 'latest');
    expect(image.index.digest).to.equal(built.digest);
    await buildah.stop(); // vfs keeps full copies: free the disk now
    registry = await startRegistry({ config });
    dockerd = await startDockerd({ registryMirrors: [registry.url] });
  });

  after(async function () {
    this.timeout(120_000);
    // Registries sharing our registry's storage root stop before it removes that root.
    const results = await Promise.allSettled([dockerd?.stop(), buildah?.stop(), ...extra.map((r) => r.stop())]);
    results.push(...await Promise.allSettled([registry?.stop()]));
    results.push(...await Promise.allSettled([
      proxy?.stop(), stoppableProxy?.stop(), stoppable?.stop(), basic?.stop(),
    ]));
    results.push(...await Promise.allSettled([upstream?.stop(), work ? removeTree(work) : undefined]));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  });

  beforeEach(() => {
    proxy.reset();
    stoppableProxy.reset();
  });

  describe('docker', function () {
    // First in the file: no blob of the busybox image is stored here yet, so this pull fetches all of them.
    it('docker pull fetches from upstream on the first pull and is served with the upstream stopped on the second', async function () {
      const name = 'stoppable/library/busybox';
      const ref = `${registry.hostPort}/${name}:latest`;
      await removeAllImages();
      expectFreshPull((await dockerd.docker(['pull', ref])).stdout, image.index.digest);
      // Every manifest and blob of the amd64 image came from the upstream, once.
      const seen = stoppableProxy.requests.filter((r) => r.method === 'GET').map((r) => r.path);
      const indexPaths = ['/v2/library/busybox/manifests/latest', `/v2/library/busybox/manifests/${image.index.digest}`];
      expect(seen.some((p) => indexPaths.includes(p)), describeRequests(stoppableProxy.requests)).to.equal(true);
      expect(seen).to.include(`/v2/library/busybox/manifests/${image.amd64.digest}`);
      for (const blob of image.blobs.amd64) {
        expect(seen.filter((p) => p === `/v2/library/busybox/blobs/${blob.digest}`), `${blob.digest} in ${describeRequests(stoppableProxy.requests)}`).to.have.length(1);
      }
      // Digests as upstream: what we serve is byte for byte what the upstream has.
      expect((await readManifest(ours(), name, 'latest')).digest).to.equal(image.index.digest);
      expect((await readManifest(ours(), name, image.amd64.digest)).bytes.equals(image.amd64.bytes)).to.equal(true);

      // Upstream gone (Distribution and the proxy in front of it: connection refused), TTL (1 s) passed.
      await stoppable.stop();
      await stoppableProxy.stop();
      await sleep(1_100);
      await removeAllImages();
      expectFreshPull((await dockerd.docker(['pull', ref])).stdout, image.index.digest);
      const repoDigests = (await dockerd.docker(['image', 'inspect', '--format', '{{json .RepoDigests}}', ref])).stdout;
      expect(repoDigests).to.include(`${name}@${image.index.digest}`);
      expect((await dockerd.runImage(ref, ['echo', 'ok'])).trim()).to.equal('ok');
      await removeAllImages();
    });

    it("a dockerd whose registry-mirrors points here pulls and runs an upstream image by its short name", async function () {
      await removeAllImages();
      const pull = (await dockerd.docker(['pull', 'busybox'])).stdout;
      expect(pull).to.include(`Digest: ${image.index.digest}`);
      // dockerd asked us for library/busybox (no prefix), and we asked the docker.io upstream.
      const asked = upstreamRequests(proxy, 'library/busybox', 'manifests');
      expect(asked.map((r) => r.path), describeRequests(proxy.requests)).to.include.members([
        `/v2/library/busybox/manifests/latest`,
        `/v2/library/busybox/manifests/${image.amd64.digest}`,
      ]);
      const repoDigests = (await dockerd.docker(['image', 'inspect', '--format', '{{json .RepoDigests}}', 'busybox'])).stdout;
      expect(repoDigests).to.include(`busybox@${image.index.digest}`);
      expect((await dockerd.runImage('busybox', ['echo', 'ok'])).trim()).to.equal('ok');
      await removeAllImages();
    });

    it('ddn-k8s: the -linuxarm64 tag pulls with --platform linux/arm64 and runs aarch64 under qemu', async function () {
      const ref = `${registry.hostPort}/ddn-k8s/docker.io/library/busybox:latest-linuxarm64`;
      await removeAllImages();
      expectFreshPull((await dockerd.docker(['pull', '--platform', 'linux/arm64', ref])).stdout, image.arm64.digest);
      const platform = (await dockerd.docker(['image', 'inspect', '--format', '{{.Os}}/{{.Architecture}}', ref])).stdout.trim();
      expect(platform).to.equal('linux/arm64');
      expect((await dockerd.runImage(ref, ['uname', '-m'], ['--platform', 'linux/arm64'])).trim()).to.equal('aarch64');
      await removeAllImages();
    });
  });

  describe('names and layouts', function () {
    it('containerd-style ?ns=docker.io requests are served from the docker.io rule', async function () {
      const reply = await ours().get('/v2/library/busybox/manifests/latest', { query: { ns: 'docker.io' }, headers: { Accept: [MediaType.ociIndex, MediaType.ociManifest].join(', ') } });
      expect(reply.status, describeReply(reply)).to.equal(200);
      expect(sha256(reply.body)).to.equal(image.index.digest);
      expect(reply.headers.get('docker-content-digest')).to.equal(image.index.digest);
      const child = await ours().get(`/v2/library/busybox/manifests/${image.arm64.digest}`, { query: { ns: 'docker.io' }, headers: { Accept: MediaType.ociManifest } });
      expect(child.status, describeReply(child)).to.equal(200);
      expect(child.body.equals(image.arm64.bytes)).to.equal(true);
      const layer = image.blobs.arm64[1]!;
      const blob = await ours().get(`/v2/library/busybox/blobs/${layer.digest}`, { query: { ns: 'docker.io' } });
      expect(blob.status, describeReply(blob)).to.equal(200);
      expect(sha256(blob.body)).to.equal(layer.digest);

      // A rule with a prefix: ?ns=<its upstream> reads the repository under that prefix.
      const prefixed = await ours().get('/v2/library/busybox/manifests/latest', { query: { ns: 'revalidated' }, headers: { Accept: MediaType.ociIndex } });
      expect(prefixed.status, describeReply(prefixed)).to.equal(200);
      expect(sha256(prefixed.body)).to.equal(image.index.digest);
      const tags = await ours().tags('fast/library/busybox');
      expect(tags.status, describeReply(tags)).to.equal(200);
      expect(tags.json<{ tags: string[] }>().tags).to.include('latest');
    });

    it('ddn-k8s: the plain tag is the amd64 manifest and -linuxarm64 the arm64 one, byte for byte', async function () {
      const name = 'ddn-k8s/docker.io/library/busybox';
      const amd64 = await readManifest(ours(), name, 'latest');
      expect(amd64.digest).to.equal(image.amd64.digest);
      expect(amd64.bytes.equals(image.amd64.bytes)).to.equal(true);
      const arm64 = await readManifest(ours(), name, 'latest-linuxarm64');
      expect(arm64.digest).to.equal(image.arm64.digest);
      expect(arm64.bytes.equals(image.arm64.bytes)).to.equal(true);
      // The upstream was asked for library/busybox, never for a platform tag.
      const paths = upstreamRequests(proxy, 'library/busybox', 'manifests').map((r) => r.path);
      expect(paths.some((p) => p.endsWith('-linuxarm64')), JSON.stringify(paths)).to.equal(false);
      // A platform the upstream index lacks: MANIFEST_UNKNOWN.
      expectNotFound(await ours().getManifest(name, 'latest-linuxppc64le'), 'MANIFEST_UNKNOWN');
    });

    it('ddn-k8s: a single-platform upstream image answers only its own platform\'s tag', async function () {
      const amd64 = await hub().pushImage('library/only-amd64', 'v1');
      const arm64 = await hub().pushImage('library/only-arm64', 'v1', { architecture: 'arm64' });
      const ddn = (repository: string) => `ddn-k8s/docker.io/${repository}`;
      expect((await readManifest(ours(), ddn('library/only-amd64'), 'v1')).digest).to.equal(amd64.manifest.digest);
      expectNotFound(await ours().getManifest(ddn('library/only-amd64'), 'v1-linuxarm64'), 'MANIFEST_UNKNOWN');
      expect((await readManifest(ours(), ddn('library/only-arm64'), 'v1-linuxarm64')).digest).to.equal(arm64.manifest.digest);
      expectNotFound(await ours().getManifest(ddn('library/only-arm64'), 'v1'), 'MANIFEST_UNKNOWN');
    });

    it('proxy.remoteurl shorthand (Distribution-style, with htpasswd credentials): names unchanged', async function () {
      const shorthand = await startRegistry({
        config: { log: { level: 'warn' }, proxy: { remoteurl: basic.url, username: UPSTREAM_USER, password: UPSTREAM_PASSWORD, ttl: '1m' } },
      });
      extra.push(shorthand);
      const client = new OciClient(shorthand.url);
      const index = await readManifest(client, 'library/busybox', 'latest');
      expect(index.bytes.equals(image.index.bytes)).to.equal(true);
      const arm64 = await readManifest(client, 'library/busybox', image.arm64.digest);
      expect(arm64.bytes.equals(image.arm64.bytes)).to.equal(true);
      for (const blob of image.blobs.arm64) {
        const reply = await client.getBlob('library/busybox', blob.digest);
        expect(reply.status, describeReply(reply)).to.equal(200);
        expect(sha256(reply.body)).to.equal(blob.digest);
      }
      expectNotFound(await client.getManifest('library/absent', 'latest'), 'MANIFEST_UNKNOWN');
      // containerd's ?ns= names the registry it thinks of; as in Distribution, the one upstream serves whatever it says.
      const other = await hub().pushImage('library/via-ns', 'v1');
      const viaNs = await client.get(`/v2/library/via-ns/manifests/v1?ns=docker.io`, { headers: { Accept: other.manifest.mediaType } });
      expect(viaNs.status, describeReply(viaNs)).to.equal(200);
      expect(sha256(viaNs.body)).to.equal(other.manifest.digest);
      await shorthand.stop();
    });
  });

  describe('tag revalidation', function () {
    it('a moved upstream tag is seen after the TTL, not before; digests are never revalidated', async function () {
      this.timeout(60_000);
      const upstreamName = 'reval/app';
      const name = `fast/${upstreamName}`;
      const first = await hub().pushImage(upstreamName, 'v1');
      const second = await hub().pushImage(upstreamName, undefined);
      const third = await hub().pushImage(upstreamName, undefined);
      proxy.reset();
      const manifestRequests = () => upstreamRequests(proxy, upstreamName, 'manifests');

      const got1 = await readManifest(ours(), name, 'v1');
      const checkedAt = Date.now();
      expect(got1.digest).to.equal(first.manifest.digest);
      expect(manifestRequests().length, describeRequests(proxy.requests)).to.be.greaterThan(0);

      // Move the tag upstream; within the TTL we keep serving what we have, without asking.
      const moved = await hub().putManifest(upstreamName, 'v1', second.manifest);
      expect(moved.status, describeReply(moved)).to.equal(201);
      proxy.reset();
      const stillOld = await readManifest(ours(), name, 'v1');
      expect(Date.now() - checkedAt, 'the second GET came too late to test "before the TTL"').to.be.below(TTL_MS);
      expect(stillOld.digest).to.equal(first.manifest.digest);
      expect(manifestRequests(), describeRequests(proxy.requests)).to.deep.equal([]);

      // After the TTL: one HEAD of the tag finds the new digest, one GET by digest fetches it.
      await sleep(checkedAt + TTL_MS + 200 - Date.now());
      proxy.reset();
      const now = await readManifest(ours(), name, 'v1');
      expect(now.digest).to.equal(second.manifest.digest);
      expect(manifestRequests().map((r) => `${r.method} ${r.path}`), describeRequests(proxy.requests)).to.deep.equal([
        `HEAD /v2/${upstreamName}/manifests/v1`,
        `GET /v2/${upstreamName}/manifests/${second.manifest.digest}`,
      ]);

      // Stored digests: no upstream request, however old.
      await sleep(TTL_MS + 200);
      proxy.reset();
      for (const m of [first.manifest, second.manifest]) expect((await readManifest(ours(), name, m.digest)).digest).to.equal(m.digest);
      expect(manifestRequests(), describeRequests(proxy.requests)).to.deep.equal([]);
      // The tag after the TTL, unchanged upstream: a HEAD only.
      expect((await readManifest(ours(), name, 'v1')).digest).to.equal(second.manifest.digest);
      expect(manifestRequests().map((r) => `${r.method} ${r.path}`)).to.deep.equal([`HEAD /v2/${upstreamName}/manifests/v1`]);
      // A digest not stored yet: fetched once, then never asked again.
      proxy.reset();
      expect((await readManifest(ours(), name, third.manifest.digest)).bytes.equals(third.manifest.bytes)).to.equal(true);
      expect(manifestRequests().map((r) => `${r.method} ${r.path}`)).to.deep.equal([`GET /v2/${upstreamName}/manifests/${third.manifest.digest}`]);
      await sleep(TTL_MS + 200);
      proxy.reset();
      expect((await readManifest(ours(), name, third.manifest.digest)).digest).to.equal(third.manifest.digest);
      expect(manifestRequests(), describeRequests(proxy.requests)).to.deep.equal([]);
    });
  });

  describe('one fetch per blob', function () {
    const CLIENTS = 8;

    async function pushBigBlob(name: string): Promise<Content> {
      const blob = content(randomBytes(6 * 1024 * 1024 + 123), MediaType.ociLayerGzip);
      await hub().pushBlob(name, blob);
      return blob;
    }

    it(`${CLIENTS} concurrent GETs of a 6 MiB blob fetch it once from a slow upstream; every client gets the whole verified blob`, async function () {
      const name = 'concurrent/app';
      const blob = await pushBigBlob(name);
      proxy.reset();
      proxy.delayNext(CLIENTS, 1_500, { at: 'response', match: { path: /\/blobs\// } });
      const replies = await Promise.all(Array.from({ length: CLIENTS }, () => rawGet(`${registry.url}/v2/${name}/blobs/${blob.digest}`)));
      replies.forEach((reply, i) => expectWholeBlob(reply, blob, `client ${i}`));
      const fetched = upstreamRequests(proxy, name, 'blobs').filter((r) => r.method === 'GET');
      expect(fetched, describeRequests(proxy.requests)).to.have.length(1);
      // Stored now: served from here with the upstream failing.
      proxy.failNext(100, { match: { path: /\/blobs\// } });
      expectWholeBlob(await rawGet(`${registry.url}/v2/${name}/blobs/${blob.digest}`), blob, 'after the fetch');
    });

    it('a pull that waits longer than mirror.waitforfetch for another fetch streams from the upstream itself', async function () {
      const impatient = await startRegistry({ config: () => ({ ...config(), mirror: { ...config().mirror, waitforfetch: '1s' } }) });
      extra.push(impatient);
      const name = 'concurrent/impatient';
      const blob = await pushBigBlob(name);
      const url = `${impatient.url}/v2/${name}/blobs/${blob.digest}`;
      proxy.reset();
      proxy.delayNext(1, 8_000, { at: 'response', match: { path: /\/blobs\// } }); // the first fetch answers late
      const started = performance.now();
      const first = rawGet(url);
      await sleep(300);
      const others = await Promise.all([rawGet(url), rawGet(url)]);
      others.forEach((reply, i) => expectWholeBlob(reply, blob, `waiter ${i}`));
      expect(performance.now() - started, 'the waiters did not wait for the slow fetch').to.be.below(7_000);
      expectWholeBlob(await first, blob, 'the first client');
      expect(upstreamRequests(proxy, name, 'blobs').filter((r) => r.method === 'GET'), describeRequests(proxy.requests)).to.have.length(3);
      // Stored once, by the first request: served from here with the upstream failing.
      proxy.failNext(100, { match: { path: /\/blobs\// } });
      expectWholeBlob(await rawGet(url), blob, 'afterwards');
      await impatient.stop();
    });

    it('two registry processes on one storage root fetch a blob once between them', async function () {
      const second = await startRegistry({ rootDir: registry.root, config });
      extra.push(second);
      const name = 'concurrent/two-processes';
      const blob = await pushBigBlob(name);
      proxy.reset();
      proxy.delayNext(CLIENTS, 1_500, { at: 'response', match: { path: /\/blobs\// } });
      const urls = Array.from({ length: CLIENTS }, (_, i) => `${(i % 2 === 0 ? registry : second).url}/v2/${name}/blobs/${blob.digest}`);
      const replies = await Promise.all(urls.map((url) => rawGet(url)));
      replies.forEach((reply, i) => expectWholeBlob(reply, blob, urls[i]!));
      const fetched = upstreamRequests(proxy, name, 'blobs').filter((r) => r.method === 'GET');
      expect(fetched, describeRequests(proxy.requests)).to.have.length(1);
      await second.stop();
    });
  });

  describe('upstream failures', function () {
    it('upstream failing (503, 429) with a stored copy: the stored copy is served', async function () {
      this.timeout(60_000);
      const upstreamName = 'failing/stored';
      const name = `fast/${upstreamName}`;
      const pushed = await hub().pushImage(upstreamName, 'v1');
      expect((await readManifest(ours(), name, 'v1')).digest).to.equal(pushed.manifest.digest);
      const layer = pushed.layers[0]!;
      expectWholeBlob(await rawGet(`${registry.url}/v2/${name}/blobs/${layer.digest}`), layer, 'first GET');

      for (const fault of [{ status: 503 as const }, { status: 429 as const, headers: { 'Retry-After': '0' } }]) {
        await sleep(TTL_MS + 200); // the tag is due for revalidation
        proxy.reset();
        proxy.failNext(1_000, { ...fault, match: { path: new RegExp(`^/v2/${upstreamName}/`) } });
        const tag = await ours().getManifest(name, 'v1');
        expect(tag.status, describeReply(tag)).to.equal(200);
        expect(sha256(tag.body)).to.equal(pushed.manifest.digest);
        // It did ask (and failed): the tag was revalidated, not served from a fresh check.
        const asked = upstreamRequests(proxy, upstreamName, 'manifests');
        expect(asked.length, describeRequests(proxy.requests)).to.be.greaterThan(0);
        expect(asked.every((r) => r.status === fault.status), describeRequests(asked)).to.equal(true);
        expect((await ours().getManifest(name, pushed.manifest.digest)).status).to.equal(200);
        expectWholeBlob(await rawGet(`${registry.url}/v2/${name}/blobs/${layer.digest}`), layer, `with upstream ${fault.status}`);
        // A failed revalidation is not repeated on every pull (within the TTL, at most 30 s).
        proxy.reset();
        expect((await ours().getManifest(name, 'v1')).status).to.equal(200);
        expect(upstreamRequests(proxy, upstreamName, 'manifests'), describeRequests(proxy.requests)).to.deep.equal([]);
      }
    });

    it('upstream failing (503) without a stored copy: 503 UNAVAILABLE with an OCI error body; fine again once upstream is', async function () {
      this.timeout(60_000);
      const upstreamName = 'failing/absent';
      const name = `fast/${upstreamName}`;
      const pushed = await hub().pushImage(upstreamName, 'v1');
      proxy.reset();
      proxy.failNext(1_000, { status: 503, match: { path: new RegExp(`^/v2/${upstreamName}/`) } });
      expectUnavailable(await ours().getManifest(name, 'v1'));
      expectUnavailable(await ours().getManifest(name, pushed.manifest.digest));
      const layer = pushed.layers[0]!;
      expectUnavailable(await ours().getBlob(name, layer.digest));
      proxy.reset();
      expect((await readManifest(ours(), name, 'v1')).digest).to.equal(pushed.manifest.digest);
      expectWholeBlob(await rawGet(`${registry.url}/v2/${name}/blobs/${layer.digest}`), layer, 'upstream back');
    });

    it('upstream 401 or 403 is not found for the client (nothing to retry); 429 is 429 with Retry-After; no upstream URL in the answer', async function () {
      const upstreamName = 'refusing/app';
      const name = `fast/${upstreamName}`;
      await hub().pushImage(upstreamName, 'v1');
      for (const status of [401, 403] as const) {
        proxy.reset();
        proxy.failNext(1_000, { status, match: { path: new RegExp(`^/v2/${upstreamName}/`) } });
        expectNotFound(await ours().getManifest(name, 'v1'), 'MANIFEST_UNKNOWN');
        expectNotFound(await ours().getBlob(name, `sha256:${randomBytes(32).toString('hex')}`), 'BLOB_UNKNOWN');
      }
      proxy.reset();
      proxy.failNext(1_000, { status: 429, headers: { 'Retry-After': '1' }, match: { path: new RegExp(`^/v2/${upstreamName}/`) } });
      const limited = await ours().getManifest(name, 'v1');
      expect(limited.status, describeReply(limited)).to.equal(429);
      expect(parseOciErrors(limited).errors[0]!.code).to.equal('TOOMANYREQUESTS');
      expect(limited.headers.get('retry-after')).to.equal('1');
      expect(limited.text(), 'the upstream address stays in our log').to.not.include(proxy.endpoint.replace(/^https?:\/\//, ''));
      proxy.reset();
      expect((await ours().getManifest(name, 'v1')).status, 'fine once the upstream is').to.equal(200);
    });

    it('a blob pushed here is not served through a pull-through name whose upstream lacks it (no reading others\' blobs by digest)', async function () {
      const secret = content(randomBytes(1000), MediaType.ociLayerGzip);
      await ours().pushBlob('fast/private/app', secret); // a repository the upstream never had
      expectWholeBlob(await rawGet(`${registry.url}/v2/fast/private/app/blobs/${secret.digest}`), secret, 'its own repository');
      expectNotFound(await ours().getBlob('fast/library/anything', secret.digest), 'BLOB_UNKNOWN');
      expectNotFound(await ours().headBlob('fast/library/anything', secret.digest), 'BLOB_UNKNOWN');
      // A stored blob that the upstream does have in the repository asked for is linked from storage.
      const shared = content(randomBytes(1000), MediaType.ociLayerGzip);
      await hub().pushBlob('library/shared', shared);
      await ours().pushBlob('fast/private/app', shared);
      proxy.reset();
      expectWholeBlob(await rawGet(`${registry.url}/v2/fast/library/shared/blobs/${shared.digest}`), shared, 'confirmed upstream');
      expect(upstreamRequests(proxy, 'library/shared', 'blobs').map((r) => r.method), describeRequests(proxy.requests)).to.deep.equal(['HEAD']);
    });

    it('a blob that cannot be stored here fails its request, not the registry, and holds no upstream connection', async function () {
      const upstreamName = 'unstorable/app';
      const name = `fast/${upstreamName}`;
      const blob = content(randomBytes(2 * 1024 * 1024), MediaType.ociLayerGzip);
      await hub().pushBlob(upstreamName, blob);
      // Upload sessions cannot be made in this repository: its _uploads is a file.
      const repository = join(registry.root, 'docker/registry/v2/repositories', name);
      await mkdir(repository, { recursive: true });
      await writeFile(join(repository, '_uploads'), 'in the way');
      try {
        // More than the upstream's connections (16): a leaked one per failure would leave none for the last GET.
        for (let i = 0; i < 20; i++) {
          const reply = await rawGet(`${registry.url}/v2/${name}/blobs/${blob.digest}`);
          expect(reply.complete, 'never a complete answer').to.equal(false);
        }
        expect((await fetch(`${registry.url}/v2/`)).status, 'the registry is still up').to.equal(200);
      } finally {
        await rm(join(repository, '_uploads'));
      }
      expectWholeBlob(await rawGet(`${registry.url}/v2/${name}/blobs/${blob.digest}`), blob, 'once storable');
    });

    it('upstream stopped without a stored copy: 503 UNAVAILABLE', async function () {
      // The stoppable upstream was stopped by the docker test; on its own this test stops it itself.
      await stoppable.stop();
      await stoppableProxy.stop();
      expectUnavailable(await ours().getManifest('stoppable/library/never-pulled', 'latest'));
      expectUnavailable(await ours().getBlob('stoppable/library/never-pulled', `sha256:${randomBytes(32).toString('hex')}`));
    });

    it('upstream unreachable: a HEAD of a blob not stored here is 404, so a push into a pull-through name uploads and succeeds', async function () {
      await stoppable.stop();
      await stoppableProxy.stop();
      const name = 'stoppable/team/pushed-here';
      const blob = content(randomBytes(1000), MediaType.ociLayerGzip);
      // What docker and buildah ask before uploading a layer: "not here" (upload it), not 503.
      expectNotFound(await ours().headBlob(name, blob.digest), 'BLOB_UNKNOWN');
      // A pull of it still says the upstream is away: a client retries that.
      expectUnavailable(await ours().getBlob(name, blob.digest));
      const pushed = await ours().pushImage(name, 'v1');
      expect((await readManifest(ours(), name, 'v1')).digest).to.equal(pushed.manifest.digest);
      expectWholeBlob(await rawGet(`${registry.url}/v2/${name}/blobs/${pushed.layers[0]!.digest}`), pushed.layers[0]!, 'pushed here');
    });

    it('upstream 404: MANIFEST_UNKNOWN and BLOB_UNKNOWN, asked once', async function () {
      expectNotFound(await ours().getManifest('library/absent', 'latest'), 'MANIFEST_UNKNOWN');
      expect(upstreamRequests(proxy, 'library/absent', 'manifests').map((r) => `${r.method} ${r.status}`), describeRequests(proxy.requests)).to.deep.equal(['HEAD 404']);
      const digest = `sha256:${randomBytes(32).toString('hex')}`;
      expectNotFound(await ours().getManifest('library/busybox', digest), 'MANIFEST_UNKNOWN');
      expectNotFound(await ours().getBlob('library/busybox', digest), 'BLOB_UNKNOWN');
      expectNotFound(await ours().headBlob('library/busybox', digest), 'BLOB_UNKNOWN');
    });

    it('a blob whose upstream bytes are corrupt is not stored and reaches the client cut, never as a complete 200', async function () {
      // 1000 bytes: the digest fails before our store reads the stream (that once ended the process);
      // 1 MiB: the client had every byte of its Content-Length before the digest was known.
      for (const size of [1000, 1024 * 1024]) {
        const name = `corrupt/app-${size}`;
        const blob = content(randomBytes(size), MediaType.ociLayerGzip);
        await hub().pushBlob(name, blob);
        const url = `${registry.url}/v2/${name}/blobs/${blob.digest}`;
        for (const [where, atByte] of [['middle', undefined], ['last byte', blob.size - 1]] as const) {
          const what = `${size} bytes corrupt at the ${where}`;
          proxy.reset();
          proxy.corruptNext(1, { match: { method: 'GET', path: /\/blobs\// }, ...(atByte !== undefined ? { atByte } : {}) });
          const cut = await rawGet(url);
          expect(proxy.requests.some((r) => r.fault === 'corrupt'), `${what}: ${describeRequests(proxy.requests)}`).to.equal(true);
          // Headers may be out (200, Content-Length) before the digest is known; the body must then stop
          // short. Otherwise a 5xx, or a connection closed before any answer (status 0).
          if (cut.status === 200) {
            expect(cut.complete && cut.body.length === blob.size, `${what}: got a complete 200 of ${cut.body.length} bytes`).to.equal(false);
          } else if (cut.status !== 0) {
            expect(cut.status, what).to.be.at.least(500);
          }
          const alive = await ours().get('/v2/');
          expect(alive.status, `${what}: the registry must still answer`).to.equal(200);
        }
        // Nothing was stored: the next GET fetches again, and gets the right bytes.
        await sleep(200);
        proxy.reset();
        expectWholeBlob(await rawGet(url), blob, `${size} bytes after the corrupt fetches`);
        expect(upstreamRequests(proxy, name, 'blobs').filter((r) => r.method === 'GET'), describeRequests(proxy.requests)).to.have.length(1);
      }
    });
  });
});
