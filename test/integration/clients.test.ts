// Real clients (docker, buildah, skopeo, podman) against a running registry. One registry, one
// private dockerd and one buildah per suite. Every pull starts from an empty dockerd image store,
// so the bytes really come from the registry under test.
//
// TEST_CLIENTS_TARGET=registry (default) | distribution | both. Distribution (Debian's
// docker-registry 2.8.2) is the reference: a test failing there is a test bug.
import { expect } from 'chai';
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { once } from 'node:events';
import { startBuildah, startPodman, startSkopeo, type ContainerClient } from '../helpers/clients.js';
import { startDistribution } from '../helpers/distribution.js';
import { startDockerd, type RunningDockerd } from '../helpers/dockerd.js';
import { buildBusyboxImage, buildMultiArchIndex, UNAME_M, type Arch, type BuiltImage } from '../helpers/images.js';
import { testBackends } from '../helpers/targets.js';
import { removeTree } from '../helpers/cleanup.js';
import { run, tempDir } from '../helpers/process.js';

export interface ClientTarget {
  url: string;
  hostPort: string;
  stop(): Promise<void>;
}

const MANIFEST_ACCEPT = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.docker.distribution.manifest.v2+json',
].join(', ');

interface Descriptor { mediaType: string; digest: string; size: number; platform?: { architecture: string; os: string } }
interface Manifest { mediaType?: string; config?: Descriptor; layers?: Descriptor[]; manifests?: Descriptor[] }

/** GETs a manifest over HTTP: what the registry stored, independent of any client's cache. */
async function getManifest(url: string, repo: string, ref: string): Promise<{ digest: string; mediaType: string; body: Manifest }> {
  const res = await fetch(`${url}/v2/${repo}/manifests/${ref}`, { headers: { accept: MANIFEST_ACCEPT } });
  expect(res.status, `GET manifest ${repo}:${ref}`).to.equal(200);
  const bytes = Buffer.from(await res.arrayBuffer());
  const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
  expect(res.headers.get('docker-content-digest'), `Docker-Content-Digest of ${repo}:${ref}`).to.equal(digest);
  return { digest, mediaType: res.headers.get('content-type') ?? '', body: JSON.parse(bytes.toString('utf8')) as Manifest };
}

async function getConfig(url: string, repo: string, digest: string): Promise<{ architecture: string; os: string }> {
  const res = await fetch(`${url}/v2/${repo}/blobs/${digest}`);
  expect(res.status, `GET config blob ${repo}@${digest}`).to.equal(200);
  return (await res.json()) as { architecture: string; os: string };
}

async function blobStatus(url: string, repo: string, digest: string): Promise<number> {
  return (await fetch(`${url}/v2/${repo}/blobs/${digest}`, { method: 'HEAD' })).status;
}

/** `TAG: digest: sha256:… size: N`, the last line of a successful `docker push`. */
function pushedDigest(output: string): string {
  const match = /digest: (sha256:[0-9a-f]{64}) size: \d+/.exec(output);
  expect(match, `docker push output:\n${output}`).to.not.equal(null);
  return match![1]!;
}

/** Asserts a pull fetched every layer from the registry rather than reusing local ones. */
function expectFreshPull(output: string, digest?: string): void {
  expect(output).to.match(/Pull complete/);
  expect(output).to.not.match(/Already exists/);
  expect(output).to.match(/Status: Downloaded newer image/);
  if (digest) expect(output).to.include(`Digest: ${digest}`);
}

/** Writes `size` random bytes in chunks (no 200 MiB buffer) and returns their sha256. */
async function writeRandomFile(path: string, size: number): Promise<string> {
  const hash = createHash('sha256');
  const out = createWriteStream(path);
  const chunk = 8 << 20;
  for (let written = 0; written < size; written += chunk) {
    const data = randomBytes(Math.min(chunk, size - written));
    hash.update(data);
    if (!out.write(data)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
  return hash.digest('hex');
}

export function describeClientSuite(name: string, startTarget: () => Promise<ClientTarget>): void {
  describe(`real clients against ${name}`, function () {
    this.timeout(120_000);
    let target: ClientTarget;
    let dockerd: RunningDockerd;
    let buildah: ContainerClient;
    let work: string;
    let base: BuiltImage; // amd64 busybox at base/busybox:1
    let arm64: BuiltImage; // arm64 busybox at base/busybox:arm64
    let hp: string;

    /** Empties dockerd's image store: a later pull cannot reuse a layer or config. */
    async function removeAllImages(): Promise<void> {
      const ids = (await dockerd.docker(['images', '-aq', '--no-trunc'])).stdout.split('\n').filter(Boolean);
      if (ids.length > 0) await dockerd.docker(['rmi', '--force', ...new Set(ids)]);
      expect((await dockerd.docker(['images', '-aq'])).stdout.trim()).to.equal('');
    }

    async function freshPull(ref: string, extraArgs: string[] = []): Promise<string> {
      await removeAllImages();
      return (await dockerd.docker(['pull', ...extraArgs, ref])).stdout;
    }

    async function architectureOf(ref: string): Promise<string> {
      return (await dockerd.docker(['image', 'inspect', '--format', '{{.Os}}/{{.Architecture}}', ref])).stdout.trim();
    }

    before(async function () {
      this.timeout(300_000);
      target = await startTarget();
      hp = target.hostPort;
      // One at a time, so that after() can stop whatever did start when a later start fails.
      dockerd = await startDockerd();
      buildah = await startBuildah({ insecureRegistries: [hp] });
      work = await tempDir('clients-test');
      base = await buildBusyboxImage(buildah, { arch: 'amd64', ref: `${hp}/base/busybox:1` });
      arm64 = await buildBusyboxImage(buildah, { arch: 'arm64', ref: `${hp}/base/busybox:arm64` });
    });

    after(async function () {
      this.timeout(120_000);
      // Stop everything even if one stop fails; report the first failure.
      const results = await Promise.allSettled([
        dockerd?.stop(), buildah?.stop(), work ? removeTree(work) : undefined,
      ]);
      const targetResult = await Promise.allSettled([target?.stop()]);
      const failed = [...results, ...targetResult].find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
    });

    it('docker builds FROM a registry base, pushes, pulls back and runs a small image', async function () {
      const ctx = join(work, 'docker-build');
      await mkdir(ctx);
      await writeFile(join(ctx, 'Dockerfile'), `FROM ${hp}/base/busybox:1\nRUN echo "built on $(uname -m)" > /built\n`);
      const ref = `${hp}/docker/app:1`;
      await removeAllImages();
      const build = await dockerd.docker(['build', '--network', 'none', '-t', ref, ctx]);
      // The classic builder pulled the base from the registry under test.
      expect(build.stdout).to.match(/Pulling from base\/busybox/);
      const digest = pushedDigest((await dockerd.docker(['push', ref])).stdout);
      const stored = await getManifest(target.url, 'docker/app', '1');
      expect(stored.digest).to.equal(digest);
      expect(stored.body.layers).to.have.length(2);

      expectFreshPull(await freshPull(ref), digest);
      expect((await dockerd.runImage(ref, ['cat', '/built'])).trim()).to.equal('built on x86_64');
    });

    it('pushes and pulls an arm64 image by tag and by digest at a ddn-k8s path, and runs it', async function () {
      const repo = 'ddn-k8s/docker.io/langgenius/dify-api';
      const ref = `${hp}/${repo}:1.12.1-linuxarm64`;
      // docker pushes what it pulled: the buildah-made arm64 busybox, retagged.
      await freshPull(`${hp}/base/busybox:arm64`);
      await dockerd.docker(['tag', `${hp}/base/busybox:arm64`, ref]);
      const digest = pushedDigest((await dockerd.docker(['push', ref])).stdout);

      const stored = await getManifest(target.url, repo, '1.12.1-linuxarm64');
      expect(stored.digest).to.equal(digest);
      const config = await getConfig(target.url, repo, stored.body.config!.digest);
      expect(`${config.os}/${config.architecture}`).to.equal('linux/arm64');

      expectFreshPull(await freshPull(ref), digest);
      expect(await architectureOf(ref)).to.equal('linux/arm64');
      expect((await dockerd.runImage(ref, ['uname', '-m'])).trim()).to.equal('aarch64');

      const byDigest = `${hp}/${repo}@${digest}`;
      expectFreshPull(await freshPull(byDigest), digest);
      expect(await architectureOf(byDigest)).to.equal('linux/arm64');
      expect((await dockerd.runImage(byDigest, ['uname', '-m'])).trim()).to.equal('aarch64');
      await removeAllImages();
    });

    it('mounts a blob across repositories on docker push (Mounted from)', async function () {
      await freshPull(`${hp}/base/busybox:1`);
      const ref = `${hp}/mount/target:1`;
      await dockerd.docker(['tag', `${hp}/base/busybox:1`, ref]);
      const push = (await dockerd.docker(['push', ref])).stdout;
      // The source is base/busybox, or docker/app after the build test: dockerd remembers every
      // repository a layer went to, even after rmi. A refused mount (202) would print "Pushed".
      const mounted = /: Mounted from ([a-z0-9._/-]+)\n/.exec(push);
      expect(mounted, push).to.not.equal(null);
      expect(push).to.not.match(/: Pushed/);
      const digest = pushedDigest(push);
      // The mounted layer is now readable through the new repository, and still through the source.
      const stored = await getManifest(target.url, 'mount/target', '1');
      expect(stored.digest).to.equal(digest);
      for (const layer of stored.body.layers ?? []) {
        expect(await blobStatus(target.url, 'mount/target', layer.digest), layer.digest).to.equal(200);
        expect(await blobStatus(target.url, mounted![1]!, layer.digest), `${layer.digest} in ${mounted![1]}`).to.equal(200);
      }
      await removeAllImages();
    });

    it('round-trips a 200 MiB layer through docker push and pull, checked with sha256sum inside the container', async function () {
      this.timeout(240_000);
      const size = 200 << 20;
      const ctx = join(work, 'big');
      await mkdir(ctx);
      const sha = await writeRandomFile(join(ctx, 'big.bin'), size);
      await writeFile(join(ctx, 'Dockerfile'), `FROM ${hp}/base/busybox:1\nCOPY big.bin /big.bin\n`);
      const ref = `${hp}/big/layer:1`;
      try {
        await removeAllImages();
        await dockerd.docker(['build', '--network', 'none', '-t', ref, ctx]);
        await rm(join(ctx, 'big.bin')); // disk is tight: vfs already holds a copy
        const digest = pushedDigest((await dockerd.docker(['push', ref])).stdout);
        const stored = await getManifest(target.url, 'big/layer', '1');
        expect(stored.digest).to.equal(digest);
        const biggest = Math.max(...(stored.body.layers ?? []).map((l) => l.size));
        expect(biggest).to.be.greaterThan(size); // random data does not compress

        expectFreshPull(await freshPull(ref), digest);
        const out = await dockerd.runImage(ref, ['sha256sum', '/big.bin']);
        expect(out.trim()).to.equal(`${sha}  /big.bin`);
      } finally {
        await removeAllImages();
        await removeTree(ctx);
      }
    });

    it('pulls each platform of a buildah multi-arch index (manifest push --all) with docker pull --platform', async function () {
      const repo = 'multi/busybox';
      const ref = `${hp}/${repo}:1`;
      const index = await buildMultiArchIndex(buildah, { ref, arches: ['amd64', 'arm64'] });
      const stored = await getManifest(target.url, repo, '1');
      expect(stored.digest).to.equal(index.digest);
      expect(stored.body.mediaType).to.equal('application/vnd.oci.image.index.v1+json');
      const platforms = (stored.body.manifests ?? []).map((m) => `${m.platform?.os}/${m.platform?.architecture}`).sort();
      expect(platforms).to.deep.equal(['linux/amd64', 'linux/arm64']);
      // --all pushed every child manifest, not just the index.
      for (const child of stored.body.manifests ?? []) {
        expect((await getManifest(target.url, repo, child.digest)).digest).to.equal(child.digest);
      }

      for (const arch of ['arm64', 'amd64'] as Arch[]) {
        expectFreshPull(await freshPull(ref, ['--platform', `linux/${arch}`]), index.digest);
        expect(await architectureOf(ref)).to.equal(`linux/${arch}`);
        expect((await dockerd.runImage(ref, ['uname', '-m'])).trim()).to.equal(UNAME_M[arch]);
      }
      await removeAllImages();
    });

    it('skopeo copies an image and an index to an OCI layout and back with equal digests', async function () {
      const skopeo = await startSkopeo({ insecureRegistries: [hp] });
      try {
        const index = await buildMultiArchIndex(buildah, { ref: `${hp}/skopeo/source:index`, arches: ['amd64', 'arm64'] });
        const cases = [
          { name: 'image', source: `${hp}/base/busybox:1`, digest: base.digest!, dest: 'skopeo/copy:image' },
          { name: 'index', source: index.ref, digest: index.digest, dest: 'skopeo/copy:index' },
        ];
        for (const c of cases) {
          const layout = join(skopeo.dir, `layout-${c.name}`);
          await skopeo.run(['copy', '--all', '--preserve-digests', '--src-tls-verify=false',
            `docker://${c.source}`, `oci:${layout}:${c.name}`]);
          const layoutIndex = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as { manifests: Descriptor[] };
          expect(layoutIndex.manifests.map((m) => m.digest), `${c.name} in the OCI layout`).to.deep.equal([c.digest]);

          const digestFile = join(skopeo.dir, `digest-${c.name}`);
          await skopeo.run(['copy', '--all', '--preserve-digests', '--dest-tls-verify=false', '--digestfile', digestFile,
            `oci:${layout}:${c.name}`, `docker://${hp}/${c.dest}`]);
          expect((await readFile(digestFile, 'utf8')).trim()).to.equal(c.digest);
          const [repo, tag] = c.dest.split(':') as [string, string];
          const stored = await getManifest(target.url, repo, tag);
          expect(stored.digest, `${c.name} copied back`).to.equal(c.digest);
          for (const child of stored.body.manifests ?? []) {
            expect((await getManifest(target.url, repo, child.digest)).digest).to.equal(child.digest);
          }
          const inspect = JSON.parse((await skopeo.run(['inspect', '--tls-verify=false', '--raw', `docker://${hp}/${c.dest}`])).stdout) as Manifest;
          expect(inspect).to.deep.equal(stored.body);
        }
      } finally {
        await skopeo.stop();
      }
    });

    it('podman pulls and pushes', async function () {
      const podman = await startPodman({ insecureRegistries: [hp] });
      // `podman run` cannot work here (runc fails to set podman's rlimits without
      // CAP_SYS_RESOURCE), so check the pulled files by mounting the image and running its busybox.
      const unameInImage = async (ref: string): Promise<string> => {
        const mountPoint = (await podman.run(['image', 'mount', ref])).stdout.trim();
        try {
          return (await run(join(mountPoint, 'bin', 'busybox'), ['uname', '-m'])).stdout.trim();
        } finally {
          await podman.run(['image', 'unmount', ref]);
        }
      };
      try {
        const source = `${hp}/base/busybox:arm64`;
        await podman.run(['pull', '--tls-verify=false', source]);
        expect((await podman.run(['image', 'inspect', '--format', '{{.Digest}} {{.Architecture}}', source])).stdout.trim())
          .to.equal(`${arm64.digest} arm64`);
        expect(await unameInImage(source)).to.equal('aarch64');

        const dest = `${hp}/podman/pushed:1`;
        await podman.run(['tag', source, dest]);
        const digestFile = join(podman.dir, 'digest');
        await podman.run(['push', '--tls-verify=false', '--digestfile', digestFile, dest]);
        const digest = (await readFile(digestFile, 'utf8')).trim();
        const stored = await getManifest(target.url, 'podman/pushed', '1');
        expect(stored.digest).to.equal(digest);
        const config = await getConfig(target.url, 'podman/pushed', stored.body.config!.digest);
        expect(config.architecture).to.equal('arm64');

        // Pull what podman pushed into an empty store.
        await podman.run(['rmi', '--all', '--force']);
        expect((await podman.run(['images', '-q'])).stdout.trim()).to.equal('');
        await podman.run(['pull', '--tls-verify=false', dest]);
        expect((await podman.run(['image', 'inspect', '--format', '{{.Digest}}', dest])).stdout.trim()).to.equal(digest);
        expect(await unameInImage(dest)).to.equal('aarch64');
      } finally {
        await podman.stop();
      }
    });
  });
}

const which = process.env.TEST_CLIENTS_TARGET ?? 'registry';
if (!['registry', 'distribution', 'both'].includes(which)) {
  throw new Error(`TEST_CLIENTS_TARGET must be registry, distribution or both, not ${which}`);
}
if (which === 'registry' || which === 'both') {
  for (const backend of testBackends()) {
    describeClientSuite(`dify-registry on ${backend}`, async () => {
      // Imported here so the Distribution run does not depend on the server being loadable.
      const { startRegistry } = await import('../helpers/registry.js');
      const config = backend === 's3' ? { storage: { s3: await (await import('../helpers/shared-s3.js')).s3StorageConfig() } } : {};
      const registry = await startRegistry({ config });
      return {
        url: registry.url,
        hostPort: registry.hostPort,
        async stop() {
          await registry.stop();
          // The storage holds the 200 MiB layer; the helper's stop() leaves its files behind.
          await removeTree(registry.root);
        },
      };
    });
  }
}
if (which === 'distribution' || which === 'both') {
  describeClientSuite('CNCF Distribution 2.8.2', () => startDistribution());
}
