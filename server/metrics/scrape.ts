// One scrape returns every process's metrics: alone, this process's; in a cluster worker, the primary's
// merge of all workers (and its own process metrics), whichever worker the scrape reached.
import cluster from 'node:cluster';
import { metricsRegistry } from './registry.js';
import { COLLECT, COLLECTED, isMessage, SCRAPED, SCRAPE, type CollectRequest, type CollectResponse, type ScrapeResponse } from './cluster-protocol.js';

export const METRICS_CONTENT_TYPE = metricsRegistry.contentType;

const SCRAPE_TIMEOUT_MS = 8_000;
const pending = new Map<number, { resolve(text: string): void; reject(error: Error): void; timer: NodeJS.Timeout }>();
let nextId = 0;
let joined = false;

/** In a cluster worker: answers the primary's collection requests and its scrape answers. Idempotent. */
export function joinClusterMetrics(): void {
  if (joined || !cluster.isWorker) return;
  joined = true;
  process.on('message', (message: unknown) => {
    if (isMessage<CollectRequest>(message, COLLECT)) {
      metricsRegistry.getMetricsAsJSON().then(
        (metrics) => send({ type: COLLECTED, id: message.id, metrics } satisfies CollectResponse),
        (error: Error) => send({ type: COLLECTED, id: message.id, error: error.message } satisfies CollectResponse),
      );
    } else if (isMessage<ScrapeResponse>(message, SCRAPED)) {
      const waiting = pending.get(message.id);
      if (!waiting) return;
      pending.delete(message.id);
      clearTimeout(waiting.timer);
      if (message.text !== undefined) waiting.resolve(message.text);
      else waiting.reject(new Error(message.error ?? 'no metrics from the primary'));
    }
  });
}

export async function scrape(): Promise<string> {
  if (!cluster.isWorker) return metricsRegistry.metrics();
  joinClusterMetrics();
  const id = nextId++;
  return new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      pending.delete(id);
      reject(new Error('the cluster primary did not answer with metrics in time'));
    }, SCRAPE_TIMEOUT_MS);
    pending.set(id, { resolve, reject, timer });
    send({ type: SCRAPE, id });
  });
}

function send(message: object): void {
  if (process.connected) process.send?.(message);
}
