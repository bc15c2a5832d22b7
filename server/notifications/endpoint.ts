// One webhook endpoint: a bounded in-memory queue delivered in order, one event per envelope, by a
// single loop per endpoint. A failed delivery is retried with exponential backoff (from `backoff`, up
// to a minute) until it succeeds; when the queue is full the oldest event is dropped (and counted), so
// a receiver that is down for long costs bounded memory and never slows requests.
import type { Logger } from 'pino';
import { Counter, Gauge } from 'prom-client';
import { metricsRegistry } from '../metrics/registry.js';
import { ENVELOPE_MEDIA_TYPE, type RegistryEvent } from './events.js';

const registers = [metricsRegistry];
const events = new Counter({
  name: 'registry_notifications_events_total',
  help: 'Events queued for a notification endpoint, by endpoint and action.',
  labelNames: ['endpoint', 'action'] as const,
  registers,
});
const delivered = new Counter({
  name: 'registry_notifications_delivered_total',
  help: 'Events a notification endpoint accepted (2xx).',
  labelNames: ['endpoint'] as const,
  registers,
});
const failures = new Counter({
  name: 'registry_notifications_failures_total',
  help: 'Failed delivery attempts (each is retried), by endpoint and reason (http_4xx, http_5xx, timeout, network).',
  labelNames: ['endpoint', 'reason'] as const,
  registers,
});
const dropped = new Counter({
  name: 'registry_notifications_dropped_total',
  help: 'Events dropped undelivered: the endpoint\'s queue was full, or the process stopped.',
  labelNames: ['endpoint'] as const,
  registers,
});
const pending = new Gauge({
  name: 'registry_notifications_pending',
  help: 'Events waiting for a notification endpoint (including one being delivered).',
  labelNames: ['endpoint'] as const,
  registers,
});

export interface EndpointOptions {
  name: string;
  url: string;
  headers: Record<string, string | string[]>;
  timeoutMs: number;
  /** Failures in a row after which the endpoint is reported down. */
  threshold: number;
  backoffMs: number;
  queueSize: number;
}

const MAX_BACKOFF_MS = 60_000;
/** A 4xx other than 408 and 429: the receiver will never take this event. */
const REJECTED = 'http_4xx_rejected';

export class NotificationEndpoint {
  private readonly queue: RegistryEvent[] = [];
  private delivering = false;
  private closed = false;
  private failuresInARow = 0;
  private wake: (() => void) | undefined;
  private readonly headers: Headers;

  constructor(
    readonly options: EndpointOptions,
    private readonly logger: Logger,
  ) {
    this.headers = new Headers();
    for (const [name, value] of Object.entries(options.headers)) {
      for (const one of Array.isArray(value) ? value : [value]) this.headers.append(name, one);
    }
    this.headers.set('Content-Type', ENVELOPE_MEDIA_TYPE);
    pending.set({ endpoint: options.name }, 0);
  }

  get length(): number {
    return this.queue.length;
  }

  enqueue(event: RegistryEvent): void {
    if (this.closed) return;
    const endpoint = this.options.name;
    events.inc({ endpoint, action: event.action });
    if (this.queue.length >= this.options.queueSize) {
      this.queue.shift();
      dropped.inc({ endpoint });
    }
    this.queue.push(event);
    pending.set({ endpoint }, this.queue.length);
    if (!this.delivering) void this.deliver();
  }

  /** Waits up to `graceMs` for the queue to empty, then drops what is left. */
  async close(graceMs: number): Promise<void> {
    const deadline = Date.now() + graceMs;
    while (this.queue.length > 0 && this.failuresInARow === 0 && Date.now() < deadline) await sleep(50);
    this.closed = true;
    this.wake?.();
    if (this.queue.length > 0) {
      dropped.inc({ endpoint: this.options.name }, this.queue.length);
      // Nobody scrapes the counter after this process ends: say it where operators will look.
      this.logger.warn({ endpoint: this.options.name, dropped: this.queue.length }, 'notification events not delivered before shutdown: dropped');
    }
    this.queue.length = 0;
    pending.set({ endpoint: this.options.name }, 0);
  }

  private async deliver(): Promise<void> {
    this.delivering = true;
    const endpoint = this.options.name;
    try {
      while (!this.closed && this.queue.length > 0) {
        const event = this.queue[0]!;
        const failure = await this.send(event);
        if (failure === REJECTED) {
          // The receiver refuses this event (4xx): sending it again will not change that, and every later
          // event would wait behind it. Dropped and counted; the endpoint itself is fine.
          if (this.queue[0] === event) this.queue.shift();
          failures.inc({ endpoint, reason: failure });
          dropped.inc({ endpoint });
          this.logger.warn({ endpoint, action: event.action, id: event.id }, 'notification endpoint refused an event (4xx): dropped');
        } else if (failure === undefined) {
          // The queue may have dropped this event (full) while it was in flight.
          if (this.queue[0] === event) this.queue.shift();
          delivered.inc({ endpoint });
          if (this.failuresInARow >= this.options.threshold) this.logger.info({ endpoint }, 'notification endpoint accepts events again');
          this.failuresInARow = 0;
        } else {
          this.failuresInARow++;
          failures.inc({ endpoint, reason: failure });
          if (this.failuresInARow === this.options.threshold) {
            this.logger.warn({ endpoint, reason: failure, pending: this.queue.length }, 'notification endpoint failing; retrying with backoff');
          }
          await this.pause(Math.min(this.options.backoffMs * 2 ** Math.min(this.failuresInARow - 1, 16), MAX_BACKOFF_MS));
        }
        pending.set({ endpoint }, this.queue.length);
      }
    } finally {
      this.delivering = false;
    }
  }

  /** Undefined when delivered, else why not. */
  private async send(event: RegistryEvent): Promise<string | undefined> {
    try {
      const response = await fetch(this.options.url, {
        method: 'POST',
        headers: this.headers,
        body: JSON.stringify({ events: [event] }),
        signal: AbortSignal.timeout(this.options.timeoutMs),
        redirect: 'manual',
      });
      await response.arrayBuffer().catch(() => undefined);
      if (response.status >= 200 && response.status < 300) return undefined;
      if (response.status === 408 || response.status === 429) return 'http_4xx';
      return response.status >= 500 ? 'http_5xx' : REJECTED;
    } catch (error) {
      return (error as Error).name === 'TimeoutError' ? 'timeout' : 'network';
    }
  }

  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      timer.unref();
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    });
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
