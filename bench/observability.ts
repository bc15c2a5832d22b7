// `npm run bench:observability`: what request metrics and the access log cost (issue 9's target: at most
// 10% of manifest GET requests per second). Registries from the same build run side by side: as configured
// by default (metrics on /metrics, storage and request instrumentation, one JSON access-log line per request
// written to a file), and with both off (`http.metrics.enabled: false`, `log.accesslog.disabled: true`),
// each variant in several processes. Closed-loop manifest GETs by tag with docker's Accept, 8 keep-alive
// connections, rounds interleaved and the order alternated. The verdict is the median over rounds of the
// ratio within each round (its runs are seconds apart), which cancels the slow drift of whatever else the
// machine runs; medians of each variant, and the in-process cost of each piece, are printed too.
//
// Environment: BENCH_ROUNDS (15), BENCH_SECONDS (1 per run and process), BENCH_PROCESSES (3 per variant),
// BENCH_VARIANTS (all: also each half alone, and a second set of both-off processes whose ratio is the
// noise floor), BENCH_CONCURRENCY (8), BENCH_OURS_MODE
// (dist | tsx), BENCH_OURS_NODE_ARGS (node arguments of the registries, e.g. --cpu-prof), BENCH_KEEP=1 (keep
// storage and logs), BENCH_BASELINE=<git ref> (also the defaults as built from that commit, in the same
// rounds: a change's effect is a few points, less than this machine's drift between separate runs).
import { readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Client } from './lib/http.js';
import { MANIFEST_ACCEPT, pushImage } from './lib/oci.js';
import { cpuOfTree, machineBusySeconds } from './lib/procfs.js';
import { RawClient } from './lib/raw-get.js';
import { buildOurs, buildOursAt, ServerHandle } from './lib/servers.js';
import { componentCosts } from './lib/observability-micro.js';
import { formatNumber, Latencies, table } from './lib/stats.js';
import { tempDir } from '../test/helpers/process.js';
import { parseExposition, valueOf } from '../test/helpers/prometheus.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 15);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 1);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 8);
/**
 * Processes per variant: V8 makes different choices in different processes of the same code. Single
 * processes of the same variant differ by 2-4% here (both-off against both-off: 95.9-97.4%), which the
 * pairing of rounds cannot cancel; with 2 per variant, the verdicts of separate runs spread 88-94%.
 */
const PROCESSES = Number(process.env.BENCH_PROCESSES ?? 3);
const MODE = process.env.BENCH_OURS_MODE === 'tsx' ? 'tsx' : 'dist';
const TARGET = 0.9;

type Variant = 'on' | 'off' | 'metrics' | 'log' | 'control' | 'baseline';

const VARIANTS: Record<Variant, { label: string; config: Record<string, unknown>; log: Record<string, unknown> }> = {
  on: { label: 'metrics + access log (defaults)', config: {}, log: {} },
  off: { label: 'both off', config: { metrics: { enabled: false } }, log: { accesslog: { disabled: true } } },
  metrics: { label: 'metrics only', config: {}, log: { accesslog: { disabled: true } } },
  log: { label: 'access log only', config: { metrics: { enabled: false } }, log: {} },
  control: { label: 'both off, other processes', config: { metrics: { enabled: false } }, log: { accesslog: { disabled: true } } },
  baseline: { label: `defaults as of ${process.env.BENCH_BASELINE}`, config: {}, log: {} },
};
/** BENCH_VARIANTS=all also measures each half alone, and both off in other processes (the noise floor). */
const MEASURED: Variant[] = [
  ...(process.env.BENCH_VARIANTS === 'all' ? (['on', 'off', 'metrics', 'log', 'control'] as const) : (['on', 'off'] as const)),
  ...(process.env.BENCH_BASELINE ? (['baseline'] as const) : []),
];

interface Run {
  requests: number;
  errors: number;
  seconds: number;
  cpuSeconds: number;
  otherCpuSeconds: number;
  latencies: Latencies;
}

async function measure(server: ServerHandle, seconds: number): Promise<Run> {
  const raw = new RawClient(server.url);
  const run: Run = { requests: 0, errors: 0, seconds: 0, cpuSeconds: 0, otherCpuSeconds: 0, latencies: new Latencies() };
  const cpuBefore = cpuOfTree(server.pid);
  const machineBefore = machineBusySeconds();
  const clientBefore = process.cpuUsage();
  const started = performance.now();
  const deadline = started + seconds * 1000;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      const connection = raw.connection();
      while (performance.now() < deadline) {
        const t = performance.now();
        const response = await connection.request('GET', '/v2/bench/manifest/manifests/latest', { Accept: MANIFEST_ACCEPT });
        run.latencies.add(performance.now() - t);
        run.requests++;
        if (response.status !== 200) run.errors++;
      }
    }),
  );
  run.seconds = (performance.now() - started) / 1000;
  raw.closeAll();
  run.cpuSeconds = cpuOfTree(server.pid).seconds - cpuBefore.seconds;
  const client = process.cpuUsage(clientBefore);
  run.otherCpuSeconds = Math.max(0, machineBusySeconds() - machineBefore - run.cpuSeconds - (client.user + client.system) / 1e6);
  return run;
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

/** One measured slice of every process of a variant, summed. */
function combine(parts: Run[]): Run {
  const latencies = new Latencies();
  for (const part of parts) latencies.merge(part.latencies);
  return {
    requests: parts.reduce((sum, part) => sum + part.requests, 0),
    errors: parts.reduce((sum, part) => sum + part.errors, 0),
    seconds: parts.reduce((sum, part) => sum + part.seconds, 0),
    cpuSeconds: parts.reduce((sum, part) => sum + part.cpuSeconds, 0),
    otherCpuSeconds: parts.reduce((sum, part) => sum + part.otherCpuSeconds, 0),
    latencies,
  };
}

async function main(): Promise<void> {
  const dir = await tempDir('bench-observability');
  const servers: Array<{ variant: Variant; server: ServerHandle }> = [];
  try {
    const distMain = MODE === 'dist' ? await buildOurs(dir) : undefined;
    const baselineMain = process.env.BENCH_BASELINE ? await buildOursAt(process.env.BENCH_BASELINE, join(dir, 'baseline')) : undefined;
    for (let copy = 0; copy < PROCESSES; copy++) {
      for (const variant of MEASURED) {
        const { config, log } = VARIANTS[variant];
        const server = await ServerHandle.ours({
          workers: 1,
          logLevel: 'info',
          ...(variant === 'baseline' ? { mode: 'dist' as const, distMain: baselineMain! } : { mode: MODE, ...(distMain ? { distMain } : {}) }),
          labelSuffix: VARIANTS[variant].label,
          nodeArgs: process.env.BENCH_OURS_NODE_ARGS?.split(/\s+/).filter(Boolean),
          extraConfig: { log: { level: 'info', ...log } },
          http: config,
        });
        servers.push({ variant, server });
        const client = new Client(server.url, 8);
        await pushImage(client, 'bench/manifest', 'latest', [4096, 4096]);
        client.close();
        await measure(server, 1); // warm-up: JIT, caches
      }
    }
    console.log(
      `manifest GET by tag, ${CONCURRENCY} keep-alive connections, ${SECONDS} s per run, ${ROUNDS} rounds (order alternating), ` +
        `${PROCESSES} processes per variant, mode ${MODE}`,
    );
    const runs: Record<Variant, Run[]> = { on: [], off: [], metrics: [], log: [], control: [], baseline: [] };
    for (let round = 0; round < ROUNDS; round++) {
      const slices = new Map<Variant, Run[]>();
      for (const { variant, server } of round % 2 === 0 ? servers : [...servers].reverse()) {
        const run = await measure(server, SECONDS);
        slices.set(variant, [...(slices.get(variant) ?? []), run]);
      }
      const line: string[] = [];
      for (const variant of MEASURED) {
        const run = combine(slices.get(variant)!);
        runs[variant].push(run);
        const noisy = run.otherCpuSeconds > 0.15 * run.seconds * 2 ? '!' : '';
        line.push(`${variant} ${formatNumber(run.requests / run.seconds, 0)} req/s ${formatNumber((run.cpuSeconds * 1000) / run.requests, 3)} CPU-ms${noisy}`);
      }
      console.log(`  round ${String(round + 1).padStart(2)}: ${line.join(', ')}`);
    }
    const rate = (variant: Variant) => median(runs[variant].map((run) => run.requests / run.seconds));
    const cpu = (variant: Variant) => median(runs[variant].map((run) => (run.cpuSeconds * 1000) / run.requests));
    const p99 = (variant: Variant) => median(runs[variant].map((run) => run.latencies.summary().p99));
    const rows = (['off', ...MEASURED.filter((variant) => variant !== 'off')] as Variant[]).map((variant) => [
      VARIANTS[variant].label,
      formatNumber(rate(variant), 0),
      formatNumber(cpu(variant), 3),
      formatNumber(p99(variant), 2),
      String(runs[variant].reduce((sum, run) => sum + run.errors, 0)),
    ]);
    console.log(`\n${table(['variant', 'req/s (median)', 'CPU-ms/req', 'p99 ms', 'errors'], rows)}`);
    const paired = (variant: Variant, of: (run: Run) => number) => median(runs[variant].map((run, i) => of(run) / of(runs.off[i]!)));
    const perSecond = (run: Run) => run.requests / run.seconds;
    const cpuPerRequest = (run: Run) => run.cpuSeconds / run.requests;
    for (const variant of MEASURED.filter((v) => v !== 'off')) {
      console.log(
        `${VARIANTS[variant].label}: ${formatNumber(paired(variant, perSecond) * 100, 1)}% of the requests/s of both off ` +
          `(median of ${ROUNDS} paired rounds; medians alone: ${formatNumber((rate(variant) / rate('off')) * 100, 1)}%), ` +
          `CPU per request ${formatNumber((paired(variant, cpuPerRequest) - 1) * 100, 1)}% more`,
      );
    }
    const ratio = paired('on', perSecond);

    // The measured variants really did their work: every request counted and logged, or neither.
    const on = servers.find((entry) => entry.variant === 'on')!.server;
    const off = servers.find((entry) => entry.variant === 'off')!.server;
    const families = parseExposition(await (await fetch(`${on.url}/metrics`)).text());
    const counted = valueOf(families, 'registry_http_requests_total', { method: 'GET', route: '/v2/*name/manifests/:reference', status: '200' });
    const requestLines = async (server: ServerHandle) =>
      (await readFile(server.logFile, 'utf8')).split('\n').filter((line) => line.includes('"msg":"request"')).length;
    console.log(
      `check: one "on" process counted ${counted} manifest GETs in /metrics and logged ${await requestLines(on)} request lines ` +
        `(${formatNumber((await stat(on.logFile)).size / 1024 / 1024, 1)} MiB); ` +
        `an "off" one logged ${await requestLines(off)} and answers /metrics with ${(await fetch(`${off.url}/metrics`)).status}`,
    );
    const costs = await componentCosts(dir);
    const perRequest = costs.accessLogLineUs + costs.requestMetricsUs + 2 * costs.storageDecoratorUs;
    console.log(
      `in-process CPU per manifest GET: access-log line ${formatNumber(costs.accessLogLineUs)} µs, request metrics ${formatNumber(costs.requestMetricsUs, 3)} µs, ` +
        `storage decorator ${formatNumber(costs.storageDecoratorUs)} µs per driver call (a GET by tag makes 2): ~${formatNumber(perRequest, 1)} µs, ` +
        `${formatNumber((perRequest / (cpu('off') * 1000)) * 100, 1)}% of the ${formatNumber(cpu('off') * 1000, 0)} µs a request costs with both off`,
    );
    console.log(`\n${ratio >= TARGET ? 'PASS' : 'FAIL'}  metrics and logging cost at most ${formatNumber((1 - TARGET) * 100, 0)}% of manifest GET requests/s`);
    if (ratio < TARGET) process.exitCode = 1;
  } finally {
    for (const { server } of servers) await server.dispose();
    if (!process.env.BENCH_KEEP) await rm(dir, { recursive: true, force: true });
    else console.log(`kept ${dir} and ${servers.map(({ server }) => join(server.dir)).join(', ')}`);
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
