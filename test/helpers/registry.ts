// Starts our registry as a real process (tsx, no build step) on a random loopback port.
import { rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { freePort, startDaemon, tempDir, waitUntil, type Daemon } from './process.js';

export interface RunningRegistry {
  url: string;
  hostPort: string;
  root: string;
  pid: number;
  daemon: Daemon;
  stop(): Promise<void>;
  kill(signal: NodeJS.Signals): void;
}

export interface RegistryOptions {
  /**
   * Merged over the defaults (filesystem storage in a temp dir, one worker, loopback address); a function
   * receives the registry's URL first, for keys that name it.
   */
  config?: Record<string, unknown> | ((url: string) => Record<string, unknown>);
  /** Set http.host to the registry's own URL (the token realm's base). */
  publicUrl?: boolean;
  workers?: number;
  /** Reuse a storage root, e.g. to restart on the data of a killed process. */
  rootDir?: string;
  env?: NodeJS.ProcessEnv;
  /** Serve HTTPS with these PEM files (url becomes https://). */
  tls?: { certificate: string; key: string };
  /** Listen on every interface instead of loopback only (url still uses 127.0.0.1). */
  listenAll?: boolean;
}

const MAIN = fileURLToPath(new URL('../../server/main.ts', import.meta.url));

export async function startRegistry(options: RegistryOptions = {}): Promise<RunningRegistry> {
  const dir = await tempDir('registry');
  const root = options.rootDir ?? join(dir, 'data');
  const port = await freePort();
  const hostPort = `127.0.0.1:${port}`;
  const url = `${options.tls ? 'https' : 'http'}://${hostPort}`;
  const extra = typeof options.config === 'function' ? options.config(url) : options.config;
  const config = deepMerge(
    {
      version: 0.1,
      log: { level: 'info' },
      http: {
        addr: `${options.listenAll ? '0.0.0.0' : '127.0.0.1'}:${port}`,
        ...(options.publicUrl ? { host: url } : {}),
        workers: options.workers ?? 1,
        draintimeout: '5s',
        ...(options.tls ? { tls: options.tls } : {}),
      },
      storage: { filesystem: { rootdirectory: root }, delete: { enabled: true } },
    },
    extra ?? {},
  );
  const configFile = join(dir, 'config.yml');
  await writeFile(configFile, stringify(config));
  // The test's own REGISTRY_* environment must not reconfigure the registry under test.
  const env: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('REGISTRY_')));
  const daemon = await startDaemon(process.execPath, ['--import=tsx', MAIN, 'serve', '--config', configFile], {
    logFile: join(dir, 'registry.log'),
    env: { ...env, ...options.env },
  });
  await waitUntil(`registry on ${hostPort}`, () => isReady(`${url}/readyz`), { daemon, timeoutMs: 30_000 });
  return {
    url,
    hostPort,
    root,
    pid: daemon.pid,
    daemon,
    async stop() {
      await daemon.stop();
      // Config, log and (unless the caller owns the root) the data; TEST_KEEP_TMP=1 keeps them for debugging.
      if (!process.env.TEST_KEEP_TMP) await rm(dir, { recursive: true, force: true });
    },
    kill: (signal) => process.kill(daemon.pid, signal),
  };
}

/** GET /readyz; certificates are not checked here (tests that use TLS check them themselves). */
function isReady(url: string): Promise<boolean> {
  const get = url.startsWith('https:') ? https.get : http.get;
  return new Promise((resolve) => {
    get(url, { rejectUnauthorized: false }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    }).on('error', () => resolve(false));
  });
}

function deepMerge(base: Record<string, unknown>, extra: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(extra)) {
    const current = out[key];
    out[key] =
      isPlainObject(current) && isPlainObject(value) ? deepMerge(current, value) : value;
  }
  return out;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
