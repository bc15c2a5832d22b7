// The mirror job (POST /admin/v1/mirror) end to end, against CNCF Distribution 2.8.2 (Debian's
// docker-registry) as the upstream, once without auth and once with htpasswd: a buildah multi-arch index
// (amd64 + arm64 busybox, four layers each) in OCI media types, the same index converted to a Docker
// manifest list, and a single-platform arm64 tag, mirrored into the same-name and ddn-k8s layouts
// (DESIGN.md section 4), compared digest for digest with the upstream and pulled and run by a private
// dockerd (arm64 under qemu). Then, on one registry: request validation, tagRegex and semver selection,
// an upstream answering 429 and dropping connections (the fault proxy in front of Distribution), faults
// that never stop, cancelling a throttled job, a sync rule run on demand; and on another: a registry
// SIGKILLed in the middle of a job resumes without fetching the blobs it had already stored.
import { createHash, randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'chai';
import { basicAuth, htpasswdLine } from '../helpers/auth.js';
import { removeTree } from '../helpers/cleanup.js';
import { startBuildah, startSkopeo, type ContainerClient } from '../helpers/clients.js';
import { startDistribution, type RunningDistribution } from '../helpers/distribution.js';
import { startDockerd, type RunningDockerd } from '../helpers/dockerd.js';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';
import { buildBusyboxImage, buildMultiArchIndex, UNAME_M, type Arch } from '../helpers/images.js';
import {
  expectJobEnds,
  jobLogs,
  postMirror,
  submitMirror,
  submitSync,
  waitForJob,
  type JobView,
  type MirrorResultView,
} from '../helpers/mirror.js';
import {
  content,
  describeReply,
  descriptorOf,
  expectOciError,
  gzipLayer,
  imageConfig,
  imageManifest,
  indexManifest,
  MANIFEST_ACCEPT,
  MediaType,
  OciClient,
  sha256,
  type Content,
} from '../helpers/oci.js';
import { tempDir } from '../helpers/process.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';

const REPO = 'mirror/app';
/** The tags of REPO on both upstreams. */
const INDEX_TAG = '1.0'; // OCI index, amd64 + arm64
const DOCKER_TAG = '1.0-docker'; // the same images as a Docker manifest list of schema 2 manifests
const SINGLE_TAG = 'single'; // one arm64 OCI image manifest
const MIRRORED_TAGS = [INDEX_TAG, DOCKER_TAG, SINGLE_TAG];

const USER = 'mirror-bot';
const PASSWORD = 'upstream-secret';

const MiB = 1024 * 1024;
/** The image the throttled tests copy: a config and BIG_LAYERS layers of BIG_LAYER_SIZE random bytes. */
const BIG_REPO = 'big/app';
const BIG_LAYERS = 8;
const BIG_LAYER_SIZE = 2 * MiB;

const INDEX_TYPES = new Set<string>([MediaType.ociIndex, MediaType.dockerManifestList]);

interface Manifest {
  mediaType?: string;
  config?: { digest: string; size: number };
  layers?: Array<{ digest: string; size: number }>;
  manifests?: Array<{ digest: string; mediaType: string; platform?: { os: string; architecture: string; variant?: string } }>;
}

interface FetchedManifest {
  status: number;
  digest: string;
  /** Content-Type without parameters. */
  mediaType: string;
  bytes: Buffer;
  reply: string;
}

/** GET a manifest with every manifest type in Accept; the digest is computed here from the bytes. */
async function fetchManifest(base: string, repo: string, ref: string, authorization?: string): Promise<FetchedManifest> {
  const res = await fetch(`${base}/v2/${repo}/manifests/${ref}`, {
    headers: { accept: MANIFEST_ACCEPT, ...(authorization ? { authorization } : {}) },
  });
  const bytes = Buffer.from(await res.arrayBuffer());
  const mediaType = (res.headers.get('content-type') ?? '').split(';')[0]!.trim();
  const shown = bytes.length > 300 ? `${bytes.subarray(0, 300).toString()}...` : bytes.toString();
  return { status: res.status, digest: sha256(bytes), mediaType, bytes, reply: `GET ${base}/v2/${repo}/manifests/${ref} -> ${res.status} ${mediaType} ${shown}` };
}

async function fetchBlob(base: string, repo: string, digest: string, authorization?: string): Promise<{ status: number; bytes: Buffer }> {
  const res = await fetch(`${base}/v2/${repo}/blobs/${digest}`, { headers: authorization ? { authorization } : {} });
  return { status: res.status, bytes: Buffer.from(await res.arrayBuffer()) };
}

async function listTags(base: string, repo: string): Promise<string[]> {
  const res = await fetch(`${base}/v2/${repo}/tags/list`);
  const text = await res.text();
  expect(res.status, `GET /v2/${repo}/tags/list -> ${res.status} ${text}`).to.equal(200);
  return ((JSON.parse(text) as { tags?: string[] | null }).tags ?? []).slice().sort();
}

/** The ddn-k8s tag of `tag` for a platform, written out here independently of the server's mapping. */
function ddnTag(tag: string, arch: Arch): string {
  return arch === 'amd64' ? tag : `${tag}-linux${arch}`;
}

/** What the upstream holds for one tag: the top manifest and, for an index, each platform's manifest. */
interface UpstreamTag {
  tag: string;
  top: FetchedManifest;
  isIndex: boolean;
  /** Platform manifests: the index's entries, or the tag's own manifest with its config's platform. */
  platforms: Array<{ arch: Arch; digest: string; manifest: Manifest }>;
}

async function readUpstreamTag(base: string, repo: string, tag: string, authorization?: string): Promise<UpstreamTag> {
  const top = await fetchManifest(base, repo, tag, authorization);
  expect(top.status, top.reply).to.equal(200);
  const isIndex = INDEX_TYPES.has(top.mediaType);
  const doc = JSON.parse(top.bytes.toString('utf8')) as Manifest;
  const platforms: UpstreamTag['platforms'] = [];
  const arches = (archOf: string) => {
    expect(['amd64', 'arm64'], `upstream architecture in ${repo}:${tag}`).to.include(archOf);
    return archOf as Arch;
  };
  if (isIndex) {
    for (const entry of doc.manifests ?? []) {
      const child = await fetchManifest(base, repo, entry.digest, authorization);
      expect(child.status, child.reply).to.equal(200);
      platforms.push({ arch: arches(entry.platform!.architecture), digest: entry.digest, manifest: JSON.parse(child.bytes.toString('utf8')) as Manifest });
    }
  } else {
    const config = await fetchBlob(base, repo, doc.config!.digest, authorization);
    expect(config.status, `config of ${repo}:${tag}`).to.equal(200);
    const { architecture } = JSON.parse(config.bytes.toString('utf8')) as { architecture: string };
    platforms.push({ arch: arches(architecture), digest: top.digest, manifest: doc });
  }
  return { tag, top, isIndex, platforms };
}

/** A small amd64 image of random content pushed under `tag` (a distinct digest per call). */
async function pushTinyImage(client: OciClient, repo: string, tag: string, layerSize = 300): Promise<{ manifest: Content; layer: Content }> {
  const config = imageConfig({ architecture: 'amd64' });
  const layer = gzipLayer(layerSize);
  const manifest = imageManifest({ config: descriptorOf(config), layers: [descriptorOf(layer)] });
  await client.pushManifest(repo, tag, manifest, [config, layer]);
  return { manifest, layer };
}

/** The digests a GET through the fault proxy asked for, in order. */
function blobGets(proxy: FaultProxy): string[] {
  return proxy.requests
    .filter((r) => r.method === 'GET')
    .map((r) => /\/blobs\/(sha256:[0-9a-f]{64})$/.exec(r.path)?.[1])
    .filter((d): d is string => d !== undefined);
}

/** The blob counts in a mirror job's progress (units = blobs). */
function units(job: JobView): { done: number; total: number } {
  const value = job.progress.units as { done?: number; total?: number } | undefined;
  return { done: value?.done ?? 0, total: value?.total ?? 0 };
}

function bytesDone(job: JobView): number {
  return (job.progress.bytes as { done?: number } | undefined)?.done ?? 0;
}

describe('mirror jobs (POST /admin/v1/mirror) from CNCF Distribution', function () {
  this.timeout(120_000);
  let open: RunningDistribution; // no auth
  let secure: RunningDistribution; // htpasswd
  let buildah: ContainerClient;
  let skopeo: ContainerClient;
  let dockerd: RunningDockerd;
  let work: string;
  let big: { manifest: Content; blobs: Content[] };

  before(async function () {
    this.timeout(300_000);
    work = await tempDir('mirror-test');
    const htpasswd = join(work, 'htpasswd');
    await writeFile(htpasswd, `${htpasswdLine(USER, PASSWORD)}\n`);
    open = await startDistribution();
    secure = await startDistribution({ auth: { htpasswd: { realm: 'mirror-test', path: htpasswd } } });
    buildah = await startBuildah({ insecureRegistries: [open.hostPort] });
    skopeo = await startSkopeo();
    dockerd = await startDockerd();

    // The index: busybox and three more layers (a COPY per file) per platform, pushed as OCI.
    const extraFiles = {
      '/etc/mirror-test': 'mirror test\n',
      '/opt/data.bin': randomBytes(64 * 1024),
      '/opt/notes.txt': `built ${new Date().toISOString()}\n`,
    };
    await buildMultiArchIndex(buildah, { ref: `${open.hostPort}/${REPO}:${INDEX_TAG}`, arches: ['amd64', 'arm64'], extraFiles, layerPerFile: true });
    // The same images as a Docker manifest list of Docker schema 2 manifests (layers shared).
    await skopeo.run(['copy', '--all', '--format', 'v2s2', '--src-tls-verify=false', '--dest-tls-verify=false',
      `docker://${open.hostPort}/${REPO}:${INDEX_TAG}`, `docker://${open.hostPort}/${REPO}:${DOCKER_TAG}`]);
    await buildBusyboxImage(buildah, { arch: 'arm64', ref: `${open.hostPort}/${REPO}:${SINGLE_TAG}`, extraFiles: { '/etc/single': 'single\n' } });
    // The htpasswd upstream gets the very same manifests.
    for (const tag of MIRRORED_TAGS) {
      await skopeo.run(['copy', '--all', '--preserve-digests', '--src-tls-verify=false', '--dest-tls-verify=false',
        '--dest-creds', `${USER}:${PASSWORD}`, `docker://${open.hostPort}/${REPO}:${tag}`, `docker://${secure.hostPort}/${REPO}:${tag}`]);
    }

    const client = new OciClient(open.url);
    const config = imageConfig({ architecture: 'amd64' });
    const layers = Array.from({ length: BIG_LAYERS }, () => content(randomBytes(BIG_LAYER_SIZE), MediaType.ociLayerGzip));
    const manifest = imageManifest({ config: descriptorOf(config), layers: layers.map((l) => descriptorOf(l)) });
    await client.pushManifest(BIG_REPO, '1', manifest, [config, ...layers]);
    big = { manifest, blobs: [config, ...layers] };
  });

  after(async function () {
    this.timeout(120_000);
    const results = await Promise.allSettled([open?.stop(), secure?.stop(), buildah?.stop(), skopeo?.stop(), dockerd?.stop()]);
    if (work) await removeTree(work);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  });

  /** Empties dockerd's image store: the next pull must fetch every layer from our registry. */
  async function removeAllImages(): Promise<void> {
    const ids = (await dockerd.docker(['images', '-aq', '--no-trunc'])).stdout.split('\n').filter(Boolean);
    if (ids.length > 0) await dockerd.docker(['rmi', '--force', ...new Set(ids)]);
    expect((await dockerd.docker(['images', '-aq'])).stdout.trim()).to.equal('');
  }

  for (const variant of [{ name: 'without auth', auth: false }, { name: 'with htpasswd', auth: true }]) {
    describe(`an upstream ${variant.name}`, function () {
      let registry: RunningRegistry;
      let upstreamUrl: string;
      let authorization: string | undefined;
      const upstream: Record<string, UpstreamTag> = {};
      const ddnRepo = `ddn-k8s/up/${REPO}`;

      before(async function () {
        this.timeout(120_000);
        const source = variant.auth ? secure : open;
        upstreamUrl = source.url;
        authorization = variant.auth ? basicAuth(USER, PASSWORD) : undefined;
        if (variant.auth) {
          // Make sure the upstream really wants credentials.
          const anonymous = await fetchManifest(upstreamUrl, REPO, INDEX_TAG);
          expect(anonymous.status, anonymous.reply).to.equal(401);
        }
        for (const tag of MIRRORED_TAGS) upstream[tag] = await readUpstreamTag(upstreamUrl, REPO, tag, authorization);
        expect(upstream[INDEX_TAG]!.top.mediaType).to.equal(MediaType.ociIndex);
        expect(upstream[DOCKER_TAG]!.top.mediaType).to.equal(MediaType.dockerManifestList);
        expect(upstream[SINGLE_TAG]!.top.mediaType).to.equal(MediaType.ociManifest);
        for (const tag of [INDEX_TAG, DOCKER_TAG]) {
          expect(upstream[tag]!.platforms.map((p) => p.arch).sort()).to.deep.equal(['amd64', 'arm64']);
          for (const p of upstream[tag]!.platforms) expect(p.manifest.layers, `layers of ${tag} ${p.arch}`).to.have.length(4);
        }
        registry = await startRegistry({
          config: {
            mirror: {
              upstreams: [
                { name: 'up', url: upstreamUrl, ...(variant.auth ? { username: USER, password: PASSWORD } : {}) },
                ...(variant.auth ? [{ name: 'wrongpw', url: upstreamUrl, username: USER, password: 'not-the-password' }] : []),
              ],
            },
          },
        });
      });

      after(async function () {
        await registry?.stop();
      });

      it('mirrors an OCI index, a Docker manifest list and a single-platform tag into same-name and ddn-k8s, every digest as upstream', async function () {
        const { location } = await submitMirror(registry.url, {
          source: `up/${REPO}`,
          tags: MIRRORED_TAGS,
          layouts: ['same-name', 'ddn-k8s'],
        });
        const job = await expectJobEnds(registry.url, location, 'succeeded', 90_000);
        expect(job.error).to.equal(null);
        expect(units(job).total, JSON.stringify(job.progress)).to.be.above(0);
        expect(units(job).done, JSON.stringify(job.progress)).to.equal(units(job).total);
        const result = job.result as MirrorResultView;
        expect(result.tags.map((t) => `${t.tag} ${t.state} ${t.digest}`).sort()).to.deep.equal(
          MIRRORED_TAGS.map((tag) => `${tag} succeeded ${upstream[tag]!.top.digest}`).sort(),
        );

        const expectedDdnTags: string[] = [];
        for (const tag of MIRRORED_TAGS) {
          const up = upstream[tag]!;
          // same-name: the tag byte for byte, with the upstream's media type.
          const local = await fetchManifest(registry.url, REPO, tag);
          expect(local.status, local.reply).to.equal(200);
          expect(local.digest, `${REPO}:${tag} here vs upstream`).to.equal(up.top.digest);
          expect(local.bytes.equals(up.top.bytes), `${REPO}:${tag} bytes`).to.equal(true);
          expect(local.mediaType, local.reply).to.equal(up.top.mediaType);
          for (const platform of up.platforms) {
            if (up.isIndex) {
              // Every manifest the index names is here by digest, so the index is whole.
              const child = await fetchManifest(registry.url, REPO, platform.digest);
              expect(child.status, child.reply).to.equal(200);
              expect(child.digest).to.equal(platform.digest);
            }
            // ddn-k8s: one tag per platform, the upstream platform manifest byte for byte.
            const ddn = ddnTag(tag, platform.arch);
            expectedDdnTags.push(ddn);
            const single = await fetchManifest(registry.url, ddnRepo, ddn);
            expect(single.status, single.reply).to.equal(200);
            expect(single.digest, `${ddnRepo}:${ddn} vs upstream ${platform.arch} manifest`).to.equal(platform.digest);
            expect(INDEX_TYPES.has(single.mediaType), single.reply).to.equal(false);
            // And its blobs are readable in the ddn-k8s repository, whole.
            for (const blob of [platform.manifest.config!, ...platform.manifest.layers!]) {
              const got = await fetchBlob(registry.url, ddnRepo, blob.digest);
              expect(got.status, `${ddnRepo}@${blob.digest}`).to.equal(200);
              expect(sha256(got.bytes), `${ddnRepo}@${blob.digest}`).to.equal(blob.digest);
            }
          }
        }
        // Exactly these tags: no plain tag for a single arm64 image, no `-linuxamd64`.
        expect(await listTags(registry.url, REPO)).to.deep.equal([...MIRRORED_TAGS].sort());
        expect(await listTags(registry.url, ddnRepo)).to.deep.equal(expectedDdnTags.sort());
        expect(expectedDdnTags).to.include.members(['1.0', '1.0-linuxarm64', '1.0-docker', '1.0-docker-linuxarm64', 'single-linuxarm64']);
        // The logs say what was tagged.
        expect(await jobLogs(registry.url, location)).to.include(`${ddnRepo}:1.0-linuxarm64`);
      });

      it('serves every mirrored tag to docker pull; amd64 runs natively, arm64 under qemu', async function () {
        this.timeout(240_000);
        const hp = registry.hostPort;
        const cases: Array<{ ref: string; arch: Arch; digest: string; platformFlag: boolean }> = [];
        for (const tag of MIRRORED_TAGS) {
          const up = upstream[tag]!;
          for (const platform of up.platforms) {
            // same-name: an index needs --platform to pick; the digest docker reports is the tag's.
            cases.push({ ref: `${hp}/${REPO}:${tag}`, arch: platform.arch, digest: up.top.digest, platformFlag: up.isIndex });
            // ddn-k8s: a plain pull of a single-platform manifest, as on a mirror site.
            cases.push({ ref: `${hp}/${ddnRepo}:${ddnTag(tag, platform.arch)}`, arch: platform.arch, digest: platform.digest, platformFlag: false });
          }
        }
        // The single arm64 tag appears once per layout; every index platform twice.
        expect(cases).to.have.length(10);
        for (const c of cases) {
          await removeAllImages();
          const pulled = await dockerd.docker(['pull', ...(c.platformFlag ? ['--platform', `linux/${c.arch}`] : []), c.ref]);
          const what = `docker pull ${c.ref} (${c.arch}):\n${pulled.stdout}`;
          expect(pulled.stdout, what).to.match(/Pull complete/);
          expect(pulled.stdout, what).to.not.match(/Already exists/);
          expect(pulled.stdout, what).to.include(`Digest: ${c.digest}`);
          const platform = (await dockerd.docker(['image', 'inspect', '--format', '{{.Os}}/{{.Architecture}}', c.ref])).stdout.trim();
          expect(platform, c.ref).to.equal(`linux/${c.arch}`);
          const uname = await dockerd.runImage(c.ref, ['uname', '-m'], ['--platform', `linux/${c.arch}`]);
          expect(uname.trim(), `uname -m in ${c.ref}`).to.equal(UNAME_M[c.arch]);
        }
        await removeAllImages();
      });

      if (variant.auth) {
        it('fails the job with a clear error, and writes no tag, when the upstream refuses the credentials', async function () {
          const { location } = await submitMirror(registry.url, { source: `wrongpw/${REPO}`, tags: [SINGLE_TAG], layouts: [{ prefix: 'wrongpw' }] });
          const job = await expectJobEnds(registry.url, location, 'failed', 60_000);
          expect(job.error?.message, JSON.stringify(job)).to.match(/401|UNAUTHORIZED|unauthori[sz]ed/i);
          const tag = await fetchManifest(registry.url, `wrongpw/${REPO}`, SINGLE_TAG);
          expect(tag.status, tag.reply).to.equal(404);
        });
      }
    });
  }

  describe('on one registry: validation, selection, faults, cancel, sync rules', function () {
    let registry: RunningRegistry;
    let flaky: FaultProxy; // Distribution behind the fault proxy
    let slow: FaultProxy; // the same, with a low bandwidth limit in our config
    const SELECTION_TAGS = ['1.0.0', '1.1.0', '1.2.0', '1.2.5-rc.1', 'v1.3.0', '2.0.0', 'latest', '1.2-alpine'];
    const selection: Record<string, string> = {}; // tag -> manifest digest

    before(async function () {
      this.timeout(120_000);
      flaky = await startFaultProxy(open.url);
      slow = await startFaultProxy(open.url);
      const client = new OciClient(open.url);
      for (const tag of SELECTION_TAGS) selection[tag] = (await pushTinyImage(client, 'sel/app', tag)).manifest.digest;
      registry = await startRegistry({
        config: {
          mirror: {
            upstreams: [
              { name: 'local', url: open.url },
              { name: 'flaky', url: flaky.endpoint },
              { name: 'slow', url: slow.endpoint, concurrency: 1, bandwidth: 2 * MiB },
            ],
            sync: [{
              name: 'nightly',
              upstream: 'local',
              repositories: ['sync/one', 'sync/two'],
              semver: '^1.0.0',
              layouts: ['same-name', 'ddn-k8s'],
              interval: '24h',
            }],
          },
        },
      });
    });

    after(async function () {
      const results = await Promise.allSettled([registry?.stop(), flaky?.stop(), slow?.stop()]);
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
    });

    it('refuses invalid requests with 400 INVALID_REQUEST and an OCI error body naming the problem', async function () {
      const good = { source: 'local/sel/app', tags: ['1.0.0'] };
      const cases: Array<{ name: string; body: unknown; message: RegExp }> = [
        { name: 'missing source', body: { tags: ['1.0.0'] }, message: /source/ },
        { name: 'unknown upstream', body: { source: 'nowhere/sel/app', tags: ['1.0.0'] }, message: /upstream/ },
        { name: 'source without a repository', body: { source: 'local', tags: ['1.0.0'] }, message: /source/ },
        { name: 'tags and tagRegex', body: { ...good, tagRegex: '1\\..*' }, message: /tagRegex/ },
        { name: 'no tag selection', body: { source: good.source }, message: /tags/ },
        { name: 'empty tags', body: { source: good.source, tags: [] }, message: /tags/ },
        { name: 'an invalid tag', body: { source: good.source, tags: ['bad tag!'] }, message: /tags/ },
        { name: 'bad regex', body: { source: good.source, tagRegex: '([' }, message: /tagRegex/ },
        { name: 'bad semver range', body: { source: good.source, semver: '>=banana' }, message: /semver/ },
        { name: 'bad platform', body: { ...good, platforms: ['linux'] }, message: /platforms/ },
        { name: 'bad platform (too many parts)', body: { ...good, platforms: ['linux/arm/v7/extra'] }, message: /platforms/ },
        { name: 'unknown layout', body: { ...good, layouts: ['flat'] }, message: /layouts/ },
        { name: 'bad layout prefix', body: { ...good, layouts: [{ prefix: 'Bad Prefix!' }] }, message: /prefix/i },
        { name: 'unknown field', body: { ...good, colour: 'blue' }, message: /colour|unrecognized|unknown/i },
        { name: 'a JSON array', body: [good], message: /./ },
        { name: 'a non-JSON body', body: '{"source": "local/sel/app", tags: [', message: /JSON/ },
      ];
      const problems: string[] = [];
      for (const c of cases) {
        const reply = await postMirror(registry.url, c.body);
        try {
          const body = expectOciError(reply, 400, 'INVALID_REQUEST')!;
          const error = body.errors[0]!;
          expect(error.message, `message of ${describeReply(reply)}`).to.be.a('string').and.match(c.message);
        } catch (error) {
          problems.push(`${c.name}: ${(error as Error).message}`);
        }
      }
      expect(problems, problems.join('\n')).to.deep.equal([]);
      // Still accepted after all that: the request above without its faults.
      const { location } = await submitMirror(registry.url, { ...good, layouts: [{ prefix: 'valid' }] });
      await expectJobEnds(registry.url, location, 'succeeded');
    });

    it('answers 404 with an OCI error body for unknown job ids, their logs and their cancellation', async function () {
      const client = new OciClient(registry.url);
      for (const id of ['0190b6c4-1a2b-7c3d-8e4f-0123456789ab', 'not-a-job-id']) {
        expectOciError(await client.get(`/admin/v1/jobs/${id}`), 404, null);
        expectOciError(await client.get(`/admin/v1/jobs/${id}/logs`), 404, null);
        expectOciError(await client.delete(`/admin/v1/jobs/${id}`), 404, null);
      }
      // An unknown sync rule is a 404 too.
      expectOciError(await postMirror(registry.url, { sync: 'no-such-rule' }), 404, null);
    });

    it('selects tags by tagRegex and by semver range from the upstream tag list, and platforms by the platforms filter', async function () {
      const cases = [
        { filter: { tagRegex: '1\\.2\\..*' }, prefix: 'regex', want: ['1.2.0', '1.2.5-rc.1'] },
        // Versions only (v-prefixed too); a pre-release only when the range names one.
        { filter: { semver: '>=1.1.0 <2.0.0' }, prefix: 'semver', want: ['1.1.0', '1.2.0', 'v1.3.0'] },
      ];
      for (const c of cases) {
        const { location } = await submitMirror(registry.url, { source: 'local/sel/app', ...c.filter, layouts: [{ prefix: c.prefix }] });
        const job = await expectJobEnds(registry.url, location, 'succeeded');
        const result = job.result as MirrorResultView;
        expect(result.tags.map((t) => t.tag).sort(), JSON.stringify(c.filter)).to.deep.equal([...c.want].sort());
        const repo = `${c.prefix}/sel/app`;
        expect(await listTags(registry.url, repo), JSON.stringify(c.filter)).to.deep.equal([...c.want].sort());
        for (const tag of SELECTION_TAGS) {
          const got = await fetchManifest(registry.url, repo, tag);
          if (c.want.includes(tag)) {
            expect(got.status, got.reply).to.equal(200);
            expect(got.digest, `${repo}:${tag}`).to.equal(selection[tag]);
          } else {
            expect(got.status, got.reply).to.equal(404);
          }
        }
      }
      // A platforms filter: ddn-k8s tags only the arm64 manifest (`linux/arm64/v8` is `linux/arm64`),
      // same-name keeps the whole index, so it stays byte-identical.
      const client = new OciClient(open.url);
      const children: Array<{ arch: Arch; manifest: Content }> = [];
      for (const arch of ['amd64', 'arm64'] as Arch[]) {
        const config = imageConfig({ architecture: arch });
        const layer = gzipLayer(200);
        const manifest = imageManifest({ config: descriptorOf(config), layers: [descriptorOf(layer)] });
        await client.pushManifest('plat/app', manifest.digest, manifest, [config, layer]);
        children.push({ arch, manifest });
      }
      const index = indexManifest({
        manifests: children.map((c) => descriptorOf(c.manifest, {
          platform: { os: 'linux', architecture: c.arch, ...(c.arch === 'arm64' ? { variant: 'v8' } : {}) },
        })),
      });
      await client.pushManifest('plat/app', '1', index);
      const platformJob = await submitMirror(registry.url, { source: 'local/plat/app', tags: ['1'], platforms: ['linux/arm64/v8'], layouts: ['same-name', 'ddn-k8s'] });
      await expectJobEnds(registry.url, platformJob.location, 'succeeded');
      expect(await listTags(registry.url, 'ddn-k8s/local/plat/app')).to.deep.equal(['1-linuxarm64']);
      expect((await fetchManifest(registry.url, 'ddn-k8s/local/plat/app', '1-linuxarm64')).digest).to.equal(children[1]!.manifest.digest);
      expect((await fetchManifest(registry.url, 'plat/app', '1')).digest).to.equal(index.digest);
      for (const child of children) {
        const got = await fetchManifest(registry.url, 'plat/app', child.manifest.digest);
        expect(got.status, got.reply).to.equal(200);
      }

      // A filter that matches nothing fails the job with a clear error.
      const { location } = await submitMirror(registry.url, { source: 'local/sel/app', tagRegex: 'no-such-tag-.*', layouts: [{ prefix: 'none' }] });
      const job = await expectJobEnds(registry.url, location, 'failed');
      expect(job.error?.message, JSON.stringify(job.error)).to.match(/no upstream tag|match/i);
    });

    it('completes a mirror through an upstream that answers 429 with Retry-After and drops connections', async function () {
      this.timeout(120_000);
      flaky.reset();
      const blobs = { method: 'GET', path: /\/blobs\/sha256:/ };
      flaky.failNext(2, { status: 429, headers: { 'Retry-After': '1' }, match: { method: 'GET', path: /\/manifests\// } });
      flaky.failNext(3, { status: 429, headers: { 'Retry-After': '1' }, match: blobs });
      flaky.dropNext(2, { at: 'response-body', match: blobs });
      flaky.dropNext(2, { at: 'request', match: blobs });
      flaky.dropNext(1, { at: 'request', match: { method: 'GET', path: /\/manifests\// } });
      const started = Date.now();
      const { location } = await submitMirror(registry.url, { source: `flaky/${REPO}`, tags: [INDEX_TAG, DOCKER_TAG], layouts: ['same-name', 'ddn-k8s'] });
      const job = await expectJobEnds(registry.url, location, 'succeeded', 90_000);
      // Every fault was served (so the job really went through them), and the 429s were waited out.
      const faults = flaky.requests.filter((r) => r.fault !== undefined);
      expect(faults.filter((r) => r.fault === 'fail').length, JSON.stringify(faults)).to.equal(5);
      expect(faults.filter((r) => r.fault === 'drop').length, JSON.stringify(faults)).to.equal(5);
      // Two 429s with Retry-After: 1 in a row on the first manifest: at least two seconds.
      expect(Date.now() - started, 'Retry-After: 1 was honoured').to.be.at.least(2_000);
      expect((job.result as MirrorResultView).tags.every((t) => t.state === 'succeeded'), JSON.stringify(job.result)).to.equal(true);

      for (const tag of [INDEX_TAG, DOCKER_TAG]) {
        const up = await readUpstreamTag(open.url, REPO, tag);
        const local = await fetchManifest(registry.url, REPO, tag);
        expect(local.status, local.reply).to.equal(200);
        expect(local.digest, `${REPO}:${tag}`).to.equal(up.top.digest);
        for (const platform of up.platforms) {
          const ddn = await fetchManifest(registry.url, `ddn-k8s/flaky/${REPO}`, ddnTag(tag, platform.arch));
          expect(ddn.status, ddn.reply).to.equal(200);
          expect(ddn.digest).to.equal(platform.digest);
          // Bytes cut short and resumed are whole.
          for (const blob of [platform.manifest.config!, ...platform.manifest.layers!]) {
            const got = await fetchBlob(registry.url, REPO, blob.digest);
            expect(got.status, `${REPO}@${blob.digest}`).to.equal(200);
            expect(sha256(got.bytes), `${REPO}@${blob.digest}`).to.equal(blob.digest);
          }
        }
      }
    });

    it('fails with a clear error and writes no tag for content it cannot fetch, when the faults never stop', async function () {
      this.timeout(120_000);
      const client = new OciClient(open.url);
      const good = await pushTinyImage(client, 'faulty/app', 'good');
      const bad = await pushTinyImage(client, 'faulty/app', 'bad');
      flaky.reset();
      flaky.failNext(1_000_000, { status: 429, headers: { 'Retry-After': '0' }, match: { method: 'GET', path: new RegExp(`/blobs/${bad.layer.digest}$`) } });
      try {
        const { location } = await submitMirror(registry.url, { source: 'flaky/faulty/app', tags: ['good', 'bad'], layouts: ['same-name', 'ddn-k8s'] });
        const job = await expectJobEnds(registry.url, location, 'failed', 90_000);
        expect(job.error?.code, JSON.stringify(job)).to.be.a('string').and.not.equal('');
        expect(job.error?.message, JSON.stringify(job)).to.match(/\bbad\b/).and.match(/429|TOOMANYREQUESTS/);
        expect(blobGets(flaky), 'the bad layer was asked for').to.include(bad.layer.digest);
        const logs = await jobLogs(registry.url, location);
        expect(logs, logs).to.match(/bad/);
      } finally {
        flaky.reset();
      }
      // The tag whose content is whole is there; the other is not, in either layout.
      for (const repo of ['faulty/app', 'ddn-k8s/flaky/faulty/app']) {
        const goodTag = await fetchManifest(registry.url, repo, 'good');
        expect(goodTag.status, goodTag.reply).to.equal(200);
        expect(goodTag.digest).to.equal(good.manifest.digest);
        const badTag = await fetchManifest(registry.url, repo, 'bad');
        expect(badTag.status, badTag.reply).to.equal(404);
      }
      expect(await listTags(registry.url, 'faulty/app')).to.deep.equal(['good']);
    });

    it('cancels a running (throttled) mirror: the job ends cancelled and writes no tag', async function () {
      slow.reset();
      const { location, job: submitted } = await submitMirror(registry.url, { source: `slow/${BIG_REPO}`, tags: ['1'], layouts: ['same-name', 'ddn-k8s'] });
      await waitForJob(registry.url, location, { timeoutMs: 30_000, until: (job) => job.state === 'running' && bytesDone(job) > 0 });
      const cancel = await new OciClient(registry.url).delete(location);
      expect(cancel.status, describeReply(cancel)).to.equal(202);
      expect((cancel.json() as JobView).id).to.equal(submitted.id);
      const cancelledAt = Date.now();
      const job = await expectJobEnds(registry.url, location, 'cancelled', 30_000);
      expect(Date.now() - cancelledAt, 'the job stopped promptly').to.be.below(10_000);
      expect(job.error?.code, JSON.stringify(job)).to.equal('CANCELLED');
      expect(units(job).done, JSON.stringify(job.progress)).to.be.below(BIG_LAYERS + 1);
      for (const repo of [BIG_REPO, `ddn-k8s/slow/${BIG_REPO}`]) {
        const tag = await fetchManifest(registry.url, repo, '1');
        expect(tag.status, tag.reply).to.equal(404);
      }
      // A finished job cannot be cancelled again.
      const again = await new OciClient(registry.url).delete(location);
      expect(again.status, describeReply(again)).to.equal(409);
    });

    it('runs a configured sync rule on demand (POST {"sync": "<rule>"}) and mirrors its repositories', async function () {
      const client = new OciClient(open.url);
      const pushed: Record<string, Record<string, string>> = { 'sync/one': {}, 'sync/two': {} };
      for (const [repo, tags] of [['sync/one', ['1.0.0', '1.4.2', '2.0.0']], ['sync/two', ['1.5.0', 'latest']]] as const) {
        for (const tag of tags) pushed[repo]![tag] = (await pushTinyImage(client, repo, tag)).manifest.digest;
      }
      const { jobs } = await submitSync(registry.url, 'nightly');
      expect(jobs, 'one job per repository').to.have.length(2);
      const sources: string[] = [];
      for (const submitted of jobs) {
        const job = await expectJobEnds(registry.url, submitted.id, 'succeeded');
        const result = job.result as MirrorResultView;
        sources.push(result.source);
      }
      expect(sources.sort()).to.deep.equal(['local/sync/one', 'local/sync/two']);
      const want: Record<string, string[]> = { 'sync/one': ['1.0.0', '1.4.2'], 'sync/two': ['1.5.0'] };
      for (const [repo, tags] of Object.entries(want)) {
        expect(await listTags(registry.url, repo)).to.deep.equal(tags);
        expect(await listTags(registry.url, `ddn-k8s/local/${repo}`)).to.deep.equal(tags);
        for (const tag of tags) {
          for (const target of [repo, `ddn-k8s/local/${repo}`]) {
            const got = await fetchManifest(registry.url, target, tag);
            expect(got.status, got.reply).to.equal(200);
            expect(got.digest, `${target}:${tag}`).to.equal(pushed[repo]![tag]);
          }
        }
      }
    });
  });

  describe('a registry killed in the middle of a job', function () {
    let proxy: FaultProxy;
    let root: string;
    const registries: RunningRegistry[] = [];
    const config = () => ({
      mirror: { upstreams: [{ name: 'slow', url: proxy.endpoint, concurrency: 1, bandwidth: 4 * MiB }] },
    });

    before(async function () {
      proxy = await startFaultProxy(open.url);
      root = await tempDir('mirror-resume-root');
    });

    after(async function () {
      this.timeout(60_000);
      const results = await Promise.allSettled([...registries.map((r) => r.stop()), proxy?.stop()]);
      if (root) await removeTree(root);
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
    });

    it('resumes on restart without fetching the blobs it had stored, and tags only whole content', async function () {
      this.timeout(120_000);
      const request = { source: `slow/${BIG_REPO}`, tags: ['1'], layouts: ['same-name', 'ddn-k8s'] };
      const first = await startRegistry({ rootDir: root, config: config() });
      registries.push(first);
      const { location } = await submitMirror(first.url, request);
      const total = BIG_LAYERS + 1;
      const midway = await waitForJob(first.url, location, { timeoutMs: 30_000, until: (job) => units(job).done >= 3 });
      first.kill('SIGKILL');
      await first.daemon.exited;
      expect(midway.state, JSON.stringify(midway)).to.equal('running');
      expect(units(midway).total, JSON.stringify(midway.progress)).to.equal(total);
      const fetchedBefore = new Set(blobGets(proxy));

      const second = await startRegistry({ rootDir: root, config: config() });
      registries.push(second);
      // The killed job is recorded as interrupted once the new process has taken over as the job
      // runner, not left running for ever.
      const killed = await expectJobEnds(second.url, location, 'failed', 15_000);
      expect(killed.error?.code, JSON.stringify(killed)).to.equal('INTERRUPTED');
      // No tag points at the half-copied image.
      for (const repo of [BIG_REPO, `ddn-k8s/slow/${BIG_REPO}`]) {
        const tag = await fetchManifest(second.url, repo, '1');
        expect(tag.status, tag.reply).to.equal(404);
      }
      // What was stored before the kill.
      const stored = new Set<string>();
      for (const blob of big.blobs) {
        const head = await fetch(`${second.url}/v2/${BIG_REPO}/blobs/${blob.digest}`, { method: 'HEAD' });
        if (head.status === 200) stored.add(blob.digest);
      }
      expect(stored.size, 'blobs stored before the kill').to.be.at.least(3).and.below(total);
      for (const digest of stored) expect(fetchedBefore, `${digest} came from upstream`).to.include(digest);

      proxy.reset();
      const again = await submitMirror(second.url, request);
      const job = await expectJobEnds(second.url, again.location, 'succeeded', 60_000);
      const fetchedAfter = blobGets(proxy);
      const refetched = fetchedAfter.filter((digest) => stored.has(digest));
      expect(refetched, `blobs fetched again after the restart (stored before: ${[...stored].join(', ')})`).to.deep.equal([]);
      for (const blob of big.blobs) {
        if (!stored.has(blob.digest)) expect(fetchedAfter, `${blob.digest} was missing and must be fetched`).to.include(blob.digest);
      }
      const result = job.result as MirrorResultView;
      expect(result.blobs, JSON.stringify(result)).to.deep.equal({ fetched: total - stored.size, present: stored.size });

      // The tags now verify: the upstream manifest, and every blob whole.
      for (const repo of [BIG_REPO, `ddn-k8s/slow/${BIG_REPO}`]) {
        const tag = await fetchManifest(second.url, repo, '1');
        expect(tag.status, tag.reply).to.equal(200);
        expect(tag.digest, `${repo}:1`).to.equal(big.manifest.digest);
        for (const blob of big.blobs) {
          const got = await fetchBlob(second.url, repo, blob.digest);
          expect(got.status, `${repo}@${blob.digest}`).to.equal(200);
          expect(createHash('sha256').update(got.bytes).digest('hex'), `${repo}@${blob.digest}`).to.equal(blob.digest.slice(7));
        }
      }
    });
  });
});
