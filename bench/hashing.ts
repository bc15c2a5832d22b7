// `npm run bench:hashing`: what each way of checking a cross-replica upload's digest costs here (issue 5):
// Node's crypto (the live hash of the common path), hash-wasm with its state saved and loaded around
// every 8 MiB chunk (what carrying the hash between replicas would cost on every upload), and one re-read
// of the finished data at the final PUT (what we do when a chunk lands on a replica without the live hash).
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSHA256 } from 'hash-wasm';

const MiB = 1024 * 1024;
const TOTAL = Number(process.env.BENCH_HASH_MIB ?? 1024) * MiB;
const CHUNK = 8 * MiB;

function cpuSeconds(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
}

async function measure(name: string, run: () => Promise<void>): Promise<{ name: string; cpuPerGiB: number; wallPerGiB: number }> {
  const cpu = cpuSeconds();
  const wall = performance.now();
  await run();
  const gib = TOTAL / (1024 * MiB);
  return { name, cpuPerGiB: (cpuSeconds() - cpu) / gib, wallPerGiB: (performance.now() - wall) / 1000 / gib };
}

const chunk = Buffer.alloc(CHUNK);
for (let i = 0; i < CHUNK; i += 4) chunk.writeUInt32LE((i * 2654435761) >>> 0, i);

const dir = await mkdtemp(join(process.env.TMPDIR ?? tmpdir(), 'bench-hashing-'));
const file = join(dir, 'data');
await writeFile(file, Buffer.concat(Array.from({ length: Math.min(TOTAL / CHUNK, 16) }, () => chunk)));
const fileBytes = Math.min(TOTAL, 16 * CHUNK);

const results = [
  await measure('node crypto, live hash', async () => {
    const hash = createHash('sha256');
    for (let done = 0; done < TOTAL; done += CHUNK) hash.update(chunk);
    hash.digest('hex');
  }),
  await measure('hash-wasm, state saved and loaded per 8 MiB chunk', async () => {
    let state: Uint8Array | undefined;
    for (let done = 0; done < TOTAL; done += CHUNK) {
      const hasher = await createSHA256();
      if (state) hasher.load(state);
      else hasher.init();
      hasher.update(chunk);
      state = hasher.save(); // what would go to Redis with the session
    }
  }),
  await measure('re-read at the final PUT (file in page cache) + node crypto', async () => {
    const hash = createHash('sha256');
    for (let done = 0; done < TOTAL; done += fileBytes) {
      for await (const data of createReadStream(file, { highWaterMark: MiB })) hash.update(data as Buffer);
    }
    hash.digest('hex');
  }),
];
await rm(dir, { recursive: true, force: true });
console.log(`hashing ${TOTAL / MiB} MiB on ${process.version}`);
for (const result of results) {
  console.log(`${result.name.padEnd(62)} CPU ${result.cpuPerGiB.toFixed(2)} s/GiB, wall ${result.wallPerGiB.toFixed(2)} s/GiB`);
}
