// Request metrics: count, duration, bytes in and out by route template, method and status; requests and
// uploads in flight. Measured when the response is done, so streamed blobs count their whole transfer.
// On every request: plain-number counters (fast-metrics.ts), read by the registry at scrape time.
import type { Context } from 'koa';
import { Gauge } from 'prom-client';
import { FastCounter, FastHistogram, type CounterChild, type HistogramChild } from './fast-metrics.js';
import { metricsRegistry } from './registry.js';
import { methodLabel, routeTemplate, templateOfPath } from './route-template.js';
import type { RequestObserver } from '../http/observe.js';

/** Marks a request counted in uploads in progress, on its state. */
const UPLOAD = Symbol('upload');

const registers = [metricsRegistry];

const requests = new FastCounter({
  name: 'registry_http_requests_total',
  help: 'HTTP requests answered, by method, route template and status code.',
  labelNames: ['method', 'route', 'status'] as const,
  registers,
});

const duration = new FastHistogram({
  name: 'registry_http_request_duration_seconds',
  help: 'Time from the request to the last byte of the response, by method, route template and status code.',
  labelNames: ['method', 'route', 'status'] as const,
  // Manifests take milliseconds, layers minutes.
  buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
  registers,
});

const receivedBytes = new FastCounter({
  name: 'registry_http_request_bytes_total',
  help: 'Request bytes received (request line, headers and body, as read from the connection), by method and route template.',
  labelNames: ['method', 'route'] as const,
  registers,
});

const sentBytes = new FastCounter({
  name: 'registry_http_response_bytes_total',
  help: 'Response body bytes sent, by method and route template.',
  labelNames: ['method', 'route'] as const,
  registers,
});

const now = { requests: 0, uploads: 0 };

new Gauge({
  name: 'registry_http_requests_in_flight',
  help: 'Requests being served now.',
  registers,
  collect() {
    this.set(now.requests);
  },
});

new Gauge({
  name: 'registry_uploads_in_progress',
  help: 'Blob upload requests sending data now (PATCH, the final PUT, monolithic POST).',
  registers,
  collect() {
    this.set(now.uploads);
  },
});

interface Children {
  requests: CounterChild;
  duration: HistogramChild;
  receivedBytes: CounterChild;
  sentBytes: CounterChild;
}

/** Per method, route and status: the four children (maps of constants: no key string built per request). */
const children = new Map<string, Map<string, Map<number, Children>>>();

function childrenOf(method: string, route: string, status: number): Children {
  let byRoute = children.get(method);
  if (!byRoute) children.set(method, (byRoute = new Map()));
  let byStatus = byRoute.get(route);
  if (!byStatus) byRoute.set(route, (byStatus = new Map()));
  let found = byStatus.get(status);
  if (!found) {
    const code = String(status);
    found = {
      requests: requests.child(method, route, code),
      duration: duration.child(method, route, code),
      receivedBytes: receivedBytes.child(method, route),
      sentBytes: sentBytes.child(method, route),
    };
    byStatus.set(status, found);
  }
  return found;
}

const UPLOAD_ROUTES = new Set(['/v2/*name/blobs/uploads/', '/v2/*name/blobs/uploads/:id']);

function isUpload(ctx: Context): boolean {
  const method = ctx.method;
  if (method !== 'PATCH' && method !== 'PUT' && method !== 'POST') return false;
  return UPLOAD_ROUTES.has(templateOfPath(ctx.path)) && (method !== 'POST' || ctx.querystring.includes('digest='));
}

/** Counts and times every request (an observer for observeRequests). */
export function httpMetrics(): RequestObserver {
  return {
    begin(ctx) {
      now.requests++;
      if (isUpload(ctx)) {
        now.uploads++;
        (ctx.state as { [UPLOAD]?: boolean })[UPLOAD] = true;
      }
    },
    end(ctx, durationMs, bytesIn, bytesOut) {
      now.requests--;
      if ((ctx.state as { [UPLOAD]?: boolean })[UPLOAD]) now.uploads--;
      const found = childrenOf(methodLabel(ctx.method), routeTemplate(ctx), ctx.status);
      found.requests.value++;
      found.duration.observe(durationMs / 1000);
      found.receivedBytes.value += bytesIn;
      found.sentBytes.value += bytesOut;
    },
  };
}
