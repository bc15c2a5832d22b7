// Latency percentiles and a fixed-width text table.

/** Latencies in milliseconds, appended cheaply. */
export class Latencies {
  private values = new Float64Array(1024);
  private count = 0;

  add(ms: number): void {
    if (this.count === this.values.length) {
      const grown = new Float64Array(this.values.length * 2);
      grown.set(this.values);
      this.values = grown;
    }
    this.values[this.count++] = ms;
  }

  merge(other: Latencies): void {
    for (const value of other.all()) this.add(value);
  }

  all(): Float64Array {
    return this.values.subarray(0, this.count);
  }

  get size(): number {
    return this.count;
  }

  summary(): LatencySummary {
    const sorted = Float64Array.from(this.all()).sort();
    const at = (q: number) => (sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!);
    return { count: sorted.length, p50: at(0.5), p90: at(0.9), p99: at(0.99), max: sorted.length ? sorted[sorted.length - 1]! : NaN };
  }
}

export interface LatencySummary {
  count: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

export function formatNumber(value: number | undefined, digits = 2): string {
  if (value === undefined || Number.isNaN(value)) return 'n/a';
  if (!Number.isFinite(value)) return String(value);
  const abs = Math.abs(value);
  if (abs >= 1000) return value.toFixed(0);
  if (abs >= 100) return value.toFixed(Math.min(digits, 1));
  if (abs >= 10) return value.toFixed(Math.min(digits, 2));
  return value.toFixed(Math.max(digits, 2));
}

/** Rows of one cell are section titles: printed as they are, not counted in the column widths. */
export function table(header: string[], rows: string[][]): string {
  const cells = rows.filter((r) => r.length > 1);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ').trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map((r) => (r.length > 1 ? line(r) : r[0]!))].join('\n');
}
