// A small parser of the Prometheus text exposition format (0.0.4), strict enough to catch malformed
// output: every sample line must parse, every sample must belong to a declared family of its TYPE.
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  type: string;
  help: string;
  samples: Sample[];
}

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const SAMPLE = new RegExp(`^(${NAME})(?:\\{(.*)\\})?\\s+(\\S+)(?:\\s+-?\\d+)?$`);
const LABEL = /\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(?:,|$)/y;

export function parseExposition(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const family = (name: string) => {
    let f = families.get(name);
    if (!f) families.set(name, (f = { name, type: 'untyped', help: '', samples: [] }));
    return f;
  };
  for (const [index, line] of text.split('\n').entries()) {
    if (line.trim() === '') continue;
    const where = `line ${index + 1}: ${line.slice(0, 120)}`;
    if (line.startsWith('# HELP ')) {
      const [, name, help] = /^# HELP (\S+) ?(.*)$/.exec(line) ?? [];
      if (!name) throw new Error(`bad HELP, ${where}`);
      family(name).help = help ?? '';
      continue;
    }
    if (line.startsWith('# TYPE ')) {
      const [, name, type] = /^# TYPE (\S+) (counter|gauge|histogram|summary|untyped)$/.exec(line) ?? [];
      if (!name || !type) throw new Error(`bad TYPE, ${where}`);
      family(name).type = type;
      continue;
    }
    if (line.startsWith('#')) continue;
    const match = SAMPLE.exec(line);
    if (!match) throw new Error(`bad sample, ${where}`);
    const [, name, rawLabels, rawValue] = match as unknown as [string, string, string | undefined, string];
    const labels: Record<string, string> = {};
    if (rawLabels) {
      LABEL.lastIndex = 0;
      while (LABEL.lastIndex < rawLabels.length) {
        const start = LABEL.lastIndex;
        const label = LABEL.exec(rawLabels);
        if (!label || LABEL.lastIndex === start) throw new Error(`bad labels, ${where}`);
        labels[label[1]!] = label[2]!.replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
      }
    }
    // As Prometheus reads them (Go's ParseFloat): NaN and Inf in any case.
    const lower = rawValue.toLowerCase();
    const value = lower === '+inf' || lower === 'inf' ? Infinity : lower === '-inf' ? -Infinity : Number(rawValue);
    if (Number.isNaN(value) && lower !== 'nan') throw new Error(`bad value, ${where}`);
    const base = families.has(name) ? name : name.replace(/_(bucket|sum|count|total|created)$/, '');
    const owner = families.get(base) ?? families.get(name);
    if (!owner) throw new Error(`sample without a declared family, ${where}`);
    owner.samples.push({ name, labels, value });
  }
  return families;
}

/** The value of the one sample named `name` whose labels include `labels`; 0 when absent. */
export function valueOf(families: Map<string, Family>, name: string, labels: Record<string, string> = {}): number {
  return samplesOf(families, name, labels).reduce((sum, sample) => sum + sample.value, 0);
}

/** Every sample named `name` whose labels include `labels`. */
export function samplesOf(families: Map<string, Family>, name: string, labels: Record<string, string> = {}): Sample[] {
  const out: Sample[] = [];
  for (const family of families.values()) {
    for (const sample of family.samples) {
      if (sample.name !== name) continue;
      if (Object.entries(labels).every(([key, value]) => sample.labels[key] === value)) out.push(sample);
    }
  }
  return out;
}

/** Checks a histogram's buckets: cumulative, ending in +Inf equal to _count. */
export function checkHistogram(families: Map<string, Family>, name: string, labels: Record<string, string>): { count: number; sum: number } {
  const buckets = samplesOf(families, `${name}_bucket`, labels).sort((a, b) => Number(a.labels.le) - Number(b.labels.le));
  if (buckets.length === 0) throw new Error(`no buckets of ${name} ${JSON.stringify(labels)}`);
  for (let i = 1; i < buckets.length; i++) {
    if (buckets[i]!.value < buckets[i - 1]!.value) throw new Error(`${name} buckets not cumulative at le=${buckets[i]!.labels.le}`);
  }
  const count = valueOf(families, `${name}_count`, labels);
  const inf = buckets.at(-1)!;
  if (inf.labels.le !== '+Inf' || inf.value !== count) throw new Error(`${name}: +Inf bucket ${inf.value} != count ${count}`);
  return { count, sum: valueOf(families, `${name}_sum`, labels) };
}
