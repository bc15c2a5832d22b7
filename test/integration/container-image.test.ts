// The registry's own images: the Dockerfile built with buildah from a Node base made on this machine
// (no Docker Hub here), pushed into a registry and run by the private dockerd, then used by docker
// for a push and a pull; and the build-worker image (Dockerfile.builder) built on top of it.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { removeTree } from '../helpers/cleanup.js';
import { startBuildah, type ContainerClient } from '../helpers/clients.js';
import { startDockerd, type RunningDockerd } from '../helpers/dockerd.js';
import { buildBusyboxImage } from '../helpers/images.js';
import { buildNodeBaseImage } from '../helpers/node-base-image.js';
import { freePort, tempDir, waitUntil } from '../helpers/process.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const IMAGE = 'localhost/dify-test/dify-registry:ci';
const BUILDER_IMAGE = 'localhost/dify-test/dify-registry-builder:ci';

interface ImageConfig {
  User?: string;
  Entrypoint?: string[];
  Cmd?: string[];
  Env?: string[];
  ExposedPorts?: Record<string, unknown>;
  Volumes?: Record<string, unknown>;
  StopSignal?: string;
  Labels?: Record<string, string>;
}

async function imageConfig(buildah: ContainerClient, image: string): Promise<ImageConfig> {
  // buildah 1.28's --format has no json function: read the whole report.
  const out = (await buildah.run(['inspect', '--type', 'image', image])).stdout;
  return (JSON.parse(out) as { OCIv1: { config: ImageConfig } }).OCIv1.config;
}

/**
 * Explicit limits for RUN steps. The isolated containers.conf asks for this process's own limits, which
 * buildah's chroot runner cannot raise back to after lowering its own (no CAP_SYS_RESOURCE here).
 */
async function budLimits(): Promise<string[]> {
  const limits = await readFile('/proc/self/limits', 'utf8');
  const soft = (label: string, cap: number) => {
    const value = new RegExp(`^${label}\\s+(\\S+)`, 'm').exec(limits)?.[1];
    return value === undefined || value === 'unlimited' ? cap : Math.min(Number(value), cap);
  };
  const nofile = soft('Max open files', 65536);
  const nproc = soft('Max processes', 32768);
  return ['--ulimit', `nofile=${nofile}:${nofile}`, '--ulimit', `nproc=${nproc}:${nproc}`];
}

async function httpStatus(url: string): Promise<number> {
  try {
    return (await fetch(url)).status;
  } catch {
    return 0;
  }
}

describe('container images', function () {
  // A cold run makes the Debian base (about a minute, once a day) and builds both images.
  this.timeout(600_000);
  let buildah: ContainerClient;
  let bud: (args: string[]) => Promise<unknown>;
  let registry: RunningRegistry;
  let dockerd: RunningDockerd;
  let base: string;
  let built = false;

  before(async () => {
    registry = await startRegistry();
    buildah = await startBuildah({ insecureRegistries: [registry.hostPort] });
    const limits = await budLimits();
    bud = (args) => buildah.run(['bud', '--isolation', 'chroot', ...limits, ...args]);
    // dockerd starts while the base builds; it is assigned even when the base fails, so after() stops it.
    const starting = startDockerd();
    starting.catch(() => undefined); // its failure is reported by the await below, not as unhandled
    try {
      base = await buildNodeBaseImage(buildah);
    } finally {
      dockerd = await starting;
    }
  });
  after(async () => {
    await dockerd?.stop();
    await buildah?.stop();
    await registry?.stop();
  });

  it('builds the registry image from the Node base given as a build argument', async () => {
    await bud(['--build-arg', `NODE_IMAGE=${base}`, '--build-arg', 'VERSION=ci', '-f', join(REPO_ROOT, 'Dockerfile'), '-t', IMAGE, REPO_ROOT]);
    built = true;
    const config = await imageConfig(buildah, IMAGE);
    expect(config.User).to.equal('10001:10001');
    expect(config.Entrypoint).to.deep.equal(['node', '/app/dist/server/main.js']);
    expect(config.Cmd).to.deep.equal(['serve']);
    expect(config.ExposedPorts).to.have.property('5000/tcp');
    expect(config.Volumes).to.have.property('/var/lib/registry');
    expect(config.StopSignal).to.equal('SIGTERM');
    expect(config.Env).to.include.members(['NODE_ENV=production', 'REGISTRY_CONFIGURATION_PATH=/etc/dify-registry/config.yml']);
    expect(config.Labels).to.include({ 'org.opencontainers.image.version': 'ci' });
    // Production dependencies only: the compiler and the test tools stayed in the build stage.
    const probe = await tempDir('image-probe');
    try {
      await writeFile(join(probe, 'Containerfile'), [
        `FROM ${IMAGE}`,
        'RUN test ! -e /app/node_modules/typescript && test ! -e /app/node_modules/mocha && test -e /app/node_modules/koa \\',
        ' && test -d /app/builder/recipes/dify-api && test ! -e /app/server && test ! -e /app/test \\',
        ' && test "$(stat -c %u /var/lib/registry)" = 10001',
        '',
      ].join('\n'));
      await bud(['-f', join(probe, 'Containerfile'), '-t', 'localhost/dify-test/probe', probe]);
      await buildah.run(['rmi', 'localhost/dify-test/probe'], { allowFailure: true });
    } finally {
      await removeTree(probe);
    }
  });

  describe('run by docker', () => {
    const name = 'dify-registry-image-test';
    let port: number;
    let url: string;
    let pulled: string;

    before(async function () {
      if (!built) this.skip();
      // Into a registry and out again with docker, as a cluster would get it.
      pulled = `${registry.hostPort}/dify-registry:ci`;
      await buildah.run(['push', '--tls-verify=false', IMAGE, `docker://${pulled}`]);
      await dockerd.docker(['pull', pulled]);
      port = await freePort();
      url = `http://127.0.0.1:${port}`;
      // As the chart runs it: read-only root, a tmpfs /tmp, no capabilities, no privilege escalation.
      // The daemon has no bridge, so the container shares the host's network and listens on a free port.
      await dockerd.docker([
        'run', '-d', '--name', name, '--network', 'host', '--read-only', '--tmpfs', '/tmp',
        '--cap-drop', 'ALL', '--security-opt', 'no-new-privileges',
        '-e', `REGISTRY_HTTP_ADDR=127.0.0.1:${port}`, '-e', 'REGISTRY_HTTP_DRAINTIMEOUT=10s',
        pulled,
      ]);
      await waitUntil(`the registry container on ${url}`, async () => (await httpStatus(`${url}/readyz`)) === 200, { timeoutMs: 60_000, intervalMs: 200 })
        .catch(async (error: Error) => {
          const logs = await dockerd.docker(['logs', name], { allowFailure: true });
          throw new Error(`${error.message}\n${logs.stdout}${logs.stderr}`);
        });
    });
    after(async () => {
      await dockerd?.docker(['rm', '-f', name], { allowFailure: true });
    });

    it('runs as the non-root user with its default configuration', async () => {
      const pid = (await dockerd.docker(['inspect', '--format', '{{.State.Pid}}', name])).stdout.trim();
      const status = await readFile(`/proc/${pid}/status`, 'utf8');
      expect(/^Uid:\s+(\d+)/m.exec(status)?.[1]).to.equal('10001');
      expect(/^Name:\s+(\S+)/m.exec(status)?.[1], 'node itself is PID 1 and takes the signals').to.equal('node');
      expect(await httpStatus(`${url}/healthz`)).to.equal(200);
      expect(await httpStatus(`${url}/v2/`)).to.equal(200);
    });

    it('takes a docker push and serves a docker pull', async () => {
      const source = `${registry.hostPort}/smoke/busybox:1`;
      await buildBusyboxImage(buildah, { arch: 'amd64', ref: source, extraFiles: { '/marker': 'pushed through the image\n' } });
      await dockerd.docker(['pull', source]);
      const target = `127.0.0.1:${port}/smoke/busybox:1`;
      await dockerd.docker(['tag', source, target]);
      await dockerd.docker(['push', target]);
      // Nothing left locally: the pull must come from the registry in the container.
      await dockerd.rmi(source, target);
      await dockerd.docker(['pull', target]);
      expect(await dockerd.runImage(target, ['cat', '/marker'])).to.equal('pushed through the image\n');
      const tags = (await (await fetch(`${url}/v2/smoke/busybox/tags/list`)).json()) as { tags: string[] };
      expect(tags.tags).to.deep.equal(['1']);
      // On the image's volume, as the non-root user.
      const volume = (await dockerd.docker(['inspect', '--format', '{{range .Mounts}}{{if eq .Destination "/var/lib/registry"}}{{.Source}}{{end}}{{end}}', name])).stdout.trim();
      expect(volume).to.not.equal('');
      await dockerd.rmi(target);
    });

    it('drains and exits 0 on docker stop (SIGTERM to node as PID 1)', async () => {
      const started = Date.now();
      await dockerd.docker(['stop', '--time', '30', name]);
      expect(Date.now() - started, 'stopped by its own handler, not killed after the grace period').to.be.below(20_000);
      expect((await dockerd.docker(['inspect', '--format', '{{.State.ExitCode}}', name])).stdout.trim()).to.equal('0');
      const logs = await dockerd.docker(['logs', name]);
      const messages = `${logs.stdout}${logs.stderr}`.split('\n').filter(Boolean).map((line) => {
        try {
          return (JSON.parse(line) as { msg?: string }).msg ?? '';
        } catch {
          return line;
        }
      });
      expect(messages).to.include.members(['draining', 'stopped']);
    });
  });

  it('builds the build-worker image on the registry image: buildah, qemu-user-static, tini, git', async function () {
    if (!built) this.skip();
    await bud(['--build-arg', `REGISTRY_IMAGE=${IMAGE}`, '-f', join(REPO_ROOT, 'Dockerfile.builder'), '-t', BUILDER_IMAGE, REPO_ROOT]);
    const config = await imageConfig(buildah, BUILDER_IMAGE);
    expect(config.Entrypoint).to.deep.equal(['/usr/bin/tini', '--', 'node', '/app/dist/server/main.js']);
    expect(config.Cmd).to.deep.equal(['worker']);
    expect(config.User).to.equal('0:0');
    // RUN steps run the image's own tools (chroot isolation works here; buildah cannot start containers).
    const probe = await tempDir('builder-probe');
    try {
      await writeFile(join(probe, 'Containerfile'), [
        `FROM ${BUILDER_IMAGE}`,
        'RUN buildah --version && qemu-aarch64-static --version && tini --version && git --version \\',
        // The worker starts far enough to check its configuration: every module it loads is in the image.
        ' && { node /app/dist/server/main.js worker > /tmp/out 2>&1; test $? = 2; } && grep -q Redis /tmp/out',
        '',
      ].join('\n'));
      await bud(['-f', join(probe, 'Containerfile'), '-t', 'localhost/dify-test/builder-probe', probe]);
    } finally {
      await buildah.run(['rmi', 'localhost/dify-test/builder-probe', BUILDER_IMAGE], { allowFailure: true });
      await removeTree(probe);
    }
  });
});
