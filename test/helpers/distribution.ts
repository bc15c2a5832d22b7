// CNCF Distribution 2.8.2 (Debian's docker-registry) as a reference peer: tests that pass against it
// and fail against us point at our bug, not at the test.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { removeTree } from './cleanup.js';
import { freePort, startDaemon, tempDir, waitUntil } from './process.js';

const DOCKER_REGISTRY = process.env.TEST_DOCKER_REGISTRY ?? '/usr/bin/docker-registry';

export interface RunningDistribution {
  url: string;
  hostPort: string;
  root: string;
  pid: number;
  logFile: string;
  stop(): Promise<void>;
}

type Config = Record<string, unknown>;

function isObject(value: unknown): value is Config {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Deep merge where `over` wins; arrays are replaced, not merged. */
function merge(base: Config, over: Config): Config {
  const out: Config = { ...base };
  for (const [key, value] of Object.entries(over)) {
    const current = out[key];
    out[key] = isObject(current) && isObject(value) ? merge(current, value) : value;
  }
  return out;
}

export async function startDistribution(config: Config = {}): Promise<RunningDistribution> {
  const dir = await tempDir('distribution');
  const root = join(dir, 'storage');
  await mkdir(root);
  const port = await freePort();
  const hostPort = `127.0.0.1:${port}`;
  const full = merge({
    version: '0.1',
    log: { level: 'info', accesslog: { disabled: false } },
    storage: { filesystem: { rootdirectory: root }, delete: { enabled: true } },
    http: { addr: hostPort, headers: { 'X-Content-Type-Options': ['nosniff'] } },
  }, config);
  const configFile = join(dir, 'config.yml');
  // JSON is valid YAML, and go-yaml reads it: no YAML writer needed.
  await writeFile(configFile, JSON.stringify(full, null, 2));

  const env: NodeJS.ProcessEnv = { ...process.env };
  // Go's AWS SDK panics on this machine's AWS_CA_BUNDLE (LoadCustomCABundleError).
  delete env.AWS_CA_BUNDLE;
  // REGISTRY_* variables override the config file; a test's own environment must not leak in.
  for (const key of Object.keys(env)) if (key.startsWith('REGISTRY_')) delete env[key];

  const daemon = await startDaemon(DOCKER_REGISTRY, ['serve', configFile], { logFile: join(dir, 'registry.log'), env });
  const url = `http://${hostPort}`;
  try {
    // With auth.token (or auth.htpasswd) configured, /v2/ answers a Bearer (or Basic) challenge instead of 200 once it is up.
    const auth = (full as { auth?: { token?: unknown; htpasswd?: unknown } }).auth;
    const challenge = auth?.token !== undefined ? 'Bearer ' : auth?.htpasswd !== undefined ? 'Basic ' : undefined;
    await waitUntil(`docker-registry on ${hostPort}`, async () => {
      const res = await fetch(`${url}/v2/`);
      await res.arrayBuffer();
      return challenge
        ? res.status === 401 && (res.headers.get('www-authenticate') ?? '').startsWith(challenge)
        : res.status === 200;
    }, { daemon });
  } catch (error) {
    await daemon.stop(2_000);
    await removeTree(dir);
    throw error;
  }
  let stopped = false;
  return {
    url,
    hostPort,
    root,
    pid: daemon.pid,
    logFile: daemon.logFile,
    async stop() {
      if (stopped) return;
      stopped = true;
      await daemon.stop(5_000);
      await removeTree(dir);
    },
  };
}
