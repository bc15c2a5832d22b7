// The report of one run (the job's result, logged, printed by the CLI), and process-wide counters for the
// metrics endpoint.

export const GC_KINDS = ['tags', 'manifests', 'referrers', 'layerLinks', 'blobs', 'uploads', 'tempFiles'] as const;
export type GcKind = (typeof GC_KINDS)[number];

export interface KindCounts {
  kept: number;
  deleted: number;
  /** Bytes of what was deleted (blob data, upload sessions, temporary files). */
  freedBytes: number;
}

export interface GcReport {
  /** Nothing was deleted: `deleted` and `freedBytes` say what a real run would have removed. */
  dryRun: boolean;
  gracePeriodMs: number;
  /** `keep`, or the age in ms after which untagged manifests are deleted. */
  untagged: 'keep' | number;
  startedAt: string;
  finishedAt: string;
  durationMs: number;
  repositories: number;
  kinds: Record<GcKind, KindCounts>;
  freedBytes: number;
  /** Garbage kept by the re-check right before its delete: written again since the mark, or pinned by a writer. */
  protected: { young: number; pinned: number; referenced: number };
}

export function emptyReport(dryRun: boolean, gracePeriodMs: number, untagged: 'keep' | number, startedAt: Date): GcReport {
  const kinds = Object.fromEntries(GC_KINDS.map((kind) => [kind, { kept: 0, deleted: 0, freedBytes: 0 }])) as Record<GcKind, KindCounts>;
  return {
    dryRun,
    gracePeriodMs,
    untagged,
    startedAt: startedAt.toISOString(),
    finishedAt: startedAt.toISOString(),
    durationMs: 0,
    repositories: 0,
    kinds,
    freedBytes: 0,
    protected: { young: 0, pinned: 0, referenced: 0 },
  };
}

export function countDeleted(report: GcReport, kind: GcKind, bytes = 0): void {
  report.kinds[kind].deleted++;
  report.kinds[kind].freedBytes += bytes;
  report.freedBytes += bytes;
}

export function countKept(report: GcReport, kind: GcKind, count = 1): void {
  report.kinds[kind].kept += count;
}

/** Counters since the process started, for metrics (runs of this process only). */
export const gcStats = {
  runs: 0,
  failedRuns: 0,
  dryRuns: 0,
  deleted: Object.fromEntries(GC_KINDS.map((kind) => [kind, 0])) as Record<GcKind, number>,
  freedBytes: 0,
  lastRunAt: undefined as string | undefined,
  lastDurationMs: 0,
};

export function recordRun(report: GcReport | undefined): void {
  if (!report) {
    gcStats.runs++;
    gcStats.failedRuns++;
    return;
  }
  gcStats.runs++;
  gcStats.lastRunAt = report.finishedAt;
  gcStats.lastDurationMs = report.durationMs;
  if (report.dryRun) {
    gcStats.dryRuns++;
    return;
  }
  for (const kind of GC_KINDS) gcStats.deleted[kind] += report.kinds[kind].deleted;
  gcStats.freedBytes += report.freedBytes;
}
