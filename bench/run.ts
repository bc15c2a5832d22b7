// Benchmark: our registry against CNCF Distribution 2.8.2 (when installed), scenarios interleaved
// (ours, theirs, ours, theirs, ...), server CPU and memory read from /proc for each registry's process tree.
//
//   npm run bench                     full run (about 4 minutes on 2 cores; see bench/README.md)
//   BENCH_SCALE=0.2 npm run bench     quick run (smaller data, shorter load phases)
//
// Environment: BENCH_SCALE (1), BENCH_ROUNDS (3), BENCH_ONLY (comma-separated scenario ids), BENCH_OURS_WORKERS
// (http.workers, default 1 as the registry's own default), BENCH_OURS_MODE (dist | tsx), BENCH_OURS_NODE_ARGS (node arguments
// for ours, inherited by cluster workers, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof"), BENCH_LOG_LEVEL (info, both registries), BENCH_NO_DISTRIBUTION=1,
// BENCH_DISTRIBUTION (path of docker-registry), BENCH_RESULTS (JSON path), BENCH_KEEP=1 (keep storage and logs),
// BENCH_STORAGE=s3 (the S3 mode instead: bench/s3.ts, our registry on a throw-away Ceph RGW against the gateway used directly).
import { mkdir, writeFile } from 'node:fs/promises';
import { availableParallelism, release, tmpdir, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { run } from '../test/helpers/process.js';
import { blobDigest, GiB, MiB, type BlobSpec } from './lib/data.js';
import { Client } from './lib/http.js';
import { RawClient, type RawConnection } from './lib/raw-get.js';
import { MANIFEST_ACCEPT, pushChunked, pushImage, pushMonolithic, pushStreamed, putManifest, supportsSinglePost, type Image } from './lib/oci.js';
import { cpuOfTree, machineBusySeconds, resetPeakRss, rssOfTree, RssSampler, summedPeakRss } from './lib/procfs.js';
import { distributionAvailable, ServerHandle, type Side } from './lib/servers.js';
import { formatNumber, Latencies, table } from './lib/stats.js';

// ---------------------------------------------------------------------------------------------- settings

function envNumber(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name} must be a positive number, got ${raw}`);
  return value;
}

const SCALE = envNumber('BENCH_SCALE', 1);
const ROUNDS = Math.max(1, Math.round(envNumber('BENCH_ROUNDS', 3)));
const ONLY = process.env.BENCH_ONLY ? new Set(process.env.BENCH_ONLY.split(',').map((s) => s.trim())) : undefined;
const OURS_WORKERS = process.env.BENCH_OURS_WORKERS === undefined ? 1 : Number(process.env.BENCH_OURS_WORKERS);
const OURS_MODE = process.env.BENCH_OURS_MODE === 'tsx' ? 'tsx' : 'dist';
const LOG_LEVEL = process.env.BENCH_LOG_LEVEL ?? 'info';
const WITH_DISTRIBUTION = !process.env.BENCH_NO_DISTRIBUTION && distributionAvailable();
const RESULTS = process.env.BENCH_RESULTS ?? join(tmpdir(), 'dify-registry-bench', 'latest.json');

const scaled = (value: number, min: number) => Math.max(min, Math.round(value * SCALE));

const P = {
  push: { blobSize: 32 * MiB, blobs: scaled(16, 4), concurrency: 4, chunkSize: 8 * MiB },
  pull: { blobSize: 64 * MiB, blobs: 4, gets: scaled(48, 8), concurrency: 4 },
  manifest: { concurrency: 8, seconds: Math.max(1, 4 * SCALE), warmupSeconds: 0.5 },
  tags: { count: 1000, requests: scaled(500, 50) },
  storm: { clients: 32, seconds: Math.max(1.5, 5 * SCALE), layerSize: 1 * MiB, layers: 2 },
  rssDownload: { clients: 32, blobSize: 8 * MiB, repeats: scaled(12, 2) },
  rssPush: { clients: 16, blobSize: Math.max(16, Math.round(256 * SCALE)) * MiB },
};

/** The issue's measurements of Distribution 2.8.2 on this machine, printed beside ours for a sanity check. */
const ISSUE_REFERENCE = {
  monolithicMiBps: 200,
  cpuSecondsPerGiBPushed: 7.7,
  cpuMsPerManifestGet: 1.65,
  peakRssDownloadsMiB: 275,
};

// ---------------------------------------------------------------------------------------------- model

interface Sample {
  wall: number;
  cpu: number;
  cpuUser: number;
  cpuSystem: number;
  clientCpu: number;
  /** CPU used on the machine by neither the server under test nor this client (other workloads, kernel threads). */
  otherCpu: number;
  bytes: number;
  requests: number;
  ops: number;
  errors: number;
  lat: Record<string, Latencies>;
  rssBase: number;
  rssPeak: number;
  /** RSS of each server process at the sampled peak. */
  rssAtPeak: Record<number, number>;
  hwmSum: number;
  hwmReset: boolean;
  rssSamples: number;
  rssMaxGapMs: number;
  processes: number;
  /** Server process ids seen in the tree (for matching with perf or profiles). */
  pids: number[];
  runs: number;
}

function emptySample(): Sample {
  return {
    wall: 0,
    cpu: 0,
    cpuUser: 0,
    cpuSystem: 0,
    clientCpu: 0,
    otherCpu: 0,
    bytes: 0,
    requests: 0,
    ops: 0,
    errors: 0,
    lat: {},
    rssBase: 0,
    rssPeak: 0,
    rssAtPeak: {},
    hwmSum: 0,
    hwmReset: true,
    rssSamples: 0,
    rssMaxGapMs: 0,
    processes: 0,
    pids: [],
    runs: 0,
  };
}

function latencies(sample: Sample, name: string): Latencies {
  return (sample.lat[name] ??= new Latencies());
}

function accumulate(into: Sample, from: Sample): void {
  into.wall += from.wall;
  into.cpu += from.cpu;
  into.cpuUser += from.cpuUser;
  into.cpuSystem += from.cpuSystem;
  into.clientCpu += from.clientCpu;
  into.otherCpu += from.otherCpu;
  into.bytes += from.bytes;
  into.requests += from.requests;
  into.ops += from.ops;
  into.errors += from.errors;
  for (const [name, values] of Object.entries(from.lat)) latencies(into, name).merge(values);
  into.rssBase = Math.max(into.rssBase, from.rssBase);
  if (from.rssPeak > into.rssPeak) into.rssAtPeak = from.rssAtPeak;
  into.rssPeak = Math.max(into.rssPeak, from.rssPeak);
  into.hwmSum = Math.max(into.hwmSum, from.hwmSum);
  into.hwmReset &&= from.hwmReset;
  into.rssSamples += from.rssSamples;
  into.rssMaxGapMs = Math.max(into.rssMaxGapMs, from.rssMaxGapMs);
  into.processes = Math.max(into.processes, from.processes);
  into.pids = [...new Set([...into.pids, ...from.pids])];
  into.runs += from.runs;
}

interface Target {
  side: Side;
  server: ServerHandle;
  /** node:http client: uploads, setup, listings. */
  client: Client;
  /** Allocation-free GET/HEAD client for the download and manifest load. */
  raw: RawClient;
  singlePost: boolean;
  images: Record<string, Image>;
  setupDone: Set<string>;
}

interface MetricDef {
  name: string;
  unit: string;
  better: 'higher' | 'lower' | 'none';
  value(sample: Sample): number;
}

interface Scenario {
  id: string;
  title: string;
  /** Run once instead of once per round. */
  once?: boolean;
  /** Restart the registry process (same storage) after setup, so the measurement starts from a fresh process. */
  freshProcess?: boolean;
  setup?(t: Target): Promise<void>;
  /** Unmeasured work before each run (digests, warm-up). */
  prepare?(t: Target, round: number): Promise<void>;
  body(t: Target, round: number, s: Sample): Promise<void>;
  metrics: MetricDef[];
}

const mibps = (s: Sample) => s.bytes / MiB / s.wall;
const cpuPerGiB = (s: Sample) => s.cpu / (s.bytes / GiB);
const rps = (s: Sample) => s.requests / s.wall;
const cpuMsPerRequest = (s: Sample) => (s.cpu * 1000) / s.requests;
const pct = (name: string, q: 'p50' | 'p90' | 'p99') => (s: Sample) => s.lat[name]?.summary()[q] ?? NaN;
const peakRssMetric: MetricDef = { name: 'peak RSS, sum of tree (sampled)', unit: 'MiB', better: 'lower', value: (s) => s.rssPeak / MiB };

// ---------------------------------------------------------------------------------------------- helpers

/** Runs `task` over `items`, `concurrency` at a time; `worker` numbers the concurrent lanes. */
async function pool<T>(items: T[], concurrency: number, task: (item: T, index: number, worker: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, items.length) }, async (_, worker) => {
      while (next < items.length) {
        const index = next++;
        await task(items[index]!, index, worker);
      }
    }),
  );
}

/** `concurrency` virtual users, each on its own keep-alive connection, repeat `iteration` for `seconds`. */
async function closedLoop(t: Target, concurrency: number, seconds: number, iteration: (connection: RawConnection) => Promise<void>): Promise<void> {
  const deadline = performance.now() + seconds * 1000;
  const connections = Array.from({ length: concurrency }, () => t.raw.connection());
  try {
    await Promise.all(
      connections.map(async (connection) => {
        while (performance.now() < deadline) await iteration(connection);
      }),
    );
  } finally {
    for (const connection of connections) connection.close();
  }
}

/** Times one request into `lat`; a wrong status or a network error counts as an error (too many abort). */
async function timed(s: Sample, lat: Latencies, expected: number, request: () => Promise<{ status: number; bytes: number }>): Promise<void> {
  const started = performance.now();
  try {
    const response = await request();
    lat.add(performance.now() - started);
    s.requests++;
    s.bytes += response.bytes;
    if (response.status !== expected) s.errors++;
  } catch (error) {
    s.errors++;
    if (s.errors > 200) throw error;
  }
  if (s.errors > 200) throw new Error(`more than 200 failed requests`);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Flush dirty pages of the previous run, so one registry's writeback does not land in the other's numbers. */
async function settle(): Promise<void> {
  await run('sync', [], { allowFailure: true });
  await sleep(300);
}

function log(message: string): void {
  const elapsed = ((performance.now() - START) / 1000).toFixed(0).padStart(4);
  console.log(`[${elapsed}s] ${message}`);
}

const START = performance.now();

// ---------------------------------------------------------------------------------------------- scenarios

function pushBlobs(mode: string, round: number): BlobSpec[] {
  return Array.from({ length: P.push.blobs }, (_, i) => ({ id: `push-${mode}-r${round}-${i}`, size: P.push.blobSize }));
}

function pushScenario(mode: 'monolithic' | 'chunked' | 'streamed', title: string): Scenario {
  const repo = `bench/push-${mode}`;
  return {
    id: `push-${mode}`,
    title,
    async prepare(_t, round) {
      for (const blob of pushBlobs(mode, round)) blobDigest(blob); // hashed once, outside the measurement
    },
    async body(t, round, s) {
      await pool(pushBlobs(mode, round), P.push.concurrency, async (blob) => {
        if (mode === 'monolithic') await pushMonolithic(t.client, repo, blob, t.singlePost);
        else if (mode === 'chunked') await pushChunked(t.client, repo, blob, P.push.chunkSize);
        else await pushStreamed(t.client, repo, blob, blobDigest(blob));
        s.bytes += blob.size;
        s.ops++;
      });
      s.requests = s.ops * (mode === 'monolithic' ? (t.singlePost ? 1 : 2) : mode === 'chunked' ? 2 + Math.ceil(P.push.blobSize / P.push.chunkSize) : 3);
    },
    metrics: [
      { name: 'throughput', unit: 'MiB/s', better: 'higher', value: mibps },
      { name: 'server CPU per GiB pushed', unit: 'CPU-s', better: 'lower', value: cpuPerGiB },
      peakRssMetric,
    ],
  };
}

const pullBlobs: BlobSpec[] = Array.from({ length: P.pull.blobs }, (_, i) => ({ id: `pull-${i}`, size: P.pull.blobSize }));

const scenarios: Scenario[] = [
  pushScenario('monolithic', `blob push, monolithic (${P.push.blobs} x ${P.push.blobSize / MiB} MiB, ${P.push.concurrency} at a time)`),
  pushScenario('chunked', `blob push, chunked PATCH of ${P.push.chunkSize / MiB} MiB with Content-Range, then PUT (${P.push.blobs} x ${P.push.blobSize / MiB} MiB, ${P.push.concurrency} at a time)`),
  pushScenario('streamed', `blob push, docker-style: one streamed PATCH without Content-Length, body-less PUT (${P.push.blobs} x ${P.push.blobSize / MiB} MiB, ${P.push.concurrency} at a time)`),
  {
    id: 'pull',
    title: `blob pull, GET (${P.pull.gets} x ${P.pull.blobSize / MiB} MiB, ${P.pull.concurrency} at a time)`,
    async setup(t) {
      for (const blob of pullBlobs) await pushStreamed(t.client, 'bench/pull', blob, blobDigest(blob));
    },
    async body(t, _round, s) {
      const gets = Array.from({ length: P.pull.gets }, (_, i) => pullBlobs[i % pullBlobs.length]!);
      const connections = Array.from({ length: P.pull.concurrency }, () => t.raw.connection());
      await pool(gets, P.pull.concurrency, async (blob, _i, worker) => {
        const response = await connections[worker]!.request('GET', `/v2/bench/pull/blobs/${blobDigest(blob)}`);
        if (response.status !== 200 || response.bytes !== blob.size) throw new Error(`GET blob: ${response.status}, ${response.bytes} bytes`);
        s.bytes += response.bytes;
        s.requests++;
      });
      for (const connection of connections) connection.close();
    },
    metrics: [
      { name: 'throughput', unit: 'MiB/s', better: 'higher', value: mibps },
      { name: 'server CPU per GiB pulled', unit: 'CPU-s', better: 'lower', value: cpuPerGiB },
      peakRssMetric,
    ],
  },
  ...(['GET', 'HEAD'] as const).map(
    (method): Scenario => ({
      id: `manifest-${method.toLowerCase()}`,
      title: `manifest ${method} by tag (${P.manifest.concurrency} connections, ${P.manifest.seconds.toFixed(1)} s per run)`,
      async setup(t) {
        if (!t.images.manifest) t.images.manifest = await pushImage(t.client, 'bench/manifest', 'latest', [1024, 2048]);
      },
      async prepare(t) {
        const warm = emptySample();
        await closedLoop(t, P.manifest.concurrency, P.manifest.warmupSeconds, (c) =>
          timed(warm, latencies(warm, 'warm'), 200, () => manifestRequest(c, method)),
        );
      },
      async body(t, _round, s) {
        const lat = latencies(s, 'request');
        await closedLoop(t, P.manifest.concurrency, P.manifest.seconds, (c) => timed(s, lat, 200, () => manifestRequest(c, method)));
      },
      metrics: [
        { name: 'requests/s', unit: 'req/s', better: 'higher', value: rps },
        { name: 'latency p50', unit: 'ms', better: 'lower', value: pct('request', 'p50') },
        { name: 'latency p90', unit: 'ms', better: 'lower', value: pct('request', 'p90') },
        { name: 'latency p99', unit: 'ms', better: 'lower', value: pct('request', 'p99') },
        { name: 'server CPU per request', unit: 'CPU-ms', better: 'lower', value: cpuMsPerRequest },
        peakRssMetric,
      ],
    }),
  ),
  {
    id: 'tags-list',
    title: `tag listing, ${P.tags.count} tags, no pagination (${P.tags.requests} sequential requests per run)`,
    async setup(t) {
      const image = await pushImage(t.client, 'bench/tags', 't0000', [1024]);
      const tags = Array.from({ length: P.tags.count - 1 }, (_, i) => `t${String(i + 1).padStart(4, '0')}`);
      await pool(tags, 8, (tag) => putManifest(t.client, 'bench/tags', tag, image.manifest));
      const listing = await t.client.expect(200, 'GET', '/v2/bench/tags/tags/list');
      const count = (JSON.parse(listing.body!.toString()) as { tags: string[] }).tags.length;
      if (count !== P.tags.count) throw new Error(`tag list has ${count} tags, expected ${P.tags.count}`);
    },
    async prepare(t) {
      for (let i = 0; i < 5; i++) await t.client.expect(200, 'GET', '/v2/bench/tags/tags/list');
    },
    async body(t, _round, s) {
      const lat = latencies(s, 'request');
      for (let i = 0; i < P.tags.requests; i++) {
        await timed(s, lat, 200, () => t.client.request('GET', '/v2/bench/tags/tags/list'));
      }
    },
    metrics: [
      { name: 'latency p50', unit: 'ms', better: 'lower', value: pct('request', 'p50') },
      { name: 'latency p90', unit: 'ms', better: 'lower', value: pct('request', 'p90') },
      { name: 'latency p99', unit: 'ms', better: 'lower', value: pct('request', 'p99') },
      { name: 'requests/s (sequential)', unit: 'req/s', better: 'higher', value: rps },
      { name: 'server CPU per request', unit: 'CPU-ms', better: 'lower', value: cpuMsPerRequest },
    ],
  },
  {
    id: 'pull-storm',
    title: `mixed pull storm: ${P.storm.clients} clients each looping manifest GET + config GET + ${P.storm.layers} x ${P.storm.layerSize / MiB} MiB layer GETs (${P.storm.seconds.toFixed(1)} s per run)`,
    async setup(t) {
      t.images.storm = await pushImage(t.client, 'bench/storm', 'v1', Array.from({ length: P.storm.layers }, () => P.storm.layerSize));
    },
    async prepare(t) {
      const warm = emptySample();
      await closedLoop(t, P.storm.clients, 0.5, (c) => stormPull(t, c, warm));
    },
    async body(t, _round, s) {
      await closedLoop(t, P.storm.clients, P.storm.seconds, (c) => stormPull(t, c, s));
    },
    metrics: [
      { name: 'image pulls/s', unit: 'pulls/s', better: 'higher', value: (s) => s.ops / s.wall },
      { name: 'requests/s', unit: 'req/s', better: 'higher', value: rps },
      { name: 'throughput', unit: 'MiB/s', better: 'higher', value: mibps },
      { name: 'manifest latency p50', unit: 'ms', better: 'lower', value: pct('manifest', 'p50') },
      { name: 'manifest latency p99', unit: 'ms', better: 'lower', value: pct('manifest', 'p99') },
      { name: 'blob latency p50', unit: 'ms', better: 'lower', value: pct('blob', 'p50') },
      { name: 'blob latency p99', unit: 'ms', better: 'lower', value: pct('blob', 'p99') },
      { name: 'server CPU per image pull', unit: 'CPU-ms', better: 'lower', value: (s) => (s.cpu * 1000) / s.ops },
      peakRssMetric,
    ],
  },
  {
    id: 'rss-download',
    title: `memory: ${P.rssDownload.clients} concurrent ${P.rssDownload.blobSize / MiB} MiB blob downloads (x${P.rssDownload.repeats}), fresh process`,
    freshProcess: true,
    async setup(t) {
      const blobs = rssDownloadBlobs();
      await pool(blobs, 4, (blob) => pushStreamed(t.client, 'bench/rss', blob, blobDigest(blob)).then(() => undefined));
    },
    async prepare(t) {
      for (const blob of rssDownloadBlobs()) blobDigest(blob);
      await t.client.expect(200, 'GET', '/v2/'); // one request so that every process has started serving
    },
    async body(t, _round, s) {
      const blobs = rssDownloadBlobs();
      await Promise.all(
        blobs.map(async (blob) => {
          const connection = t.raw.connection();
          for (let i = 0; i < P.rssDownload.repeats; i++) {
            const response = await connection.request('GET', `/v2/bench/rss/blobs/${blobDigest(blob)}`);
            if (response.status !== 200 || response.bytes !== blob.size) throw new Error(`GET blob: ${response.status}, ${response.bytes} bytes`);
            s.bytes += response.bytes;
            s.requests++;
          }
          connection.close();
        }),
      );
    },
    metrics: [
      peakRssMetric,
      { name: 'sum of per-process VmHWM', unit: 'MiB', better: 'lower', value: (s) => s.hwmSum / MiB },
      { name: 'RSS before the run', unit: 'MiB', better: 'lower', value: (s) => s.rssBase / MiB },
      { name: 'processes in tree', unit: '', better: 'none', value: (s) => s.processes },
      { name: 'throughput', unit: 'MiB/s', better: 'higher', value: mibps },
    ],
  },
  {
    id: 'rss-push',
    title: `memory: ${P.rssPush.clients} clients each pushing ${P.rssPush.blobSize / MiB} MiB (docker-style streamed PATCH, generated and hashed on the fly), fresh process`,
    once: true,
    freshProcess: true,
    async prepare(t) {
      await t.client.expect(200, 'GET', '/v2/');
    },
    async body(t, _round, s) {
      const blobs = Array.from({ length: P.rssPush.clients }, (_, i): BlobSpec => ({ id: `rss-push-${i}`, size: P.rssPush.blobSize }));
      await Promise.all(
        blobs.map(async (blob) => {
          await pushStreamed(t.client, 'bench/rss-push', blob);
          s.bytes += blob.size;
          s.requests += 3;
          s.ops++;
        }),
      );
    },
    metrics: [
      peakRssMetric,
      { name: 'sum of per-process VmHWM', unit: 'MiB', better: 'lower', value: (s) => s.hwmSum / MiB },
      { name: 'RSS before the run', unit: 'MiB', better: 'lower', value: (s) => s.rssBase / MiB },
      { name: 'processes in tree', unit: '', better: 'none', value: (s) => s.processes },
      { name: 'throughput', unit: 'MiB/s', better: 'higher', value: mibps },
      { name: 'server CPU per GiB pushed', unit: 'CPU-s', better: 'lower', value: cpuPerGiB },
    ],
  },
];

function rssDownloadBlobs(): BlobSpec[] {
  return Array.from({ length: P.rssDownload.clients }, (_, i) => ({ id: `rss-download-${i}`, size: P.rssDownload.blobSize }));
}

function manifestRequest(connection: RawConnection, method: 'GET' | 'HEAD') {
  return connection.request(method, '/v2/bench/manifest/manifests/latest', { Accept: MANIFEST_ACCEPT });
}

async function stormPull(t: Target, connection: RawConnection, s: Sample): Promise<void> {
  const image = t.images.storm!;
  await timed(s, latencies(s, 'manifest'), 200, () => connection.request('GET', '/v2/bench/storm/manifests/v1', { Accept: MANIFEST_ACCEPT }));
  for (const blob of [image.config, ...image.layers]) {
    await timed(s, latencies(s, 'blob'), 200, () => connection.request('GET', `/v2/bench/storm/blobs/${blob.digest}`));
  }
  s.ops++;
}

// ---------------------------------------------------------------------------------------------- runner

async function measure(t: Target, scenario: Scenario, round: number): Promise<Sample> {
  if (!t.setupDone.has(scenario.id) && scenario.setup) {
    await scenario.setup(t);
  }
  t.setupDone.add(scenario.id);
  if (scenario.freshProcess) await restart(t);
  await scenario.prepare?.(t, round);
  await settle();

  const pid = t.server.pid;
  const s = emptySample();
  s.runs = 1;
  s.rssBase = rssOfTree(pid).bytes;
  s.hwmReset = resetPeakRss(pid);
  const sampler = await new RssSampler(pid, 50).start();
  const cpuBefore = cpuOfTree(pid);
  const clientBefore = process.cpuUsage();
  const machineBefore = machineBusySeconds();
  const started = performance.now();
  try {
    await scenario.body(t, round, s);
  } finally {
    s.wall = (performance.now() - started) / 1000;
    const cpuAfter = cpuOfTree(pid);
    const client = process.cpuUsage(clientBefore);
    const rss = await sampler.stop();
    s.cpu = cpuAfter.seconds - cpuBefore.seconds;
    s.cpuUser = cpuAfter.user - cpuBefore.user;
    s.cpuSystem = cpuAfter.system - cpuBefore.system;
    s.clientCpu = (client.user + client.system) / 1e6;
    s.otherCpu = Math.max(0, machineBusySeconds() - machineBefore - s.cpu - s.clientCpu);
    s.rssPeak = rss.peakBytes;
    s.rssAtPeak = rss.atPeak;
    s.rssSamples = rss.samples;
    s.rssMaxGapMs = rss.maxGapMs;
    s.processes = rss.maxProcesses;
    s.hwmSum = summedPeakRss(pid);
    s.pids = [...new Set([...cpuBefore.pids, ...cpuAfter.pids])];
  }
  return s;
}

async function restart(t: Target): Promise<void> {
  t.client.close();
  t.raw.closeAll();
  await t.server.restart();
  t.client = new Client(t.server.url, 64);
  t.raw = new RawClient(t.server.url);
}

interface Outcome {
  samples: Partial<Record<Side, Sample>>;
  errors: Partial<Record<Side, string>>;
}

/** More than 15% of the machine's CPU went to something else than the two sides of the benchmark. */
function noisy(s: Sample): boolean {
  return s.wall > 0 && s.otherCpu / (s.wall * availableParallelism()) > 0.15;
}

function describeRun(scenario: Scenario, s: Sample): string {
  const parts = [`${s.wall.toFixed(2)} s`, `server CPU ${s.cpu.toFixed(2)} s (user ${s.cpuUser.toFixed(2)}, sys ${s.cpuSystem.toFixed(2)})`];
  if (s.bytes > 0) parts.push(`${(s.bytes / MiB).toFixed(0)} MiB, ${mibps(s).toFixed(1)} MiB/s`);
  if (scenario.id.startsWith('manifest') || scenario.id === 'tags-list') parts.push(`${s.requests} req, ${rps(s).toFixed(0)} req/s`);
  if (scenario.id === 'pull-storm') parts.push(`${s.ops} pulls`);
  const perProcess = Object.entries(s.rssAtPeak).map(([pid, bytes]) => `${pid}:${(bytes / MiB).toFixed(0)}`);
  parts.push(`peak RSS ${(s.rssPeak / MiB).toFixed(0)} MiB (${s.processes} proc, MiB each at peak: ${perProcess.join(' ')})`);
  parts.push(`client CPU ${s.clientCpu.toFixed(2)} s`);
  parts.push(`other CPU ${s.otherCpu.toFixed(2)} s${noisy(s) ? ' (NOISY: other workloads or kernel writeback)' : ''}`);
  if (s.errors) parts.push(`${s.errors} ERRORS`);
  return parts.join(', ');
}

async function main(): Promise<void> {
  const selected = scenarios.filter((s) => !ONLY || ONLY.has(s.id));
  if (selected.length === 0) throw new Error(`BENCH_ONLY matches no scenario; ids: ${scenarios.map((s) => s.id).join(', ')}`);
  log(`scale ${SCALE}, rounds ${ROUNDS}, ${availableParallelism()} CPUs, node ${process.version}, Linux ${release()}`);
  if (!WITH_DISTRIBUTION) log('CNCF Distribution not available (or BENCH_NO_DISTRIBUTION): measuring ours only');

  const targets: Target[] = [];
  const newTarget = (side: Side, server: ServerHandle): Target => ({
    side,
    server,
    client: new Client(server.url, 64),
    raw: new RawClient(server.url),
    singlePost: false,
    images: {},
    setupDone: new Set(),
  });
  const outcomes = new Map<string, Outcome>(selected.map((s) => [s.id, { samples: {}, errors: {} }]));
  try {
    const ours = await ServerHandle.ours({ workers: OURS_WORKERS, logLevel: LOG_LEVEL, mode: OURS_MODE, nodeArgs: process.env.BENCH_OURS_NODE_ARGS?.split(/\s+/).filter(Boolean) });
    targets.push(newTarget('ours', ours));
    log(`ours:   ${ours.label} at ${ours.url} (pid ${ours.pid}, storage ${ours.dir})`);
    if (WITH_DISTRIBUTION) {
      const theirs = await ServerHandle.distribution({ logLevel: LOG_LEVEL });
      targets.push(newTarget('theirs', theirs));
      log(`theirs: ${theirs.label} at ${theirs.url} (pid ${theirs.pid}, storage ${theirs.dir})`);
    }
    for (const t of targets) {
      t.singlePost = await supportsSinglePost(t.client, 'bench/probe');
      log(`${t.side}: monolithic push uses ${t.singlePost ? 'one POST ?digest= with the body' : 'POST, then PUT ?digest= with the body (POST ?digest= answered 202)'}`);
    }

    // Phase 1: rounds of the throughput and latency scenarios, each interleaved ours, theirs.
    // Phase 2: the memory scenarios, each on freshly restarted processes.
    const plan: { scenario: Scenario; round: number }[] = [];
    const perRound = selected.filter((s) => !s.freshProcess);
    for (let round = 0; round < ROUNDS; round++) for (const scenario of perRound) plan.push({ scenario, round });
    for (const scenario of selected.filter((s) => s.freshProcess)) {
      for (let round = 0; round < (scenario.once ? 1 : ROUNDS); round++) plan.push({ scenario, round });
    }
    for (const { scenario, round } of plan) {
      for (const t of targets) {
        const outcome = outcomes.get(scenario.id)!;
        if (outcome.errors[t.side]) continue; // failed before: do not retry every round
        try {
          const s = await measure(t, scenario, round);
          log(`${scenario.id} round ${round + 1} ${t.side}: ${describeRun(scenario, s)}`);
          const total = (outcome.samples[t.side] ??= emptySample());
          accumulate(total, s);
        } catch (error) {
          const message = (error as Error).stack ?? String(error);
          outcome.errors[t.side] = message;
          log(`${scenario.id} round ${round + 1} ${t.side}: FAILED ${message}`);
          // A failed run may leave the registry wedged: restart it for the next scenario.
          await restart(t).catch((e: Error) => log(`${t.side}: restart failed: ${e.message}`));
        }
      }
    }
  } finally {
    for (const t of targets) {
      t.client.close();
      t.raw.closeAll();
      await t.server.dispose().catch((error: Error) => log(`${t.side}: stop failed: ${error.message}`));
    }
  }
  await report(selected, outcomes, targets);
}

// ---------------------------------------------------------------------------------------------- report

interface MetricResult {
  scenario: string;
  metric: string;
  unit: string;
  better: MetricDef['better'];
  ours?: number;
  theirs?: number;
  ratio?: number;
}

interface TargetResult {
  target: string;
  pass: boolean | null;
  ours?: number;
  reference?: number;
  detail: string;
}

function metricValue(results: MetricResult[], scenario: string, metric: string): MetricResult | undefined {
  return results.find((r) => r.scenario === scenario && r.metric === metric);
}

function evaluateTargets(results: MetricResult[], outcomes: Map<string, Outcome>): TargetResult[] {
  const out: TargetResult[] = [];
  const failed = (scenario: string) => outcomes.get(scenario)?.errors.ours;
  const relative = (label: string, scenario: string, metric: string, factor: number, direction: 'atLeast' | 'atMost') => {
    if (!outcomes.has(scenario)) return;
    const r = metricValue(results, scenario, metric);
    const ours = r?.ours;
    const theirs = r?.theirs;
    if (failed(scenario)) {
      out.push({ target: label, pass: false, detail: 'our run failed' });
      return;
    }
    if (ours === undefined || theirs === undefined || Number.isNaN(ours) || Number.isNaN(theirs)) {
      out.push({ target: label, pass: null, ours, reference: theirs, detail: 'no Distribution measurement' });
      return;
    }
    const limit = theirs * factor;
    const pass = direction === 'atLeast' ? ours >= limit : ours <= limit;
    out.push({
      target: label,
      pass,
      ours,
      reference: limit,
      detail: `ours ${formatNumber(ours)} ${r!.unit} ${direction === 'atLeast' ? '>=' : '<='} ${formatNumber(limit)} (${factor === 1 ? '' : `${factor} x `}Distribution ${formatNumber(theirs)}); ratio ${formatNumber(ours / theirs)}`,
    });
  };
  const absolute = (label: string, scenario: string, metric: string, limit: number) => {
    if (!outcomes.has(scenario)) return;
    const ours = metricValue(results, scenario, metric)?.ours;
    if (failed(scenario) || ours === undefined) {
      out.push({ target: label, pass: false, detail: 'our run failed' });
      return;
    }
    out.push({ target: label, pass: ours < limit, ours, reference: limit, detail: `ours ${formatNumber(ours)} MiB < ${limit} MiB` });
  };
  relative('push monolithic throughput >= Distribution', 'push-monolithic', 'throughput', 1, 'atLeast');
  relative('push chunked throughput >= Distribution', 'push-chunked', 'throughput', 1, 'atLeast');
  relative('push streamed throughput >= Distribution', 'push-streamed', 'throughput', 1, 'atLeast');
  relative('blob pull throughput >= Distribution', 'pull', 'throughput', 1, 'atLeast');
  relative('manifest GET requests/s >= Distribution', 'manifest-get', 'requests/s', 1, 'atLeast');
  relative('manifest HEAD requests/s >= Distribution', 'manifest-head', 'requests/s', 1, 'atLeast');
  relative('pull storm image pulls/s >= Distribution', 'pull-storm', 'image pulls/s', 1, 'atLeast');
  relative('pull storm MiB/s >= Distribution', 'pull-storm', 'throughput', 1, 'atLeast');
  relative('CPU per manifest GET <= half of Distribution', 'manifest-get', 'server CPU per request', 0.5, 'atMost');
  relative('CPU per GiB pushed (monolithic) <= half of Distribution', 'push-monolithic', 'server CPU per GiB pushed', 0.5, 'atMost');
  relative('CPU per GiB pushed (chunked) <= half of Distribution', 'push-chunked', 'server CPU per GiB pushed', 0.5, 'atMost');
  relative('CPU per GiB pushed (streamed) <= half of Distribution', 'push-streamed', 'server CPU per GiB pushed', 0.5, 'atMost');
  absolute('peak RSS < 150 MiB, 32 concurrent 8 MiB downloads', 'rss-download', peakRssMetric.name, 150);
  absolute(`peak RSS < 250 MiB, 16 clients pushing ${P.rssPush.blobSize / MiB} MiB each`, 'rss-push', peakRssMetric.name, 250);
  return out;
}

async function report(selected: Scenario[], outcomes: Map<string, Outcome>, targets: Target[]): Promise<void> {
  const results: MetricResult[] = [];
  const rows: string[][] = [];
  for (const scenario of selected) {
    const outcome = outcomes.get(scenario.id)!;
    rows.push([`${scenario.id}: ${scenario.title}`]);
    for (const m of scenario.metrics) {
      const value = (side: Side) => {
        const s = outcome.samples[side];
        return s && !outcome.errors[side] ? m.value(s) : undefined;
      };
      const ours = value('ours');
      const theirs = value('theirs');
      const ratio = ours !== undefined && theirs !== undefined && theirs !== 0 ? ours / theirs : undefined;
      results.push({ scenario: scenario.id, metric: m.name, unit: m.unit, better: m.better, ours, theirs, ratio });
      const mark = ratio === undefined || m.better === 'none' ? '' : (m.better === 'higher' ? ratio >= 1 : ratio <= 1) ? ' +' : ' -';
      rows.push([
        `  ${m.name}`,
        m.unit,
        outcome.errors.ours ? 'FAILED' : formatNumber(ours),
        outcome.errors.theirs ? 'FAILED' : formatNumber(theirs),
        ratio === undefined ? 'n/a' : `${formatNumber(ratio)}${mark}`,
      ]);
    }
  }
  console.log('\n' + table(['scenario / metric', 'unit', 'ours', 'Distribution', 'ours/theirs'], rows));
  console.log('  (+ ours better or equal, - ours worse)');

  const theirs = (scenario: string, metric: string) => metricValue(results, scenario, metric)?.theirs;
  console.log('\nDistribution measured here vs the issue\'s numbers for Distribution 2.8.2:');
  console.log(`  monolithic push ${formatNumber(theirs('push-monolithic', 'throughput'))} MiB/s (issue ~${ISSUE_REFERENCE.monolithicMiBps}),` +
    ` CPU per GiB pushed ${formatNumber(theirs('push-monolithic', 'server CPU per GiB pushed'))} / ${formatNumber(theirs('push-streamed', 'server CPU per GiB pushed'))} streamed (issue ${ISSUE_REFERENCE.cpuSecondsPerGiBPushed}),` +
    ` CPU per manifest GET ${formatNumber(theirs('manifest-get', 'server CPU per request'))} ms (issue ${ISSUE_REFERENCE.cpuMsPerManifestGet}),` +
    ` peak RSS with 32 downloads ${formatNumber(theirs('rss-download', peakRssMetric.name))} MiB (issue ${ISSUE_REFERENCE.peakRssDownloadsMiB})`);

  const noisyRuns = [...outcomes.entries()].flatMap(([id, o]) =>
    Object.entries(o.samples)
      .filter(([, s]) => noisy(s))
      .map(([side, s]) => `${id}/${side} (${((100 * s.otherCpu) / (s.wall * availableParallelism())).toFixed(0)}% of the machine)`),
  );
  if (noisyRuns.length) {
    console.log(`\nWARNING: other workloads (or kernel writeback threads) used CPU during: ${noisyRuns.join(', ')}. Numbers are less reliable; run again on a quiet machine.`);
  }

  const targetResults = evaluateTargets(results, outcomes);
  console.log('\nTargets:');
  for (const t of targetResults) console.log(`  ${t.pass === null ? 'N/A ' : t.pass ? 'PASS' : 'FAIL'}  ${t.target}: ${t.detail}`);
  const passed = targetResults.filter((t) => t.pass === true).length;
  const failed = targetResults.filter((t) => t.pass === false).length;
  console.log(`  ${passed} passed, ${failed} failed${targetResults.length - passed - failed ? `, ${targetResults.length - passed - failed} not measurable` : ''}`);

  const errors = [...outcomes.entries()].flatMap(([id, o]) => Object.entries(o.errors).map(([side, message]) => ({ scenario: id, side, message })));
  if (errors.length) {
    console.log('\nFailures:');
    for (const e of errors) console.log(`  ${e.scenario} (${e.side}): ${e.message.split('\n').slice(0, 4).join('\n    ')}`);
  }

  const details: Record<string, unknown> = {};
  for (const [id, outcome] of outcomes) {
    details[id] = Object.fromEntries(
      Object.entries(outcome.samples).map(([side, s]) => [
        side,
        {
          runs: s.runs,
          wallSeconds: s.wall,
          serverCpuSeconds: s.cpu,
          serverCpuUser: s.cpuUser,
          serverCpuSystem: s.cpuSystem,
          clientCpuSeconds: s.clientCpu,
          otherCpuSeconds: s.otherCpu,
          bytes: s.bytes,
          requests: s.requests,
          operations: s.ops,
          errors: s.errors,
          latencyMs: Object.fromEntries(Object.entries(s.lat).map(([name, l]) => [name, l.summary()])),
          rssBeforeBytes: s.rssBase,
          rssPeakBytes: s.rssPeak,
          rssAtPeakMiB: Object.fromEntries(Object.entries(s.rssAtPeak).map(([pid, bytes]) => [pid, Math.round((bytes / MiB) * 10) / 10])),
          vmHwmSumBytes: s.hwmSum,
          vmHwmResetWorked: s.hwmReset,
          rssSamples: s.rssSamples,
          rssMaxSampleGapMs: s.rssMaxGapMs,
          maxProcesses: s.processes,
          pids: s.pids,
        },
      ]),
    );
  }
  const summary = {
    date: new Date().toISOString(),
    machine: { cpus: availableParallelism(), memoryBytes: totalmem(), node: process.version, kernel: release() },
    settings: { scale: SCALE, rounds: ROUNDS, parameters: P, oursWorkers: OURS_WORKERS, oursMode: OURS_MODE, oursNodeArgs: process.env.BENCH_OURS_NODE_ARGS, logLevel: LOG_LEVEL },
    servers: Object.fromEntries(targets.map((t) => [t.side, { label: t.server.label, monolithicSinglePost: t.singlePost }])),
    issueReferenceForDistribution: ISSUE_REFERENCE,
    metrics: results,
    targets: targetResults,
    details,
    failures: errors,
    totalSeconds: (performance.now() - START) / 1000,
  };
  await mkdir(dirname(RESULTS), { recursive: true });
  await writeFile(RESULTS, JSON.stringify(summary, null, 2));
  const { targets: _t, details: _d, ...printed } = summary;
  console.log('\nJSON summary (targets and per-run details are in the file):');
  console.log(compactJson({ ...printed, targets: targetResults.map((t) => ({ target: t.target, pass: t.pass })) }));
  console.log(`\nResults written to ${RESULTS} (${summary.totalSeconds.toFixed(0)} s in total)`);
}

/** JSON with one line per top-level key and per array element: readable in a terminal, parseable as is. */
function compactJson(value: Record<string, unknown>): string {
  const entries = Object.entries(value).map(([key, v]) => {
    const body = Array.isArray(v) ? `[\n${v.map((item) => `    ${JSON.stringify(item)}`).join(',\n')}\n  ]` : JSON.stringify(v);
    return `  ${JSON.stringify(key)}: ${body}`;
  });
  return `{\n${entries.join(',\n')}\n}`;
}

const STORAGE = process.env.BENCH_STORAGE ?? 'filesystem';
if (STORAGE !== 'filesystem' && STORAGE !== 's3') throw new Error(`BENCH_STORAGE must be filesystem or s3, got ${STORAGE}`);
(STORAGE === 's3' ? import('./s3.js').then((s3) => s3.runS3Bench()) : main()).catch((error) => {
  console.error(error);
  process.exit(1);
});
