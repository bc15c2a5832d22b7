import { expect } from 'chai';
import pino from 'pino';
import { Notifier } from '../../server/notifications/notifier.js';
import type { NotificationEndpoint } from '../../server/notifications/endpoint.js';
import type { PendingEvent, RegistryEvent } from '../../server/notifications/events.js';
import type { Registry } from '../../server/registry/registry.js';

describe('notifications: events waiting for their blob size', () => {
  const event = (n: number): PendingEvent => ({
    kind: 'blob',
    event: {
      id: `event-${n}`,
      timestamp: new Date().toISOString(),
      action: 'pull',
      target: { repository: 'a/b', mediaType: 'application/octet-stream', digest: `sha256:${String(n).padStart(64, '0')}` },
      request: { id: 'r', addr: '127.0.0.1', host: 'h', method: 'GET', useragent: 'test' },
      actor: {},
      source: { addr: 'h:5000', instanceID: 'i' },
    } as RegistryEvent,
  });

  it('look sizes up side by side, at most 256 at once, and still leave in order', async () => {
    let inFlight = 0;
    let most = 0;
    // Storage that takes 200 ms per lookup: one at a time, 1000 events would take 200 s.
    const registry = {
      blobs: {
        async statGlobal() {
          most = Math.max(most, ++inFlight);
          await new Promise((resolve) => setTimeout(resolve, 200));
          inFlight--;
          return 42;
        },
      },
    } as unknown as Registry;
    const queued: RegistryEvent[] = [];
    const endpoint = { enqueue: (e: RegistryEvent) => queued.push(e), close: async () => undefined } as unknown as NotificationEndpoint;
    const notifier = new Notifier([{ endpoint, ignoredMediaTypes: new Set(), ignoredActions: new Set() }], registry, undefined, ':5000', pino({ level: 'silent' }));
    const started = Date.now();
    let last: Promise<void> = Promise.resolve();
    for (let i = 0; i < 1000; i++) last = notifier.publish(event(i));
    await last;
    expect(Date.now() - started).to.be.below(5_000);
    expect(most).to.equal(256);
    expect(queued.map((e) => e.id)).to.deep.equal(Array.from({ length: 1000 }, (_, i) => `event-${i}`));
    expect(queued.filter((e) => e.target.size === 42).length, 'the first 256 have their size').to.be.at.least(256);
  });
});
