// S3 mode of the benchmark (BENCH_STORAGE=s3 npm run bench): our registry on a throw-away Ceph RADOS Gateway
// (test/helpers/s3.ts, memstore OSD: data in RAM) against the same gateway used directly with the AWS SDK,
// interleaved run by run. Measured: blob push (monolithic, chunked, docker-style streamed) and pull throughput
// through the registry vs direct; peak RSS of the registry's process tree while 16 clients push 256 MiB each
// in 8 MiB chunks; tags/list latency for a repository with 10,000 tags. See bench/README.md.
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, release, tmpdir, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  UploadPartCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { startS3, s3UnavailableReason, type RunningS3 } from '../test/helpers/s3.js';
import { run, tempDir } from '../test/helpers/process.js';
import { blobDigest, blobPieces, GiB, MiB, type BlobSpec } from './lib/data.js';
import { Client } from './lib/http.js';
import { RawClient, RawConnection } from './lib/raw-get.js';
import { imageManifest, OCI_MANIFEST, pushBytes, pushChunked, pushMonolithic, pushStreamed, supportsSinglePost } from './lib/oci.js';
import { cpuOfTree, machineBusySeconds, resetPeakRss, rssOfTree, RssSampler, summedPeakRss } from './lib/procfs.js';
import { buildOurs, ServerHandle } from './lib/servers.js';
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
const OURS_MODE = process.env.BENCH_OURS_MODE === 'tsx' ? 'tsx' : 'dist';
const OURS_NODE_ARGS = process.env.BENCH_OURS_NODE_ARGS?.split(/\s+/).filter(Boolean);
const LOG_LEVEL = process.env.BENCH_LOG_LEVEL ?? 'info';
const RESULTS = process.env.BENCH_RESULTS ?? join(tmpdir(), 'dify-registry-bench', 'latest-s3.json');
const KEEP = Boolean(process.env.BENCH_KEEP);
/** Attempts per throughput run: a run during which other workloads took over 15% of the machine is repeated. */
const ATTEMPTS = Math.max(1, Math.round(envNumber('BENCH_S3_ATTEMPTS', 3)));

const scaled = (value: number, min: number) => Math.max(min, Math.round(value * SCALE));

/** The registry's storage.s3 chunksize and the direct baseline's part size. */
const PART = 8 * MiB;

const P = {
  push: { blobSize: 32 * MiB, blobs: scaled(8, 4), concurrency: 4 },
  pull: { blobSize: 64 * MiB, blobs: 4, gets: scaled(16, 4), concurrency: 4 },
  rssPush: { clients: 16, blobSize: Math.max(16, Math.round(256 * SCALE)) * MiB },
  tags: { count: scaled(10_000, 1000), putConcurrency: 16, requests: scaled(200, 50), afterChange: 3 },
  libStorageQueue: 4,
};

const TARGETS = { throughputRatio: 0.8, rssPushMiB: 300, tagsListMs: 100 };

// ---------------------------------------------------------------------------------------------- model

interface Sample {
  wall: number;
  bytes: number;
  requests: number;
  ops: number;
  /** CPU seconds of the registry's process tree (the one serving this variant; idle for direct runs). */
  regCpu: number;
  regUser: number;
  regSys: number;
  /** CPU seconds of the Ceph daemons (monitor, OSD, gateway). */
  cephCpu: number;
  clientCpu: number;
  /** Machine CPU used by none of the above. */
  otherCpu: number;
  regRssBase: number;
  regRssPeak: number;
  regRssAtPeak: Record<number, number>;
  regHwmSum: number;
  regProcesses: number;
  /** Sampled peaks of the Ceph daemons (only where sampled). */
  cephRssPeak: { osd: number; rgw: number };
  lat: Record<string, Latencies>;
  runs: number;
}

function emptySample(): Sample {
  return {
    wall: 0,
    bytes: 0,
    requests: 0,
    ops: 0,
    regCpu: 0,
    regUser: 0,
    regSys: 0,
    cephCpu: 0,
    clientCpu: 0,
    otherCpu: 0,
    regRssBase: 0,
    regRssPeak: 0,
    regRssAtPeak: {},
    regHwmSum: 0,
    regProcesses: 0,
    cephRssPeak: { osd: 0, rgw: 0 },
    lat: {},
    runs: 0,
  };
}

function latencies(s: Sample, name: string): Latencies {
  return (s.lat[name] ??= new Latencies());
}

function accumulate(into: Sample, from: Sample): void {
  into.wall += from.wall;
  into.bytes += from.bytes;
  into.requests += from.requests;
  into.ops += from.ops;
  into.regCpu += from.regCpu;
  into.regUser += from.regUser;
  into.regSys += from.regSys;
  into.cephCpu += from.cephCpu;
  into.clientCpu += from.clientCpu;
  into.otherCpu += from.otherCpu;
  into.regRssBase = Math.max(into.regRssBase, from.regRssBase);
  if (from.regRssPeak > into.regRssPeak) into.regRssAtPeak = from.regRssAtPeak;
  into.regRssPeak = Math.max(into.regRssPeak, from.regRssPeak);
  into.regHwmSum = Math.max(into.regHwmSum, from.regHwmSum);
  into.regProcesses = Math.max(into.regProcesses, from.regProcesses);
  into.cephRssPeak.osd = Math.max(into.cephRssPeak.osd, from.cephRssPeak.osd);
  into.cephRssPeak.rgw = Math.max(into.cephRssPeak.rgw, from.cephRssPeak.rgw);
  for (const [name, values] of Object.entries(from.lat)) latencies(into, name).merge(values);
  into.runs += from.runs;
}

const mibps = (s: Sample) => s.bytes / MiB / s.wall;
const perGiB = (cpu: number, s: Sample) => cpu / (s.bytes / GiB);

/** One registry process (tree) with its clients. */
interface Registry {
  name: string;
  handle: ServerHandle;
  client: Client;
  raw: RawClient;
}

interface Bench {
  s3: RunningS3;
  /** The direct baseline's client (and the bench's own bucket housekeeping). */
  sdk: S3Client;
  registryBucket: string;
  directBucket: string;
  /** storage.redirect.disable: true, blobs stream through the registry. */
  streaming: Registry;
  /** storage.redirect.disable: false, blob GETs answer 307 to a presigned gateway URL. */
  redirecting: Registry;
  singlePost: boolean;
}

type Role = 'registry' | 'direct' | 'info';

interface Variant {
  id: string;
  label: string;
  role: Role;
  /** Whose process tree is accounted as "registry" (idle during direct runs). */
  registry?: 'streaming' | 'redirecting';
  run(b: Bench, round: number, s: Sample): Promise<void>;
  /** After each run, unmeasured: delete what it wrote (the OSD keeps everything in RAM). */
  cleanup?(b: Bench, round: number): Promise<void>;
}

interface ThroughputScenario {
  id: string;
  title: string;
  /** The first `registry` and the first `direct` variant are compared for the target. */
  variants: Variant[];
  target: string;
  setup?(b: Bench): Promise<void>;
  /** Unmeasured work before each round (digests). */
  prepare?(round: number): Promise<void>;
  teardown?(b: Bench): Promise<void>;
}

// ---------------------------------------------------------------------------------------------- helpers

const START = performance.now();

function log(message: string): void {
  const elapsed = ((performance.now() - START) / 1000).toFixed(0).padStart(4);
  console.log(`[${elapsed}s] ${message}`);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

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

async function memAvailable(): Promise<number> {
  const text = await readFile('/proc/meminfo', 'utf8').catch(() => '');
  const kb = /^MemAvailable:\s+(\d+) kB/m.exec(text)?.[1];
  return kb === undefined ? NaN : Number(kb) * 1024;
}

function cephCpu(s3: RunningS3): number {
  return cpuOfTree(s3.pids.mon).seconds + cpuOfTree(s3.pids.osd).seconds + cpuOfTree(s3.pids.rgw).seconds;
}

async function cephRssText(s3: RunningS3): Promise<string> {
  const rss = await s3.rss();
  return `mon ${(rss.mon / MiB).toFixed(0)}, osd ${(rss.osd / MiB).toFixed(0)}, rgw ${(rss.rgw / MiB).toFixed(0)} MiB`;
}

/** Deletes every object under `prefix` (the bench's housekeeping, never measured). */
async function deletePrefix(sdk: S3Client, bucket: string, prefix: string): Promise<number> {
  let token: string | undefined;
  let count = 0;
  do {
    const page = await sdk.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
    const keys = (page.Contents ?? []).map((object) => ({ Key: object.Key! }));
    if (keys.length > 0) await sdk.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys, Quiet: true } }));
    count += keys.length;
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return count;
}

/**
 * Deleted RADOS objects wait for the gateway's garbage collector (30 s at least, then its next pass) and stay in
 * the memstore OSD's RAM until then: collect them now, so memory stays low and no collection runs mid-measurement.
 */
async function collectGarbage(s3: RunningS3): Promise<void> {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith('CEPH_') && !key.startsWith('AWS_')) env[key] = value;
  const result = await run('timeout', ['-k', '5', '60', 'radosgw-admin', '--conf', join(s3.dir, 'ceph.conf'), 'gc', 'process', '--include-all'], { env, allowFailure: true });
  if (result.code !== 0) log(`warning: radosgw-admin gc process exited ${result.code}: ${result.stderr.trim().slice(0, 300)}`);
}

/** The registry's key of a blob's data (rootdirectory /registry, Distribution's layout). */
function registryBlobKey(digest: string): string {
  const hex = digest.slice('sha256:'.length);
  return `registry/docker/registry/v2/blobs/sha256/${hex.slice(0, 2)}/${hex}/data`;
}

async function deleteRegistryBlobs(b: Bench, digests: string[], repo: string): Promise<void> {
  for (let i = 0; i < digests.length; i += 1000) {
    const keys = digests.slice(i, i + 1000).map((d) => ({ Key: registryBlobKey(d) }));
    await b.sdk.send(new DeleteObjectsCommand({ Bucket: b.registryBucket, Delete: { Objects: keys, Quiet: true } }));
  }
  await deletePrefix(b.sdk, b.registryBucket, `registry/docker/registry/v2/repositories/${repo}/`);
}

/** The blob as a Readable of generated pieces (what a client streaming a file hands the SDK). */
function blobStream(blob: BlobSpec): Readable {
  return Readable.from(blobPieces(blob), { objectMode: false, highWaterMark: 4 * MiB });
}

/** Multipart upload with `PART`-sized parts, one part in flight (as the registry with uploadconcurrency 1). */
async function multipartSerial(sdk: S3Client, bucket: string, key: string, blob: BlobSpec): Promise<number> {
  const { UploadId } = await sdk.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }));
  let requests = 1;
  try {
    const parts: { PartNumber: number; ETag: string | undefined }[] = [];
    for (let start = 0, number = 1; start < blob.size; start += PART, number++) {
      const end = Math.min(blob.size, start + PART);
      // The part is gathered into one buffer, as the registry's S3 writer (and lib-storage) do.
      const body = Buffer.concat([...blobPieces(blob, start, end)], end - start);
      const part = await sdk.send(new UploadPartCommand({ Bucket: bucket, Key: key, UploadId, PartNumber: number, Body: body, ContentLength: body.length }));
      parts.push({ PartNumber: number, ETag: part.ETag });
      requests++;
    }
    await sdk.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId, MultipartUpload: { Parts: parts } }));
    return requests + 1;
  } catch (error) {
    await sdk.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId })).catch(() => undefined);
    throw error;
  }
}

/** Reads a response body to its end, counting and dropping it. */
async function drain(body: Readable): Promise<number> {
  let bytes = 0;
  body.on('data', (chunk: Buffer) => {
    bytes += chunk.length;
  });
  await finished(body);
  return bytes;
}

function newRegistry(name: string, handle: ServerHandle): Registry {
  return { name, handle, client: new Client(handle.url, 64), raw: new RawClient(handle.url) };
}

async function restart(r: Registry): Promise<void> {
  r.client.close();
  r.raw.closeAll();
  await r.handle.restart();
  r.client = new Client(r.handle.url, 64);
  r.raw = new RawClient(r.handle.url);
}

// ---------------------------------------------------------------------------------------------- measurement

async function measure(
  b: Bench,
  registry: Registry,
  body: (s: Sample) => Promise<void>,
  options: { sampleCeph?: boolean } = {},
): Promise<Sample> {
  await sleep(200);
  const pid = registry.handle.pid;
  const s = emptySample();
  s.runs = 1;
  s.regRssBase = rssOfTree(pid).bytes;
  resetPeakRss(pid);
  const sampler = await new RssSampler(pid, 50).start();
  const cephSamplers = options.sampleCeph
    ? await Promise.all([new RssSampler(b.s3.pids.osd, 100).start(), new RssSampler(b.s3.pids.rgw, 100).start()])
    : undefined;
  const regBefore = cpuOfTree(pid);
  const cephBefore = cephCpu(b.s3);
  const clientBefore = process.cpuUsage();
  const machineBefore = machineBusySeconds();
  const started = performance.now();
  try {
    await body(s);
  } finally {
    s.wall = (performance.now() - started) / 1000;
    const regAfter = cpuOfTree(pid);
    s.regCpu = regAfter.seconds - regBefore.seconds;
    s.regUser = regAfter.user - regBefore.user;
    s.regSys = regAfter.system - regBefore.system;
    s.cephCpu = cephCpu(b.s3) - cephBefore;
    const client = process.cpuUsage(clientBefore);
    s.clientCpu = (client.user + client.system) / 1e6;
    s.otherCpu = Math.max(0, machineBusySeconds() - machineBefore - s.regCpu - s.cephCpu - s.clientCpu);
    const rss = await sampler.stop();
    s.regRssPeak = rss.peakBytes;
    s.regRssAtPeak = rss.atPeak;
    s.regProcesses = rss.maxProcesses;
    s.regHwmSum = summedPeakRss(pid);
    if (cephSamplers) {
      const [osd, rgw] = await Promise.all(cephSamplers.map((c) => c.stop()));
      s.cephRssPeak = { osd: osd!.peakBytes, rgw: rgw!.peakBytes };
    }
  }
  return s;
}

/** More than 15% of the machine's CPU went to something else (other workloads on this machine, kernel threads). */
function noisy(s: Sample): boolean {
  return s.wall > 0 && s.otherCpu / (s.wall * availableParallelism()) > 0.15;
}

/** Waits (up to `maxMs`) for a moment when the machine is nearly idle: nothing of ours runs between runs. */
async function waitForQuiet(maxMs = 5000): Promise<boolean> {
  const deadline = performance.now() + maxMs;
  while (performance.now() < deadline) {
    const before = machineBusySeconds();
    await sleep(250);
    if ((machineBusySeconds() - before) / (0.25 * availableParallelism()) < 0.1) return true;
  }
  return false;
}

function describe(s: Sample): string {
  const parts = [`${s.wall.toFixed(2)} s`];
  if (s.bytes > 0) parts.push(`${(s.bytes / MiB).toFixed(0)} MiB, ${mibps(s).toFixed(1)} MiB/s`);
  parts.push(`registry CPU ${s.regCpu.toFixed(2)} s (user ${s.regUser.toFixed(2)}, sys ${s.regSys.toFixed(2)}), Ceph CPU ${s.cephCpu.toFixed(2)} s, client CPU ${s.clientCpu.toFixed(2)} s, ` +
    `other CPU ${s.otherCpu.toFixed(2)} s${noisy(s) ? ' (NOISY: other workloads)' : ''}`);
  parts.push(`registry peak RSS ${(s.regRssPeak / MiB).toFixed(0)} MiB (${s.regProcesses} proc)`);
  return parts.join(', ');
}

// ---------------------------------------------------------------------------------------------- throughput scenarios

type PushMode = 'monolithic' | 'chunked' | 'streamed';

function pushBlobs(mode: PushMode, round: number): BlobSpec[] {
  return Array.from({ length: P.push.blobs }, (_, i) => ({ id: `s3-push-${mode}-r${round}-${i}`, size: P.push.blobSize }));
}

function pushScenario(mode: PushMode): ThroughputScenario {
  const repo = `bench/s3-push-${mode}`;
  const registryLabel = {
    monolithic: 'registry: POST ?digest= with the body',
    chunked: `registry: POST, PATCH x ${P.push.blobSize / PART} of ${PART / MiB} MiB (Content-Range), PUT`,
    streamed: 'registry: POST, one streamed PATCH (no length), PUT (docker)',
  }[mode];
  const directLabel = mode === 'monolithic' ? 'direct: PutObject (streamed body with length)' : `direct: multipart, ${PART / MiB} MiB parts, 1 in flight`;
  const variants: Variant[] = [
    {
      id: 'registry',
      label: registryLabel,
      role: 'registry',
      registry: 'streaming',
      async run(b, round, s) {
        const client = b.streaming.client;
        await pool(pushBlobs(mode, round), P.push.concurrency, async (blob) => {
          if (mode === 'monolithic') await pushMonolithic(client, repo, blob, b.singlePost);
          else if (mode === 'chunked') await pushChunked(client, repo, blob, PART);
          else await pushStreamed(client, repo, blob, blobDigest(blob));
          s.bytes += blob.size;
          s.ops++;
        });
        s.requests = s.ops * (mode === 'monolithic' ? (b.singlePost ? 1 : 2) : mode === 'chunked' ? 2 + Math.ceil(P.push.blobSize / PART) : 3);
      },
      async cleanup(b, round) {
        await deleteRegistryBlobs(b, pushBlobs(mode, round).map(blobDigest), repo);
      },
    },
    {
      id: 'direct',
      label: directLabel,
      role: 'direct',
      async run(b, round, s) {
        await pool(pushBlobs(mode, round), P.push.concurrency, async (blob) => {
          const key = `direct/${mode}/${blob.id}`;
          if (mode === 'monolithic') {
            await b.sdk.send(new PutObjectCommand({ Bucket: b.directBucket, Key: key, Body: blobStream(blob), ContentLength: blob.size }));
            s.requests++;
          } else {
            s.requests += await multipartSerial(b.sdk, b.directBucket, key, blob);
          }
          s.bytes += blob.size;
          s.ops++;
        });
      },
      async cleanup(b) {
        await deletePrefix(b.sdk, b.directBucket, `direct/${mode}/`);
      },
    },
  ];
  if (mode === 'streamed') {
    variants.push({
      id: 'lib-storage',
      label: `info: lib-storage Upload, ${PART / MiB} MiB parts, queueSize ${P.libStorageQueue}`,
      role: 'info',
      async run(b, round, s) {
        await pool(pushBlobs(mode, round), P.push.concurrency, async (blob) => {
          const upload = new Upload({
            client: b.sdk,
            params: { Bucket: b.directBucket, Key: `lib-storage/${blob.id}`, Body: blobStream(blob) },
            partSize: PART,
            queueSize: P.libStorageQueue,
            leavePartsOnError: false,
          });
          await upload.done();
          s.bytes += blob.size;
          s.ops++;
        });
        s.requests = s.ops * (2 + Math.ceil(P.push.blobSize / PART));
      },
      async cleanup(b) {
        await deletePrefix(b.sdk, b.directBucket, 'lib-storage/');
      },
    });
  }
  return {
    id: `push-${mode}`,
    title: `blob push, ${mode} (${P.push.blobs} x ${P.push.blobSize / MiB} MiB, ${P.push.concurrency} at a time)`,
    target: `push ${mode} throughput >= ${TARGETS.throughputRatio * 100}% of direct`,
    variants,
    async prepare(round) {
      for (const blob of pushBlobs(mode, round)) blobDigest(blob); // hashed once, outside the measurement
    },
  };
}

const pullBlobs: BlobSpec[] = Array.from({ length: P.pull.blobs }, (_, i) => ({ id: `s3-pull-${i}`, size: P.pull.blobSize }));
const PULL_REPO = 'bench/s3-pull';
/** Presigned GET URLs of the direct copies (for the raw-client reference run). */
const presigned = new Map<string, string>();

function pullGets(): BlobSpec[] {
  return Array.from({ length: P.pull.gets }, (_, i) => pullBlobs[i % pullBlobs.length]!);
}

/** GETs through `registry` with the bench's raw client; a 307 is followed to the gateway on a second connection. */
async function pullThrough(b: Bench, registry: Registry, s: Sample, expectRedirect: boolean): Promise<void> {
  const connections = Array.from({ length: P.pull.concurrency }, () => registry.raw.connection());
  const gateway = new URL(b.s3.endpoint);
  const gatewayConnections = Array.from({ length: P.pull.concurrency }, () => new RawConnection(gateway.hostname, Number(gateway.port)));
  try {
    await pool(pullGets(), P.pull.concurrency, async (blob, _i, worker) => {
      const response = await connections[worker]!.request('GET', `/v2/${PULL_REPO}/blobs/${blobDigest(blob)}`);
      s.requests++;
      if (expectRedirect) {
        const location = response.headers.get('location');
        if (response.status !== 307 || !location) throw new Error(`GET blob: expected 307 with a Location, got ${response.status}`);
        const url = new URL(location);
        const followed = await gatewayConnections[worker]!.request('GET', url.pathname + url.search);
        s.requests++;
        if (followed.status !== 200 || followed.bytes !== blob.size) throw new Error(`GET presigned URL: ${followed.status}, ${followed.bytes} bytes`);
        s.bytes += followed.bytes;
      } else {
        if (response.status !== 200 || response.bytes !== blob.size) throw new Error(`GET blob: ${response.status}, ${response.bytes} bytes`);
        s.bytes += response.bytes;
      }
    });
  } finally {
    for (const c of [...connections, ...gatewayConnections]) c.close();
  }
}

const pullScenario: ThroughputScenario = {
  id: 'pull',
  title: `blob pull (${P.pull.gets} x ${P.pull.blobSize / MiB} MiB GETs of ${P.pull.blobs} blobs, ${P.pull.concurrency} at a time)`,
  target: `pull throughput (redirect disabled) >= ${TARGETS.throughputRatio * 100}% of direct GetObject`,
  async setup(b) {
    await pool(pullBlobs, 4, async (blob) => {
      await pushStreamed(b.streaming.client, PULL_REPO, blob, blobDigest(blob));
      const key = `pull/${blob.id}`;
      await b.sdk.send(new PutObjectCommand({ Bucket: b.directBucket, Key: key, Body: blobStream(blob), ContentLength: blob.size }));
      presigned.set(blob.id, await getSignedUrl(b.sdk, new GetObjectCommand({ Bucket: b.directBucket, Key: key }), { expiresIn: 3600 }));
    });
  },
  async teardown(b) {
    await deleteRegistryBlobs(b, pullBlobs.map(blobDigest), PULL_REPO);
    await deletePrefix(b.sdk, b.directBucket, 'pull/');
  },
  variants: [
    {
      id: 'registry',
      label: 'registry: GET, streamed through (redirect disabled)',
      role: 'registry',
      registry: 'streaming',
      run: (b, _round, s) => pullThrough(b, b.streaming, s, false),
    },
    {
      id: 'direct',
      label: 'direct: GetObject (AWS SDK)',
      role: 'direct',
      async run(b, _round, s) {
        await pool(pullGets(), P.pull.concurrency, async (blob) => {
          const response = await b.sdk.send(new GetObjectCommand({ Bucket: b.directBucket, Key: `pull/${blob.id}` }));
          const bytes = await drain(response.Body as Readable);
          if (bytes !== blob.size) throw new Error(`GetObject: ${bytes} bytes`);
          s.bytes += bytes;
          s.requests++;
        });
      },
    },
    {
      id: 'registry-redirect',
      label: 'info: registry GET -> 307, client follows to the presigned URL',
      role: 'info',
      registry: 'redirecting',
      run: (b, _round, s) => pullThrough(b, b.redirecting, s, true),
    },
    {
      id: 'direct-raw',
      label: "info: direct GET of a presigned URL with the bench's raw client",
      role: 'info',
      async run(b, _round, s) {
        const gateway = new URL(b.s3.endpoint);
        const connections = Array.from({ length: P.pull.concurrency }, () => new RawConnection(gateway.hostname, Number(gateway.port)));
        try {
          await pool(pullGets(), P.pull.concurrency, async (blob, _i, worker) => {
            const url = new URL(presigned.get(blob.id)!);
            const response = await connections[worker]!.request('GET', url.pathname + url.search);
            if (response.status !== 200 || response.bytes !== blob.size) throw new Error(`GET presigned URL: ${response.status}, ${response.bytes} bytes`);
            s.bytes += response.bytes;
            s.requests++;
          });
        } finally {
          for (const c of connections) c.close();
        }
      },
    },
  ],
};

const throughputScenarios: ThroughputScenario[] = [pushScenario('monolithic'), pushScenario('chunked'), pushScenario('streamed'), pullScenario];

// ---------------------------------------------------------------------------------------------- memory scenario

const RSS_REPO = 'bench/s3-rss-push';

async function rssPush(b: Bench): Promise<Sample> {
  await restart(b.streaming); // a fresh process, as in the filesystem mode's memory scenarios
  await b.streaming.client.expect(200, 'GET', '/v2/');
  const blobs = Array.from({ length: P.rssPush.clients }, (_, i): BlobSpec => ({ id: `s3-rss-push-${i}`, size: P.rssPush.blobSize }));
  const digests: string[] = [];
  await waitForQuiet();
  try {
    return await measure(
      b,
      b.streaming,
      async (s) => {
        await Promise.all(
          blobs.map(async (blob) => {
            // Hashed while sent: no 4 GiB of digests to compute first.
            digests.push(await pushChunked(b.streaming.client, RSS_REPO, blob, PART, true));
            s.bytes += blob.size;
            s.requests += 2 + Math.ceil(blob.size / PART);
            s.ops++;
          }),
        );
      },
      { sampleCeph: true },
    );
  } finally {
    await deleteRegistryBlobs(b, digests, RSS_REPO).catch((error: Error) => log(`rss-push cleanup failed: ${error.message}`));
    await collectGarbage(b.s3);
    // Uploads that failed half-way leave multipart parts and state under _uploads: deleted with the repository above.
  }
}

// ---------------------------------------------------------------------------------------------- tags scenario

const TAGS_REPO = 'bench/s3-tags';

interface TagsResult {
  count: number;
  create: { seconds: number; requestsPerSecond: number; p50: number; p99: number; max: number; errors: number; registryCpu: number; cephCpu: number };
  /** First tags/list on a freshly restarted registry process. */
  firstMs: number;
  firstTags: number;
  /** Sequential calls after the first. */
  subsequent: { count: number; p50: number; p90: number; p99: number; max: number; bytes: number };
  /** A listing right after one more tag was pushed (the cached listing is invalid then). */
  afterChangeMs: number[];
  /** For reference: the same listing directly, ListObjectsV2 with a delimiter over the tags prefix. */
  directListMs: number;
  directListPages: number;
}

function tagName(i: number): string {
  return `t${String(i).padStart(5, '0')}`;
}

async function tagsScenario(b: Bench): Promise<TagsResult> {
  const r = b.streaming;
  const { randomBytes } = await import('node:crypto');
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] }, nonce: randomBytes(8).toString('hex') }));
  const layer = randomBytes(1024);
  const image = imageManifest(
    { digest: await pushBytes(r.client, TAGS_REPO, config), size: config.length },
    [{ digest: await pushBytes(r.client, TAGS_REPO, layer), size: layer.length }],
  );

  // Creating the tags: one small manifest PUT by tag per tag, concurrently, through the registry's HTTP API.
  const tags = Array.from({ length: P.tags.count }, (_, i) => tagName(i));
  const putLat = new Latencies();
  let errors = 0;
  const regBefore = cpuOfTree(r.handle.pid).seconds;
  const cephBefore = cephCpu(b.s3);
  const started = performance.now();
  let lastReport = started;
  let done = 0;
  await pool(tags, P.tags.putConcurrency, async (tag) => {
    const t0 = performance.now();
    for (let attempt = 0; ; attempt++) {
      const response = await r.client.request('PUT', `/v2/${TAGS_REPO}/manifests/${tag}`, {
        headers: { 'Content-Type': OCI_MANIFEST, 'Content-Length': String(image.manifest.length) },
        body: image.manifest,
      });
      if (response.status === 201) break;
      errors++;
      if (attempt >= 2 || errors > 100) throw new Error(`PUT manifest ${tag}: ${response.status}`);
    }
    putLat.add(performance.now() - t0);
    done++;
    if (performance.now() - lastReport > 15_000) {
      lastReport = performance.now();
      log(`tags: ${done} of ${tags.length} created (${(done / ((lastReport - started) / 1000)).toFixed(0)}/s)`);
    }
  });
  const createSeconds = (performance.now() - started) / 1000;
  const putSummary = putLat.summary();
  const create = {
    seconds: createSeconds,
    requestsPerSecond: tags.length / createSeconds,
    p50: putSummary.p50,
    p99: putSummary.p99,
    max: putSummary.max,
    errors,
    registryCpu: cpuOfTree(r.handle.pid).seconds - regBefore,
    cephCpu: cephCpu(b.s3) - cephBefore,
  };
  log(`tags: ${tags.length} tags created in ${createSeconds.toFixed(1)} s (${create.requestsPerSecond.toFixed(0)} PUT/s, p50 ${putSummary.p50.toFixed(1)} ms, p99 ${putSummary.p99.toFixed(1)} ms)`);

  // The reference: the listing the registry has to do, straight from the gateway.
  const tagsPrefix = `registry/docker/registry/v2/repositories/${TAGS_REPO}/_manifests/tags/`;
  const listStarted = performance.now();
  let pages = 0;
  let listed = 0;
  let token: string | undefined;
  do {
    const page = await b.sdk.send(new ListObjectsV2Command({ Bucket: b.registryBucket, Prefix: tagsPrefix, Delimiter: '/', ContinuationToken: token }));
    pages++;
    listed += (page.CommonPrefixes ?? []).length;
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  const directListMs = performance.now() - listStarted;
  if (listed !== tags.length) throw new Error(`direct listing found ${listed} tags, expected ${tags.length}`);

  // First call on a fresh process: nothing cached.
  await restart(r);
  await waitForQuiet();
  const path = `/v2/${TAGS_REPO}/tags/list`;
  const firstStarted = performance.now();
  const first = await r.client.expect(200, 'GET', path);
  const firstMs = performance.now() - firstStarted;
  const firstTags = (JSON.parse(first.body!.toString('utf8')) as { tags: string[] }).tags.length;
  if (firstTags !== tags.length) throw new Error(`tags/list answered ${firstTags} tags, expected ${tags.length}`);

  const lat = new Latencies();
  let bytes = 0;
  for (let i = 0; i < P.tags.requests; i++) {
    const t0 = performance.now();
    const response = await r.client.request('GET', path);
    lat.add(performance.now() - t0);
    if (response.status !== 200) throw new Error(`tags/list: ${response.status}`);
    bytes += response.bytes;
  }
  const summary = lat.summary();

  const afterChangeMs: number[] = [];
  for (let i = 0; i < P.tags.afterChange; i++) {
    const tag = tagName(tags.length + i);
    await r.client.expect(201, 'PUT', `/v2/${TAGS_REPO}/manifests/${tag}`, {
      headers: { 'Content-Type': OCI_MANIFEST, 'Content-Length': String(image.manifest.length) },
      body: image.manifest,
    });
    const t0 = performance.now();
    await r.client.expect(200, 'GET', path);
    afterChangeMs.push(performance.now() - t0);
  }
  return {
    count: tags.length,
    create,
    firstMs,
    firstTags,
    subsequent: { count: summary.count, p50: summary.p50, p90: summary.p90, p99: summary.p99, max: summary.max, bytes: bytes / Math.max(1, summary.count) },
    afterChangeMs,
    directListMs,
    directListPages: pages,
  };
}

// ---------------------------------------------------------------------------------------------- main

interface Outcome {
  samples: Record<string, Sample>;
  errors: Record<string, string>;
  /** Runs measured again because other workloads were busy during them. */
  discarded: number;
}

export async function runS3Bench(): Promise<void> {
  const reason = s3UnavailableReason();
  if (reason) throw new Error(`BENCH_STORAGE=s3: ${reason}`);
  const available = await memAvailable();
  log(`S3 mode: scale ${SCALE}, rounds ${ROUNDS}, ${availableParallelism()} CPUs, node ${process.version}, Linux ${release()}, ` +
    `memory available ${(available / GiB).toFixed(1)} of ${(totalmem() / GiB).toFixed(1)} GiB`);
  // The memstore OSD's RSS is about twice the data it holds; the memory scenario holds all of its data at the end.
  const needed = (2 * P.rssPush.clients * P.rssPush.blobSize + 2 * GiB) / GiB;
  if (available / GiB < needed + 2) {
    throw new Error(`the OSD keeps data in RAM: about ${needed.toFixed(1)} GiB are needed at the peak, only ${(available / GiB).toFixed(1)} GiB available`);
  }
  const wanted = (id: string) => !ONLY || ONLY.has(id);
  const selected = throughputScenarios.filter((s) => wanted(s.id));
  const runRss = wanted('rss-push');
  const runTags = wanted('tags-list');
  if (selected.length === 0 && !runRss && !runTags) {
    throw new Error(`BENCH_ONLY matches no S3 scenario; ids: ${[...throughputScenarios.map((s) => s.id), 'rss-push', 'tags-list'].join(', ')}`);
  }

  const s3 = await startS3();
  log(`Ceph RGW at ${s3.endpoint} in ${(s3.startupMs / 1000).toFixed(1)} s (pids mon ${s3.pids.mon}, osd ${s3.pids.osd}, rgw ${s3.pids.rgw}; ${await cephRssText(s3)})`);
  const buildDir = await tempDir('bench-s3-build');
  const registries: Registry[] = [];
  const outcomes = new Map<string, Outcome>(selected.map((s) => [s.id, { samples: {}, errors: {}, discarded: 0 }]));
  let rss: { sample?: Sample; error?: string } | undefined;
  let tags: { result?: TagsResult; error?: string } | undefined;
  let cephAtEnd = '';
  try {
    const sdk = s3.client();
    const registryBucket = await s3.createBucket('bench-registry');
    const directBucket = await s3.createBucket('bench-direct');
    const distMain = OURS_MODE === 'dist' ? await buildOurs(buildDir) : undefined;
    const storage = (disableRedirect: boolean) => ({
      s3: {
        bucket: registryBucket,
        region: s3.region,
        regionendpoint: s3.endpoint,
        forcepathstyle: true,
        accesskey: s3.accessKey,
        secretkey: s3.secretKey,
        rootdirectory: '/registry',
        chunksize: PART,
        checksummode: 'WHEN_REQUIRED',
        uploadconcurrency: 1,
      },
      redirect: { disable: disableRedirect },
      // The first purge walks every repository 1-2 minutes after start (then daily): not what is measured here.
      maintenance: { uploadpurging: { enabled: false } },
    });
    const start = async (name: string, disableRedirect: boolean) => {
      const handle = await ServerHandle.ours({
        workers: 1,
        logLevel: LOG_LEVEL,
        mode: OURS_MODE,
        nodeArgs: OURS_NODE_ARGS,
        storage: storage(disableRedirect),
        distMain,
        labelSuffix: `S3, redirect ${disableRedirect ? 'disabled' : 'enabled'}`,
      });
      const registry = newRegistry(name, handle);
      registries.push(registry);
      log(`${name}: ${handle.label} at ${handle.url} (pid ${handle.pid}, logs in ${handle.dir})`);
      return registry;
    };
    const streaming = await start('registry', true);
    const redirecting = await start('registry (redirect)', false);
    const b: Bench = { s3, sdk, registryBucket, directBucket, streaming, redirecting, singlePost: await supportsSinglePost(streaming.client, 'bench/probe') };
    log(`registry: monolithic push uses ${b.singlePost ? 'one POST ?digest= with the body' : 'POST, then PUT ?digest= with the body'}`);

    // Phase 1: rounds of the throughput scenarios, registry and direct interleaved (order alternating by round).
    for (const scenario of selected) {
      try {
        await scenario.setup?.(b);
      } catch (error) {
        outcomes.get(scenario.id)!.errors.setup = (error as Error).stack ?? String(error);
        log(`${scenario.id}: setup FAILED ${(error as Error).message}`);
      }
    }
    for (let round = 0; round < ROUNDS; round++) {
      for (const scenario of selected) {
        const outcome = outcomes.get(scenario.id)!;
        if (outcome.errors.setup) continue;
        await scenario.prepare?.(round);
        const compared = scenario.variants.filter((v) => v.role !== 'info');
        const order = [...(round % 2 === 0 ? compared : [...compared].reverse()), ...scenario.variants.filter((v) => v.role === 'info')];
        for (const variant of order) {
          if (outcome.errors[variant.id]) continue;
          const registry = variant.registry === 'redirecting' ? b.redirecting : b.streaming;
          for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
            await waitForQuiet();
            let s: Sample | undefined;
            try {
              s = await measure(b, registry, (sample) => variant.run(b, round, sample));
            } catch (error) {
              outcome.errors[variant.id] = (error as Error).stack ?? String(error);
              log(`${scenario.id} round ${round + 1} ${variant.id}: FAILED ${(error as Error).stack ?? String(error)}`);
              if (variant.registry) await restart(registry).catch((e: Error) => log(`restart failed: ${e.message}`));
            }
            await variant.cleanup?.(b, round).catch((error: Error) => log(`${scenario.id} ${variant.id}: cleanup failed: ${error.message}`));
            if (variant.cleanup) await collectGarbage(s3);
            if (!s) break;
            if (noisy(s) && attempt < ATTEMPTS) {
              outcome.discarded++;
              log(`${scenario.id} round ${round + 1} ${variant.id}: ${describe(s)}; discarded, measuring again`);
              continue;
            }
            log(`${scenario.id} round ${round + 1} ${variant.id}: ${describe(s)}`);
            accumulate((outcome.samples[variant.id] ??= emptySample()), s);
            break;
          }
        }
      }
    }
    for (const scenario of selected) await scenario.teardown?.(b).catch((error: Error) => log(`${scenario.id}: teardown failed: ${error.message}`));
    await collectGarbage(s3);
    if (selected.length > 0) log(`Ceph after the throughput scenarios: ${await cephRssText(s3)}`);

    // Phase 2: tags, then the memory scenario (which writes the most: last, and deleted right after).
    if (runTags) {
      try {
        tags = { result: await tagsScenario(b) };
        const t = tags.result!;
        log(`tags-list: first call ${t.firstMs.toFixed(0)} ms (fresh process), then p50 ${t.subsequent.p50.toFixed(1)} ms, p99 ${t.subsequent.p99.toFixed(1)} ms; ` +
          `after a tag change ${t.afterChangeMs.map((ms) => ms.toFixed(0)).join(', ')} ms; direct listing ${t.directListMs.toFixed(0)} ms in ${t.directListPages} pages`);
      } catch (error) {
        tags = { error: (error as Error).stack ?? String(error) };
        log(`tags-list: FAILED ${tags.error}`);
      }
    }
    if (runRss) {
      try {
        rss = { sample: await rssPush(b) };
        log(`rss-push: ${describe(rss.sample!)}; Ceph peaks osd ${(rss.sample!.cephRssPeak.osd / MiB).toFixed(0)}, rgw ${(rss.sample!.cephRssPeak.rgw / MiB).toFixed(0)} MiB`);
      } catch (error) {
        rss = { error: (error as Error).stack ?? String(error) };
        log(`rss-push: FAILED ${rss.error}`);
      }
    }
    cephAtEnd = await cephRssText(s3);
  } finally {
    for (const r of registries) {
      r.client.close();
      r.raw.closeAll();
      await r.handle.dispose().catch((error: Error) => log(`${r.name}: stop failed: ${error.message}`));
    }
    if (!KEEP) await rm(buildDir, { recursive: true, force: true }).catch(() => undefined);
    await s3.stop().catch((error: Error) => log(`Ceph stop failed: ${error.message}`));
  }
  await report(selected, outcomes, rss, tags, cephAtEnd);
}

// ---------------------------------------------------------------------------------------------- report

interface TargetResult {
  target: string;
  pass: boolean;
  detail: string;
}

async function report(
  selected: ThroughputScenario[],
  outcomes: Map<string, Outcome>,
  rss: { sample?: Sample; error?: string } | undefined,
  tags: { result?: TagsResult; error?: string } | undefined,
  cephAtEnd: string,
): Promise<void> {
  const targets: TargetResult[] = [];
  const rows: string[][] = [];
  const metrics: Record<string, unknown>[] = [];
  for (const scenario of selected) {
    const outcome = outcomes.get(scenario.id)!;
    rows.push([`${scenario.id}: ${scenario.title}`]);
    const direct = scenario.variants.find((v) => v.role === 'direct')!;
    const directSample = outcome.errors[direct.id] ? undefined : outcome.samples[direct.id];
    for (const variant of scenario.variants) {
      const s = outcome.errors[variant.id] || outcome.errors.setup ? undefined : outcome.samples[variant.id];
      const ratio = s && directSample ? mibps(s) / mibps(directSample) : undefined;
      rows.push([
        `  ${variant.label}`,
        s ? formatNumber(mibps(s)) : 'FAILED',
        ratio === undefined ? 'n/a' : formatNumber(ratio),
        s ? formatNumber(perGiB(s.regCpu, s)) : '',
        s ? formatNumber(perGiB(s.cephCpu, s)) : '',
        s ? formatNumber(perGiB(s.clientCpu, s)) : '',
        s ? formatNumber(perGiB(s.otherCpu, s)) : '',
        s ? (s.regRssPeak / MiB).toFixed(0) : '',
      ]);
      metrics.push({
        scenario: scenario.id,
        variant: variant.id,
        label: variant.label,
        role: variant.role,
        runs: s?.runs,
        throughputMiBps: s ? mibps(s) : undefined,
        ratioToDirect: ratio,
        cpuSecondsPerGiB: s ? { registry: perGiB(s.regCpu, s), registryUser: perGiB(s.regUser, s), registrySystem: perGiB(s.regSys, s), ceph: perGiB(s.cephCpu, s), client: perGiB(s.clientCpu, s), other: perGiB(s.otherCpu, s) } : undefined,
        registryPeakRssMiB: s ? s.regRssPeak / MiB : undefined,
        wallSeconds: s?.wall,
        bytes: s?.bytes,
        requests: s?.requests,
        error: outcome.errors[variant.id] ?? outcome.errors.setup,
      });
    }
    const registry = scenario.variants.find((v) => v.role === 'registry')!;
    const registrySample = outcome.errors[registry.id] || outcome.errors.setup ? undefined : outcome.samples[registry.id];
    if (!registrySample || !directSample) {
      targets.push({ target: scenario.target, pass: false, detail: `run failed (${outcome.errors.setup ? 'setup' : outcome.errors[registry.id] ? 'registry' : 'direct'})` });
    } else {
      const ratio = mibps(registrySample) / mibps(directSample);
      targets.push({
        target: scenario.target,
        pass: ratio >= TARGETS.throughputRatio,
        detail: `registry ${formatNumber(mibps(registrySample))} MiB/s vs direct ${formatNumber(mibps(directSample))} MiB/s: ${formatNumber(ratio * 100)}%`,
      });
    }
  }
  if (rows.length > 0) {
    console.log(`\n${table(['scenario / variant', 'MiB/s', 'vs direct', 'reg CPU-s/GiB', 'Ceph CPU-s/GiB', 'client CPU-s/GiB', 'other CPU-s/GiB', 'reg peak RSS MiB'], rows)}`);
    console.log(`  (sums over ${ROUNDS} round(s); CPU in seconds per GiB moved; "reg" = the registry's process tree, idle in direct runs; Ceph = mon + osd + rgw;`);
    console.log('   other = machine CPU used by none of these nor the bench client: other workloads, kernel threads)');
    const noisyRuns = selected.flatMap((scenario) =>
      Object.entries(outcomes.get(scenario.id)!.samples)
        .filter(([, s]) => noisy(s))
        .map(([variant, s]) => `${scenario.id}/${variant} (${((100 * s.otherCpu) / (s.wall * availableParallelism())).toFixed(0)}% of the machine)`),
    );
    if (noisyRuns.length) console.log(`  WARNING: other workloads used CPU during ${noisyRuns.join(', ')}: less reliable, run again on a quiet machine.`);
    const discarded = selected.reduce((sum, scenario) => sum + outcomes.get(scenario.id)!.discarded, 0);
    if (discarded > 0) console.log(`  ${discarded} run(s) measured again because other workloads took over 15% of the machine during them`);
  }

  if (rss) {
    const s = rss.sample;
    const title = `rss-push: ${P.rssPush.clients} clients each pushing ${P.rssPush.blobSize / MiB} MiB in ${PART / MiB} MiB PATCHes (Content-Range), fresh process`;
    const rssRows: string[][] = [[title]];
    if (s) {
      const perProcess = Object.entries(s.regRssAtPeak).map(([pid, bytes]) => `${pid}:${(bytes / MiB).toFixed(0)}`).join(' ');
      rssRows.push(['  registry peak RSS, sum of tree (sampled every 50 ms)', 'MiB', (s.regRssPeak / MiB).toFixed(0)]);
      rssRows.push(['  registry sum of per-process VmHWM', 'MiB', (s.regHwmSum / MiB).toFixed(0)]);
      rssRows.push(['  registry RSS before the run', 'MiB', (s.regRssBase / MiB).toFixed(0)]);
      rssRows.push([`  registry processes (MiB each at peak: ${perProcess})`, '', String(s.regProcesses)]);
      rssRows.push(['  throughput', 'MiB/s', formatNumber(mibps(s))]);
      rssRows.push(['  registry CPU per GiB', 'CPU-s', formatNumber(perGiB(s.regCpu, s))]);
      rssRows.push(['  Ceph CPU per GiB (info)', 'CPU-s', formatNumber(perGiB(s.cephCpu, s))]);
      rssRows.push(['  Ceph OSD peak RSS (info, memstore: holds the data)', 'MiB', (s.cephRssPeak.osd / MiB).toFixed(0)]);
      rssRows.push(['  Ceph gateway peak RSS (info)', 'MiB', (s.cephRssPeak.rgw / MiB).toFixed(0)]);
      targets.push({
        target: `registry peak RSS < ${TARGETS.rssPushMiB} MiB, ${P.rssPush.clients} clients pushing ${P.rssPush.blobSize / MiB} MiB in ${PART / MiB} MiB chunks`,
        pass: s.regRssPeak / MiB < TARGETS.rssPushMiB,
        detail: `peak ${(s.regRssPeak / MiB).toFixed(0)} MiB (VmHWM sum ${(s.regHwmSum / MiB).toFixed(0)} MiB)`,
      });
    } else {
      rssRows.push(['  FAILED', '', '']);
      targets.push({ target: `registry peak RSS < ${TARGETS.rssPushMiB} MiB while pushing`, pass: false, detail: 'run failed' });
    }
    console.log(`\n${table(['memory', 'unit', 'value'], rssRows)}`);
  }

  if (tags) {
    const t = tags.result;
    const tagRows: string[][] = [[`tags-list: a repository with ${P.tags.count} tags on S3`]];
    if (t) {
      tagRows.push([`  creating them: PUT manifest by tag, ${P.tags.putConcurrency} concurrent`, 's', formatNumber(t.create.seconds)]);
      tagRows.push(['    PUT manifest rate', 'req/s', formatNumber(t.create.requestsPerSecond)]);
      tagRows.push(['    PUT manifest latency p50 / p99', 'ms', `${formatNumber(t.create.p50)} / ${formatNumber(t.create.p99)}`]);
      tagRows.push(['    registry / Ceph CPU per PUT', 'CPU-ms', `${formatNumber((t.create.registryCpu * 1000) / t.count)} / ${formatNumber((t.create.cephCpu * 1000) / t.count)}`]);
      tagRows.push(['  first tags/list (fresh process, nothing cached)', 'ms', formatNumber(t.firstMs)]);
      tagRows.push([`  subsequent tags/list p50 (${t.subsequent.count} sequential)`, 'ms', formatNumber(t.subsequent.p50)]);
      tagRows.push(['  subsequent tags/list p90', 'ms', formatNumber(t.subsequent.p90)]);
      tagRows.push(['  subsequent tags/list p99', 'ms', formatNumber(t.subsequent.p99)]);
      tagRows.push(['  response size', 'KiB', formatNumber(t.subsequent.bytes / 1024)]);
      tagRows.push(['  info: tags/list right after one more tag was pushed', 'ms', t.afterChangeMs.map((ms) => formatNumber(ms)).join(', ')]);
      tagRows.push([`  info: direct ListObjectsV2 of the tags prefix with delimiter (${t.directListPages} pages)`, 'ms', formatNumber(t.directListMs)]);
      targets.push({
        target: `tags/list with ${t.count} tags < ${TARGETS.tagsListMs} ms after the first call (p99)`,
        pass: t.subsequent.p99 < TARGETS.tagsListMs,
        detail: `p50 ${formatNumber(t.subsequent.p50)} ms, p99 ${formatNumber(t.subsequent.p99)} ms; first call ${formatNumber(t.firstMs)} ms`,
      });
    } else {
      tagRows.push(['  FAILED', '', '']);
      targets.push({ target: `tags/list with ${P.tags.count} tags < ${TARGETS.tagsListMs} ms after the first call`, pass: false, detail: 'run failed' });
    }
    console.log(`\n${table(['tags', 'unit', 'value'], tagRows)}`);
  }

  if (cephAtEnd) console.log(`\nCeph daemons' RSS at the end (info, not the registry's): ${cephAtEnd}`);

  console.log('\nTargets (S3):');
  for (const t of targets) console.log(`  ${t.pass ? 'PASS' : 'FAIL'}  ${t.target}: ${t.detail}`);
  const passed = targets.filter((t) => t.pass).length;
  console.log(`  ${passed} passed, ${targets.length - passed} failed`);

  const failures = [
    ...[...outcomes.entries()].flatMap(([id, o]) => Object.entries(o.errors).map(([variant, message]) => ({ scenario: id, variant, message }))),
    ...(rss?.error ? [{ scenario: 'rss-push', variant: 'registry', message: rss.error }] : []),
    ...(tags?.error ? [{ scenario: 'tags-list', variant: 'registry', message: tags.error }] : []),
  ];
  if (failures.length) {
    console.log('\nFailures:');
    for (const f of failures) console.log(`  ${f.scenario} (${f.variant}): ${f.message.split('\n').slice(0, 4).join('\n    ')}`);
  }

  const summary = {
    date: new Date().toISOString(),
    storage: 's3',
    machine: { cpus: availableParallelism(), memoryBytes: totalmem(), node: process.version, kernel: release() },
    settings: { scale: SCALE, rounds: ROUNDS, parameters: P, partSize: PART, oursMode: OURS_MODE, oursNodeArgs: OURS_NODE_ARGS, logLevel: LOG_LEVEL },
    metrics,
    rssPush: rss?.sample
      ? {
          peakRssMiB: rss.sample.regRssPeak / MiB,
          vmHwmSumMiB: rss.sample.regHwmSum / MiB,
          rssBeforeMiB: rss.sample.regRssBase / MiB,
          atPeakMiB: Object.fromEntries(Object.entries(rss.sample.regRssAtPeak).map(([pid, bytes]) => [pid, bytes / MiB])),
          throughputMiBps: mibps(rss.sample),
          registryCpuSecondsPerGiB: perGiB(rss.sample.regCpu, rss.sample),
          cephCpuSecondsPerGiB: perGiB(rss.sample.cephCpu, rss.sample),
          cephPeakRssMiB: { osd: rss.sample.cephRssPeak.osd / MiB, rgw: rss.sample.cephRssPeak.rgw / MiB },
        }
      : undefined,
    tags: tags?.result,
    targets,
    failures,
    totalSeconds: (performance.now() - START) / 1000,
  };
  await mkdir(dirname(RESULTS), { recursive: true });
  await writeFile(RESULTS, JSON.stringify(summary, null, 2));
  console.log(`\nResults written to ${RESULTS} (${summary.totalSeconds.toFixed(0)} s in total)`);
}
