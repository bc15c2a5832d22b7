// bench:build: the dify-api recipe fixture (test/helpers/build-fixtures.ts) built for linux/amd64 and
// linux/arm64 through the registry's build queue, cold (empty layer cache, empty registry) and then warm
// after a commit that changes only application files. Reports wall time per build and per platform, and
// the bytes the build stored in the registry (new blob data, every repository), against the target: a
// warm rebuild pushes only the changed layers and takes at most 25% of the cold build's time.
//
// The fixture's dependency step (`uv sync`) makes a virtual environment of BENCH_VENV_MB (default 1966) MiB of
// incompressible data: the size of that layer in langgenius/dify-api:1.12.1 (1.92 GB: test/fixtures/dify-api-1.12.1-arm64.txt), so
// the layer cache has what a real one has to save; everything else in the fixture is small. Its steps cost
// almost nothing, so the cold time is mostly making, storing and pushing that layer plus buildah's own
// per-step work; BENCH_INSTALL_SECONDS makes `uv sync` take as long as real downloads and wheel builds would
// (minutes for dify-api), BENCH_VENV_MB=64 measures little more than buildah's per-step work.
// Settings: BENCH_WARM_RUNS (default 3: the median is reported), BENCH_REMOTECACHE=1 (builder.remotecache on),
// BENCH_STORAGE_DRIVER (builder.buildah.storagedriver, default auto: overlay where buildah can use it, else
// vfs), BENCH_VENV_MB, BENCH_KEEP=1 (keep the builder's cache directory and the fixture's git repository, to
// run buildah on them by hand).
import { readdir, stat } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { existingDriver } from '../builder/storage-driver.js';
import { difyRepo, pushDifyBase } from '../test/helpers/build-fixtures.js';
import { startBuildah } from '../test/helpers/clients.js';
import { removeTree } from '../test/helpers/cleanup.js';
import { tempDir } from '../test/helpers/process.js';
import { startRegistry } from '../test/helpers/registry.js';

interface Job {
  id: string;
  state: string;
  createdAt: string;
  finishedAt: string | null;
  error: unknown;
  result: { pushedBytes: number; platforms: Record<string, { timings: { totalMs: number; buildMs: number; pushMs: number; sourceMs: number } }> } | null;
}

interface Measured {
  name: string;
  seconds: number;
  /** New blob data in the registry after the build, all repositories (the build cache included). */
  storedBytes: number;
  /** The job's own count (pushedBytes of the platform images). */
  imageBytes: number;
  platforms: Record<string, number>;
  /** Per platform: fetching the source, `buildah bud`, `buildah push` (seconds). */
  phases: Record<string, { source: number; build: number; push: number }>;
}

const remoteCache = process.env.BENCH_REMOTECACHE === '1';
const warmRuns = Math.max(1, Number(process.env.BENCH_WARM_RUNS ?? 3));
const storageDriver = process.env.BENCH_STORAGE_DRIVER ?? 'auto';
/** The virtual environment's layer in langgenius/dify-api:1.12.1: 1.92 GB. */
const venvMiB = Number(process.env.BENCH_VENV_MB ?? 1966);
/** Seconds the fixture's `uv sync` takes, standing for downloads and wheel builds (a real one takes minutes). */
const installSeconds = Number(process.env.BENCH_INSTALL_SECONDS ?? 0);

/** Every blob's digest and size in a filesystem storage root. */
async function blobs(root: string): Promise<Map<string, number>> {
  const found = new Map<string, number>();
  const dir = join(root, 'docker/registry/v2/blobs/sha256');
  for (const prefix of await readdir(dir).catch(() => [] as string[])) {
    for (const hex of await readdir(join(dir, prefix))) {
      const info = await stat(join(dir, prefix, hex, 'data')).catch(() => undefined);
      if (info) found.set(hex, info.size);
    }
  }
  return found;
}

async function main(): Promise<void> {
  const cachedir = await tempDir('bench-build-cache');
  const registry = await startRegistry({
    config: (url) => ({
      log: { level: 'warn' },
      builder: {
        enabled: true,
        cachedir,
        remotecache: remoteCache,
        buildah: { storagedriver: storageDriver },
        baseimages: { 'python:3.12-slim-bookworm': `${new URL(url).host}/bench/python:3.12-slim-bookworm` },
      },
    }),
  });
  const buildah = await startBuildah();
  const repo = await difyRepo('1.12.1');
  const results: Measured[] = [];
  let usedDriver = storageDriver;
  try {
    await pushDifyBase(buildah, `${registry.hostPort}/bench/python:3.12-slim-bookworm`);
    const pyproject = `[project]\nname = "dify-api"\nversion = "1.12.1"\n# fixture-venv-mb: ${venvMiB}\n# fixture-install-seconds: ${installSeconds}\n`;
    await repo.commit({ 'api/pyproject.toml': pyproject }, 'a sized virtual environment', '1.12.1');

    const build = async (name: string, ref: string): Promise<Measured> => {
      const before = await blobs(registry.root);
      const started = Date.now();
      const res = await fetch(`${registry.url}/admin/v1/builds`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ recipe: 'dify-api', context: { git: repo.url, ref }, layouts: ['same-name', 'ddn-k8s'] }),
      });
      if (res.status !== 202) throw new Error(`submit: ${res.status} ${await res.text()}`);
      const { id } = (await res.json()) as { id: string };
      let job: Job;
      for (;;) {
        await new Promise((resolve) => setTimeout(resolve, 250));
        job = (await (await fetch(`${registry.url}/admin/v1/jobs/${id}`)).json()) as Job;
        if (['succeeded', 'failed', 'cancelled'].includes(job.state)) break;
      }
      const seconds = (Date.now() - started) / 1000;
      if (job.state !== 'succeeded') throw new Error(`${name}: ${job.state} ${JSON.stringify(job.error)}`);
      const after = await blobs(registry.root);
      let storedBytes = 0;
      for (const [digest, size] of after) if (!before.has(digest)) storedBytes += size;
      const measured: Measured = {
        name,
        seconds,
        storedBytes,
        imageBytes: job.result!.pushedBytes,
        platforms: Object.fromEntries(Object.entries(job.result!.platforms).map(([platform, p]) => [platform, p.timings.totalMs / 1000])),
        phases: Object.fromEntries(
          Object.entries(job.result!.platforms).map(([platform, { timings }]) => [
            platform,
            { source: timings.sourceMs / 1000, build: timings.buildMs / 1000, push: timings.pushMs / 1000 },
          ]),
        ),
      };
      console.log(
        `${name.padEnd(8)} ${seconds.toFixed(1).padStart(6)} s  stored ${(storedBytes / 1024).toFixed(0).padStart(7)} KiB  ` +
          Object.entries(measured.platforms)
            .map(([platform, s]) => {
              const phase = measured.phases[platform]!;
              return `${platform} ${s.toFixed(1)} s (source ${phase.source.toFixed(1)}, bud ${phase.build.toFixed(1)}, push ${phase.push.toFixed(1)})`;
            })
            .join('  '),
      );
      return measured;
    };

    results.push(await build('cold', '1.12.1'));
    usedDriver = (await existingDriver(join(cachedir, 'storage', 'linux-amd64'))) ?? storageDriver;
    for (let i = 1; i <= warmRuns; i++) {
      // Only application files change: what `COPY . /app/api/` copies, after every dependency layer.
      await repo.commit({ 'api/app.py': `from app_factory import create_app\n\napp = create_app()  # change ${i}\n` }, `change ${i}`, `1.12.${1 + i}`);
      results.push(await build(`warm-${i}`, `1.12.${1 + i}`));
    }
  } finally {
    if (!process.env.BENCH_KEEP) await repo.cleanup();
    await buildah.stop();
    await registry.stop();
    if (process.env.BENCH_KEEP) console.log(`kept ${cachedir}`);
    else await removeTree(cachedir);
  }

  const cold = results[0]!;
  const warm = results.slice(1).map((r) => r.seconds).sort((a, b) => a - b);
  const warmMedian = warm[Math.floor((warm.length - 1) / 2)]!;
  const warmStored = results.slice(1).map((r) => r.storedBytes).sort((a, b) => a - b)[Math.floor((warm.length - 1) / 2)]!;
  const ratio = warmMedian / cold.seconds;
  console.log('');
  console.log(`remote cache ${remoteCache ? 'on' : 'off'}, buildah storage ${usedDriver}${storageDriver === 'auto' ? ' (auto)' : ''}, venv ${venvMiB} MiB, install ${installSeconds} s; linux/amd64 + linux/arm64 (arm64 under qemu); load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}`);
  console.log(`cold ${cold.seconds.toFixed(1)} s, ${(cold.storedBytes / 1024 / 1024).toFixed(2)} MiB stored`);
  console.log(`warm ${warmMedian.toFixed(1)} s (median of ${warm.length}), ${(warmStored / 1024).toFixed(0)} KiB stored`);
  console.log(`warm/cold ${(ratio * 100).toFixed(0)}% (target <= 25%): ${ratio <= 0.25 ? 'PASS' : 'FAIL'}`);
  console.log(JSON.stringify({ remoteCache, storageDriver: usedDriver, venvMiB, installSeconds, cold, warm: results.slice(1), warmMedianSeconds: warmMedian, ratio }, null, 2));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
