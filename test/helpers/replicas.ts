// Several registry processes on one S3 bucket (and optionally one Redis), behind a round-robin TCP proxy:
// the shape of a Kubernetes Deployment with a Service in front. Replicas can be SIGKILLed (and are then
// taken out of the proxy, as an endpoints update would) and started again on the same storage.
import { startRedis, type RunningRedis } from './redis.js';
import { startRegistry, type RunningRegistry } from './registry.js';
import { startRoundRobinProxy, type RoundRobinProxy } from './round-robin-proxy.js';
import { s3StorageConfig } from './shared-s3.js';
import { s3Available, s3UnavailableReason } from './s3.js';

export interface Replica {
  /** Position in the set; a restarted replica keeps its index but gets a new port. */
  index: number;
  registry: RunningRegistry;
  url: string;
  hostPort: string;
  /** False after kill(), until restart(). */
  alive: boolean;
}

export interface ReplicaSet {
  replicas: Replica[];
  /** The live ones, in index order. */
  live(): Replica[];
  proxy: RoundRobinProxy;
  /** The proxy's URL and host:port: what clients use. */
  url: string;
  hostPort: string;
  redis?: RunningRedis;
  /** The registry configuration every replica runs with (storage, redis, extras). */
  config: Record<string, unknown>;
  /**
   * SIGKILLs a replica and waits until it is gone. Its proxy entry goes after `removeAfterMs`
   * (default at once): meanwhile new connections to it are refused and the proxy skips it.
   */
  kill(index: number, options?: { removeAfterMs?: number }): Promise<void>;
  /** Starts a new process for a killed or stopped replica, on the same storage, and adds it to the proxy. */
  restart(index: number): Promise<void>;
  stop(): Promise<void>;
}

export interface ReplicaOptions {
  /** true: start a Redis for this set; a RunningRedis: use that one (the caller stops it). */
  redis?: boolean | RunningRedis;
  /** Extra storage.s3 keys (over s3StorageConfig()'s fresh bucket). */
  s3?: Record<string, unknown>;
  /** Merged over the generated config (storage, redis). */
  config?: Record<string, unknown>;
  /** http.workers of each replica (default 1). */
  workers?: number;
}

/** Fails with the reason (as the S3 suites do) rather than skipping silently: CI installs Ceph. */
export function assertReplicaPrerequisites(): void {
  if (!s3Available()) throw new Error(s3UnavailableReason());
}

export async function startReplicas(n: number, options: ReplicaOptions = {}): Promise<ReplicaSet> {
  assertReplicaPrerequisites();
  const ownRedis = options.redis === true;
  let redis: RunningRedis | undefined;
  const replicas: Replica[] = [];
  let proxy: RoundRobinProxy | undefined;
  const stopAll = async () => {
    // Every stop runs even when one fails; the first failure is reported.
    const results = await Promise.allSettled([
      proxy?.stop(),
      ...replicas.map((r) => r.registry.stop()),
    ]);
    if (ownRedis) results.push(...(await Promise.allSettled([redis?.stop()])));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  };
  try {
    if (options.redis === true) redis = await startRedis();
    else if (options.redis) redis = options.redis;
    const storage = { s3: await s3StorageConfig(options.s3) };
    const config: Record<string, unknown> = {
      storage,
      ...(redis ? { redis: { addr: redis.addr } } : {}),
      ...options.config,
    };
    const launch = () => startRegistry({ config, workers: options.workers });
    // One at a time: with two cores, parallel tsx start-ups only slow each other down.
    for (let index = 0; index < n; index++) {
      const registry = await launch();
      replicas.push({ index, registry, url: registry.url, hostPort: registry.hostPort, alive: true });
    }
    proxy = await startRoundRobinProxy(replicas.map((r) => r.hostPort));
    const p = proxy;
    return {
      replicas,
      live: () => replicas.filter((r) => r.alive),
      proxy: p,
      url: p.url,
      hostPort: p.hostPort,
      redis,
      config,
      async kill(index, killOptions = {}) {
        const replica = replicas[index]!;
        const pid = replica.registry.pid;
        // Captured now: a restart() before the timer fires gives the replica a new address to keep.
        const hostPort = replica.hostPort;
        replica.registry.kill('SIGKILL');
        replica.alive = false;
        await replica.registry.daemon.exited;
        const remove = () => p.removeBackend(hostPort);
        if (killOptions.removeAfterMs) setTimeout(remove, killOptions.removeAfterMs).unref();
        else remove();
        if (processAlive(pid)) throw new Error(`replica ${index} (pid ${pid}) survived SIGKILL`);
      },
      async restart(index) {
        const replica = replicas[index]!;
        p.removeBackend(replica.hostPort);
        // stop() after a kill only cleans up the old process's config and log directory.
        await replica.registry.stop();
        const registry = await launch();
        Object.assign(replica, { registry, url: registry.url, hostPort: registry.hostPort, alive: true });
        p.addBackend(registry.hostPort);
      },
      stop: stopAll,
    };
  } catch (error) {
    await stopAll().catch(() => undefined);
    throw error;
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
