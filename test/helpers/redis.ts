// A real Debian redis-server on a random loopback port, without persistence, stopped by PID.
import { rm, writeFile } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { freePort, startDaemon, tempDir, waitUntil, type Daemon } from './process.js';

export interface RunningRedis {
  port: number;
  addr: string;
  url: string;
  daemon: Daemon;
  /** Stops the server for good and removes its directory. */
  stop(): Promise<void>;
  /** Stops the server, as an outage would; its data is gone (nothing is persisted). */
  halt(): Promise<void>;
  /** Starts a fresh, empty server on the same port (halting the running one first). */
  restart(): Promise<void>;
}

export async function startRedis(): Promise<RunningRedis> {
  const dir = await tempDir('redis');
  const port = await freePort();
  const launch = async () => {
    const daemon = await startDaemon(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--protected-mode', 'no'],
      { logFile: join(dir, 'redis.log') },
    );
    await waitUntil(`redis on ${port}`, () => ping(port), { daemon, timeoutMs: 10_000 });
    return daemon;
  };
  let daemon = await launch();
  const running: RunningRedis = {
    port,
    addr: `127.0.0.1:${port}`,
    url: `redis://127.0.0.1:${port}`,
    get daemon() {
      return daemon;
    },
    async halt() {
      await daemon.stop(5_000);
    },
    async restart() {
      await daemon.stop(5_000);
      daemon = await launch();
    },
    async stop() {
      await daemon.stop(5_000);
      if (!process.env.TEST_KEEP_TMP) await rm(dir, { recursive: true, force: true });
    },
  };
  return running;
}

function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port }, () => socket.write('PING\r\n'));
    socket.once('data', (data) => {
      socket.destroy();
      resolve(data.toString().startsWith('+PONG'));
    });
    socket.once('error', () => resolve(false));
  });
}

export interface RunningSentinel {
  addr: string;
  stop(): Promise<void>;
}

/** A Redis Sentinel (the same Debian binary in sentinel mode) watching `master` as `name`. */
export async function startSentinel(master: RunningRedis, name = 'registry-master'): Promise<RunningSentinel> {
  const dir = await tempDir('sentinel');
  const port = await freePort();
  const config = join(dir, 'sentinel.conf');
  // Sentinel rewrites its config file, so it must be writable and its own.
  await writeFile(config, [`port ${port}`, 'bind 127.0.0.1', `dir ${dir}`, `sentinel monitor ${name} 127.0.0.1 ${master.port} 1`, ''].join('\n'));
  const daemon = await startDaemon('redis-server', [config, '--sentinel'], { logFile: join(dir, 'sentinel.log') });
  await waitUntil(`sentinel on ${port}`, () => ping(port), { daemon, timeoutMs: 10_000 });
  return {
    addr: `127.0.0.1:${port}`,
    async stop() {
      await daemon.stop(5_000);
      if (!process.env.TEST_KEEP_TMP) await rm(dir, { recursive: true, force: true });
    },
  };
}
