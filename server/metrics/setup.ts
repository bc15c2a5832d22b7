// What the configuration asks of metrics, and the /metrics route of the main port.
import cluster from 'node:cluster';
import type Router from '@koa/router';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import './cache-metrics.js';
import './dependency-metrics.js';
import './gc-metrics.js';
import { collectProcessMetrics } from './registry.js';
import { joinClusterMetrics, METRICS_CONTENT_TYPE, scrape } from './scrape.js';

export interface MetricsSettings {
  /** Requests are measured (some endpoint serves metrics). */
  enabled: boolean;
  /** The main port's metrics path, when served there. */
  mainPath?: string;
  /** The debug server's, when configured. */
  debug?: { addr: string; path: string };
}

export function metricsSettings(config: Config): MetricsSettings {
  const main = config.http.metrics ?? { enabled: true, path: '/metrics' };
  const debug = config.http.debug?.prometheus.enabled ? { addr: config.http.debug.addr, path: config.http.debug.prometheus.path } : undefined;
  return { enabled: main.enabled || debug !== undefined, ...(main.enabled ? { mainPath: main.path } : {}), ...(debug ? { debug } : {}) };
}

/** Process metrics, and in a cluster worker the answers to the primary's collection requests. */
export function startMetrics(): void {
  collectProcessMetrics();
  if (cluster.isWorker) joinClusterMetrics();
}

export function metricsRoute(router: Router, path: string, logger: Logger): void {
  router.get(path, async (ctx) => {
    try {
      const text = await scrape();
      ctx.set('Content-Type', METRICS_CONTENT_TYPE);
      ctx.body = text;
    } catch (error) {
      logger.warn({ err: (error as Error).message }, 'metrics scrape failed');
      ctx.status = 503;
      ctx.body = { errors: [{ code: 'UNAVAILABLE', message: 'metrics unavailable, try again' }] };
    }
  });
}
