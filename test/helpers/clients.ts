// Thin wrappers for skopeo, podman and buildah, each with its own storage, config and auth files
// in a temp dir: nothing is read from or written to /var/lib/containers, /etc/containers or $HOME.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { removeTree } from './cleanup.js';
import { run, tempDir } from './process.js';

export type RunResult = Awaited<ReturnType<typeof run>>;
export type RunOptions = { input?: string | Buffer; allowFailure?: boolean; cwd?: string };

export interface ContainerClient {
  tool: 'buildah' | 'podman' | 'skopeo';
  dir: string;
  /** containers/storage graph root (vfs) and run root. */
  root: string;
  runroot: string;
  env: NodeJS.ProcessEnv;
  /** Runs the tool with its global isolation flags prepended. */
  run(args: string[], opts?: RunOptions): Promise<RunResult>;
  stop(): Promise<void>;
}

export interface ClientOptions {
  /** host:port registries to reach over plain HTTP without --tls-verify=false on every command. */
  insecureRegistries?: string[];
}

/**
 * podman (as root) raises RLIMIT_NOFILE and RLIMIT_NPROC to 1048576 unless told otherwise; where
 * root lacks CAP_SYS_RESOURCE (as on these test machines) runc then fails with "error setting
 * rlimit type 7". Give containers the limits this process already has.
 */
async function currentUlimits(): Promise<string[]> {
  const limits = await readFile('/proc/self/limits', 'utf8');
  const out: string[] = [];
  for (const [label, name] of [['Max open files', 'nofile'], ['Max processes', 'nproc']] as const) {
    const match = new RegExp(`^${label}\\s+(\\S+)\\s+(\\S+)`, 'm').exec(limits);
    if (!match) continue;
    const value = (v: string) => (v === 'unlimited' ? '-1' : v);
    out.push(`${name}=${value(match[1]!)}:${value(match[2]!)}`);
  }
  return out;
}

interface Layout { dir: string; root: string; runroot: string; tmp: string; env: NodeJS.ProcessEnv }

/** Writes storage.conf, registries.conf, policy.json, containers.conf and an empty auth file. */
async function isolatedLayout(tool: string, options: ClientOptions): Promise<Layout> {
  const dir = await tempDir(tool);
  const root = join(dir, 'root');
  const runroot = join(dir, 'runroot');
  const tmp = join(dir, 'tmp');
  for (const d of [root, runroot, tmp]) await mkdir(d);
  const storageConf = join(dir, 'storage.conf');
  await writeFile(storageConf, `[storage]\ndriver = "vfs"\ngraphroot = "${root}"\nrunroot = "${runroot}"\n`);
  const registriesConf = join(dir, 'registries.conf');
  // No search registries: an unqualified name must fail here instead of reaching for docker.io.
  const insecure = (options.insecureRegistries ?? [])
    .map((r) => `[[registry]]\nlocation = "${r}"\ninsecure = true\n`).join('\n');
  await writeFile(registriesConf, `unqualified-search-registries = []\nshort-name-mode = "permissive"\n\n${insecure}`);
  const policy = join(dir, 'policy.json');
  await writeFile(policy, JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
  const containersConf = join(dir, 'containers.conf');
  await writeFile(containersConf, [
    '[containers]',
    'netns = "none"',
    `default_ulimits = ${JSON.stringify(await currentUlimits())}`,
    '[engine]',
    'cgroup_manager = "cgroupfs"',
    'events_logger = "file"',
    `events_logfile_path = "${join(dir, 'events.log')}"`,
    `tmp_dir = "${join(runroot, 'libpod')}"`,
    `volume_path = "${join(root, 'volumes')}"`,
    '',
  ].join('\n'));
  const authFile = join(dir, 'auth.json');
  await writeFile(authFile, '{"auths":{}}\n');
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    CONTAINERS_STORAGE_CONF: storageConf,
    CONTAINERS_REGISTRIES_CONF: registriesConf,
    CONTAINERS_CONF: containersConf,
    REGISTRY_AUTH_FILE: authFile,
    // Layers are staged in TMPDIR (default /var/tmp) during pulls and pushes; keep them in our dir.
    TMPDIR: tmp,
    XDG_CONFIG_HOME: join(dir, 'config'),
    XDG_DATA_HOME: join(dir, 'data'),
  };
  delete env.CONTAINER_HOST;
  delete env.CONTAINER_CONNECTION;
  delete env.BUILDAH_ISOLATION;
  return { dir, root, runroot, tmp, env };
}

function client(tool: ContainerClient['tool'], layout: Layout, globalArgs: string[]): ContainerClient {
  let stopped = false;
  return {
    tool,
    dir: layout.dir,
    root: layout.root,
    runroot: layout.runroot,
    env: layout.env,
    run: (args, opts = {}) => run(tool, [...globalArgs, ...args], { ...opts, env: layout.env }),
    async stop() {
      if (stopped) return;
      stopped = true;
      // vfs keeps a full copy of every layer; chroot builds and podman runs may leave mounts behind.
      await removeTree(layout.dir);
    },
  };
}

const storageFlags = (l: Layout) => ['--root', l.root, '--runroot', l.runroot, '--storage-driver', 'vfs'];

export async function startBuildah(options: ClientOptions = {}): Promise<ContainerClient> {
  const l = await isolatedLayout('buildah', options);
  return client('buildah', l, [...storageFlags(l), '--registries-conf', l.env.CONTAINERS_REGISTRIES_CONF!]);
}

export async function startPodman(options: ClientOptions = {}): Promise<ContainerClient> {
  const l = await isolatedLayout('podman', options);
  return client('podman', l, [
    ...storageFlags(l),
    '--tmpdir', join(l.runroot, 'libpod'),
    '--cgroup-manager', 'cgroupfs',
    '--events-backend', 'file',
  ]);
}

export async function startSkopeo(options: ClientOptions = {}): Promise<ContainerClient> {
  const l = await isolatedLayout('skopeo', options);
  // skopeo has no storage flags; containers-storage: destinations read CONTAINERS_STORAGE_CONF.
  return client('skopeo', l, ['--policy', join(l.dir, 'policy.json'), '--tmpdir', l.tmp]);
}
