// Server-side multi-arch builds of the real dify-api recipe: from a local git repository shaped like
// Dify's, on a stand-in base made here, through the job queue, once in one process (state in storage)
// and once with Redis and two worker processes that each build one platform. Then what a user sees:
// docker pull and run per platform, the config compared with the seed field by field, the index and its
// tags, the provenance referrer. Failures (a failing RUN, a bad Dockerfile, an unreachable git server, a
// cancel) end the job with its log and move no tag.
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { parse as parseYaml, stringify } from 'yaml';
import { difyRepo, pushDifyBase, seedImageConfig, type DifyRepo } from '../helpers/build-fixtures.js';
import { startBuildah, type ContainerClient } from '../helpers/clients.js';
import { startDockerd, type RunningDockerd } from '../helpers/dockerd.js';
import { freePort, startDaemon, tempDir, waitUntil, type Daemon } from '../helpers/process.js';
import { parseExposition, valueOf } from '../helpers/prometheus.js';
import { startRedis, type RunningRedis } from '../helpers/redis.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';
import { removeTree } from '../helpers/cleanup.js';
import { existingDriver, overlayWorks } from '../../builder/storage-driver.js';
import { basicAuth, bcryptHash } from '../helpers/auth.js';

const MAIN = fileURLToPath(new URL('../../server/main.ts', import.meta.url));
const BASE_REPOSITORY = 'test/python';
const BASE_TAG = '3.12-slim-bookworm';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const ACCEPT = [OCI_INDEX, 'application/vnd.oci.image.manifest.v1+json', 'application/vnd.docker.distribution.manifest.v2+json'].join(', ');
const TERMINAL = ['succeeded', 'failed', 'cancelled'];

interface Job {
  id: string;
  kind: string;
  state: string;
  request: Record<string, unknown>;
  progress: Record<string, unknown> & { children?: Record<string, { state: string; progress: Record<string, unknown>; error: { code: string } | null }> };
  result: BuildResult | null;
  error: { code: string; message: string } | null;
}

interface BuildResult {
  repository: string;
  commit: string;
  index: { digest: string; size: number };
  platforms: Record<string, { digest: string; pushedBytes: number }>;
  tags: Array<{ repository: string; tag: string; digest: string; platform?: string }>;
  provenance: { digest: string };
}

/** The admin and /v2 APIs of one registry, with Basic credentials when auth is on. */
class Api {
  constructor(
    readonly registry: RunningRegistry,
    private readonly authorization?: string,
  ) {}

  async fetch(path: string, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    if (this.authorization && !headers.has('authorization')) headers.set('authorization', this.authorization);
    return fetch(`${this.registry.url}${path}`, { ...init, headers });
  }

  async json<T>(path: string, init: RequestInit = {}): Promise<T> {
    const res = await this.fetch(path, init);
    const text = await res.text();
    if (!res.ok) throw new Error(`${init.method ?? 'GET'} ${path}: ${res.status} ${text}`);
    return JSON.parse(text) as T;
  }

  async submit(body: unknown): Promise<{ status: number; job: Job; text: string }> {
    const res = await this.fetch('/admin/v1/builds', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const text = await res.text();
    return { status: res.status, job: (res.status === 202 ? JSON.parse(text) : undefined) as Job, text };
  }

  job(id: string): Promise<Job> {
    return this.json<Job>(`/admin/v1/jobs/${id}`);
  }

  async waitFor(id: string, check: (job: Job) => boolean, what: string, timeoutMs = 600_000): Promise<Job> {
    let job: Job | undefined;
    await waitUntil(what, async () => check((job = await this.job(id))), { timeoutMs, intervalMs: 500 });
    return job!;
  }

  finished(id: string, timeoutMs?: number): Promise<Job> {
    return this.waitFor(id, (job) => TERMINAL.includes(job.state), `job ${id} to finish`, timeoutMs);
  }

  async logs(id: string): Promise<string> {
    return (await this.fetch(`/admin/v1/jobs/${id}/logs`)).text();
  }

  async tags(repository: string): Promise<string[]> {
    const res = await this.fetch(`/v2/${repository}/tags/list`);
    if (res.status === 404) return [];
    return ((await res.json()) as { tags: string[] | null }).tags ?? [];
  }

  async manifest(repository: string, reference: string): Promise<{ digest: string; mediaType: string; body: Record<string, unknown> }> {
    const res = await this.fetch(`/v2/${repository}/manifests/${reference}`, { headers: { accept: ACCEPT } });
    if (!res.ok) throw new Error(`manifest ${repository}:${reference}: ${res.status} ${await res.text()}`);
    return { digest: res.headers.get('docker-content-digest')!, mediaType: res.headers.get('content-type')!, body: (await res.json()) as Record<string, unknown> };
  }

  async blob(repository: string, digest: string): Promise<Buffer> {
    const res = await this.fetch(`/v2/${repository}/blobs/${digest}`);
    if (!res.ok) throw new Error(`blob ${repository}@${digest}: ${res.status}`);
    return Buffer.from(await res.arrayBuffer());
  }
}

/** What the recipe's defaults and the shared fixtures make of a build of ref 1.12.1. */
function builderConfig(url: string, cachedir: string, platforms: string[]): Record<string, unknown> {
  return {
    enabled: true,
    platforms,
    cachedir,
    attempts: 2,
    backoff: '200ms',
    baseimages: { 'python:3.12-slim-bookworm': `${new URL(url).host}/${BASE_REPOSITORY}:${BASE_TAG}` },
  };
}

/** The CLI as a user runs it (tsx, no build step); REGISTRY_* of this environment left out. */
async function runCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('REGISTRY_')));
  const result = await runProcess(process.execPath, ['--import=tsx', MAIN, ...args], { env });
  return { code: result.code, stdout: result.stdout, stderr: result.stderr };
}

async function runProcess(command: string, args: string[], options: { env?: NodeJS.ProcessEnv; binary?: boolean } = {}): Promise<{ code: number; stdout: string; stderr: string; stdoutBytes: Buffer }> {
  const { spawn } = await import('node:child_process');
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env: options.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.on('error', reject);
    child.on('close', (code) => {
      const stdoutBytes = Buffer.concat(out);
      resolve({ code: code ?? -1, stdout: stdoutBytes.toString(), stderr: Buffer.concat(err).toString(), stdoutBytes });
    });
  });
}

/** Buildah processes of a cache directory still running (after a cancel there must be none). */
async function buildahProcesses(cachedir: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes(cachedir) && cmdline.split('\0')[0]?.endsWith('buildah')) pids.push(Number(entry));
  }
  return pids;
}

function envMap(env: unknown): Map<string, string> {
  return new Map((env as string[]).map((entry) => [entry.slice(0, entry.indexOf('=')), entry.slice(entry.indexOf('=') + 1)]));
}

const FIXED_LABELS = [
  'org.opencontainers.image.title',
  'org.opencontainers.image.description',
  'org.opencontainers.image.licenses',
  'org.opencontainers.image.source',
  'org.opencontainers.image.url',
];

/** Everything a successful dify-api build of `commit` at ref 1.12.1 leaves behind, as clients see it. */
async function verifyBuild(api: Api, dockerd: RunningDockerd, job: Job, commit: string, layouts: string[]): Promise<void> {
  const result = job.result!;
  const repository = 'langgenius/dify-api';
  const short = commit.slice(0, 7);
  expect(result.commit).to.equal(commit);
  expect(Object.keys(result.platforms).sort()).to.deep.equal(['linux/amd64', 'linux/arm64']);
  for (const platform of ['linux/amd64', 'linux/arm64']) {
    expect(job.progress.children?.[platform]?.state, platform).to.equal('succeeded');
  }

  // The index: one entry per platform, the build's annotations.
  const index = await api.manifest(repository, '1.12.1');
  expect(index.digest).to.equal(result.index.digest);
  expect(index.mediaType).to.equal(OCI_INDEX);
  expect((await api.manifest(repository, short)).digest).to.equal(result.index.digest);
  const entries = index.body.manifests as Array<{ digest: string; platform: { os: string; architecture: string } }>;
  expect(entries.map((e) => `${e.platform.os}/${e.platform.architecture}`)).to.deep.equal(['linux/amd64', 'linux/arm64']);
  expect(entries.map((e) => e.digest)).to.deep.equal([result.platforms['linux/amd64']!.digest, result.platforms['linux/arm64']!.digest]);
  const annotations = index.body.annotations as Record<string, string>;
  const seed = await seedImageConfig();
  const seedLabels = seed.Config.Labels as Record<string, string>;
  for (const label of FIXED_LABELS) expect(annotations[label], label).to.equal(seedLabels[label]);
  expect(annotations['org.opencontainers.image.revision']).to.equal(commit);
  expect(annotations['org.opencontainers.image.version']).to.equal('1.12.1');
  expect(Date.parse(annotations['org.opencontainers.image.created']!)).to.be.greaterThan(0);

  // No temporary tag is left; the ddn-k8s layout has one platform image per tag.
  expect((await api.tags(repository)).filter((tag) => tag.startsWith('build-tmp-'))).to.deep.equal([]);
  expect(await api.tags(repository)).to.include.members(['1.12.1', short]);
  const ddn = 'ddn-k8s/docker.io/langgenius/dify-api';
  if (layouts.includes('ddn-k8s')) {
    expect((await api.tags(ddn)).sort()).to.include.members(['1.12.1', '1.12.1-linuxarm64', short, `${short}-linuxarm64`]);
    expect((await api.manifest(ddn, '1.12.1')).digest).to.equal(result.platforms['linux/amd64']!.digest);
    expect((await api.manifest(ddn, '1.12.1-linuxarm64')).digest).to.equal(result.platforms['linux/arm64']!.digest);
  }

  // The provenance artifact refers to the index.
  const referrers = await api.json<{ manifests: Array<{ digest: string; artifactType?: string }> }>(`/v2/${repository}/referrers/${result.index.digest}`);
  const provenance = referrers.manifests.find((m) => m.digest === result.provenance.digest);
  expect(provenance?.artifactType).to.equal('application/vnd.dify-registry.build.provenance.v1+json');
  const artifact = await api.manifest(repository, result.provenance.digest);
  expect((artifact.body.subject as { digest: string }).digest).to.equal(result.index.digest);
  const document = JSON.parse((await api.blob(repository, (artifact.body.layers as Array<{ digest: string }>)[0]!.digest)).toString()) as Record<string, unknown>;
  expect(document).to.deep.include({ recipe: 'dify-api', repository });
  expect((document.source as Record<string, unknown>).commit).to.equal(commit);
  expect((document.platforms as Array<{ platform: string }>).map((p) => p.platform)).to.deep.equal(['linux/amd64', 'linux/arm64']);
  expect((document.builder as Record<string, unknown>).engine).to.equal('buildah');

  // docker pull and run, per platform; the config as the seed's, field by field.
  const ref = `${api.registry.hostPort}/${repository}:1.12.1`;
  for (const [arch, uname] of [['arm64', 'aarch64'], ['amd64', 'x86_64']] as const) {
    await dockerd.rmi(ref);
    await dockerd.docker(['pull', '--platform', `linux/${arch}`, ref]);
    const [image] = JSON.parse((await dockerd.docker(['image', 'inspect', ref])).stdout) as Array<{ Architecture: string; Os: string; Config: Record<string, unknown> }>;
    expect(image!.Architecture).to.equal(arch);
    expect(image!.Os).to.equal('linux');
    const config = image!.Config;
    const env = envMap(config.Env);
    const seedEnv = envMap(seed.Config.Env);
    expect(env.get('COMMIT_SHA')).to.equal(commit);
    env.delete('COMMIT_SHA');
    seedEnv.delete('COMMIT_SHA');
    expect(Object.fromEntries(env)).to.deep.equal(Object.fromEntries(seedEnv));
    for (const field of ['User', 'WorkingDir', 'Entrypoint', 'ExposedPorts', 'Cmd', 'Volumes', 'OnBuild']) expect(config[field] ?? null, field).to.deep.equal(seed.Config[field] ?? null);
    const labels = config.Labels as Record<string, string>;
    for (const label of FIXED_LABELS) expect(labels[label], label).to.equal(seedLabels[label]);
    expect(labels['org.opencontainers.image.revision']).to.equal(commit);
    const output = await dockerd.runImage(ref, [], ['--platform', `linux/${arch}`]);
    expect(output.trim()).to.equal(`dify-api ${uname} user=dify commit=${commit}`);
    await dockerd.rmi(ref);
  }
}

describe('builder: multi-arch dify-api builds (buildah, qemu)', function () {
  this.timeout(1_800_000);
  let buildah: ContainerClient;
  let dockerd: RunningDockerd;
  let repo: DifyRepo & { firstCommit: string };

  before(async () => {
    buildah = await startBuildah();
    dockerd = await startDockerd();
    repo = await difyRepo('1.12.1');
  });
  after(async () => {
    await repo?.cleanup();
    await dockerd?.stop();
    await buildah?.stop();
  });

  describe('in one process (jobs in storage)', () => {
    let registry: RunningRegistry;
    let api: Api;
    let cachedir: string;
    let base: string;

    before(async () => {
      cachedir = await tempDir('builder-cache');
      registry = await startRegistry({
        config: (url) => ({
          builder: builderConfig(url, cachedir, ['linux/amd64', 'linux/arm64']),
          // A sync rule owns langgenius/dify-api:1.0.0; its upstream is unreachable on purpose.
          mirror: {
            upstreams: [{ name: 'docker.io', url: 'http://127.0.0.1:9' }],
            sync: [{ name: 'dify-sync', upstream: 'docker.io', repositories: ['langgenius/dify-api'], tags: ['1.0.0'], layouts: ['same-name', 'ddn-k8s'], interval: '1000h' }],
          },
        }),
      });
      api = new Api(registry);
      base = `${registry.hostPort}/${BASE_REPOSITORY}:${BASE_TAG}`;
      await pushDifyBase(buildah, base);
    });
    after(async () => {
      await registry?.stop();
      if (cachedir) await removeTree(cachedir);
    });

    it('builds the dify-api recipe for amd64 and arm64 from git, into one index with ddn-k8s tags; docker pulls and runs each', async () => {
      const { status, job, text } = await api.submit({ recipe: 'dify-api', context: { git: repo.url, ref: '1.12.1' }, layouts: ['same-name', 'ddn-k8s'] });
      expect(status, text).to.equal(202);
      expect(job).to.include({ kind: 'build', state: 'queued' });
      expect(job.request).to.deep.include({ recipe: 'dify-api', repository: 'langgenius/dify-api', platforms: ['linux/amd64', 'linux/arm64'] });
      expect(job.request.context).to.deep.equal({ git: repo.url, ref: '1.12.1', path: 'api' });
      const running = await api.waitFor(job.id, (j) => j.state !== 'queued', 'the build to start');
      expect(['running', 'succeeded']).to.include(running.state);
      const done = await api.finished(job.id);
      const logs = await api.logs(job.id);
      expect(done.state, `${JSON.stringify(done.error)}\n${logs.slice(-3000)}`).to.equal('succeeded');
      expect(logs).to.match(/\[linux\/arm64\] .*STEP \d+\/\d+: RUN groupadd/);
      expect(logs).to.match(/\[linux\/amd64\] .*uv \(test shim\) sync --locked --no-dev/);
      expect(logs).to.include('tagged langgenius/dify-api:1.12.1');
      // storagedriver auto: overlay where it mounts in the cache directory (the layer cache is then no full copies).
      const driver = (await overlayWorks('buildah', cachedir)) ? 'overlay' : 'vfs';
      expect(logs).to.match(new RegExp(`\\[linux/arm64\\] .*buildah storage driver: ${driver} \\(auto\\)`));
      expect(await existingDriver(join(cachedir, 'storage', 'linux-arm64'))).to.equal(driver);
      await verifyBuild(api, dockerd, done, repo.firstCommit, ['same-name', 'ddn-k8s']);
    });

    it('dify-registry build dify-api --ref 1.12.1 follows the build per platform with its live log, then prints what it tagged', async () => {
      const cli = await runCli(['build', 'dify-api', '--ref', '1.12.1', '--git', repo.url, '--tag', 'from-cli', '--platform', 'linux/arm64', '--server', registry.url]);
      expect(cli.code, cli.stderr.slice(-3000)).to.equal(0);
      expect(cli.stderr).to.match(/^job [0-9a-f-]{36}: building langgenius\/dify-api/m);
      expect(cli.stderr).to.match(/\[linux\/arm64\] .*STEP \d+\/\d+/);
      expect(cli.stderr).to.match(/^linux\/arm64: \d+% running/m);
      expect(cli.stderr).to.include('build: succeeded');
      const digest = /^built langgenius\/dify-api@(sha256:[0-9a-f]{64})/m.exec(cli.stdout)?.[1];
      expect(digest, cli.stdout).to.be.a('string');
      expect(cli.stdout).to.include(`langgenius/dify-api:from-cli -> ${digest}`);
      expect((await api.manifest('langgenius/dify-api', 'from-cli')).digest).to.equal(digest);
    });

    it('builds an uploaded .tar.gz context (POST /admin/v1/contexts)', async () => {
      const tar = await runProcess('tar', ['-C', join(repo.dir, 'api'), '-czf', '-', '.'], { binary: true });
      const upload = await api.fetch('/admin/v1/contexts', { method: 'POST', headers: { 'content-type': 'application/gzip' }, body: new Uint8Array(tar.stdoutBytes) });
      expect(upload.status).to.equal(201);
      const context = (await upload.json()) as { id: string; size: number };
      expect(context.size).to.equal(tar.stdoutBytes.length);
      const notGzip = await api.fetch('/admin/v1/contexts', { method: 'POST', headers: { 'content-type': 'application/gzip' }, body: 'plain text' });
      expect(notGzip.status).to.equal(400);
      const { status, job, text } = await api.submit({ recipe: 'dify-api', context: { upload: context.id }, tags: ['uploaded'], platforms: ['linux/amd64'] });
      expect(status, text).to.equal(202);
      const done = await api.finished(job.id);
      expect(done.state, JSON.stringify(done.error)).to.equal('succeeded');
      const index = await api.manifest('langgenius/dify-api', 'uploaded');
      expect((index.body.annotations as Record<string, string>)['org.opencontainers.image.version']).to.equal('uploaded');
    });

    it('refuses a tag a mirror sync rule owns, unless forced', async () => {
      const owned = await api.submit({ recipe: 'dify-api', context: { git: repo.url, ref: '1.12.1' }, tags: ['1.0.0'] });
      expect(owned.status).to.equal(409);
      expect(owned.text).to.include('dify-sync');
      const ddnOwned = await api.submit({ recipe: 'dify-api', context: { git: repo.url, ref: '1.12.1' }, tags: ['1.0.0'], layouts: ['ddn-k8s'] });
      expect(ddnOwned.status).to.equal(409);
      const forced = await api.submit({ recipe: 'dify-api', context: { git: repo.url, ref: '1.12.1' }, tags: ['1.0.0'], force: true, platforms: ['linux/amd64'] });
      expect(forced.status, forced.text).to.equal(202);
      await api.fetch(`/admin/v1/jobs/${forced.job.id}`, { method: 'DELETE' });
      expect((await api.finished(forced.job.id)).state).to.equal('cancelled');
      expect(await api.tags('langgenius/dify-api')).to.not.include('1.0.0');
    });

    it('refuses what cannot work at once: unknown recipe, bad fields, a platform this registry does not build', async () => {
      for (const [body, pattern] of [
        [{ recipe: 'nope', context: { ref: '1' } }, /no recipe named "nope"/],
        [{ recipe: 'dify-api', context: { ref: '1.12.1', path: '../etc' } }, /context/],
        [{ dockerfile: 'Dockerfile', context: { git: repo.url, ref: '1.12.1' } }, /repository/],
        [{ recipe: 'dify-api', context: { ref: '1.12.1' }, platforms: ['linux/s390x'] }, /linux\/s390x/],
        [{ recipe: 'dify-api', context: { upload: '01234567-89ab-cdef-0123-456789abcdef' }, tags: ['x'] }, /no uploaded context/],
      ] as const) {
        const answer = await api.submit(body);
        expect(answer.status, JSON.stringify(body)).to.be.oneOf([400, 409]);
        expect((JSON.parse(answer.text) as { errors: Array<{ message: string }> }).errors[0]!.message).to.match(pattern);
      }
    });

    const failing = async (dockerfile: string, buildArgs: Record<string, string>, repository: string) => {
      const { status, job, text } = await api.submit({ dockerfile, repository, context: { git: repo.url, ref: '1.12.1', path: 'api' }, buildArgs, tags: ['should-not-exist'] });
      expect(status, text).to.equal(202);
      return api.finished(job.id);
    };

    it('a failing RUN fails the build at once with its log; no tag moves and no temporary tag stays', async () => {
      const done = await failing('Dockerfile.fail', { BASE_IMAGE: base }, 'test/fail');
      expect(done.state).to.equal('failed');
      expect(done.error?.code).to.equal('BUILD_FAILED');
      const logs = await api.logs(done.id);
      expect(logs).to.include('about to fail');
      expect(logs).to.not.include('attempt 2');
      expect(await api.tags('test/fail')).to.deep.equal([]);
    });

    it('a base image without the platform asked for fails that platform; nothing is pushed or tagged', async () => {
      // The base's amd64 image alone (by digest): not a list, so buildah would use it for arm64 too.
      const index = (await (await fetch(`${registry.url}/v2/${BASE_REPOSITORY}/manifests/${BASE_TAG}`, {
        headers: { accept: 'application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json' },
      })).json()) as { manifests: Array<{ digest: string; platform: { architecture: string } }> };
      const amd64 = `${registry.hostPort}/${BASE_REPOSITORY}@${index.manifests.find((m) => m.platform.architecture === 'amd64')!.digest}`;
      const { status, job, text } = await api.submit({
        dockerfile: 'Dockerfile.plain', repository: 'test/other-platform', context: { git: repo.url, ref: '1.12.1', path: 'api' },
        buildArgs: { BASE_IMAGE: amd64 }, platforms: ['linux/arm64'], tags: ['should-not-exist'],
      });
      expect(status, text).to.equal(202);
      const done = await api.finished(job.id);
      expect(done.state).to.equal('failed');
      expect(done.error?.code, JSON.stringify(done.error)).to.equal('PLATFORM_MISMATCH');
      expect(done.error?.message).to.include('has no linux/arm64 image (it is linux/amd64)');
      expect(await api.logs(done.id)).to.not.include('attempt 2');
      expect(await api.tags('test/other-platform')).to.deep.equal([]);
      // The same base for the platform it has builds.
      const fine = await api.submit({
        dockerfile: 'Dockerfile.plain', repository: 'test/other-platform', context: { git: repo.url, ref: '1.12.1', path: 'api' },
        buildArgs: { BASE_IMAGE: amd64 }, platforms: ['linux/amd64'], tags: ['amd64'],
      });
      expect((await api.finished(fine.job.id)).state).to.equal('succeeded');
    });

    it('a bad Dockerfile fails the build with its log', async () => {
      const done = await failing('Dockerfile.bad', {}, 'test/bad');
      expect(done.state).to.equal('failed');
      expect(done.error?.code).to.be.oneOf(['DOCKERFILE_INVALID', 'BUILD_FAILED']);
      expect(await api.logs(done.id)).to.match(/FROMM|unknown instruction|no FROM statement/i);
      expect(await api.tags('test/bad')).to.deep.equal([]);
    });

    it('an unreachable git server fails the build after its retries', async () => {
      const { status, job } = await api.submit({ recipe: 'dify-api', context: { git: 'http://127.0.0.1:9/dify.git', ref: '1.12.1' }, tags: ['unreachable'] });
      expect(status).to.equal(202);
      const done = await api.finished(job.id);
      expect(done.state).to.equal('failed');
      expect(done.error?.code).to.equal('GIT_UNREACHABLE');
      const logs = await api.logs(job.id);
      expect(logs).to.include('attempt 2 of 2');
      expect(logs).to.match(/Failed to connect|Connection refused|unable to access/i);
      expect(await api.tags('langgenius/dify-api')).to.not.include('unreachable');
    });

    it('a cancelled build stops its engine processes and ends cancelled; no tag moves', async () => {
      const { status, job } = await api.submit({ dockerfile: 'Dockerfile.slow', repository: 'test/slow', context: { git: repo.url, ref: '1.12.1', path: 'api' }, buildArgs: { BASE_IMAGE: base }, tags: ['never'] });
      expect(status).to.equal(202);
      await waitUntil('the slow RUN to start', async () => (await api.logs(job.id)).includes('sleeping now'), { timeoutMs: 300_000, intervalMs: 500 });
      expect((await buildahProcesses(cachedir)).length).to.be.greaterThan(0);
      const cancel = await api.fetch(`/admin/v1/jobs/${job.id}`, { method: 'DELETE' });
      expect(cancel.status).to.equal(202);
      const done = await api.finished(job.id, 60_000);
      expect(done.state).to.equal('cancelled');
      expect(done.error?.code).to.equal('CANCELLED');
      await waitUntil('buildah to stop', async () => (await buildahProcesses(cachedir)).length === 0, { timeoutMs: 30_000, intervalMs: 200 });
      expect(await api.logs(job.id)).to.include('cancelled');
      expect(await api.tags('test/slow')).to.deep.equal([]);
    });

    it('garbage collection during a long build keeps the platform image already pushed (leased)', async () => {
      const salt = String(Date.now());
      const { status, job } = await api.submit({
        dockerfile: 'Dockerfile.slowarm',
        repository: 'test/gc-during-build',
        context: { git: repo.url, ref: '1.12.1', path: 'api' },
        // Build arguments that carry credentials, as real ones do: never shown in records, logs or provenance.
        buildArgs: { BASE_IMAGE: base, SALT: salt, NPM_TOKEN: 'npm_SECRET123', PIP_INDEX_URL: 'https://ghp_SECRETTOKEN@pypi.example/simple' },
        tags: ['done'],
      });
      expect(status).to.equal(202);
      const amd64Done = await api.waitFor(job.id, (j) => j.progress.children?.['linux/amd64']?.state === 'succeeded' || TERMINAL.includes(j.state), 'amd64 to be pushed', 300_000);
      expect(amd64Done.state).to.equal('running');
      const leases = await readdir(join(registry.root, '_leases'));
      expect(leases).to.include(`build-${job.id}-linux-amd64.json`);
      const gc = await api.json<{ id: string }>('/admin/v1/gc', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ gracePeriod: '0s' }) });
      const gcDone = await api.finished(gc.id, 120_000);
      expect(gcDone.state, JSON.stringify(gcDone.error)).to.equal('succeeded');
      const done = await api.finished(job.id);
      expect(done.state, JSON.stringify(done.error)).to.equal('succeeded');
      const provenance = await api.manifest('test/gc-during-build', done.result!.provenance.digest);
      const document = (await api.blob('test/gc-during-build', (provenance.body.layers as Array<{ digest: string }>)[0]!.digest)).toString();
      const logs = await (await api.fetch(`/admin/v1/jobs/${job.id}/logs`)).text();
      for (const [what, text] of [['job record', JSON.stringify(done)], ['provenance', document], ['logs', logs]]) {
        expect(text, what).to.not.match(/SECRET/);
      }
      expect(JSON.parse(document).buildArgs).to.deep.include({ SALT: salt, NPM_TOKEN: '[redacted]', PIP_INDEX_URL: 'https://[redacted]@pypi.example/simple' });
      // Every blob of the amd64 image is still there.
      const amd64 = await api.manifest('test/gc-during-build', done.result!.platforms['linux/amd64']!.digest);
      for (const blob of [amd64.body.config, ...(amd64.body.layers as unknown[])] as Array<{ digest: string }>) {
        const res = await api.fetch(`/v2/test/gc-during-build/blobs/${blob.digest}`, { method: 'HEAD' });
        expect(res.status, blob.digest).to.equal(200);
      }
      expect(await readdir(join(registry.root, '_leases')).catch(() => [])).to.not.include(`build-${job.id}-linux-amd64.json`);
    });
  });

  describe('with Redis and two workers (amd64 only, arm64 only), auth on', () => {
    let redis: RunningRedis;
    let registry: RunningRegistry;
    let api: Api;
    const workers: Array<{ daemon: Daemon; cachedir: string; dir: string; platform: string; metrics: string }> = [];
    const password = 'builder-test-password';

    before(async () => {
      redis = await startRedis();
      registry = await startRegistry({
        publicUrl: true,
        config: (url) => ({
          redis: { url: redis.url, keyprefix: 'builds:' },
          auth: {
            users: [{ name: 'admin', password: bcryptHash(password) }],
            admins: ['admin'],
            access: [{ repository: '**', pull: ['$all'], push: ['admin'], delete: ['admin'] }],
          },
          // This process accepts and assembles builds; it builds nothing itself.
          builder: builderConfig(url, '/nonexistent', []),
        }),
      });
      api = new Api(registry, basicAuth('admin', password));
      // The workers share the registry's configuration (storage, Redis, auth keys), with their own builder section.
      const registryConfig = parseYaml(await readFile(join(registry.root, '..', 'config.yml'), 'utf8')) as Record<string, unknown>;
      for (const platform of ['linux/amd64', 'linux/arm64']) {
        const dir = await tempDir(`worker-${platform.replace('/', '-')}`);
        const cachedir = join(dir, 'cache');
        const file = join(dir, 'config.yml');
        // The workers share their layer cache through the registry too (builder.remotecache), and serve
        // their metrics on the debug port.
        const metricsPort = await freePort();
        await writeFile(file, stringify({
          ...registryConfig,
          http: { ...(registryConfig.http as object), debug: { addr: `127.0.0.1:${metricsPort}`, prometheus: { enabled: true } } },
          builder: { ...builderConfig(registry.url, cachedir, [platform]), registry: registry.url, remotecache: true },
        }));
        const daemon = await startDaemon(process.execPath, ['--import=tsx', MAIN, 'worker', '--config', file], { logFile: join(dir, 'worker.log') });
        workers.push({ daemon, cachedir, dir, platform, metrics: `http://127.0.0.1:${metricsPort}/metrics` });
        await waitUntil(`the ${platform} worker`, async () => (await readFile(daemon.logFile, 'utf8')).includes('build worker started'), { daemon, timeoutMs: 60_000 });
      }
      // "started" is logged before BullMQ's blocking connections are up: wait until Redis lists both workers.
      const client = new Redis(redis.url);
      try {
        const named = (queue: string) => `:${Buffer.from(queue).toString('base64')}`;
        await waitUntil('both workers connected', async () => {
          const list = String(await client.client('LIST'));
          return ['build-linux-amd64', 'build-linux-arm64'].every((queue) => list.includes(named(queue)));
        });
      } finally {
        client.disconnect();
      }
      const base = `${registry.hostPort}/${BASE_REPOSITORY}:${BASE_TAG}`;
      await pushDifyBase(buildah, base, ['--creds', `admin:${password}`]);
    });
    after(async () => {
      for (const worker of workers) {
        await worker.daemon.stop(20_000);
        if (!process.env.TEST_KEEP_TMP) await removeTree(worker.dir);
      }
      await registry?.stop();
      await redis?.stop();
    });

    it('each platform builds on the worker that takes it; the registry assembles; docker pulls and runs each', async () => {
      const anonymous = await fetch(`${registry.url}/admin/v1/builds`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
      expect(anonymous.status).to.equal(401);
      const { status, job, text } = await api.submit({ recipe: 'dify-api', context: { git: repo.url, ref: '1.12.1' }, layouts: ['same-name', 'ddn-k8s'] });
      expect(status, text).to.equal(202);
      expect(job, 'every platform has a worker: no warning').not.to.have.property('warnings');
      const done = await api.finished(job.id);
      const logs = await api.logs(job.id);
      expect(done.state, `${JSON.stringify(done.error)}\n${logs.slice(-3000)}`).to.equal('succeeded');
      for (const worker of workers) {
        expect(logs, worker.platform).to.include(`[${worker.platform}] building ${worker.platform} of langgenius/dify-api`);
        expect(logs).to.match(new RegExp(`\\[${worker.platform.replace('/', '\\/')}\\] building .*\\(pid ${worker.daemon.pid}\\)`));
        // The layer cache is the worker's own, and it persists.
        expect((await stat(join(worker.cachedir, 'storage', worker.platform.replace('/', '-')))).isDirectory()).to.equal(true);
        // Its run is measured and logged where it ran.
        const queue = `build-${worker.platform.replace('/', '-')}`;
        const scraped = parseExposition(await (await fetch(worker.metrics)).text());
        expect(valueOf(scraped, 'registry_job_runs_total', { queue, outcome: 'succeeded' }), `${worker.platform} runs`).to.be.at.least(1);
        expect(valueOf(scraped, 'registry_job_duration_seconds_sum', { queue, outcome: 'succeeded' }), `${worker.platform} build time`).to.be.above(1);
        expect(valueOf(scraped, 'registry_storage_operation_duration_seconds_count'), `${worker.platform} storage operations`).to.be.above(0);
        expect(valueOf(scraped, 'registry_redis_up'), `${worker.platform} Redis`).to.equal(1);
        const started = (await readFile(worker.daemon.logFile, 'utf8')).split('\n').filter((line) => line.includes('"msg":"job started"'));
        expect(started.map((line) => (JSON.parse(line) as { parentJobId?: string }).parentJobId), worker.platform).to.include(job.id);
      }
      await verifyBuild(api, dockerd, done, repo.firstCommit, ['same-name', 'ddn-k8s']);
      // ... and in the registry, where every worker of a platform finds it.
      expect((await api.tags('langgenius/dify-api/buildcache')).length).to.be.greaterThan(10);
    });

    it('a platform no worker takes waits queued, and the answer says so; a cancel ends the build without a tag', async () => {
      const { status, job } = await api.submit({ recipe: 'dify-api', context: { git: repo.url, ref: '1.12.1' }, platforms: ['linux/riscv64'], tags: ['riscv'] });
      expect(status).to.equal(202);
      const { warnings } = job as Job & { warnings?: string[] };
      expect(warnings).to.have.length(1);
      expect(warnings![0]).to.match(/^no worker takes linux\/riscv64 builds now \(queue build-linux-riscv64\)/);
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      const waiting = await api.job(job.id);
      expect(waiting.state).to.equal('queued');
      expect(waiting.progress.children?.['linux/riscv64']?.state).to.equal('queued');
      await api.fetch(`/admin/v1/jobs/${job.id}`, { method: 'DELETE' });
      const done = await api.finished(job.id, 60_000);
      expect(done.state).to.equal('cancelled');
      expect(await api.tags('langgenius/dify-api')).to.not.include('riscv');

      // The CLI shows the warning too.
      const cli = await runCli(['build', 'dify-api', '--ref', '1.12.1', '--git', repo.url, '--tag', 'riscv', '--platform', 'linux/riscv64', '--no-wait', '--server', registry.url, '-u', 'admin', '--password', password]);
      expect(cli.code, cli.stderr).to.equal(0);
      expect(cli.stderr).to.match(/^warning: no worker takes linux\/riscv64 builds now/m);
      const cliJob = /^job ([0-9a-f-]{36})$/m.exec(cli.stdout)?.[1];
      expect(cliJob, cli.stdout).to.be.a('string');
      await api.fetch(`/admin/v1/jobs/${cliJob}`, { method: 'DELETE' });
      expect((await api.finished(cliJob!, 60_000)).state).to.equal('cancelled');
    });
  });
});
