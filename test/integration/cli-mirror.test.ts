// `dify-registry mirror` as users run it: a child process against our registry, which mirrors from Debian's
// docker-registry (CNCF Distribution 2.8.2) holding a tiny two-platform OCI index pushed over HTTP. Checks
// exit codes, the summary's digests against upstream's, failures, bad usage, Ctrl-C, and auth.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { bcryptHash, startAuthRegistry, type AuthRegistry } from '../helpers/auth.js';
import { startDistribution, type RunningDistribution } from '../helpers/distribution.js';
import {
  content,
  descriptorOf,
  expectStatus,
  gzipLayer,
  imageConfig,
  imageManifest,
  indexManifest,
  MediaType,
  OciClient,
  sha256,
  type Content,
} from '../helpers/oci.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';

const MAIN = fileURLToPath(new URL('../../server/main.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const REPO = 'langgenius/dify-api';
const TAG = '1.12.1';
const SLOW_REPO = 'slow/app';
const ADMIN = { name: 'admin', password: 'cli-admin-secret' };
const ESC = '\x1b';

interface CliRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

interface CliProcess {
  pid: number;
  /** Resolves once stderr has shown text matching `pattern`. */
  waitForStderr(pattern: RegExp, timeoutMs?: number): Promise<void>;
  done: Promise<CliRun>;
}

/** Runs the CLI as users do (tsx, no build), with none of the test's own REGISTRY_* environment. */
function startCli(args: string[], env: NodeJS.ProcessEnv = {}): CliProcess {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('REGISTRY_')));
  const child = spawn(process.execPath, ['--import=tsx', MAIN, 'mirror', ...args], { cwd: ROOT, env: { ...clean, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  const waiters: Array<{ pattern: RegExp; resolve: () => void }> = [];
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
    for (const waiter of [...waiters]) if (waiter.pattern.test(stderr)) waiter.resolve();
  });
  const killer = setTimeout(() => child.kill('SIGKILL'), 90_000);
  const done = new Promise<CliRun>((resolve) => {
    child.on('close', (code, signal) => {
      clearTimeout(killer);
      resolve({ code, signal, stdout, stderr });
    });
  });
  return {
    pid: child.pid!,
    done,
    waitForStderr: (pattern, timeoutMs = 30_000) =>
      new Promise<void>((resolve, reject) => {
        if (pattern.test(stderr)) return resolve();
        const timer = setTimeout(() => reject(new Error(`no ${pattern} on stderr within ${timeoutMs} ms:\n${stderr}`)), timeoutMs);
        waiters.push({ pattern, resolve: () => (clearTimeout(timer), resolve()) });
        void done.then(() => reject(new Error(`the CLI ended without ${pattern} on stderr:\n${stderr}`)));
      }),
  };
}

const cli = (args: string[], env?: NodeJS.ProcessEnv) => startCli(args, env).done;

function describeRun(run: CliRun): string {
  return `exit ${run.code}${run.signal ? ` (${run.signal})` : ''}\n--- stdout\n${run.stdout}--- stderr\n${run.stderr}`;
}

interface Upstream {
  index: Content;
  amd64: Content;
  arm64: Content;
}

/** amd64 and arm64/v8 images (two layers, one layer) under an OCI index, pushed to `repo:tag`. */
async function pushIndex(client: OciClient, repo: string, tag: string, bigLayer?: Content): Promise<Upstream> {
  const amd64Config = imageConfig({ architecture: 'amd64' });
  const amd64Layers = [gzipLayer(2048), bigLayer ?? gzipLayer(700)];
  const amd64 = imageManifest({ config: descriptorOf(amd64Config), layers: amd64Layers.map((l) => descriptorOf(l)) });
  const arm64Config = imageConfig({ architecture: 'arm64' });
  const arm64Layers = [gzipLayer(1500)];
  const arm64 = imageManifest({ config: descriptorOf(arm64Config), layers: arm64Layers.map((l) => descriptorOf(l)) });
  for (const blob of [amd64Config, ...amd64Layers, arm64Config, ...arm64Layers]) await client.pushBlob(repo, blob);
  expectStatus(await client.putManifest(repo, amd64.digest, amd64), 201);
  expectStatus(await client.putManifest(repo, arm64.digest, arm64), 201);
  const index = indexManifest({
    manifests: [
      descriptorOf(amd64, { platform: { os: 'linux', architecture: 'amd64' } }),
      descriptorOf(arm64, { platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } }),
    ],
  });
  expectStatus(await client.putManifest(repo, tag, index), 201);
  return { index, amd64, arm64 };
}

/** The digest of the manifest a registry serves for `repo:reference`, from its bytes. */
async function servedDigest(url: string, repo: string, reference: string): Promise<string> {
  const reply = await new OciClient(url).getManifest(repo, reference);
  expectStatus(reply, 200);
  return sha256(reply.body);
}

describe('CLI: dify-registry mirror', function () {
  this.timeout(180_000);
  let upstream: RunningDistribution;
  let registry: RunningRegistry;
  let pushed: Upstream;

  before(async function () {
    upstream = await startDistribution();
    const client = new OciClient(upstream.url);
    pushed = await pushIndex(client, REPO, TAG);
    // For Ctrl-C: a 2 MiB layer through an upstream limited to 256 KiB/s takes about 8 seconds.
    await pushIndex(client, SLOW_REPO, 'big', content(randomBytes(2 * 1024 * 1024), MediaType.ociLayerGzip));
    registry = await startRegistry({
      config: {
        mirror: {
          upstreams: [
            { name: 'local', url: upstream.url },
            { name: 'slow', url: upstream.url, bandwidth: 256 * 1024 },
          ],
        },
      },
    });
  });

  after(async function () {
    await registry?.stop();
    await upstream?.stop();
  });

  it('mirrors a tag into ddn-k8s and same-name, printing every tag written with upstream digests', async function () {
    const run = await cli([`local/${REPO}:${TAG}`, '--layout', 'ddn-k8s', '--layout', 'same-name', '--server', registry.url]);
    expect(run.code, describeRun(run)).to.equal(0);

    // The upstream's own digests, as it serves them.
    const index = await servedDigest(upstream.url, REPO, TAG);
    expect(index).to.equal(pushed.index.digest);
    const lines = run.stdout.trim().split('\n');
    expect(lines[0]).to.match(/^mirrored 1 tag\(s\) of local\/langgenius\/dify-api \(job [0-9a-f-]+\): 5 blob\(s\) fetched/);
    expect(lines).to.include(`${TAG} (upstream ${index})`);
    expect(lines).to.include(`  ddn-k8s/local/${REPO}:${TAG} -> ${pushed.amd64.digest} (linux/amd64)`);
    expect(lines).to.include(`  ddn-k8s/local/${REPO}:${TAG}-linuxarm64 -> ${pushed.arm64.digest} (linux/arm64)`);
    expect(lines).to.include(`  ${REPO}:${TAG} -> ${index}`);

    // Every digest printed is what our registry now serves for that tag.
    for (const line of lines.filter((l) => l.includes(' -> '))) {
      const [, repository, tag, digest] = /^ {2}(.+):([^:]+) -> (sha256:[0-9a-f]{64})/.exec(line)!;
      expect(await servedDigest(registry.url, repository!, tag!), line).to.equal(digest);
    }

    // Not a terminal: progress as plain lines on stderr, and no escape codes anywhere.
    expect(run.stderr).to.match(/^job [0-9a-f-]+: mirroring local\/langgenius\/dify-api/m);
    expect(run.stderr).to.match(/^1\.12\.1 linux\/amd64: \d+% [\d.]+\/[\d.]+ [KM]iB/m);
    expect(run.stderr).to.match(/^1\.12\.1 linux\/arm64: \d+% /m);
    expect(run.stderr).to.match(/^job succeeded$/m);
    expect(run.stdout + run.stderr).not.to.include(ESC);
  });

  it('--json prints the final job; blobs stored by the first run are not fetched again', async function () {
    const run = await cli([`local/${REPO}`, '--tag', TAG, '--layout', 'same-name', '--json', '--server', registry.url]);
    expect(run.code, describeRun(run)).to.equal(0);
    const job = JSON.parse(run.stdout) as { kind: string; state: string; result: { tags: Array<{ digest: string }>; blobs: { fetched: number; present: number } } };
    expect(job).to.deep.include({ kind: 'mirror', state: 'succeeded' });
    expect(job.result.tags[0]!.digest).to.equal(pushed.index.digest);
    expect(job.result.blobs).to.deep.equal({ fetched: 0, present: 5 });
  });

  it('--no-wait prints the job id and Location and leaves the job running', async function () {
    const run = await cli([`local/${REPO}:${TAG}`, '--no-wait', '--server', registry.url]);
    expect(run.code, describeRun(run)).to.equal(0);
    const [, id] = /^job (\S+)$/m.exec(run.stdout) ?? [];
    expect(id, run.stdout).to.be.a('string');
    expect(run.stdout).to.include(`Location: ${registry.url}/admin/v1/jobs/${id}`);
    let state = '';
    for (let i = 0; i < 100 && !['succeeded', 'failed', 'cancelled'].includes(state); i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      state = ((await (await fetch(`${registry.url}/admin/v1/jobs/${id}`)).json()) as { state: string }).state;
    }
    expect(state).to.equal('succeeded');
  });

  it('a mirror that fails (an unknown tag) exits 1 with the job error and its last log lines', async function () {
    const run = await cli([`local/${REPO}:no-such-tag`, '--server', registry.url]);
    expect(run.code, describeRun(run)).to.equal(1);
    expect(run.stderr).to.match(/^error: MIRROR_INCOMPLETE: .*no-such-tag/m);
    expect(run.stderr).to.match(/^last log lines of job \S+:$/m);
    expect(run.stderr).to.match(/^ {2}.*no-such-tag: failed: /m);
    expect(run.stdout).to.equal('');
  });

  it('bad usage exits 2: no tag, two kinds of tag selection, an unknown option, a source the server refuses', async function () {
    const noTag = await cli([`local/${REPO}`, '--server', registry.url]);
    expect(noTag.code, describeRun(noTag)).to.equal(2);
    expect(noTag.stderr).to.include(`error: local/${REPO} names no tag: give one`);
    expect(noTag.stderr).to.include('--tag-regex or --semver');

    const both = await cli([`local/${REPO}:${TAG}`, '--semver', '1.x', '--server', registry.url]);
    expect(both.code, describeRun(both)).to.equal(2);

    const unknown = await cli([`local/${REPO}:${TAG}`, '--frobnicate']);
    expect(unknown.code, describeRun(unknown)).to.equal(2);
    expect(unknown.stderr).to.include('--frobnicate');

    // Only the server knows its upstreams: its 400 is printed as the OCI error, and it is still bad usage.
    const refused = await cli([`nowhere/${REPO}:${TAG}`, '--server', registry.url]);
    expect(refused.code, describeRun(refused)).to.equal(2);
    expect(refused.stderr).to.match(/^error: INVALID_REQUEST: source must be <upstream>\/<repository>/m);
  });

  it('Ctrl-C cancels the job on the server, waits until it has stopped, and exits 130', async function () {
    const child = startCli([`slow/${SLOW_REPO}:big`, '--server', registry.url]);
    await child.waitForStderr(/^big linux\/amd64: /m);
    process.kill(child.pid, 'SIGINT');
    const run = await child.done;
    expect(run.code, describeRun(run)).to.equal(130);
    expect(run.stderr).to.match(/^cancelling job (\S+) \(Ctrl-C again stops waiting\)$/m);
    const id = /^cancelling job (\S+)/m.exec(run.stderr)![1]!;
    expect(run.stderr).to.match(new RegExp(`^interrupted: job ${id} ended cancelled$`, 'm'));
    const job = (await (await fetch(`${registry.url}/admin/v1/jobs/${id}`)).json()) as { state: string };
    expect(job.state).to.equal('cancelled');
  });

  describe('with auth on', function () {
    let secured: AuthRegistry;

    before(async function () {
      secured = await startAuthRegistry({
        config: {
          mirror: { upstreams: [{ name: 'local', url: upstream.url }] },
          auth: { users: [{ name: ADMIN.name, password: bcryptHash(ADMIN.password) }, { name: 'bob', password: bcryptHash('bob-secret') }], admins: [ADMIN.name] },
        },
      });
    });

    after(async function () {
      await secured?.stop();
    });

    it('mirrors with --username and --password (or REGISTRY_USERNAME and REGISTRY_PASSWORD) of an admin', async function () {
      const run = await cli([`local/${REPO}:${TAG}`, '--layout', 'ddn-k8s', '--server', secured.url, '--username', ADMIN.name, '--password', ADMIN.password]);
      expect(run.code, describeRun(run)).to.equal(0);
      expect(run.stdout).to.include(`  ddn-k8s/local/${REPO}:${TAG}-linuxarm64 -> ${pushed.arm64.digest} (linux/arm64)`);

      const fromEnv = await cli([`local/${REPO}:${TAG}`, '--layout', 'same-name'], {
        REGISTRY_URL: secured.url,
        REGISTRY_USERNAME: ADMIN.name,
        REGISTRY_PASSWORD: ADMIN.password,
      });
      expect(fromEnv.code, describeRun(fromEnv)).to.equal(0);
      expect(fromEnv.stdout).to.include(`  ${REPO}:${TAG} -> ${pushed.index.digest}`);
    });

    it('without credentials, or as a non-admin, exits 1 with the server\'s error', async function () {
      const anonymous = await cli([`local/${REPO}:${TAG}`, '--server', secured.url]);
      expect(anonymous.code, describeRun(anonymous)).to.equal(1);
      expect(anonymous.stderr).to.match(/^error: UNAUTHORIZED: /m);
      expect(anonymous.stderr).to.include('--username and --password');

      const bob = await cli([`local/${REPO}:${TAG}`, '--server', secured.url, '-u', 'bob', '--password', 'bob-secret']);
      expect(bob.code, describeRun(bob)).to.equal(1);
      expect(bob.stderr).to.match(/^error: DENIED: /m);
    });
  });
});
