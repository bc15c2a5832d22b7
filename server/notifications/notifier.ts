// Notifications (Distribution's `notifications.endpoints`): each finished request that pushed, pulled,
// mounted or deleted something becomes an event, filtered per endpoint and queued for it. Nothing here
// runs before the response or waits for a receiver: the request path only builds the event.
import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import type { Context, Next } from 'koa';
import type { Logger } from 'pino';
import { durationMs, parseListenAddress, type Config } from '../config.js';
import { parseDigest } from '../registry/digest.js';
import type { Registry } from '../registry/registry.js';
import { NotificationEndpoint } from './endpoint.js';
import { eventOf, type EventAction, type EventSource, type PendingEvent, type RegistryEvent } from './events.js';

interface Filtered {
  endpoint: NotificationEndpoint;
  ignoredMediaTypes: Set<string>;
  ignoredActions: Set<EventAction>;
}

/** How long close() lets endpoints deliver what is queued. */
const CLOSE_GRACE_MS = 2_000;
/**
 * Blob size lookups in flight at most. They run side by side (events still leave in order); past this,
 * events go without a size rather than pile up in memory behind slow storage.
 */
const MAX_SIZE_LOOKUPS = 256;

export class Notifier {
  private readonly source: EventSource;
  private publishing: Promise<void> = Promise.resolve();
  private sizeLookups = 0;

  constructor(
    private readonly endpoints: Filtered[],
    private readonly registry: Registry,
    private readonly publicUrl: string | undefined,
    addr: string,
    private readonly logger: Logger,
  ) {
    this.source = { addr: `${hostname()}:${parseListenAddress(addr).port}`, instanceID: randomUUID() };
  }

  /** Undefined when no endpoint is configured (or all are disabled). */
  static fromConfig(config: Config, registry: Registry, logger: Logger): Notifier | undefined {
    const log = logger.child({ component: 'notifications' });
    const endpoints = (config.notifications?.endpoints ?? [])
      .filter((endpoint) => !endpoint.disabled)
      .map((endpoint) => ({
        endpoint: new NotificationEndpoint(
          {
            name: endpoint.name,
            url: endpoint.url,
            headers: endpoint.headers,
            timeoutMs: durationMs(endpoint.timeout),
            threshold: endpoint.threshold,
            backoffMs: Math.max(1, durationMs(endpoint.backoff)),
            queueSize: endpoint.queuesize,
          },
          log,
        ),
        ignoredMediaTypes: new Set([...endpoint.ignoredmediatypes, ...endpoint.ignore.mediatypes]),
        ignoredActions: new Set<EventAction>(endpoint.ignore.actions),
      }));
    return endpoints.length > 0 ? new Notifier(endpoints, registry, config.http.host, config.http.addr, log) : undefined;
  }

  /** Koa middleware: after the response is decided, the event (if any) is queued. */
  middleware() {
    return async (ctx: Context, next: Next): Promise<void> => {
      await next();
      try {
        const pending = eventOf(ctx, this.source, this.publicUrl);
        if (pending) void this.publish(pending);
      } catch (error) {
        this.logger.warn({ err: error }, 'notification event not built');
      }
    };
  }

  /** Events are queued in the order their requests finished, also when one waits for its size. */
  publish(pending: PendingEvent): Promise<void> {
    const { event } = pending;
    const needsSize = event.target.size === undefined && pending.kind === 'blob' && event.action !== 'delete';
    const size = needsSize && this.sizeLookups < MAX_SIZE_LOOKUPS ? this.sizeOf(event) : undefined;
    this.publishing = this.publishing.then(async () => this.route(pending, await size)).catch((error: unknown) => {
      this.logger.warn({ err: error }, 'notification event not queued');
    });
    return this.publishing;
  }

  private route(pending: PendingEvent, size: number | undefined): void {
    const { event } = pending;
    const wanted = this.endpoints.filter(
      (filtered) => !filtered.ignoredActions.has(event.action) && !(event.target.mediaType && filtered.ignoredMediaTypes.has(event.target.mediaType)),
    );
    if (wanted.length === 0) return;
    if (size !== undefined) event.target = { ...event.target, size, length: size };
    for (const { endpoint } of wanted) endpoint.enqueue(event);
  }

  async close(): Promise<void> {
    await this.publishing; // events waiting for their size reach the endpoints first
    await Promise.all(this.endpoints.map(({ endpoint }) => endpoint.close(CLOSE_GRACE_MS)));
  }

  /** An upload's answer does not carry the blob's size: read it (cached) after the response. */
  private async sizeOf(event: RegistryEvent): Promise<number | undefined> {
    const digest = event.target.digest ? parseDigest(event.target.digest) : undefined;
    if (!digest) return undefined;
    this.sizeLookups++;
    try {
      return await this.registry.blobs.statGlobal(digest).catch(() => undefined);
    } finally {
      this.sizeLookups--;
    }
  }
}
