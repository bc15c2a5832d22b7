// `npm run bench:gc` (issue 8): online garbage collection of a store with 10,000 blobs and 1,000 manifests
// (20 repositories of 50 images of a config and 9 layers; half of the images untagged, so half of everything
// is garbage), on the filesystem and on the S3 gateway (Ceph RGW, test/helpers/s3.ts):
// - an admin-API run (`POST /admin/v1/gc`, gracePeriod 0s) inside the serving registry while clients pull:
//   its duration, the registry's peak RSS, and manifest and blob GET latency during the run against the same
//   paced load with no run (target: p99 under 2x idle);
// - a CLI run (`dify-registry gc --grace-period 0s`) in its own process after the garbage is written again:
//   its duration and peak RSS.
// The store is written straight into the storage layout (the benchmark measures collection, not pushes).
//
//   BENCH_GC_BACKENDS=filesystem,s3   backends (default: both, S3 when Ceph is installed)
//   BENCH_SCALE=1                     store size (0.2: 2,000 blobs and 200 manifests)
//   BENCH_GC_LOAD_VUS=4               pulling clients; each waits BENCH_GC_LOAD_PAUSE_MS (5) between requests
//   BENCH_GC_ROUNDS=2                 idle-then-GC rounds (the garbage is written again between rounds)
//   BENCH_GC_NODE_ARGS='--cpu-prof --cpu-prof-dir=D'   node arguments of the registry
//   BENCH_GC_CONCURRENCY=N            gc.concurrency of the registry and the CLI run (default: the registry's)
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { StorageDriver } from '../storage-drivers/driver.js';
import { FilesystemDriver } from '../storage-drivers/filesystem.js';
import { sha256 } from './lib/data.js';
import { MANIFEST_ACCEPT, OCI_CONFIG, OCI_LAYER, OCI_MANIFEST } from './lib/oci.js';
import { rssOfTree, RssSampler } from './lib/procfs.js';
import { RawClient } from './lib/raw-get.js';
import { buildOurs, ServerHandle } from './lib/servers.js';
import { formatNumber, Latencies, table } from './lib/stats.js';
import { s3UnavailableReason, startS3, type RunningS3 } from '../test/helpers/s3.js';
import { run, startDaemon, tempDir } from '../test/helpers/process.js';

const SCALE = Number(process.env.BENCH_SCALE ?? 1);
const REPOS = Math.max(2, Math.round(20 * SCALE));
const IMAGES_PER_REPO = 50;
const LAYERS = 9;
const BLOB_SIZE = 4096;
const VUS = Number(process.env.BENCH_GC_LOAD_VUS ?? 4);
const PAUSE_MS = Number(process.env.BENCH_GC_LOAD_PAUSE_MS ?? 5);
const IDLE_SECONDS = 8;
const ROUNDS = Number(process.env.BENCH_GC_ROUNDS ?? 2);
const CONCURRENCY = process.env.BENCH_GC_CONCURRENCY ? Number(process.env.BENCH_GC_CONCURRENCY) : undefined;
const ROOT = '/docker/registry/v2';
const MiB = 1024 * 1024;

type Backend = 'filesystem' | 's3';

interface Image {
  repo: string;
  tag?: string;
  manifest: string;
  blobs: string[];
}

interface Report {
  durationMs: number;
  freedBytes: number;
  kinds: Record<string, { kept: number; deleted: number; freedBytes: number }>;
}

interface Result {
  backend: Backend;
  blobs: number;
  manifests: number;
  concurrency: number | string;
  admin: { durationMs: number[]; deletedBlobs: number; deletedManifests: number; baseRssMiB: number; peakRssMiB: number };
  cli: { durationMs: number; wallMs: number; peakRssMiB: number; deletedBlobs: number };
  latency: Record<'idle' | 'gc', { manifest: ReturnType<Latencies['summary']>; blob: ReturnType<Latencies['summary']>; requests: number }>;
}

const backends = (process.env.BENCH_GC_BACKENDS ?? (s3UnavailableReason() ? 'filesystem' : 'filesystem,s3')).split(',').map((b) => b.trim()) as Backend[];
const buildDir = await tempDir('bench-gc');
const distMain = await buildOurs(buildDir);
let s3: RunningS3 | undefined;
const results: Result[] = [];
try {
  for (const backend of backends) {
    if (backend === 's3') s3 ??= await startS3();
    results.push(await measure(backend));
  }
} finally {
  await s3?.stop();
  await run('rm', ['-rf', buildDir]);
}
print(results);

async function measure(backend: Backend): Promise<Result> {
  let storageConfig: Record<string, unknown> | undefined;
  let s3Bucket: string | undefined;
  if (backend === 's3') {
    s3Bucket = await s3!.createBucket('bench-gc');
    storageConfig = {
      s3: {
        bucket: s3Bucket, region: s3!.region, regionendpoint: s3!.endpoint, forcepathstyle: true,
        accesskey: s3!.accessKey, secretkey: s3!.secretKey, rootdirectory: '/registry', chunksize: 8 * MiB,
      },
      redirect: { disable: true },
      maintenance: { uploadpurging: { enabled: false } },
    };
  }
  const server = await ServerHandle.ours({
    workers: 1,
    logLevel: 'warn',
    mode: 'dist',
    distMain,
    ...(storageConfig ? { storage: storageConfig } : {}),
    extraConfig: { gc: { untagged: '0s', ...(CONCURRENCY ? { concurrency: CONCURRENCY } : {}) } },
    ...(process.env.BENCH_GC_NODE_ARGS ? { nodeArgs: process.env.BENCH_GC_NODE_ARGS.split(' ') } : {}),
  });
  try {
    const storage = await storageOf(backend, server, s3Bucket);
    console.log(`${backend}: writing ${REPOS * IMAGES_PER_REPO} manifests and ${REPOS * IMAGES_PER_REPO * (LAYERS + 1)} blobs`);
    const images = await populate(storage, 'bench');
    const live = images.filter((image) => image.tag);
    const idle = emptyLoad();
    const during = emptyLoad();
    const durations: number[] = [];
    let report: Report | undefined;
    let baseRss = 0;
    let peakRss = 0;
    for (let round = 1; round <= ROUNDS; round++) {
      if (round > 1) await populate(storage, `round${round}`, true);
      await run('sync', []);
      await new Promise((resolve) => setTimeout(resolve, 1100)); // all of it older than the run's start (S3 keeps seconds)
      console.log(`${backend} round ${round}: idle pulls for ${IDLE_SECONDS} s, then an admin-API run under the same load`);
      addLoad(idle, await pullLoad(server.url, live, () => new Promise((resolve) => setTimeout(resolve, IDLE_SECONDS * 1000))));
      baseRss = Math.max(baseRss, rssOfTree(server.pid).bytes);
      const sampler = await new RssSampler(server.pid, 20).start();
      addLoad(during, await pullLoad(server.url, live, async () => {
        report = await adminRun(server.url);
      }));
      peakRss = Math.max(peakRss, (await sampler.stop()).peakBytes);
      durations.push(report!.durationMs);
    }

    console.log(`${backend}: garbage written again; CLI run`);
    await populate(storage, 'again', true);
    await run('sync', []);
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const cli = await cliRun(join(server.dir, 'config.yml'), backend);
    return {
      backend,
      blobs: REPOS * IMAGES_PER_REPO * (LAYERS + 1),
      manifests: REPOS * IMAGES_PER_REPO,
      concurrency: CONCURRENCY ?? 'default (2)',
      admin: {
        durationMs: durations,
        deletedBlobs: report!.kinds.blobs!.deleted,
        deletedManifests: report!.kinds.manifests!.deleted,
        baseRssMiB: baseRss / MiB,
        peakRssMiB: peakRss / MiB,
      },
      cli,
      latency: { idle: summarize(idle), gc: summarize(during) },
    };
  } finally {
    await server.dispose();
  }
}

async function storageOf(backend: Backend, server: ServerHandle, bucket?: string): Promise<StorageDriver> {
  if (backend === 'filesystem') return new FilesystemDriver({ rootdirectory: join(server.dir, 'data') });
  const { S3Driver } = await import('../storage-drivers/s3.js');
  return new S3Driver({
    bucket: bucket!, region: s3!.region, regionendpoint: s3!.endpoint, forcepathstyle: true, rootdirectory: '/registry',
    accesskey: s3!.accessKey, secretkey: s3!.secretKey, encrypt: false, chunksize: 8 * MiB, checksummode: 'WHEN_REQUIRED',
    uploadconcurrency: 1, redirect: { enabled: false, expirySeconds: 60 },
  });
}

/** Writes the store: per repository, images of a config and LAYERS layers, every other one tagged. */
async function populate(storage: StorageDriver, prefix: string, garbageOnly = false): Promise<Image[]> {
  const images: Image[] = [];
  const writes: Array<() => Promise<void>> = [];
  const put = (path: string, data: Buffer | string) => writes.push(() => storage.putContent(path, data));
  const blobPath = (digest: string) => `${ROOT}/blobs/sha256/${digest.slice(7, 9)}/${digest.slice(7)}/data`;
  for (let r = 0; r < REPOS; r++) {
    const repo = `gc/r${String(r).padStart(2, '0')}`;
    const base = `${ROOT}/repositories/${repo}`;
    for (let i = garbageOnly ? 1 : 0; i < IMAGES_PER_REPO; i += garbageOnly ? 2 : 1) {
      const tagged = !garbageOnly && i % 2 === 0;
      const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', id: `${prefix}-${r}-${i}` }));
      const layers = Array.from({ length: LAYERS }, () => randomBytes(BLOB_SIZE));
      const descriptor = (bytes: Buffer, mediaType: string) => ({ mediaType, digest: sha256(bytes), size: bytes.length });
      const manifest = Buffer.from(JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        config: descriptor(config, OCI_CONFIG),
        layers: layers.map((layer) => descriptor(layer, OCI_LAYER)),
      }));
      const digest = sha256(manifest);
      for (const bytes of [config, ...layers]) {
        put(blobPath(sha256(bytes)), bytes);
        put(`${base}/_layers/sha256/${sha256(bytes).slice(7)}/link`, sha256(bytes));
      }
      put(blobPath(digest), manifest);
      put(`${base}/_manifests/revisions/sha256/${digest.slice(7)}/link`, digest);
      const tag = tagged ? `${prefix}-${i}` : undefined;
      if (tag) put(`${base}/_manifests/tags/${tag}/current/link`, digest);
      images.push({ repo, tag, manifest: digest, blobs: [config, ...layers].map((b) => sha256(b)) });
    }
  }
  let next = 0;
  await Promise.all(Array.from({ length: 32 }, async () => {
    while (next < writes.length) await writes[next++]!();
  }));
  return images;
}

interface Load {
  manifest: Latencies;
  blob: Latencies;
  requests: number;
}

function emptyLoad(): Load {
  return { manifest: new Latencies(), blob: new Latencies(), requests: 0 };
}

function addLoad(into: Load, from: Load): void {
  into.manifest.merge(from.manifest);
  into.blob.merge(from.blob);
  into.requests += from.requests;
}

function summarize(load: Load): Result['latency']['idle'] {
  return { manifest: load.manifest.summary(), blob: load.blob.summary(), requests: load.requests };
}

/** Paced pulls (manifest by tag, then one of its blobs) from VUS clients while `during` runs. */
async function pullLoad(url: string, images: Image[], during: () => Promise<void>): Promise<Load> {
  const manifest = new Latencies();
  const blob = new Latencies();
  const raw = new RawClient(url);
  let stop = false;
  let requests = 0;
  const vu = async () => {
    const connection = raw.connection();
    while (!stop) {
      const image = images[Math.floor(Math.random() * images.length)]!;
      let t = performance.now();
      const m = await connection.request('GET', `/v2/${image.repo}/manifests/${image.tag}`, { Accept: MANIFEST_ACCEPT });
      manifest.add(performance.now() - t);
      if (m.status !== 200) throw new Error(`manifest ${image.repo}:${image.tag}: ${m.status}`);
      await new Promise((resolve) => setTimeout(resolve, PAUSE_MS));
      const digest = image.blobs[Math.floor(Math.random() * image.blobs.length)]!;
      t = performance.now();
      const b = await connection.request('GET', `/v2/${image.repo}/blobs/${digest}`);
      blob.add(performance.now() - t);
      if (b.status !== 200) throw new Error(`blob ${image.repo}@${digest}: ${b.status}`);
      requests += 2;
      await new Promise((resolve) => setTimeout(resolve, PAUSE_MS));
    }
  };
  const clients = Array.from({ length: VUS }, vu);
  try {
    await during();
  } finally {
    stop = true;
    await Promise.all(clients);
    raw.closeAll();
  }
  return { manifest, blob, requests };
}

async function adminRun(url: string): Promise<Report> {
  const submitted = await fetch(`${url}/admin/v1/gc`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ gracePeriod: '0s' }) });
  if (submitted.status !== 202) throw new Error(`POST /admin/v1/gc: ${submitted.status} ${await submitted.text()}`);
  const { id } = (await submitted.json()) as { id: string };
  for (;;) {
    const job = (await (await fetch(`${url}/admin/v1/jobs/${id}`)).json()) as { state: string; result: Report | null; error: unknown };
    if (job.state === 'succeeded') return job.result!;
    if (['failed', 'cancelled'].includes(job.state)) throw new Error(`gc job ${job.state}: ${JSON.stringify(job.error)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function cliRun(configFile: string, backend: Backend): Promise<Result['cli']> {
  const dir = await tempDir('bench-gc-cli');
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const key of Object.keys(env)) if (key.startsWith('REGISTRY_') || (backend === 's3' && key.startsWith('AWS_'))) delete env[key];
  const started = performance.now();
  const daemon = await startDaemon(process.execPath, [distMain, 'gc', '--config', configFile, '--grace-period', '0s'], { logFile: join(dir, 'out.log'), env });
  const sampler = await new RssSampler(daemon.pid, 20).start();
  const code = await daemon.exited;
  const wallMs = performance.now() - started;
  const peak = await sampler.stop();
  const output = await import('node:fs/promises').then((fs) => fs.readFile(join(dir, 'out.log'), 'utf8'));
  await run('rm', ['-rf', dir]);
  if (code !== 0) throw new Error(`dify-registry gc exited ${code}:\n${output.slice(-2000)}`);
  const report = JSON.parse(output.slice(output.indexOf('{\n'))) as Report;
  return { durationMs: report.durationMs, wallMs, peakRssMiB: peak.peakBytes / MiB, deletedBlobs: report.kinds.blobs!.deleted };
}

function print(all: Result[]): void {
  const rows: string[][] = [];
  for (const r of all) {
    const ratio = (kind: 'manifest' | 'blob') => r.latency.gc[kind].p99 / r.latency.idle[kind].p99;
    rows.push([`${r.backend}: ${r.blobs} blobs, ${r.manifests} manifests, gc.concurrency ${r.concurrency}`]);
    rows.push(['admin run (under pull load)', r.admin.durationMs.map((ms) => `${formatNumber(ms / 1000)} s`).join(', '), `deleted ${r.admin.deletedBlobs} blobs, ${r.admin.deletedManifests} manifests`, `RSS ${formatNumber(r.admin.baseRssMiB)} -> peak ${formatNumber(r.admin.peakRssMiB)} MiB`]);
    rows.push(['CLI run (own process)', `${formatNumber(r.cli.durationMs / 1000)} s`, `deleted ${r.cli.deletedBlobs} blobs (wall ${formatNumber(r.cli.wallMs / 1000)} s with startup)`, `peak RSS ${formatNumber(r.cli.peakRssMiB)} MiB`]);
    for (const kind of ['manifest', 'blob'] as const) {
      const idle = r.latency.idle[kind];
      const gc = r.latency.gc[kind];
      rows.push([
        `${kind} GET p50/p99 ms`,
        `idle ${formatNumber(idle.p50)}/${formatNumber(idle.p99)}`,
        `during GC ${formatNumber(gc.p50)}/${formatNumber(gc.p99)} (${gc.count} requests)`,
        `p99 ${formatNumber(ratio(kind))}x ${ratio(kind) < 2 ? 'PASS' : 'FAIL'} (target < 2x)`,
      ]);
    }
  }
  console.log(`\n${table(['', 'time', '', ''], rows)}\n`);
  console.log(JSON.stringify(all, null, 2));
}
