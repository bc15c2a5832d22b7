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
  return {
    name: 'filesystem',
    async start() {
      // Imported lazily, so that TEST_REGISTRY_URL runs need nothing of our server.
      const { startRegistry } = await import('./registry.js');
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
  return [filesystemTarget({ workers })];
}
