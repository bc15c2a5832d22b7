// The cluster primary's part of metrics: on request it collects every worker's metrics over IPC and
// merges them (counters and histograms summed, gauges as each metric's aggregator says), with its own
// process metrics; it answers workers' scrapes with that, and serves it on http.debug.addr.
import cluster, { type Worker } from 'node:cluster';
import type { Logger } from 'pino';
import { AggregatorRegistry } from 'prom-client';
import type { Config } from '../config.js';
import { COLLECT, COLLECTED, isMessage, SCRAPE, SCRAPED, type CollectResponse, type MetricsJson, type ScrapeRequest, type ScrapeResponse } from './cluster-protocol.js';
import { startDebugServer } from './debug-server.js';
import { collectProcessMetrics, metricsRegistry } from './registry.js';

/** A worker that does not answer in time (starting, stuck) is left out of that scrape rather than failing it. */
const COLLECT_TIMEOUT_MS = 3_000;

interface Collection {
  responses: MetricsJson[];
  waiting: Set<number>;
  done(): void;
}

export function startClusterMetrics(config: Config, logger: Logger): () => void {
  if (!(config.http.metrics?.enabled ?? true) && !config.http.debug?.prometheus.enabled) return () => undefined;
  collectProcessMetrics();
  const collections = new Map<number, Collection>();
  let nextId = 0;

  const merged = async (): Promise<string> => {
    const id = nextId++;
    const workers = Object.values(cluster.workers ?? {}).filter((worker): worker is Worker => worker !== undefined && worker.isConnected());
    const responses: MetricsJson[] = [await metricsRegistry.getMetricsAsJSON()];
    await new Promise<void>((resolve) => {
      const waiting = new Set(workers.map((worker) => worker.id));
      const timer = setTimeout(() => {
        logger.warn({ workers: [...waiting] }, 'metrics: workers did not answer in time; scraped without them');
        finish();
      }, COLLECT_TIMEOUT_MS);
      const finish = () => {
        clearTimeout(timer);
        collections.delete(id);
        resolve();
      };
      collections.set(id, { responses, waiting, done: finish });
      for (const worker of workers) worker.send({ type: COLLECT, id });
      if (waiting.size === 0) finish();
    });
    return AggregatorRegistry.aggregate(responses).metrics();
  };

  const onMessage = (worker: Worker, message: unknown) => {
    if (isMessage<CollectResponse>(message, COLLECTED)) {
      const collection = collections.get(message.id);
      if (!collection) return;
      if (message.metrics) collection.responses.push(message.metrics);
      collection.waiting.delete(worker.id);
      if (collection.waiting.size === 0) collection.done();
    } else if (isMessage<ScrapeRequest>(message, SCRAPE)) {
      const reply = (answer: Omit<ScrapeResponse, 'type' | 'id'>) => {
        if (worker.isConnected()) worker.send({ type: SCRAPED, id: message.id, ...answer } satisfies ScrapeResponse);
      };
      merged().then(
        (text) => reply({ text }),
        (error: Error) => reply({ error: error.message }),
      );
    }
  };
  cluster.on('message', onMessage);

  const debug = config.http.debug;
  const stopDebug = debug?.prometheus.enabled ? startDebugServer(debug.addr, debug.prometheus.path, merged, logger) : undefined;
  return () => {
    cluster.off('message', onMessage);
    void stopDebug?.();
  };
}
