// `npm run bench:replicas` (issue 5): several replicas on one S3 bucket and one Redis behind a round-robin
// TCP proxy, against one replica without Redis on the same gateway.
// - chunked push (8 MiB PATCHes with Content-Range, body-less PUT), 4 uploads at a time: from a keep-alive
//   pool (what clients do: an upload's requests go wherever its pooled connection was sent), and with a new
//   connection per request, so every PATCH and the PUT land on the other replica than the one before (the
//   cross-replica path: session state in Redis, the digest re-read once at the final PUT);
//   target: two replicas >= 80% of one replica without Redis;
// - manifest GET by tag, 8 keep-alive connections, one replica with the Redis descriptor cache vs the same
//   without Redis; target: at least equal.
import { rm } from 'node:fs/promises';
import { MiB, blobDigest, type BlobSpec } from './lib/data.js';
import { Client } from './lib/http.js';
import { pushChunked, pushImage, MANIFEST_ACCEPT } from './lib/oci.js';
import { RawClient } from './lib/raw-get.js';
import { buildOurs, ServerHandle } from './lib/servers.js';
import { Latencies, formatNumber, table } from './lib/stats.js';
import { startS3, s3UnavailableReason } from '../test/helpers/s3.js';
import { startRedis } from '../test/helpers/redis.js';
import { startRoundRobinProxy } from '../test/helpers/round-robin-proxy.js';
import { tempDir } from '../test/helpers/process.js';

const SCALE = Number(process.env.BENCH_SCALE ?? 1);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const BLOBS = Math.max(2, Math.round(8 * SCALE));
const BLOB_SIZE = 64 * MiB;
const CHUNK = 8 * MiB;
const PUSH_CONCURRENCY = 4;
const MANIFEST_SECONDS = Math.max(2, 6 * SCALE);

interface Setup {
  name: string;
  url: string;
  handles: ServerHandle[];
  /** A new connection per request: through the proxy, every request goes to the other replica. */
  alternate?: boolean;
}

const unavailable = s3UnavailableReason();
if (unavailable) {
  console.error(`bench:replicas needs the Ceph gateway: ${unavailable}`);
  process.exit(1);
}

const buildDir = await tempDir('bench-replicas');
const s3 = await startS3();
const redis = await startRedis();
const cleanups: Array<() => Promise<void>> = [];
try {
  const distMain = await buildOurs(buildDir);
  const bucket = await s3.createBucket('bench-replicas');
  const storage = {
    s3: {
      bucket,
      region: s3.region,
      regionendpoint: s3.endpoint,
      forcepathstyle: true,
      accesskey: s3.accessKey,
      secretkey: s3.secretKey,
      rootdirectory: '/registry',
      chunksize: CHUNK,
      checksummode: 'WHEN_REQUIRED',
    },
    redirect: { disable: true },
    maintenance: { uploadpurging: { enabled: false } },
  };
  const start = async (label: string, withRedis: boolean) => {
    const handle = await ServerHandle.ours({
      workers: 1,
      logLevel: 'warn',
      mode: 'dist',
      distMain,
      storage,
      labelSuffix: label,
      ...(withRedis ? { extraConfig: { redis: { addr: redis.addr } } } : {}),
    });
    cleanups.push(() => handle.dispose());
    return handle;
  };

  const single = await start('one replica, no Redis', false);
  const replicaA = await start('replica A, Redis', true);
  const replicaB = await start('replica B, Redis', true);
  const proxy = await startRoundRobinProxy([new URL(replicaA.url).host, new URL(replicaB.url).host]);
  cleanups.push(() => proxy.stop());
  const setups: Setup[] = [
    { name: 'one replica, no Redis', url: single.url, handles: [single] },
    { name: 'two replicas + Redis, keep-alive pool', url: proxy.url, handles: [replicaA, replicaB] },
    { name: 'two replicas + Redis, every request to the other replica', url: proxy.url, handles: [replicaA, replicaB], alternate: true },
  ];

  // --- chunked push ---------------------------------------------------------------------------------------
  const push = new Map<string, number[]>();
  let blobId = 0;
  for (let round = 0; round < ROUNDS; round++) {
    for (const setup of round % 2 === 0 ? setups : [...setups].reverse()) {
      const client = new Client(setup.url, 16, !setup.alternate);
      const blobs: BlobSpec[] = Array.from({ length: BLOBS }, () => ({ id: `replicas-${process.pid}-${blobId++}`, size: BLOB_SIZE }));
      for (const blob of blobs) blobDigest(blob); // hashed before the clock starts
      const started = performance.now();
      let next = 0;
      await Promise.all(
        Array.from({ length: PUSH_CONCURRENCY }, async () => {
          while (next < blobs.length) await pushChunked(client, 'bench/replicas', blobs[next++]!, CHUNK);
        }),
      );
      const seconds = (performance.now() - started) / 1000;
      client.close();
      const mibps = (BLOBS * BLOB_SIZE) / MiB / seconds;
      push.set(setup.name, [...(push.get(setup.name) ?? []), mibps]);
      console.log(`push round ${round + 1}: ${setup.name}: ${formatNumber(mibps, 1)} MiB/s`);
    }
  }
  const connections = proxy.stats();
  console.log(`proxy connections per replica: ${JSON.stringify(connections)}`);

  // --- manifest GET ------------------------------------------------------------------------------------------
  const manifestSetups: Setup[] = [
    { name: 'one replica, no Redis', url: single.url, handles: [single] },
    { name: 'one replica, Redis descriptor cache', url: replicaA.url, handles: [replicaA] },
  ];
  const setupClient = new Client(single.url, 4);
  await pushImage(setupClient, 'bench/manifest', 'latest', [4096, 4096]);
  setupClient.close();
  const gets = new Map<string, number[]>();
  const p99s = new Map<string, number[]>();
  for (let round = 0; round < ROUNDS; round++) {
    for (const setup of round % 2 === 0 ? manifestSetups : [...manifestSetups].reverse()) {
      const raw = new RawClient(setup.url);
      const latencies = new Latencies();
      const loop = async (seconds: number, record: boolean) => {
        const deadline = performance.now() + seconds * 1000;
        let requests = 0;
        await Promise.all(
          Array.from({ length: 8 }, async () => {
            const connection = raw.connection();
            while (performance.now() < deadline) {
              const started = performance.now();
              const response = await connection.request('GET', '/v2/bench/manifest/manifests/latest', { Accept: MANIFEST_ACCEPT });
              if (response.status !== 200) throw new Error(`manifest GET answered ${response.status}`);
              if (record) latencies.add(performance.now() - started);
              requests++;
            }
          }),
        );
        return requests / seconds;
      };
      await loop(1, false); // warm-up: caches filled, connections open
      const rate = await loop(MANIFEST_SECONDS, true);
      raw.closeAll();
      gets.set(setup.name, [...(gets.get(setup.name) ?? []), rate]);
      p99s.set(setup.name, [...(p99s.get(setup.name) ?? []), latencies.summary().p99]);
      console.log(`manifest GET round ${round + 1}: ${setup.name}: ${formatNumber(rate, 0)} req/s, p99 ${formatNumber(latencies.summary().p99)} ms`);
    }
  }

  const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
  const pushOne = median(push.get(setups[0]!.name)!);
  const pushTwo = median(push.get(setups[1]!.name)!);
  const pushAlternating = median(push.get(setups[2]!.name)!);
  const getPlain = median(gets.get(manifestSetups[0]!.name)!);
  const getRedis = median(gets.get(manifestSetups[1]!.name)!);
  console.log(
    '\n' +
      table(
        ['measure', 'baseline', 'with Redis', 'ratio', 'target', ''],
        [
          ['chunked push MiB/s (median)', formatNumber(pushOne, 1), formatNumber(pushTwo, 1), formatNumber(pushTwo / pushOne), '>= 0.80', pushTwo / pushOne >= 0.8 ? 'PASS' : 'FAIL'],
          ['  every request to the other replica', formatNumber(pushOne, 1), formatNumber(pushAlternating, 1), formatNumber(pushAlternating / pushOne), '>= 0.80', pushAlternating / pushOne >= 0.8 ? 'PASS' : 'FAIL'],
          ['manifest GET req/s (median)', formatNumber(getPlain, 0), formatNumber(getRedis, 0), formatNumber(getRedis / getPlain), '>= 1.00', getRedis >= getPlain ? 'PASS' : 'FAIL'],
          ['manifest GET p99 ms (median)', formatNumber(median(p99s.get(manifestSetups[0]!.name)!)), formatNumber(median(p99s.get(manifestSetups[1]!.name)!)), '', '', ''],
        ],
      ),
  );
} finally {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  await redis.stop();
  await s3.stop();
  await rm(buildDir, { recursive: true, force: true });
}
