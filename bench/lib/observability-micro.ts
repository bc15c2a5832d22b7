// In-process costs of the observability pieces of one manifest GET, measured as process CPU over many
// repetitions: an access-log line (entry, JSON, batched write to a file), the request metrics,
// and the storage decorator's wrapping of a driver call. Unlike requests/s on a shared machine, these
// barely move with what else runs, so they show what the middleware itself costs.
import { randomUUID } from 'node:crypto';
import { openSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { loadConfig } from '../../server/config.js';
import { loggerOptions } from '../../server/logger.js';
import { batchedDestination } from '../../server/logging/destination.js';
import { accessLineWriter } from '../../server/logging/access-line.js';
import { FastCounter, FastHistogram } from '../../server/metrics/fast-metrics.js';
import { instrumentDriver } from '../../server/metrics/storage-metrics.js';
import { Registry } from 'prom-client';
import type { StorageDriver } from '../../storage-drivers/driver.js';

const N = 100_000;

async function cpuMicros(fn: () => unknown, perTurn: boolean): Promise<number> {
  const once = async () => {
    const result = fn();
    if (result instanceof Promise) await result;
    if (perTurn) await new Promise((resolve) => setImmediate(resolve));
  };
  for (let i = 0; i < N / 10; i++) await once();
  const before = process.cpuUsage();
  for (let i = 0; i < N; i++) await once();
  const used = process.cpuUsage(before);
  return (used.user + used.system) / N;
}

export interface ComponentCosts {
  accessLogLineUs: number;
  requestMetricsUs: number;
  storageDecoratorUs: number;
}

/** Costs in CPU-microseconds; the log lines go to `dir`/micro.log. */
export async function componentCosts(dir: string): Promise<ComponentCosts> {
  const turn = await cpuMicros(() => undefined, true);
  const logger = pino(loggerOptions(loadConfig(undefined, {})), batchedDestination(undefined, openSync(join(dir, 'micro.log'), 'w')));
  const entry = () => ({
    requestId: randomUUID(),
    method: 'GET',
    route: '/v2/*name/manifests/:reference',
    status: 200,
    repository: 'bench/manifest',
    bytesIn: 120,
    bytesOut: 1234,
    durationMs: 0.4123,
    remote: '127.0.0.1',
    userAgent: 'Go-http-client/1.1',
  });
  const write = accessLineWriter(logger);
  let written = 0;
  const line =
    (await cpuMicros(() => {
      write(entry);
      if (++written % 64 === 0) write.flush(); // as the 10 ms batches do under load
    }, true)) - turn;

  const registers = [new Registry()];
  const labelNames = ['method', 'route', 'status'] as const;
  const counter = new FastCounter({ name: 'micro_requests_total', help: 'x', labelNames, registers });
  const bytes = new FastCounter({ name: 'micro_bytes_total', help: 'x', labelNames, registers });
  const histogram = new FastHistogram({ name: 'micro_seconds', help: 'x', labelNames, buckets: [0.001, 0.01, 0.1, 1, 10, 100], registers });
  const children = new Map<string, { count: { value: number }; bytes: { value: number }; duration: { observe(v: number): void } }>();
  const metrics = await cpuMicros(() => {
    const started = performance.now();
    const key = `GET /v2/*name/manifests/:reference 200`;
    let found = children.get(key);
    if (!found) {
      found = { count: counter.child('GET', 'r', '200'), bytes: bytes.child('GET', 'r', '200'), duration: histogram.child('GET', 'r', '200') };
      children.set(key, found);
    }
    found.count.value++;
    found.bytes.value += 1234;
    found.duration.observe((performance.now() - started) / 1000);
  }, false);

  const plain = { name: 'micro', getContent: async () => Buffer.alloc(0) } as unknown as StorageDriver;
  const wrapped = instrumentDriver(plain);
  const storage = (await cpuMicros(() => wrapped.getContent('/x'), false)) - (await cpuMicros(() => plain.getContent('/x'), false));
  return { accessLogLineUs: line, requestMetricsUs: metrics, storageDecoratorUs: Math.max(0, storage) };
}
