// `npm run bench:mirror` (issue 6): mirroring a 2-platform image of 4 layers per platform (1 GiB in all)
// from a local upstream (Distribution 2.8.2) with our mirror job, against `skopeo copy --all` between the
// same two registries. Each measured run copies into a fresh, empty registry, so nothing is skipped as
// already present. Target: our mirror's throughput at least 80% of skopeo's.
import { rm } from 'node:fs/promises';
import { MiB, blobDigest, type BlobSpec } from './lib/data.js';
import { Client } from './lib/http.js';
import { imageManifest, pushBytes, pushChunked } from './lib/oci.js';
import { buildOurs, distributionAvailable, ServerHandle } from './lib/servers.js';
import { formatNumber, table } from './lib/stats.js';
import { run, tempDir } from '../test/helpers/process.js';

const SCALE = Number(process.env.BENCH_SCALE ?? 1);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const LAYER_SIZE = Math.max(4 * MiB, Math.round((128 * MiB * SCALE) / MiB) * MiB);
const LAYERS_PER_PLATFORM = 4;
const REPO = 'langgenius/dify-api';
const TAG = '1.12.1';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';

if (!distributionAvailable()) {
  console.error('bench:mirror needs /usr/bin/docker-registry (Debian docker-registry) as the upstream');
  process.exit(1);
}

const buildDir = await tempDir('bench-mirror');
const upstream = await ServerHandle.distribution({ logLevel: 'warn' });
try {
  const distMain = await buildOurs(buildDir);
  const totalBytes = await seedUpstream(upstream.url);
  const fresh = async (label: string) =>
    ServerHandle.ours({
      workers: 1,
      logLevel: 'warn',
      mode: 'dist',
      distMain,
      labelSuffix: label,
      extraConfig: { mirror: { upstreams: [{ name: 'upstream', url: upstream.url, concurrency: 4 }] } },
    });
  const results = new Map<string, number[]>();
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 === 0 ? (['mirror job', 'skopeo copy --all'] as const) : (['skopeo copy --all', 'mirror job'] as const);
    for (const tool of order) {
      const target = await fresh(tool);
      try {
        await run('sync', [], { allowFailure: true });
        const started = performance.now();
        if (tool === 'mirror job') await mirror(target.url);
        else await skopeo(upstream.url, target.url);
        const seconds = (performance.now() - started) / 1000;
        const mibps = totalBytes / MiB / seconds;
        results.set(tool, [...(results.get(tool) ?? []), mibps]);
        console.log(`round ${round + 1}: ${tool}: ${formatNumber(seconds)} s, ${formatNumber(mibps, 1)} MiB/s`);
      } finally {
        await target.dispose();
      }
    }
  }
  const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
  const ours = median(results.get('mirror job')!);
  const theirs = median(results.get('skopeo copy --all')!);
  console.log(
    `\n${formatNumber(totalBytes / MiB, 0)} MiB, 2 platforms x ${LAYERS_PER_PLATFORM} layers\n` +
      table(
        ['measure', 'mirror job', 'skopeo copy --all', 'ratio', 'target', ''],
        [['MiB/s (median)', formatNumber(ours, 1), formatNumber(theirs, 1), formatNumber(ours / theirs), '>= 0.80', ours / theirs >= 0.8 ? 'PASS' : 'FAIL']],
      ),
  );
} finally {
  await upstream.dispose();
  await rm(buildDir, { recursive: true, force: true });
}

/** Pushes the 2-platform index; returns the bytes of all its blobs. */
async function seedUpstream(url: string): Promise<number> {
  const client = new Client(url, 8);
  const entries = [];
  let total = 0;
  for (const architecture of ['amd64', 'arm64']) {
    const layers: { digest: string; size: number }[] = [];
    for (let i = 0; i < LAYERS_PER_PLATFORM; i++) {
      const blob: BlobSpec = { id: `mirror-${architecture}-${i}-${process.pid}`, size: LAYER_SIZE };
      layers.push({ digest: await pushChunked(client, REPO, blob, 8 * MiB), size: blob.size });
      blobDigest(blob);
    }
    const configBytes = Buffer.from(JSON.stringify({ architecture, os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }));
    const config = { digest: await pushBytes(client, REPO, configBytes), size: configBytes.length };
    const image = imageManifest(config, layers);
    await client.expect(201, 'PUT', `/v2/${REPO}/manifests/${image.digest}`, {
      headers: { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' },
      body: image.manifest,
    });
    entries.push({ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: image.digest, size: image.manifest.length, platform: { os: 'linux', architecture } });
    total += configBytes.length + layers.reduce((sum, layer) => sum + layer.size, 0);
  }
  const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: entries }));
  await client.expect(201, 'PUT', `/v2/${REPO}/manifests/${TAG}`, { headers: { 'Content-Type': OCI_INDEX }, body: index });
  client.close();
  return total;
}

async function mirror(url: string): Promise<void> {
  const response = await fetch(`${url}/admin/v1/mirror`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ source: `upstream/${REPO}`, tags: [TAG], layouts: ['same-name'] }),
  });
  if (response.status !== 202) throw new Error(`mirror answered ${response.status}: ${await response.text()}`);
  const location = response.headers.get('location')!;
  for (;;) {
    const job = (await (await fetch(`${url}${location}`)).json()) as { state: string; error?: unknown };
    if (job.state === 'succeeded') return;
    if (job.state === 'failed' || job.state === 'cancelled') throw new Error(`mirror ${job.state}: ${JSON.stringify(job.error)}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function skopeo(from: string, to: string): Promise<void> {
  const host = (url: string) => new URL(url).host;
  await run('skopeo', [
    'copy', '--all', '--src-tls-verify=false', '--dest-tls-verify=false',
    `docker://${host(from)}/${REPO}:${TAG}`, `docker://${host(to)}/${REPO}:${TAG}`,
  ]);
}
