// The one Prometheus registry of a process. Metrics are module singletons (one per process, whatever
// number of apps a test builds), defined beside the code they measure and registered here.
import { collectDefaultMetrics, Registry } from 'prom-client';

export const metricsRegistry = new Registry();

let defaultsCollected = false;

/** Process metrics (CPU, memory, event loop lag, GC pauses, handles), once per process. */
export function collectProcessMetrics(): void {
  if (defaultsCollected) return;
  defaultsCollected = true;
  collectDefaultMetrics({ register: metricsRegistry });
}

/**
 * Children of a labelled metric, cached by their joined label values: `labels()` hashes its arguments
 * on every call, which the per-request path should not pay for.
 */
export class ChildCache<Child> {
  private readonly children = new Map<string, Child>();

  constructor(private readonly make: (...values: string[]) => Child) {}

  get(...values: string[]): Child {
    const key = values.join('\u0000');
    let child = this.children.get(key);
    if (child === undefined) {
      child = this.make(...values);
      this.children.set(key, child);
    }
    return child;
  }
}
