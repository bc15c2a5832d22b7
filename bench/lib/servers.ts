// Starts the two registries under test as real processes on loopback ports, with the same storage settings.
// A handle can restart its process on the same storage (fresh process, same data) for the memory scenarios.
import { existsSync } from 'node:fs';
import { mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, run, startDaemon, tempDir, waitUntil, type Daemon } from '../../test/helpers/process.js';

export type Side = 'ours' | 'theirs';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const DISTRIBUTION_BINARY = process.env.BENCH_DISTRIBUTION ?? '/usr/bin/docker-registry';

export interface OursOptions {
  /** http.workers: 0 = one per core (the default config). */
  workers: number;
  logLevel: string;
  /** `tsx`: node --import=tsx server/main.ts (as documented); `dist`: the same code compiled by tsc first. */
  mode: 'tsx' | 'dist';
  /** Extra node arguments, inherited by cluster workers (e.g. --cpu-prof --cpu-prof-dir=D). */
  nodeArgs?: string[];
  /** The `storage` section; default: filesystem storage in the handle's temp dir. */
  storage?: Record<string, unknown>;
  /** With mode `dist`: the main.js of an earlier buildOurs(), instead of compiling again. */
  distMain?: string;
  /** Appended to the label (e.g. "S3, redirect disabled"). */
  labelSuffix?: string;
  /** More top-level config sections (e.g. `redis`). */
  extraConfig?: Record<string, unknown>;
  /** More `http` keys beside the address and workers (e.g. `metrics`). */
  http?: Record<string, unknown>;
}

function cleanEnv(dropAws = false): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.AWS_CA_BUNDLE; // Go's AWS SDK panics on this machine's bundle; harmless to drop for ours too
  for (const key of Object.keys(env)) if (key.startsWith('REGISTRY_') || (dropAws && key.startsWith('AWS_'))) delete env[key];
  delete env.NODE_OPTIONS;
  return env;
}

/**
 * Compiles server/ with tsc into a temp directory that resolves packages from this checkout. Type errors
 * (someone mid-edit) do not stop tsc from emitting JavaScript: they are reported, and the output is used.
 */
export async function buildOurs(dir: string): Promise<string> {
  return buildTree(REPO_ROOT, dir);
}

/**
 * Our registry as of git `ref` (a commit, tag or branch of this checkout), compiled into `dir`: for
 * measuring a change against the code before it, side by side in the same run.
 */
export async function buildOursAt(ref: string, dir: string): Promise<string> {
  const tree = join(dir, 'tree');
  await run('git', ['-C', REPO_ROOT, 'worktree', 'add', '--detach', '--force', tree, ref]);
  try {
    return await buildTree(tree, dir);
  } finally {
    await run('git', ['-C', REPO_ROOT, 'worktree', 'remove', '--force', tree], { allowFailure: true });
  }
}

/** Compiles the checkout at `root` with tsc into `dir`/build, with this checkout's node_modules. */
async function buildTree(root: string, dir: string): Promise<string> {
  const out = join(dir, 'build');
  await mkdir(out, { recursive: true });
  await writeFile(join(out, 'package.json'), JSON.stringify({ type: 'module' }));
  await symlink(join(REPO_ROOT, 'node_modules'), join(out, 'node_modules'));
  const tsc = join(REPO_ROOT, 'node_modules/typescript/bin/tsc');
  const result = await run(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json'), '--outDir', join(out, 'dist')], {
    cwd: root,
    allowFailure: true,
  });
  const main = join(out, 'dist/server/main.js');
  if (!existsSync(main)) throw new Error(`tsc produced no ${main}:\n${result.stdout}${result.stderr}`);
  if (result.code !== 0) console.warn(`warning: tsc reported errors (JavaScript emitted anyway):\n${result.stdout.trim()}`);
  return main;
}

interface LaunchSpec {
  command: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  cwd?: string;
}

/** One registry: a storage directory and a config that outlive the processes started on them. */
export class ServerHandle {
  private daemon: Daemon | undefined;
  private starts = 0;

  private constructor(
    readonly side: Side,
    /** Human-readable description (command and process model). */
    readonly label: string,
    readonly url: string,
    readonly dir: string,
    private readonly launch: LaunchSpec,
  ) {}

  get pid(): number {
    if (!this.daemon) throw new Error(`${this.side} is not running`);
    return this.daemon.pid;
  }

  get logFile(): string {
    return join(this.dir, `registry-${this.starts}.log`);
  }

  async start(): Promise<void> {
    this.starts++;
    const daemon = await startDaemon(this.launch.command, this.launch.args, { logFile: this.logFile, env: this.launch.env, cwd: this.launch.cwd });
    this.daemon = daemon;
    try {
      await waitUntil(`${this.side} registry at ${this.url}`, async () => (await fetch(`${this.url}/v2/`)).status === 200, {
        daemon,
        timeoutMs: 60_000,
      });
    } catch (error) {
      await daemon.stop(2_000);
      this.daemon = undefined;
      throw error;
    }
  }

  async stop(): Promise<void> {
    await this.daemon?.stop(15_000);
    this.daemon = undefined;
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  /** Stops the process and removes config, logs and storage (kept with BENCH_KEEP=1, for the logs). */
  async dispose(): Promise<void> {
    await this.stop();
    if (process.env.BENCH_KEEP) console.log(`${this.side}: kept ${this.dir} (logs: registry-<n>.log)`);
    else await rm(this.dir, { recursive: true, force: true });
  }

  static async ours(options: OursOptions): Promise<ServerHandle> {
    const dir = await tempDir('bench-ours');
    try {
      return await ServerHandle.oursIn(dir, options);
    } catch (error) {
      await rm(dir, { recursive: true, force: true });
      throw error;
    }
  }

  private static async oursIn(dir: string, options: OursOptions): Promise<ServerHandle> {
    const hostPort = `127.0.0.1:${await freePort()}`;
    const config = {
      version: 0.1,
      log: { level: options.logLevel },
      http: { addr: hostPort, workers: options.workers, ...options.http },
      storage: options.storage ?? { filesystem: { rootdirectory: join(dir, 'data') }, delete: { enabled: true }, cache: { blobdescriptor: 'inmemory' } },
      ...options.extraConfig,
    };
    const configFile = join(dir, 'config.yml');
    await writeFile(configFile, JSON.stringify(config, null, 2)); // JSON is YAML
    const args = [
      ...(options.nodeArgs ?? []),
      ...(options.mode === 'dist' ? [options.distMain ?? (await buildOurs(dir))] : ['--import=tsx', join(REPO_ROOT, 'server/main.ts')]),
      'serve',
      '--config',
      configFile,
    ];
    // With S3 storage, nothing may come from this machine's AWS_* variables (profile, region, endpoint).
    const env = cleanEnv(options.storage !== undefined);
    const entry = options.mode === 'dist' ? 'node <tsc output>/server/main.js' : 'node --import=tsx server/main.ts';
    const workers = options.workers === 0 ? '0 = one per core' : String(options.workers);
    const extra = options.nodeArgs?.length ? ` (node ${options.nodeArgs.join(' ')})` : '';
    const suffix = options.labelSuffix ? `, ${options.labelSuffix}` : '';
    const handle = new ServerHandle('ours', `${entry}, http.workers=${workers}${extra}${suffix}`, `http://${hostPort}`, dir, {
      command: process.execPath,
      args,
      env,
      cwd: REPO_ROOT,
    });
    await handle.start();
    return handle;
  }

  static async distribution(options: { logLevel: string }): Promise<ServerHandle> {
    const dir = await tempDir('bench-distribution');
    try {
      return await ServerHandle.distributionIn(dir, options);
    } catch (error) {
      await rm(dir, { recursive: true, force: true });
      throw error;
    }
  }

  private static async distributionIn(dir: string, options: { logLevel: string }): Promise<ServerHandle> {
    const hostPort = `127.0.0.1:${await freePort()}`;
    const config = {
      version: '0.1',
      log: { level: options.logLevel },
      http: { addr: hostPort },
      storage: { filesystem: { rootdirectory: join(dir, 'data') }, delete: { enabled: true }, cache: { blobdescriptor: 'inmemory' } },
    };
    const configFile = join(dir, 'config.yml');
    await writeFile(configFile, JSON.stringify(config, null, 2));
    const env = cleanEnv();
    const version = (await run(DISTRIBUTION_BINARY, ['--version'], { allowFailure: true, env })).stdout.trim();
    const handle = new ServerHandle('theirs', `${DISTRIBUTION_BINARY} serve (${version || 'CNCF Distribution'})`, `http://${hostPort}`, dir, {
      command: DISTRIBUTION_BINARY,
      args: ['serve', configFile],
      env,
    });
    await handle.start();
    return handle;
  }
}

export function distributionAvailable(): boolean {
  return existsSync(DISTRIBUTION_BINARY);
}
