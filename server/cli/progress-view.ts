// What `dify-registry mirror` shows of a mirror job, as pure functions of the job's JSON: live bars for a
// terminal, change-only lines for logs (CI), and the final summary. Nothing here writes or reads a stream.

export interface Counter {
  done: number;
  total: number;
}

export interface ItemProgress {
  /** "<tag> <platform>", or "<tag>" for content without a platform. */
  name: string;
  state: string;
  units: Counter;
  bytes: Counter;
}

export interface MirrorProgress {
  tags: Counter;
  units: Counter;
  bytes: Counter;
  /** In the order the job first reported them. */
  items: ItemProgress[];
}

/** The parts of a job record the views read. */
export interface JobSnapshot {
  id: string;
  state: string;
  progress?: unknown;
  result?: unknown;
  error?: { code: string; message: string } | null;
}

const MIB = 1024 * 1024;
const STATE_ROOM = 30;
const ANSI = {
  up: (n: number) => (n > 0 ? `\x1b[${n}A` : ''),
  clearLine: '\r\x1b[2K',
  clearBelow: '\x1b[J',
};

/** The job's free-form progress JSON, read defensively: a field the server leaves out counts as zero. */
export function readProgress(progress: unknown): MirrorProgress {
  const record = isRecord(progress) ? progress : {};
  const items = isRecord(record.items) ? record.items : {};
  return {
    tags: counter(record.tags),
    units: counter(record.units),
    bytes: counter(record.bytes),
    items: Object.entries(items).map(([name, value]) => {
      const item = isRecord(value) ? value : {};
      return { name, state: typeof item.state === 'string' ? item.state : '', units: counter(item.units), bytes: counter(item.bytes) };
    }),
  };
}

/** Whole percent of an item: by bytes when it has any, by units otherwise. */
export function itemPercent(item: Pick<ItemProgress, 'state' | 'units' | 'bytes'>): number {
  if (item.state === 'done') return 100;
  return percent(item.bytes.total > 0 ? item.bytes : item.units);
}

export function totalPercent(state: string, progress: MirrorProgress): number {
  if (state === 'succeeded') return 100;
  return percent(progress.bytes.total > 0 ? progress.bytes : progress.units);
}

/** `12.3/45.6 MiB`; in KiB below 1 MiB, where MiB would show a small image as 0.0/0.0. */
export function formatBytes(counter: Counter): string {
  const [unit, size] = counter.total < MIB ? ['KiB', 1024] : ['MiB', MIB];
  return `${(counter.done / size).toFixed(1)}/${(counter.total / size).toFixed(1)} ${unit}`;
}

export interface ViewOptions {
  /** Terminal columns; every line stays shorter, so redrawing never meets a wrapped line. */
  width: number;
  /** Bars on a terminal; plain text without bars (and never an escape code) otherwise. */
  tty: boolean;
}

/** One line per item and a total line, for the job's current state. */
export function renderProgress(job: Pick<JobSnapshot, 'state' | 'progress'>, options: ViewOptions): string[] {
  const progress = readProgress(job.progress);
  const rows = [...progress.items.map(itemRow), totalRow(job.state, progress)];
  if (!options.tty) return rows.map(plainLine);

  const max = Math.max(20, options.width - 1);
  const nameWidth = Math.min(Math.max(...rows.map((r) => r.name.length)), Math.floor(max * 0.4));
  const bytesWidth = Math.max(...rows.map((r) => r.bytes.length));
  // name, bar, "100%", bytes, state with two spaces between. The bar takes what is left after room for
  // the longest usual state ("running, blobs 12/34, tags 1/2"), so it keeps its size while states change.
  const barWidth = clamp(max - nameWidth - 4 - bytesWidth - STATE_ROOM - 8, 0, 50);
  return rows.map((row) => {
    const parts = [fit(row.name, nameWidth).padEnd(nameWidth)];
    if (barWidth >= 8) parts.push(bar(row.pct / 100, barWidth));
    parts.push(`${row.pct}%`.padStart(4), row.bytes.padStart(bytesWidth), row.state);
    return fit(parts.join('  '), max);
  });
}

/** The escape codes that replace the previously drawn `previous` lines with `lines`. */
export function redraw(previous: number, lines: string[]): string {
  return `${ANSI.up(previous)}${lines.map((line) => `${ANSI.clearLine}${line}\n`).join('')}${ANSI.clearBelow}`;
}

/** The escape codes that erase the previously drawn `previous` lines (to print a message above them). */
export function erase(previous: number): string {
  return `${ANSI.up(previous)}\r${ANSI.clearBelow}`;
}

/**
 * For logs: a line only when something worth reading changed (the job's state, an item's state, an item
 * or the total crossing another 10%), so a CI log is not a wall of repeated numbers.
 */
export class ProgressLog {
  private state = '';
  private totalDecile = -1;
  private readonly items = new Map<string, { state: string; decile: number }>();

  next(job: Pick<JobSnapshot, 'state' | 'progress'>): string[] {
    const progress = readProgress(job.progress);
    const lines: string[] = [];
    if (job.state !== this.state) {
      this.state = job.state;
      lines.push(`job ${job.state}`);
    }
    for (const item of progress.items) {
      const decile = Math.floor(itemPercent(item) / 10);
      const seen = this.items.get(item.name);
      if (seen && seen.state === item.state && seen.decile === decile) continue;
      this.items.set(item.name, { state: item.state, decile });
      lines.push(plainLine(itemRow(item)));
    }
    const total = totalRow(job.state, progress);
    const decile = Math.floor(total.pct / 10);
    if (progress.units.total > 0 && decile !== this.totalDecile) {
      this.totalDecile = decile;
      lines.push(plainLine(total));
    }
    return lines;
  }
}

interface TagWriteView {
  repository: string;
  tag: string;
  digest: string;
  platform?: string;
}

/** After success: every tag written, per upstream tag, with its digest (and platform, for one-platform tags). */
export function summaryLines(job: JobSnapshot): string[] {
  const result = isRecord(job.result) ? job.result : {};
  const tags = Array.isArray(result.tags) ? result.tags.filter(isRecord) : [];
  const blobs = isRecord(result.blobs) ? result.blobs : {};
  const bytes = isRecord(result.bytes) ? result.bytes : {};
  const source = typeof result.source === 'string' ? result.source : 'upstream';
  const lines = [
    `mirrored ${tags.length} tag(s) of ${source} (job ${job.id}): ${num(blobs.fetched)} blob(s) fetched ` +
      `(${formatSize(num(bytes.fetched))}), ${num(blobs.present)} already here`,
  ];
  for (const tag of tags) {
    lines.push(`${String(tag.tag)}${typeof tag.digest === 'string' ? ` (upstream ${tag.digest})` : ''}`);
    const writes = Array.isArray(tag.writes) ? (tag.writes.filter(isRecord) as unknown as TagWriteView[]) : [];
    for (const write of writes) {
      lines.push(`  ${write.repository}:${write.tag} -> ${write.digest}${write.platform ? ` (${write.platform})` : ''}`);
    }
  }
  return lines;
}

/** After failure: the job's error, then the end of its log, which says which tag failed and why. */
export function failureLines(job: JobSnapshot, logTail: string[]): string[] {
  const error = job.error ?? { code: job.state.toUpperCase(), message: `the job ended ${job.state}` };
  const lines = [`error: ${error.code}: ${error.message}`];
  if (logTail.length > 0) lines.push(`last log lines of job ${job.id}:`, ...logTail.map((line) => `  ${line}`));
  return lines;
}

interface Row {
  name: string;
  pct: number;
  bytes: string;
  state: string;
}

function itemRow(item: ItemProgress): Row {
  return { name: item.name, pct: itemPercent(item), bytes: formatBytes(item.bytes), state: item.state };
}

function totalRow(state: string, progress: MirrorProgress): Row {
  return { name: 'total', pct: totalPercent(state, progress), bytes: formatBytes(progress.bytes), state: totalState(state, progress) };
}

function plainLine(row: Row): string {
  return `${row.name}: ${row.pct}% ${row.bytes} ${row.state}`;
}

function formatSize(bytes: number): string {
  return bytes < MIB ? `${(bytes / 1024).toFixed(1)} KiB` : `${(bytes / MIB).toFixed(1)} MiB`;
}

function totalState(state: string, progress: MirrorProgress): string {
  const parts = [state];
  if (progress.units.total > 0) parts.push(`blobs ${progress.units.done}/${progress.units.total}`);
  if (progress.tags.total > 0) parts.push(`tags ${progress.tags.done}/${progress.tags.total}`);
  return parts.join(', ');
}

function bar(fraction: number, width: number): string {
  const inner = width - 2;
  const full = Math.floor(clamp(fraction, 0, 1) * inner);
  const head = full < inner && full > 0 ? '>' : '';
  return `[${'='.repeat(full)}${head}${' '.repeat(inner - full - head.length)}]`;
}

function percent(counter: Counter): number {
  return counter.total > 0 ? Math.floor((clamp(counter.done, 0, counter.total) * 100) / counter.total) : 0;
}

function fit(text: string, width: number): string {
  return text.length <= width ? text : width <= 1 ? text.slice(0, width) : `${text.slice(0, width - 1)}…`;
}

function clamp(value: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, value));
}

function counter(value: unknown): Counter {
  const record = isRecord(value) ? value : {};
  return { done: num(record.done), total: num(record.total) };
}

function num(value: unknown): number {
  return typeof value === 'number' && Number.isFinite(value) ? value : 0;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
