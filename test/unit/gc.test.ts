// Garbage collection on a temporary filesystem store: mark and sweep through the real stores, with ages
// set by changing modification times.
import { readdir, stat, utimes, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'chai';
import { FilesystemDriver } from '../../storage-drivers/filesystem.js';
import { collectGarbage, type CollectOptions } from '../../server/gc/collector.js';
import { FenceRun, GcFence } from '../../server/gc/fence.js';
import { RetentionRules, immutableTagCheck } from '../../server/gc/retention.js';
import type { GcReport } from '../../server/gc/report.js';
import type { Config } from '../../server/config.js';
import { digestOf, parseDigest } from '../../server/registry/digest.js';
import { LeaseStore } from '../../server/registry/leases.js';
import { paths } from '../../server/registry/paths.js';
import { Registry } from '../../server/registry/registry.js';
import { OCI_INDEX, OCI_MANIFEST } from '../../server/registry/media-types.js';
import { GcBusyError, GcService } from '../../server/gc/service.js';
import { gcStats } from '../../server/gc/report.js';
import { loadConfig } from '../../server/config.js';
import { StorageLocks } from '../../server/state/locks.js';
import { DescriptorCache, type CacheBackend } from '../../server/registry/descriptor-cache.js';
import { StorageUploadSessions } from '../../server/registry/upload-sessions.js';
import { pino } from 'pino';
import { runGcCommand } from '../../server/gc/cli.js';
import { rejectsOci, rejectsWith, tempDir } from './support.js';

const HOUR = 3_600_000;
const pd = (digest: string) => parseDigest(digest)!;
type Rules = Config['retention']['rules'];

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
}

describe('garbage collection', () => {
  let root: string;
  let cleanup: () => Promise<void>;
  let driver: FilesystemDriver;
  let registry: Registry;
  let leases: LeaseStore;
  let seed = 0;

  beforeEach(async () => {
    ({ path: root, cleanup } = await tempDir('gc'));
    driver = new FilesystemDriver({ rootdirectory: root });
    registry = new Registry(driver, { deleteEnabled: true });
    leases = new LeaseStore(driver);
  });
  afterEach(() => cleanup());

  // --- content --------------------------------------------------------------------------------

  async function blob(repo: string, text = `blob ${++seed} ${Math.random()}`, mediaType = 'application/vnd.oci.image.layer.v1.tar'): Promise<Descriptor> {
    const digest = pd(digestOf(text));
    await registry.blobs.putVerified(digest, Buffer.from(text));
    await registry.blobs.link(repo, digest);
    return { mediaType, digest: digest.digest, size: Buffer.byteLength(text) };
  }

  async function image(repo: string, tag: string | undefined, layers: Descriptor[], extra: Record<string, unknown> = {}): Promise<Descriptor> {
    const config = await blob(repo, JSON.stringify({ architecture: 'amd64', os: 'linux', seed: ++seed }), 'application/vnd.oci.image.config.v1+json');
    const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers, ...extra }));
    const digest = digestOf(bytes);
    await registry.manifests.put(repo, tag ?? digest, bytes, OCI_MANIFEST);
    return { mediaType: OCI_MANIFEST, digest, size: bytes.length };
  }

  async function index(repo: string, tag: string, children: Descriptor[]): Promise<Descriptor> {
    const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: children }));
    await registry.manifests.put(repo, tag, bytes, OCI_INDEX);
    return { mediaType: OCI_INDEX, digest: digestOf(bytes), size: bytes.length };
  }

  async function configOf(repo: string, manifest: Descriptor): Promise<string> {
    const stored = await registry.manifests.get(repo, manifest.digest);
    return (JSON.parse(stored.bytes.toString()) as { config: Descriptor }).config.digest;
  }

  // --- ages and inspection ----------------------------------------------------------------------

  /** Sets the modification time of everything stored so far to `ms` ago. */
  async function ageAll(ms: number): Promise<void> {
    const when = new Date(Date.now() - ms);
    const visit = async (dir: string): Promise<void> => {
      for (const entry of await readdir(dir, { withFileTypes: true })) {
        const full = join(dir, entry.name);
        if (entry.isDirectory()) await visit(full);
        else await utimes(full, when, when);
      }
    };
    await visit(root);
  }

  async function age(path: string, ms: number): Promise<void> {
    const when = new Date(Date.now() - ms);
    await utimes(join(root, path), when, when);
  }

  async function exists(path: string): Promise<boolean> {
    return stat(join(root, path)).then(() => true, () => false);
  }
  const hasData = (digest: string) => exists(paths.blobData(pd(digest)));
  const hasLink = (repo: string, digest: string) => exists(paths.layerLink(repo, pd(digest)));
  const hasRevision = (repo: string, digest: string) => exists(paths.revisionLink(repo, pd(digest)));

  /** Every stored blob digest. */
  async function storedBlobs(): Promise<string[]> {
    const found: string[] = [];
    const base = join(root, 'docker/registry/v2/blobs/sha256');
    for (const prefix of await readdir(base).catch(() => [] as string[])) {
      for (const hex of await readdir(join(base, prefix))) if (await exists(paths.blobData(pd(`sha256:${hex}`)))) found.push(`sha256:${hex}`);
    }
    return found.sort();
  }

  function gc(options: Partial<CollectOptions> = {}, rules: Rules = []): Promise<GcReport> {
    return collectGarbage(
      { driver, registry, leases, retention: new RetentionRules(rules) },
      { dryRun: false, gracePeriodMs: HOUR, untagged: 0, ...options },
    );
  }

  // --- mark and sweep ---------------------------------------------------------------------------

  it('keeps every tagged image and deletes exactly what an untagged one alone used (shared layers)', async () => {
    const shared = await blob('app');
    const onlyA = await blob('app');
    const onlyB = await blob('app');
    const a = await image('app', 'a', [shared, onlyA]);
    const b = await image('app', 'b', [shared, onlyB]);
    const configA = await configOf('app', a);
    await registry.manifests.delete('app', 'a'); // untag
    await ageAll(2 * HOUR);
    const before = await storedBlobs();

    const report = await gc();
    const gone = [a.digest, configA, onlyA.digest].sort();
    expect(await storedBlobs()).to.deep.equal(before.filter((d) => !gone.includes(d)));
    for (const d of gone) expect(await hasLink('app', d) || await hasRevision('app', d), d).to.equal(false);
    expect((await registry.manifests.get('app', 'b')).digest).to.equal(b.digest);
    for (const d of [shared.digest, onlyB.digest, await configOf('app', b)]) expect(await hasLink('app', d), d).to.equal(true);
    expect(report.kinds.manifests.deleted).to.equal(1);
    expect(report.kinds.layerLinks.deleted).to.equal(2);
    expect(report.kinds.blobs.deleted).to.equal(3);
    expect(report.freedBytes).to.be.greaterThan(0);
    expect(report.dryRun).to.equal(false);
  });

  it('keeps data another repository still links, and removes only this repository link', async () => {
    const layer = await blob('one');
    await registry.blobs.link('two', pd(layer.digest));
    const one = await image('one', 'v1', [layer]);
    await image('two', 'v1', [layer]);
    await registry.manifests.delete('one', one.digest); // DELETE by digest: the manifest and its tags
    await ageAll(2 * HOUR);

    await gc();
    expect(await hasLink('one', layer.digest)).to.equal(false);
    expect(await hasLink('two', layer.digest)).to.equal(true);
    expect(await hasData(layer.digest)).to.equal(true);
    expect(await hasData(one.digest)).to.equal(false);
  });

  it('keeps untagged manifests with gc.untagged keep, and deletes them once older than the untagged age', async () => {
    const layer = await blob('keep');
    const m = await image('keep', 'v1', [layer]);
    await registry.manifests.delete('keep', 'v1');
    await ageAll(2 * HOUR);

    let report = await gc({ untagged: 'keep' });
    expect(report.kinds.manifests.deleted).to.equal(0);
    expect(await hasRevision('keep', m.digest)).to.equal(true);
    report = await gc({ untagged: 3 * HOUR });
    expect(report.kinds.manifests.deleted, 'younger than the untagged age').to.equal(0);
    report = await gc({ untagged: HOUR });
    expect(report.kinds.manifests.deleted).to.equal(1);
    expect(await hasData(layer.digest)).to.equal(false);
  });

  it('keeps unreferenced content younger than the grace period, and deletes it once older', async () => {
    const layer = await blob('young'); // uploaded, manifest not pushed yet
    const untagged = await image('young', undefined, [await blob('young')]);
    let report = await gc({ gracePeriodMs: HOUR });
    expect(report.kinds.blobs.deleted + report.kinds.layerLinks.deleted + report.kinds.manifests.deleted).to.equal(0);
    expect(report.protected.young).to.be.greaterThan(0);
    expect(await hasLink('young', layer.digest)).to.equal(true);

    await ageAll(2 * HOUR);
    report = await gc({ gracePeriodMs: HOUR });
    expect(await hasLink('young', layer.digest)).to.equal(false);
    expect(await hasData(layer.digest)).to.equal(false);
    expect(await hasRevision('young', untagged.digest)).to.equal(false);
  });

  it('keeps content under an unexpired lease however old, and collects it once the lease is released', async () => {
    const layer = await blob('leased');
    const m = await image('leased', undefined, [layer]);
    await leases.hold('mirror-job-1', [layer.digest, m.digest]);
    await ageAll(48 * HOUR);
    await gc({ gracePeriodMs: 0 });
    expect(await hasRevision('leased', m.digest)).to.equal(true);
    expect(await hasLink('leased', layer.digest)).to.equal(true);
    expect(await hasData(layer.digest)).to.equal(true);

    await leases.release('mirror-job-1');
    await gc({ gracePeriodMs: 0 });
    expect(await hasRevision('leased', m.digest)).to.equal(false);
    expect(await hasData(layer.digest)).to.equal(false);
  });

  it('keeps referrers of live manifests and removes those of collected ones with their entries', async () => {
    const subject = await image('sig', 'v1', [await blob('sig')]);
    const gone = await image('sig', 'v2', [await blob('sig')]);
    const signature = await image('sig', undefined, [await blob('sig')], { subject, artifactType: 'application/vnd.example.sig' });
    const orphaned = await image('sig', undefined, [await blob('sig')], { subject: gone, artifactType: 'application/vnd.example.sig' });
    await registry.manifests.delete('sig', 'v2');
    await ageAll(2 * HOUR);

    const report = await gc();
    expect(await hasRevision('sig', signature.digest)).to.equal(true);
    expect((await registry.referrers.list('sig', pd(subject.digest))).map((d) => d.digest)).to.deep.equal([signature.digest]);
    expect(await hasRevision('sig', orphaned.digest)).to.equal(false);
    expect(await hasRevision('sig', gone.digest)).to.equal(false);
    expect(await registry.referrers.list('sig', pd(gone.digest))).to.deep.equal([]);
    expect(report.kinds.referrers.deleted).to.equal(1);
  });

  it('keeps the children of a tagged index, and collects them with the index once untagged', async () => {
    const amd = await image('multi', undefined, [await blob('multi')]);
    const arm = await image('multi', undefined, [await blob('multi')]);
    const idx = await index('multi', 'v1', [amd, arm]);
    await ageAll(2 * HOUR);
    let report = await gc();
    expect(report.kinds.manifests.deleted).to.equal(0);
    for (const child of [amd, arm]) expect(await hasRevision('multi', child.digest)).to.equal(true);

    await registry.manifests.delete('multi', 'v1');
    await ageAll(2 * HOUR);
    report = await gc();
    expect(report.kinds.manifests.deleted).to.equal(3);
    expect(await hasData(idx.digest)).to.equal(false);
    expect(await storedBlobs()).to.deep.equal([]);
  });

  it('reports the same in a dry run and deletes nothing', async () => {
    const m = await image('dry', 'v1', [await blob('dry')]);
    await registry.manifests.delete('dry', 'v1');
    await ageAll(2 * HOUR);
    const before = await storedBlobs();
    const dry = await gc({ dryRun: true });
    expect(await storedBlobs()).to.deep.equal(before);
    expect(await hasRevision('dry', m.digest)).to.equal(true);
    const real = await gc();
    expect({ ...dry.kinds, dryRun: dry.dryRun }).to.deep.equal({ ...real.kinds, dryRun: true });
  });

  it('removes temporary files left by a crash and abandoned upload sessions, but not fresh ones', async () => {
    await mkdir(join(root, '_tmp'), { recursive: true });
    await writeFile(join(root, '_tmp', 'old'), 'x'.repeat(100));
    await writeFile(join(root, '_tmp', 'fresh'), 'y');
    await age('/_tmp/old', 2 * HOUR);
    const old = await registry.uploads.create('up');
    await driver.putContent(paths.uploadData('up', old.id), 'partial');
    await driver.putContent(paths.uploadState('up', old.id), JSON.stringify({ ...old, startedAt: new Date(Date.now() - 200 * HOUR).toISOString() }));
    const fresh = await registry.uploads.create('up');

    const report = await gc({ uploadPurgeAgeMs: 168 * HOUR });
    expect(await exists('/_tmp/old')).to.equal(false);
    expect(await exists('/_tmp/fresh')).to.equal(true);
    expect(await exists(paths.upload('up', old.id))).to.equal(false);
    await registry.uploads.get('up', fresh.id);
    expect(report.kinds.tempFiles).to.deep.equal({ kept: 0, deleted: 1, freedBytes: 100 });
    expect(report.kinds.uploads.deleted).to.equal(1);
  });

  it('cleans a blob directory without data (a crash between the two deletes)', async () => {
    const layer = await blob('crash');
    await ageAll(2 * HOUR);
    await driver.deleteFile(paths.blobData(pd(layer.digest)));
    await gc();
    expect(await exists(paths.blobData(pd(layer.digest)).replace(/\/data$/, ''))).to.equal(false);
  });

  it('with a shared descriptor cache (Redis), content collected and pushed again is visible at once', async () => {
    const entries = new Map<string, string>();
    const backend: CacheBackend = {
      isReady: () => true,
      get: async (key) => entries.get(key) ?? null,
      set: async (key, value, _ttl, onlyIfAbsent) => void (onlyIfAbsent && entries.has(key) ? undefined : entries.set(key, value)),
      del: async (key) => void entries.delete(key),
    };
    registry = new Registry(driver, {
      deleteEnabled: true,
      shared: { cache: new DescriptorCache(backend), sessions: new StorageUploadSessions(driver), locks: new StorageLocks(driver) },
    });
    const text = `cached ${Math.random()}`;
    const layer = await blob('cached', text);
    await registry.blobs.stat('cached', pd(layer.digest)); // now in the cache
    await ageAll(2 * HOUR);
    await gc();
    await rejectsOci(registry.blobs.stat('cached', pd(layer.digest)), 404, 'BLOB_UNKNOWN');
    const session = await registry.uploads.create('cached');
    await registry.uploads.complete('cached', session.id, pd(layer.digest), { body: (async function* () { yield Buffer.from(text); })() });
    expect((await registry.blobs.stat('cached', pd(layer.digest))).size).to.equal(text.length);
    await image('cached', 'v1', [layer]);
  });

  // --- writes while a run goes on ----------------------------------------------------------------

  /** A driver that runs `during` once, the first time `when` matches a call (then carries on with it). */
  function interceptOnce(when: (method: string, path: string) => boolean, during: () => Promise<void>): void {
    let fired = false;
    for (const method of ['list', 'stat', 'deleteFile'] as const) {
      const original = driver[method].bind(driver) as (path: string) => Promise<unknown>;
      (driver as unknown as Record<string, (path: string) => Promise<unknown>>)[method] = async (path: string) => {
        if (!fired && when(method, path)) {
          fired = true;
          await during();
        }
        return original(path);
      };
    }
  }

  it('keeps what a manifest pushed during the mark references, although it was garbage when listed', async () => {
    const old = await blob('race');
    await ageAll(2 * HOUR);
    let pushed: Descriptor | undefined;
    // The push lands while the repository is being listed: its tag may be missed, its pins are not.
    interceptOnce((method, path) => method === 'list' && path === `${paths.repository('race')}/_layers/sha256`, async () => {
      pushed = await image('race', 'new', [old]);
    });
    const report = await gc();
    expect(await hasLink('race', old.digest)).to.equal(true);
    expect(await hasData(old.digest)).to.equal(true);
    expect((await registry.manifests.get('race', 'new')).digest).to.equal(pushed!.digest);
    expect(report.kinds.blobs.deleted).to.equal(0);
    expect(report.protected.pinned + report.protected.referenced).to.be.greaterThan(0);
  });

  it('a manifest pushed while its layer link is being deleted fails instead of referencing nothing', async () => {
    const old = await blob('race2');
    await ageAll(2 * HOUR);
    let push: Promise<unknown> | undefined;
    // The client saw the layer (HEAD) and pushes its manifest just as the batch re-checks that link.
    interceptOnce((method, path) => method === 'stat' && path === paths.layerLink('race2', pd(old.digest)), async () => {
      push = image('race2', 'new', [old]);
      push.catch(() => undefined);
      await new Promise((resolve) => setTimeout(resolve, 100)); // it writes, then waits for the batch
    });
    await gc();
    await rejectsOci(push!, 400, 'MANIFEST_BLOB_UNKNOWN');
    await rejectsOci(registry.manifests.get('race2', 'new'), 404, 'MANIFEST_UNKNOWN');
  });

  it('an upload of data being deleted right now ends with the data stored, never a dangling link', async () => {
    const text = `layer ${Math.random()}`;
    const layer = await blob('dedup', text);
    await ageAll(2 * HOUR);
    let completed: unknown;
    // While the batch deletes the data, the same bytes are uploaded again (the deduplicating path).
    interceptOnce((method, path) => method === 'deleteFile' && path === paths.blobData(pd(layer.digest)), async () => {
      const session = await registry.uploads.create('dedup2');
      completed = registry.uploads.complete('dedup2', session.id, pd(layer.digest), { body: (async function* () { yield Buffer.from(text); })() });
      await new Promise((resolve) => setTimeout(resolve, 100)); // it links, then waits for the batch
    });
    const report = await gc();
    await completed;
    expect(report.kinds.blobs.deleted, 'the old copy went').to.equal(1);
    expect(await hasLink('dedup2', layer.digest)).to.equal(true);
    expect(await hasData(layer.digest)).to.equal(true);
    expect((await registry.blobs.stat('dedup2', pd(layer.digest))).size).to.equal(text.length);
  });

  it('fence: no run, nothing to do; during a run, pins are seen and writers wait for the batch in flight', async () => {
    const fence = new GcFence(driver);
    expect(await fence.protect('r', ['sha256:' + 'a'.repeat(64)])).to.equal(false);
    const run = await FenceRun.begin(driver);
    try {
      expect(await fence.protect('r', ['sha256:' + 'b'.repeat(64)])).to.equal(true);
      let protectedAt = 0;
      let batchEndedAt = 0;
      await run.batch(async (pinned) => {
        expect([...pinned]).to.deep.equal(['sha256:' + 'b'.repeat(64)]);
        void fence.protect('r', ['sha256:' + 'c'.repeat(64)]).then(() => (protectedAt = Date.now()));
        await new Promise((resolve) => setTimeout(resolve, 200));
        batchEndedAt = Date.now();
      });
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(protectedAt, 'the writer returned only after the batch').to.be.at.least(batchEndedAt);
      expect((await run.pins()).has('sha256:' + 'c'.repeat(64))).to.equal(true);
    } finally {
      await run.end();
    }
    // Right after a run, writers still check (a delete may have landed between their write and their read).
    expect(await fence.protect('r', ['sha256:' + 'd'.repeat(64)])).to.equal(true);
  });

  it('a run that loses its lock stops before it deletes anything more (another run may have dropped the pins)', async () => {
    const shared = await blob('lost');
    const doomed = await blob('lost');
    await image('lost', 'keep', [shared]);
    const untagged = await image('lost', 'gone', [doomed]);
    await registry.manifests.delete('lost', 'gone');
    await ageAll(2 * HOUR);
    let held = true;
    // The lock goes while the run decides (as when Redis was away for longer than the lock's expiry).
    interceptOnce((method, path) => method === 'stat' && path.includes('/_manifests/revisions/'), async () => {
      held = false;
    });
    const error = await gc({ lockHeld: () => held }).then(() => undefined, (caught: unknown) => caught as Error);
    expect(error?.message).to.match(/lost its lock/);
    expect(await hasRevision('lost', untagged.digest), 'nothing deleted').to.equal(true);
    expect(await hasData(doomed.digest)).to.equal(true);
    held = true;
    const report = await gc({ lockHeld: () => held });
    expect(report.kinds.manifests.deleted).to.equal(1);
    expect(await hasRevision('lost', untagged.digest)).to.equal(false);
  });

  // --- retention and immutable tags ----------------------------------------------------------------

  async function pushTags(repo: string, tags: Array<[string, number]>): Promise<void> {
    for (const [tag, hoursAgo] of tags) {
      await image(repo, tag, [await blob(repo)]);
      await age(paths.tagLink(repo, tag), hoursAgo * HOUR);
    }
  }

  async function tagsOf(repo: string): Promise<string[]> {
    return registry.tags.all(repo);
  }

  it('retention: keeps the last N tags by push time, tags matching keeptags, and deletes the rest', async () => {
    await pushTags('ret/app', [['v1', 50], ['v2', 40], ['v3', 30], ['latest', 60], ['v4', 20]]);
    const report = await gc({ gracePeriodMs: 0 }, [{ repository: 'ret/**', keeplast: 2, keeptags: ['latest'], immutable: [] }]);
    expect(await tagsOf('ret/app')).to.deep.equal(['latest', 'v3', 'v4']);
    expect(report.kinds.tags.deleted).to.equal(2);
    expect(report.kinds.manifests.deleted, 'with untagged 0, their manifests too').to.equal(2);
  });

  it('retention: deletes tags older than D but never the newest N, nor immutable ones, and only in matching repositories', async () => {
    await pushTags('old/app', [['a', 24 * 40], ['b', 24 * 35], ['c', 24 * 31], ['d', 1], ['rel-1', 24 * 90]]);
    await pushTags('other', [['x', 24 * 90]]);
    const rules: Rules = [{ repository: 'old/*', keeplast: 1, keeptags: [], deleteolderthan: '30d', immutable: ['rel-*'] }];
    const dry = await gc({ dryRun: true }, rules);
    expect(dry.kinds.tags.deleted).to.equal(3);
    expect(await tagsOf('old/app')).to.have.length(5);
    await gc({}, rules);
    expect(await tagsOf('old/app')).to.deep.equal(['d', 'rel-1']);
    expect(await tagsOf('other')).to.deep.equal(['x']);
  });

  it('immutable tags: a push may create one and repeat it, never move it; DELETE is denied', async () => {
    const rules: Rules = [{ repository: 'prod/**', keeptags: [], immutable: ['v*'] }];
    registry = new Registry(driver, { deleteEnabled: true, immutableTag: immutableTagCheck(rules) });
    const first = await image('prod/api', 'v1', [await blob('prod/api')]);
    const again = await registry.manifests.get('prod/api', first.digest);
    await registry.manifests.put('prod/api', 'v1', again.bytes, OCI_MANIFEST); // the same manifest again: fine
    const error = await rejectsOci(image('prod/api', 'v1', [await blob('prod/api')]), 403, 'DENIED');
    expect(error.message).to.include('immutable').and.include('v*').and.include('prod/**');
    await rejectsOci(registry.manifests.delete('prod/api', 'v1'), 403, 'DENIED');
    await rejectsOci(registry.manifests.delete('prod/api', first.digest), 403, 'DENIED');
    expect((await registry.manifests.get('prod/api', 'v1')).digest).to.equal(first.digest);
    await image('prod/api', 'latest', [await blob('prod/api')]);
    await image('prod/api', 'latest', [await blob('prod/api')]); // not immutable: moves
  });

  // --- runs --------------------------------------------------------------------------------------------

  function service(env: Record<string, string> = {}): GcService {
    const config = loadConfig(undefined, { REGISTRY_GC_ENABLED: 'true', REGISTRY_GC_INTERVAL: '1s', REGISTRY_GC_GRACEPERIOD: '0s', REGISTRY_GC_UNTAGGED: '0s', ...env }, () => undefined);
    return new GcService(config, { driver, registry, leases, locks: new StorageLocks(driver), logger: pino({ level: 'silent' }) });
  }

  it('runs on schedule in one of several processes at a time, and counts runs', async () => {
    await image('sched', undefined, [await blob('sched')]);
    await ageAll(2 * HOUR);
    const runsBefore = gcStats.runs;
    const stops = [service().schedule(), service().schedule()]; // two "replicas" on one storage
    try {
      const deadline = Date.now() + 5000;
      while (!(await exists('/_gc/last-run.json')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(await exists('/_gc/last-run.json')).to.equal(true);
      expect(await storedBlobs()).to.deep.equal([]);
      expect(gcStats.runs).to.be.greaterThan(runsBefore);
      expect(gcStats.deleted.blobs).to.be.at.least(3);
    } finally {
      for (const stop of stops) stop();
    }
  });

  it('refuses a second run while one holds the gc lock', async () => {
    const lock = await new StorageLocks(driver).tryLock('gc');
    try {
      await rejectsWith(service().run({}, { waitMs: 0 }), GcBusyError);
    } finally {
      await lock!.release();
    }
    const report = await service().run({ dryRun: true });
    expect(report.dryRun).to.equal(true);
  });

  it('dify-registry gc runs in its own process against the configured storage and prints the report', async () => {
    const m = await image('cli', 'v1', [await blob('cli')]);
    await registry.manifests.delete('cli', 'v1');
    await ageAll(2 * HOUR);
    const configFile = join(root, '..', `${root.split('/').pop()}.yml`);
    await writeFile(configFile, `storage:\n  filesystem:\n    rootdirectory: ${root}\ngc:\n  untagged: 0s\n`);
    const printed: string[] = [];
    const log = console.log;
    const error = console.error;
    const errors: string[] = [];
    console.log = (line: string) => void printed.push(line);
    console.error = (line: string) => void errors.push(line);
    const stderr = process.stderr.write.bind(process.stderr);
    process.stderr.write = (() => true) as typeof process.stderr.write;
    try {
      expect(await runGcCommand(['--config', configFile, '--dry-run'])).to.equal(0);
      expect((JSON.parse(printed.pop()!) as GcReport).kinds.manifests.deleted).to.equal(1);
      expect(await hasRevision('cli', m.digest)).to.equal(true);
      expect(await runGcCommand(['--config', configFile, '--grace-period', '0s', '--concurrency', '4'])).to.equal(0);
      const report = JSON.parse(printed.pop()!) as GcReport;
      expect(report.dryRun).to.equal(false);
      expect(report.kinds.blobs.deleted).to.equal(3);
      expect(await storedBlobs()).to.deep.equal([]);
      expect(await runGcCommand(['--config', configFile, '--grace-period', 'soon'])).to.equal(2);
      expect(errors.join('\n')).to.include('--grace-period');
    } finally {
      console.log = log;
      console.error = error;
      process.stderr.write = stderr;
    }
  });
});
