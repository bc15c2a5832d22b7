// Counters and histograms for the per-request path: a child is a plain object whose fields are bumped
// (no label hashing, no validation per call, as prom-client's labelled metrics do on every inc/observe);
// the registry reads them at scrape time in prom-client's own format, so exposition, cluster aggregation
// (counters and histograms summed) and parsing stay prom-client's.
import type { Metric, Registry } from 'prom-client';

interface Family<Labels extends string> {
  name: string;
  help: string;
  labelNames: readonly Labels[];
  registers: Registry[];
}

interface Value {
  labels: Record<string, string | number>;
  value: number;
  metricName?: string;
}

abstract class FastFamily<Labels extends string, Child> {
  readonly name: string;
  readonly help: string;
  readonly aggregator = 'sum';
  protected readonly children = new Map<string, { labels: Record<Labels, string>; child: Child }>();

  constructor(private readonly family: Family<Labels>) {
    this.name = family.name;
    this.help = family.help;
    for (const registry of family.registers) registry.registerMetric(this as unknown as Metric);
  }

  /** The child of these label values (in labelNames order); keep it where the path is hot. */
  child(...values: string[]): Child {
    const key = values.length === 1 ? values[0]! : values.join('\u0000');
    let entry = this.children.get(key);
    if (!entry) {
      const labels = Object.fromEntries(this.family.labelNames.map((name, i) => [name, values[i] ?? ''])) as Record<Labels, string>;
      entry = { labels, child: this.make() };
      this.children.set(key, entry);
    }
    return entry.child;
  }

  reset(): void {
    this.children.clear();
  }

  protected abstract make(): Child;
}

export interface CounterChild {
  value: number;
}

export class FastCounter<Labels extends string> extends FastFamily<Labels, CounterChild> {
  readonly type = 'counter';

  protected make(): CounterChild {
    return { value: 0 };
  }

  async get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: Value[] }> {
    const values = [...this.children.values()].map(({ labels, child }) => ({ labels: { ...labels }, value: child.value }));
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}

export interface HistogramChild {
  observe(value: number): void;
}

class Buckets implements HistogramChild {
  count = 0;
  sum = 0;
  /** Observations per bucket (not cumulative): counts[i] for value <= bounds[i]; beyond the last, only count. */
  readonly counts: Float64Array;

  constructor(private readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length);
  }

  observe(value: number): void {
    this.count++;
    this.sum += value;
    const bounds = this.bounds;
    for (let i = 0; i < bounds.length; i++) {
      if (value <= bounds[i]!) {
        this.counts[i]!++;
        return;
      }
    }
  }
}

export class FastHistogram<Labels extends string> extends FastFamily<Labels, HistogramChild> {
  readonly type = 'histogram';
  private readonly bounds: readonly number[];

  constructor(family: Family<Labels> & { buckets: readonly number[] }) {
    super(family);
    this.bounds = [...family.buckets].sort((a, b) => a - b);
  }

  protected make(): HistogramChild {
    return new Buckets(this.bounds);
  }

  async get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: Value[] }> {
    const values: Value[] = [];
    const bucket = `${this.name}_bucket`;
    for (const { labels, child } of this.children.values()) {
      const data = child as Buckets;
      let cumulative = 0;
      this.bounds.forEach((le, i) => {
        cumulative += data.counts[i]!;
        values.push({ labels: { ...labels, le }, value: cumulative, metricName: bucket });
      });
      values.push({ labels: { ...labels, le: '+Inf' }, value: data.count, metricName: bucket });
      values.push({ labels: { ...labels }, value: data.sum, metricName: `${this.name}_sum` });
      values.push({ labels: { ...labels }, value: data.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}
