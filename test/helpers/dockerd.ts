// A private Docker daemon per suite: own data root, exec root, socket and config, so tests never
// touch (or depend on) a system dockerd, and the images they pull really come from the registry.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { removeTree } from './cleanup.js';
import { run, startDaemon, tempDir, waitUntil } from './process.js';

/**
 * Debian's 20.10 client, not /usr/local/bin/docker (28.x) that shadows it on some machines:
 * install-deps.sh installs this one everywhere (docker.io), it speaks the daemon's own API version
 * (1.41), and its `build` is the classic builder without the buildx plugin that 28.x expects.
 */
export const DOCKER_CLIENT = process.env.TEST_DOCKER_CLIENT ?? '/usr/bin/docker';
const DOCKERD = process.env.TEST_DOCKERD ?? '/usr/sbin/dockerd';

export type RunResult = Awaited<ReturnType<typeof run>>;

export interface RunningDockerd {
  /** The DOCKER_HOST value (unix://…/docker.sock). */
  host: string;
  pid: number;
  dir: string;
  logFile: string;
  docker(args: string[], opts?: { input?: string | Buffer; allowFailure?: boolean; cwd?: string }): Promise<RunResult>;
  /** `docker run --rm --network none IMAGE CMD…`: there is no bridge on this daemon. */
  runImage(image: string, command: string[], extraArgs?: string[]): Promise<string>;
  /** Removes images if present, so the next pull must fetch from the registry. */
  rmi(...refs: string[]): Promise<void>;
  stop(): Promise<void>;
}

export interface DockerdOptions {
  /**
   * daemon.json `registry-mirrors`: dockerd asks these first for Docker Hub (docker.io) images, e.g.
   * `http://127.0.0.1:PORT` (127.0.0.0/8 is insecure by default, so plain HTTP works).
   */
  registryMirrors?: string[];
}

export async function startDockerd(options: DockerdOptions = {}): Promise<RunningDockerd> {
  const dir = await tempDir('dockerd');
  const configFile = join(dir, 'daemon.json');
  const clientConfig = join(dir, 'client');
  await mkdir(clientConfig);
  // Our own daemon.json (empty unless options ask for more), so a system /etc/docker/daemon.json
  // cannot conflict with the flags.
  const daemonJson: Record<string, unknown> = {};
  if (options.registryMirrors && options.registryMirrors.length > 0) daemonJson['registry-mirrors'] = options.registryMirrors;
  await writeFile(configFile, `${JSON.stringify(daemonJson)}\n`);
  await writeFile(join(clientConfig, 'config.json'), '{}\n');
  const socket = join(dir, 'docker.sock');
  const host = `unix://${socket}`;
  const daemon = await startDaemon(DOCKERD, [
    '--config-file', configFile,
    '--data-root', join(dir, 'root'),
    '--exec-root', join(dir, 'exec'),
    '--pidfile', join(dir, 'docker.pid'),
    '-H', host,
    // No bridge and no iptables: nothing to clash with other daemons; containers use --network none.
    '--iptables=false', '--ip-masq=false', '--ip-forward=false', '--bridge=none',
    '--storage-driver=vfs',
  ], { logFile: join(dir, 'dockerd.log') });

  // DOCKER_CONFIG isolates the client from ~/.docker (credentials, contexts, proxies).
  const env: NodeJS.ProcessEnv = { ...process.env, DOCKER_HOST: host, DOCKER_CONFIG: clientConfig };
  delete env.DOCKER_CONTEXT;
  delete env.DOCKER_TLS_VERIFY;
  delete env.DOCKER_CERT_PATH;
  delete env.DOCKER_BUILDKIT;
  const docker = (args: string[], opts: { input?: string | Buffer; allowFailure?: boolean; cwd?: string } = {}) =>
    run(DOCKER_CLIENT, args, { ...opts, env });

  try {
    await waitUntil('dockerd to answer `docker version`', async () => {
      const r = await docker(['version', '--format', '{{.Server.Version}}'], { allowFailure: true });
      return r.code === 0 && r.stdout.trim() !== '';
    }, { daemon, timeoutMs: 60_000, intervalMs: 200 });
  } catch (error) {
    await daemon.stop(5_000);
    await removeTree(dir);
    throw error;
  }

  let stopped = false;
  return {
    host,
    pid: daemon.pid,
    dir,
    logFile: daemon.logFile,
    docker,
    async runImage(image, command, extraArgs = []) {
      const r = await docker(['run', '--rm', '--network', 'none', ...extraArgs, image, ...command]);
      return r.stdout;
    },
    async rmi(...refs) {
      for (const ref of refs) await docker(['rmi', '--force', ref], { allowFailure: true });
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      // Containers are started with --rm; anything left (a failed test) goes before the daemon.
      const left = await docker(['ps', '-aq'], { allowFailure: true });
      const ids = left.stdout.split('\n').filter(Boolean);
      if (ids.length > 0) await docker(['rm', '-f', ...ids], { allowFailure: true });
      await daemon.stop(20_000);
      // vfs keeps a full copy of every layer: always remove the whole root.
      await removeTree(dir);
    },
  };
}
