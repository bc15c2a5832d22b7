// The Redis-backed shared state (locks, upload sessions, descriptor cache) against a real redis-server,
// including what happens while it is down and after it restarts empty.
import { expect } from 'chai';
import pino from 'pino';
import { FilesystemDriver } from '../../storage-drivers/filesystem.js';
import { digestOf, parseDigest } from '../../server/registry/digest.js';
import { cacheKeys, DescriptorCache } from '../../server/registry/descriptor-cache.js';
import { paths } from '../../server/registry/paths.js';
import { Registry } from '../../server/registry/registry.js';
import { RedisLock } from '../../server/state/redis-lock.js';
import { connectRedis, SharedStateUnavailableError, type SharedState } from '../../server/state/redis.js';
import { RedisCacheBackend } from '../../server/state/redis-cache-backend.js';
import { RedisUploadSessions } from '../../server/state/redis-upload-sessions.js';
import { sharedRegistryState } from '../../server/state/shared-registry-state.js';
import { startRedis, startSentinel, type RunningRedis } from '../helpers/redis.js';
import { waitUntil } from '../helpers/process.js';
import { bodyOf, gatedBody, rejectsOci, rejectsWith, tempDir } from '../unit/support.js';

const NAME = 'ddn-k8s/docker.io/langgenius/dify-api';
const silent = pino({ level: 'silent' });

describe('shared state in Redis', function () {
  this.timeout(60_000);
  let redis: RunningRedis;
  let state: SharedState;
  let root: { path: string; cleanup: () => Promise<void> };
  let n = 0;

  before(async () => {
    redis = await startRedis();
    root = await tempDir('redis-state');
  });
  beforeEach(async () => {
    // A fresh prefix per test keeps the tests independent on one server.
    state = connectRedis({ addr: redis.addr, db: 0, dialtimeout: '2s', keyprefix: `t${++n}:` }, silent);
    await waitUntil('redis ready', async () => state.isReady());
  });
  afterEach(() => state.close());
  after(async () => {
    await redis?.stop();
    await root?.cleanup();
  });

  /** Two "replicas": separate registry objects over one storage root and one Redis. */
  const replica = () => {
    const driver = new FilesystemDriver({ rootdirectory: root.path });
    return new Registry(driver, { deleteEnabled: true, shared: sharedRegistryState(state, driver, { uploadTtlMs: 60_000, descriptorCache: true }) });
  };

  describe('locks', () => {
    it('are held once, fenced, and free after release', async () => {
      const first = await RedisLock.acquire(state, 'lock:a');
      expect(first).to.not.equal(undefined);
      expect(await RedisLock.acquire(state, 'lock:a')).to.equal(undefined);
      await first!.release();
      const second = await RedisLock.acquire(state, 'lock:a');
      expect(second!.fence).to.equal(first!.fence + 1);
      await second!.release();
    });

    it('expire when the holder stops renewing, and a late release does not free the new holder', async () => {
      const stale = await RedisLock.acquire(state, 'lock:b', 300);
      // Simulate a holder that died: its renewals never reach Redis, so the key expires.
      await state.client.pexpire(`${state.prefix}lock:b`, 50);
      await new Promise((resolve) => setTimeout(resolve, 100));
      const fresh = await RedisLock.acquire(state, 'lock:b');
      expect(fresh, 'taken over after expiry').to.not.equal(undefined);
      await stale!.release();
      expect(await RedisLock.acquire(state, 'lock:b'), 'still held by the new owner').to.equal(undefined);
      await fresh!.release();
    });

    it('are renewed while held', async () => {
      const lock = await RedisLock.acquire(state, 'lock:c', 300);
      await new Promise((resolve) => setTimeout(resolve, 700));
      expect(lock!.isHeld()).to.equal(true);
      expect(await RedisLock.acquire(state, 'lock:c')).to.equal(undefined);
      await lock!.release();
    });
  });

  describe('upload sessions', () => {
    it('continue across replicas: POST on A, PATCH on B, PATCH on A, PUT on C', async () => {
      const [a, b, c] = [replica(), replica(), replica()];
      const parts = ['first chunk ', 'second chunk ', 'last chunk'];
      const session = await a.uploads.create(NAME);
      await b.uploads.append(NAME, session.id, { body: bodyOf(parts[0]!) });
      await a.uploads.append(NAME, session.id, { body: bodyOf(parts[1]!) });
      const digest = parseDigest(digestOf(parts.join('')))!;
      const blob = await c.uploads.complete(NAME, session.id, digest, { body: bodyOf(parts[2]!) });
      expect(blob).to.deep.equal({ digest: digest.digest, size: parts.join('').length });
      expect((await a.blobs.stat(NAME, digest)).size).to.equal(blob.size);
      await rejectsOci(b.uploads.get(NAME, session.id), 404, 'BLOB_UPLOAD_UNKNOWN');
    });

    it('keep their state in Redis per chunk and only the start in storage', async () => {
      const driver = new FilesystemDriver({ rootdirectory: root.path });
      const sessions = new RedisUploadSessions(state, driver, 60_000);
      const registry = replica();
      const session = await registry.uploads.create(NAME);
      await registry.uploads.append(NAME, session.id, { body: bodyOf('12345') });
      expect((await sessions.load(NAME, session.id))!.offset).to.equal(5);
      const stored = JSON.parse((await driver.getContent(paths.uploadState(NAME, session.id))).toString()) as { offset: number };
      expect(stored.offset, 'storage keeps the start, for upload purging').to.equal(0);
      expect(await state.client.pttl(`${state.prefix}upload:${session.id}`)).to.be.within(1, 60_000);
      expect(await sessions.load('library/other', session.id)).to.equal(undefined);
    });

    it('refuse a second writer while one holds the session (416)', async () => {
      const [a, b] = [replica(), replica()];
      const session = await a.uploads.create(NAME);
      const { body, sending, release } = gatedBody('slow ', 'body');
      const first = a.uploads.append(NAME, session.id, { body });
      await sending;
      await rejectsOci(b.uploads.append(NAME, session.id, { body: bodyOf('x') }), 416, 'BLOB_UPLOAD_INVALID');
      release();
      expect((await first).offset).to.equal(9);
    });
    it('end when cancelled on another replica during a chunk: the chunk answers unknown and its data goes', async () => {
      const [a, b] = [replica(), replica()];
      const session = await a.uploads.create(NAME);
      const { body, sending, release } = gatedBody('slow ', 'body');
      const chunk = a.uploads.append(NAME, session.id, { body });
      await sending;
      await b.uploads.cancel(NAME, session.id);
      await rejectsOci(a.uploads.get(NAME, session.id), 404, 'BLOB_UPLOAD_UNKNOWN');
      release();
      await rejectsOci(chunk, 404, 'BLOB_UPLOAD_UNKNOWN');
      const driver = new FilesystemDriver({ rootdirectory: root.path });
      expect(await driver.list(paths.upload(NAME, session.id)).catch(() => []), 'the session directory').to.deep.equal([]);
      await rejectsOci(b.uploads.cancel(NAME, session.id), 404, 'BLOB_UPLOAD_UNKNOWN');
    });
  });

  describe('descriptor cache', () => {
    it('shows a tag change on one replica at once on the other', async () => {
      const [a, b] = [replica(), replica()];
      const config = Buffer.from('{}');
      const manifest = (marker: string) =>
        Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: digestOf(config), size: 2 }, layers: [], annotations: { marker } }));
      const session = await a.uploads.create(NAME);
      await a.uploads.complete(NAME, session.id, parseDigest(digestOf(config))!, { body: bodyOf(config) });
      const one = manifest('one');
      const two = manifest('two');
      await a.manifests.put(NAME, 'latest', one, 'application/vnd.oci.image.manifest.v1+json');
      expect((await b.manifests.get(NAME, 'latest')).digest).to.equal(digestOf(one));
      await b.manifests.put(NAME, 'latest', two, 'application/vnd.oci.image.manifest.v1+json');
      expect((await a.manifests.get(NAME, 'latest')).digest).to.equal(digestOf(two));
      expect(await state.client.get(`${state.prefix}cache:${cacheKeys.tag(NAME, 'latest')}`)).to.equal(digestOf(two));
      await a.manifests.delete(NAME, digestOf(two));
      await rejectsOci(b.manifests.get(NAME, 'latest'), 404, 'MANIFEST_UNKNOWN');
      await rejectsOci(b.manifests.get(NAME, digestOf(two)), 404, 'MANIFEST_UNKNOWN');
    });

    it('does not let a reader that loaded before a delete put the old value back', async () => {
      const cache = new DescriptorCache(new RedisCacheBackend(state));
      let stored: string | undefined = 'old';
      let loaded!: () => void;
      const loading = new Promise<void>((resolve) => (loaded = resolve));
      let finishLoad!: () => void;
      const finish = new Promise<void>((resolve) => (finishLoad = resolve));
      // The reader loads 'old' from storage, then stalls before filling the cache...
      const reader = cache.read('k', async () => {
        const value = stored;
        loaded();
        await finish;
        return value;
      });
      await loading;
      // ...meanwhile the value is deleted...
      await cache.delete(['k'], async () => {
        stored = undefined;
      });
      finishLoad();
      expect(await reader).to.equal('old'); // that request raced the delete and may answer the old value
      // ...but every later read sees the deletion.
      expect(await cache.read('k', async () => stored)).to.equal(undefined);
    });

    it('serves reads from storage while Redis is down, refuses writes with a clear error, and recovers', async () => {
      const cache = new DescriptorCache(new RedisCacheBackend(state));
      await cache.write('w', 'v1', async () => undefined);
      await redis.halt();
      try {
        await waitUntil('redis seen down', async () => !state.isReady());
        const started = Date.now();
        expect(await cache.read('w', async () => 'from storage')).to.equal('from storage');
        await rejectsWith(cache.write('w', 'v2', async () => undefined), SharedStateUnavailableError);
        const sessions = new RedisUploadSessions(state, new FilesystemDriver({ rootdirectory: root.path }), 60_000);
        await rejectsWith(sessions.load(NAME, '00000000-0000-0000-0000-000000000000'), SharedStateUnavailableError);
        expect(Date.now() - started, 'fails fast while down').to.be.below(2_000);
      } finally {
        await redis.restart();
      }
      await waitUntil('redis reconnected', async () => state.isReady(), { timeoutMs: 10_000 });
      // Restarted empty: the cache misses and reads storage again.
      expect(await cache.read('w', async () => 'v3')).to.equal('v3');
    });
  });

  describe('through Sentinel', () => {
    it('finds the master from redis.sentinel and shares upload sessions through it', async () => {
      const sentinel = await startSentinel(redis, 'registry-master');
      const viaSentinel = connectRedis({ sentinel: { name: 'registry-master', addrs: [sentinel.addr] }, db: 0, dialtimeout: '2s', keyprefix: `s${++n}:` }, silent);
      try {
        await waitUntil('redis ready through sentinel', async () => viaSentinel.isReady(), { timeoutMs: 10_000 });
        const driver = new FilesystemDriver({ rootdirectory: root.path });
        const registry = (state: SharedState) => new Registry(driver, { deleteEnabled: true, shared: sharedRegistryState(state, driver, { uploadTtlMs: 60_000, descriptorCache: true }) });
        const session = await registry(viaSentinel).uploads.create(NAME);
        // The same server reached directly sees what went through Sentinel.
        expect(await state.client.exists(`${viaSentinel.prefix}upload:${session.id}`)).to.equal(1);
        await registry(viaSentinel).uploads.append(NAME, session.id, { body: bodyOf('via sentinel') });
        const digest = parseDigest(digestOf('via sentinel'))!;
        expect((await registry(viaSentinel).uploads.complete(NAME, session.id, digest)).size).to.equal(12);
      } finally {
        await viaSentinel.close();
        await sentinel.stop();
      }
    });
  });
});
