#!/usr/bin/env node
// CLI entry. `serve` (the default) runs one worker process per core under node:cluster: every piece of
// state lives in storage, so any worker can serve any request, including any chunk of any upload.
import cluster from 'node:cluster';
import { parseArgs } from 'node:util';
import { setFlagsFromString } from 'node:v8';
import { ConfigError, loadConfig, workerCount, type Config } from './config.js';
import { createLogger } from './logger.js';

// Every socket read is a new 64 KiB buffer, memory V8 counts as external. Freed young buffers are subtracted
// only once a background thread has swept them; with both cores busy it lags, the count passes V8's limit,
// and V8 runs full mark-compacts every ~60 ms while data streams (S3 bench: pull rounds at twice the CPU and
// 65-75% of the throughput, in 3 of 3 runs with default flags; 4 of 13 with this). Swept during the
// scavenge instead, the count stays closer to true, for a few microseconds per scavenge.
setFlagsFromString('--no-concurrent-array-buffer-sweeping');

// Admin client commands parse their own options and never load the server's configuration.
if (process.argv[2] === 'mirror') {
  const { runMirrorCommand } = await import('./cli/mirror-command.js');
  process.exit(await runMirrorCommand(process.argv.slice(3)));
}
if (process.argv[2] === 'build') {
  const { runBuildCommand } = await import('./cli/build-command.js');
  process.exit(await runBuildCommand(process.argv.slice(3)));
}
// Garbage collection runs in this process against the configured storage, with its own options.
if (process.argv[2] === 'gc') {
  const { runGcCommand } = await import('./gc/cli.js');
  process.exit(await runGcCommand(process.argv.slice(3)));
}

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' } },
});

const USAGE = `usage: dify-registry [serve | worker] [FILE | --config FILE]

  serve      run the registry (default)
  mirror     mirror upstream tags through a running registry's admin API
             (dify-registry mirror --help; REGISTRY_URL, REGISTRY_USERNAME, REGISTRY_PASSWORD)
  gc         collect garbage in the configured storage now, while registries serve it
             (dify-registry gc --help; --dry-run, --grace-period 1h)
  worker     build images for builder.platforms, taking the work from Redis (no HTTP)
  build      build an image (e.g. the dify-api recipe) through a running registry's admin API
             (dify-registry build --help; REGISTRY_URL, REGISTRY_USERNAME, REGISTRY_PASSWORD)

Configuration: a YAML file (given as Distribution's \`registry serve FILE\`, with --config, or in
REGISTRY_CONFIGURATION_PATH), overridden by
REGISTRY_<SECTION>_<KEY> environment variables (e.g. REGISTRY_HTTP_ADDR=:5000).`;

async function main(): Promise<void> {
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const [command = 'serve', file, ...extra] = positionals;
  if (command !== 'serve' && command !== 'worker') {
    console.error(`unknown command: ${command}\n\n${USAGE}`);
    process.exit(2);
  }
  // Never start on defaults while a file was named: that registry would serve the wrong storage.
  if (extra.length > 0 || (file !== undefined && values.config !== undefined)) {
    console.error(`one configuration file, please: ${[file, ...extra, values.config].filter(Boolean).join(', ')}\n\n${USAGE}`);
    process.exit(2);
  }
  let config: Config;
  try {
    config = loadConfig(file ?? values.config ?? process.env.REGISTRY_CONFIGURATION_PATH);
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(error.message);
      process.exit(2);
    }
    throw error;
  }
  if (command === 'worker') return buildWorker(config);
  const workers = workerCount(config);
  if (workers > 1 && cluster.isPrimary) return supervise(config, workers);
  return serveInThisProcess(config);
}

/** `worker`: build work only; stops taking work on SIGTERM and lets its builds be interrupted. */
async function buildWorker(config: Config): Promise<void> {
  const logger = createLogger(config);
  const { startWorker, WorkerConfigError } = await import('../builder/worker.js');
  let worker: Awaited<ReturnType<typeof startWorker>>;
  try {
    worker = await startWorker(config, logger);
  } catch (error) {
    if (error instanceof WorkerConfigError) {
      console.error(error.message);
      process.exit(2);
    }
    throw error;
  }
  const stop = async (signal: string) => {
    logger.info({ signal }, 'stopping build worker');
    await worker.close();
    process.exit(0);
  };
  process.once('SIGTERM', () => void stop('SIGTERM'));
  process.once('SIGINT', () => void stop('SIGINT'));
}

async function serveInThisProcess(config: Config): Promise<void> {
  const logger = createLogger(config);
  const { runServer } = await import('./server.js'); // the primary never loads the app
  const { close } = await runServer(config, logger);
  const stop = async (signal: string) => {
    logger.info({ signal }, 'draining');
    await close();
    logger.info('stopped');
    process.exit(0);
  };
  process.once('SIGTERM', () => void stop('SIGTERM'));
  process.once('SIGINT', () => void stop('SIGINT'));
  if (cluster.isWorker) process.on('message', (message) => message === 'shutdown' && void stop('shutdown'));
}

/** The primary only forks, restarts crashed workers, and forwards shutdown so every worker drains. */
function supervise(config: Config, workers: number): void {
  const logger = createLogger(config);
  let stopping = false;
  const listened = new Set<number>();
  // Counted here: cluster.workers may still list a worker in its own 'exit' event.
  const alive = new Set<number>();
  const fork = () => alive.add(cluster.fork().id);
  // A scrape of any worker, or of http.debug.addr (served here), returns the merged metrics of all workers.
  void import('./metrics/primary.js').then(
    ({ startClusterMetrics }) => startClusterMetrics(config, logger),
    (error: unknown) => logger.error({ err: error }, 'metrics unavailable'),
  );
  for (let i = 0; i < workers; i++) fork();
  cluster.on('listening', (worker) => listened.add(worker.id));
  cluster.on('exit', (worker, code, signal) => {
    alive.delete(worker.id);
    if (stopping) {
      if (alive.size === 0) process.exit(0);
      return;
    }
    if (!listened.has(worker.id)) {
      // A worker that never listened (port taken, bad storage root) fails the same way again: give up.
      logger.fatal({ workerPid: worker.process.pid, code }, 'worker failed to start');
      stopping = true;
      for (const other of Object.values(cluster.workers ?? {})) other?.kill();
      process.exit(1);
    }
    logger.error({ workerPid: worker.process.pid, code, signal }, 'worker exited; starting another');
    setTimeout(fork, 500).unref();
  });
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal, workers }, 'stopping workers');
    for (const worker of Object.values(cluster.workers ?? {})) worker?.send('shutdown');
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
