// Distribution's debug server (http.debug.addr): a second listener for operators, never the public port;
// with http.debug.prometheus it serves the metrics at its path.
import { createServer } from 'node:http';
import type { Logger } from 'pino';
import { parseListenAddress } from '../config.js';
import { METRICS_CONTENT_TYPE } from './scrape.js';

/** Starts listening (failures are logged, not fatal: the registry itself still serves); returns the stopper. */
export function startDebugServer(addr: string, path: string, metrics: () => Promise<string>, logger: Logger): () => Promise<void> {
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://debug');
    if (url.pathname !== path || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
      return;
    }
    metrics().then(
      (text) => {
        res.writeHead(200, { 'Content-Type': METRICS_CONTENT_TYPE, 'Content-Length': Buffer.byteLength(text) });
        res.end(req.method === 'HEAD' ? undefined : text);
      },
      (error: Error) => {
        logger.warn({ err: error.message }, 'metrics scrape failed');
        res.writeHead(503, { 'Content-Type': 'text/plain' }).end('metrics unavailable\n');
      },
    );
  });
  const { host, port } = parseListenAddress(addr);
  server.on('error', (error) => logger.error({ err: error, addr }, 'debug server failed'));
  server.listen(port, host, () => logger.info({ addr: server.address(), path }, 'debug server listening (metrics)'));
  return () => new Promise<void>((resolve) => server.close(() => resolve()));
}
