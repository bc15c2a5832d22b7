// One HTTP(S) server process: listens, serves the app, and drains in-flight requests on shutdown.
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { createApp } from './app.js';
import { durationMs, parseListenAddress, type Config } from './config.js';

export async function runServer(config: Config, logger: Logger): Promise<{ server: Server; close(): Promise<void> }> {
  const app = await createApp(config, logger);
  await app.driver.healthCheck(); // fail fast on an unusable storage root
  const stopBackground = app.startBackground();
  const handler = app.koa.callback();
  const server = config.http.tls
    ? createHttpsServer({ cert: readFileSync(config.http.tls.certificate), key: readFileSync(config.http.tls.key) }, handler)
    : createHttpServer(handler);
  // Large layers upload for minutes: no request timeout. A body that stalls ends its request after
  // http.bodytimeout (distribution/request.ts), idle keep-alive connections after keepAliveTimeout.
  server.requestTimeout = 0;
  server.headersTimeout = 60_000;
  server.keepAliveTimeout = 75_000;
  const { host, port } = parseListenAddress(config.http.addr);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  logger.info({ addr: server.address(), tls: Boolean(config.http.tls) }, 'listening');

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= new Promise<void>((resolve) => {
      stopBackground();
      const deadline = setTimeout(() => {
        logger.warn('drain timeout reached; closing remaining connections');
        server.closeAllConnections();
      }, durationMs(config.http.draintimeout));
      deadline.unref();
      server.close(() => {
        clearTimeout(deadline);
        void app.close().finally(resolve);
      });
      server.closeIdleConnections();
    }));
  return { server, close };
}
