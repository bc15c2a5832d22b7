// What `dify-registry build` shows of a build job, as pure functions of the job's JSON: one row per
// platform (state, stage and step of the build, phase) and the assembly, redrawn on a terminal or as
// change-only lines in logs; the summary of what was tagged. Nothing here reads or writes a stream.

export interface PlatformRow {
  platform: string;
  state: string;
  phase: string;
  /** 0-100. */
  pct: number;
  detail: string;
}

interface Counter {
  done: number;
  total: number;
}

/** One row per platform, in the order of the request (the job's `progress.children`). */
export function platformRows(job: { state: string; request?: unknown; progress?: unknown }): PlatformRow[] {
  const progress = record(job.progress);
  const children = record(progress.children);
  const order = Array.isArray(record(job.request).platforms) ? (record(job.request).platforms as unknown[]).map(String) : Object.keys(children);
  return order.map((platform) => {
    const child = record(children[platform]);
    const state = typeof child.state === 'string' ? child.state : 'queued';
    const inner = record(child.progress);
    const phase = typeof inner.phase === 'string' ? inner.phase : state === 'queued' ? 'waiting for a worker' : '';
    const stage = counter(inner.stage);
    const step = counter(inner.step);
    const error = record(child.error);
    let pct = 0;
    if (state === 'succeeded') pct = 100;
    else if (phase === 'pushing' || phase === 'pushed') pct = 95;
    else if (stage.total > 0) pct = Math.floor(((stage.done + (step.total > 0 ? step.done / step.total : 0)) / stage.total) * 90);
    const parts: string[] = [];
    if (stage.total > 0 && phase === 'building') parts.push(`stage ${stage.done + 1}/${stage.total} step ${Math.min(step.done + 1, step.total)}/${step.total}`);
    if (typeof error.code === 'string') parts.push(`${error.code}: ${String(error.message ?? '')}`);
    return { platform, state, phase, pct: Math.max(0, Math.min(100, pct)), detail: parts.join(' ') };
  });
}

export function renderBuild(job: { state: string; request?: unknown; progress?: unknown }, options: { width: number; tty: boolean }): string[] {
  const rows = platformRows(job);
  const phase = record(job.progress).phase;
  const lines = rows.map((row) => {
    const status = [row.state, row.phase && row.phase !== row.state ? row.phase : '', row.detail].filter(Boolean).join(', ');
    if (!options.tty) return `${row.platform}: ${row.pct}% ${status}`;
    const barWidth = Math.max(0, Math.min(30, options.width - row.platform.length - status.length - 12));
    const bar = barWidth >= 8 ? ` ${drawBar(row.pct / 100, barWidth)}` : '';
    return fit(`${row.platform.padEnd(14)}${bar} ${String(row.pct).padStart(3)}%  ${status}`, options.width - 1);
  });
  lines.push(`build: ${job.state}${typeof phase === 'string' ? `, ${phase}` : ''}`);
  return lines;
}

/** For logs: a line when a platform's state, phase or stage changes, or the job's state does. */
export class BuildProgressLog {
  private readonly seen = new Map<string, string>();

  next(job: { state: string; request?: unknown; progress?: unknown }): string[] {
    const lines: string[] = [];
    const rendered = renderBuild(job, { width: 200, tty: false });
    const keys = [...platformRows(job).map((row) => row.platform), 'build'];
    rendered.forEach((line, i) => {
      const key = keys[i]!;
      const signature = line.replace(/ \d+% /, ' ');
      if (this.seen.get(key) === signature) return;
      this.seen.set(key, signature);
      lines.push(line);
    });
    return lines;
  }
}

/** After success: the index, every tag written, and what each platform cost. */
export function buildSummary(job: { id: string; result?: unknown }): string[] {
  const result = record(job.result);
  const index = record(result.index);
  const lines = [`built ${String(result.repository ?? '')}@${String(index.digest ?? '')} (job ${job.id})${typeof result.commit === 'string' ? ` from commit ${result.commit}` : ''}`];
  for (const [platform, value] of Object.entries(record(result.platforms))) {
    const platformResult = record(value);
    const timings = record(platformResult.timings);
    lines.push(
      `  ${platform}: ${String(platformResult.digest ?? '')}, ${seconds(timings.totalMs)} s, ${mib(platformResult.pushedBytes)} MiB new`,
    );
  }
  for (const tag of Array.isArray(result.tags) ? result.tags.map(record) : []) {
    lines.push(`  ${String(tag.repository)}:${String(tag.tag)} -> ${String(tag.digest)}${typeof tag.platform === 'string' ? ` (${tag.platform})` : ''}`);
  }
  const provenance = record(result.provenance);
  if (typeof provenance.digest === 'string') lines.push(`  provenance ${provenance.digest}`);
  return lines;
}

function drawBar(fraction: number, width: number): string {
  const inner = width - 2;
  const full = Math.floor(Math.max(0, Math.min(1, fraction)) * inner);
  return `[${'='.repeat(full)}${' '.repeat(inner - full)}]`;
}

function fit(text: string, width: number): string {
  return text.length <= width ? text : `${text.slice(0, Math.max(0, width - 1))}…`;
}

function seconds(ms: unknown): string {
  return typeof ms === 'number' ? (ms / 1000).toFixed(1) : '?';
}

function mib(bytes: unknown): string {
  return typeof bytes === 'number' ? (bytes / 1024 / 1024).toFixed(1) : '?';
}

function counter(value: unknown): Counter {
  const r = record(value);
  return { done: typeof r.done === 'number' ? r.done : 0, total: typeof r.total === 'number' ? r.total : 0 };
}

function record(value: unknown): Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}
