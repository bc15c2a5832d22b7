// The registries that the protocol suites run against. Suites are functions of a TargetFactory, so the
// same checks run on every storage backend (filesystem now, S3 later) and against an external registry.
//
//   TEST_REGISTRY_URL=http://127.0.0.1:5000   run against a registry started by hand (startRegistry is
//                                             not called; crash/restart checks are skipped)
//   TEST_REGISTRY_ROOT=/path                  its filesystem storage root, if known (enables the
//                                             layout-independent "stored once" check)
//   TEST_REGISTRY_WORKERS=N                   run our registry with N worker processes
import { rm } from 'node:fs/promises';
import { tempDir } from './process.js';

export interface RegistryTarget {
  /** Base URL, e.g. http://127.0.0.1:PORT. Changes after restart(). */
  readonly url: string;
  /** Filesystem storage root, when the storage is a local directory we may inspect. */
  readonly root?: string;
  stop(): Promise<void>;
  /** SIGKILL the registry process and wait until it is gone. Absent for external registries. */
  kill?(): Promise<void>;
  /** Start a new registry process on the same storage (after kill or stop). */
  restart?(): Promise<void>;
}

export interface TargetFactory {
  /** Shown in suite titles, e.g. "filesystem". */
  name: string;
  start(): Promise<RegistryTarget>;
}

function processGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch {
    return true;
  }
}

/** Our registry on a fresh filesystem root, through test/helpers/registry.ts. */
export function filesystemTarget(options: { config?: Record<string, unknown>; workers?: number } = {}): TargetFactory {
  return registryTarget('filesystem', async () => options.config ?? {}, options.workers);
}

/** Our registry on a fresh bucket of the shared Ceph RGW (test/helpers/shared-s3.ts). */
export function s3Target(options: { workers?: number; s3?: Record<string, unknown> } = {}): TargetFactory {
  return registryTarget('s3', async () => {
    const { s3StorageConfig } = await import('./shared-s3.js');
    return { storage: { s3: await s3StorageConfig(options.s3) } };
  }, options.workers);
}

function registryTarget(name: string, makeConfig: () => Promise<Record<string, unknown>>, workers: number | undefined): TargetFactory {
  return {
    name,
    async start() {
      // Imported lazily, so that TEST_REGISTRY_URL runs need nothing of our server.
      const { startRegistry } = await import('./registry.js');
      const config = await makeConfig();
      const options = { config, workers };
      const rootDir = await tempDir('registry-proto');
      let running = await startRegistry({ config: options.config, workers: options.workers, rootDir });
      const target: RegistryTarget = {
        get url() { return running.url; },
        get root() { return running.root; },
        async stop() {
          await running.stop();
          // The registry's own log stays in the helper's directory; the stored data goes.
          await rm(rootDir, { recursive: true, force: true });
        },
        async kill() {
          const pid = running.pid;
          running.kill('SIGKILL');
          const deadline = Date.now() + 10_000;
          while (!processGone(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
          // Let the helper notice the exit (and reap the child) before a new one starts.
          await running.stop().catch(() => undefined);
        },
        async restart() {
          running = await startRegistry({ config: options.config, workers: options.workers, rootDir: running.root });
        },
      };
      // The filesystem root is ours to inspect only when the data lives there.
      if (config.storage !== undefined) Object.defineProperty(target, 'root', { get: () => undefined });
      return target;
    },
  };
}

export function externalTarget(url: string, root?: string): TargetFactory {
  return {
    name: `external ${url}`,
    async start() {
      return { url: url.replace(/\/+$/, ''), root, stop: async () => undefined };
    },
  };
}

/**
 * The targets every protocol suite runs on. To run the suites on another backend (S3), add its factory
 * here; do not import the *.test.ts files elsewhere (their last line registers the suites).
 */
export function suiteTargets(): TargetFactory[] {
  const external = process.env.TEST_REGISTRY_URL;
  if (external) return [externalTarget(external, process.env.TEST_REGISTRY_ROOT || undefined)];
  const workers = Number(process.env.TEST_REGISTRY_WORKERS) || undefined;
  return testBackends().map((backend) => (backend === 's3' ? s3Target({ workers }) : filesystemTarget({ workers })));
}

/** TEST_BACKENDS=filesystem,s3 (the default: both) selects the storage backends the suites run on. */
export function testBackends(): Array<'filesystem' | 's3'> {
  const chosen = (process.env.TEST_BACKENDS ?? 'filesystem,s3').split(',').map((b) => b.trim()).filter(Boolean);
  for (const backend of chosen) {
    if (backend !== 'filesystem' && backend !== 's3') throw new Error(`TEST_BACKENDS: unknown backend ${backend}`);
  }
  return chosen as Array<'filesystem' | 's3'>;
}
