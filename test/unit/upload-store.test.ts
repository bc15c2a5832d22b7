import { hostname } from 'node:os';
import { appendFile, readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'chai';
import { PathNotFoundError, type FileWriter, type WriterOptions } from '../../storage-drivers/driver.js';
import { FilesystemDriver } from '../../storage-drivers/filesystem.js';
import { BlobStore } from '../../server/registry/blob-store.js';
import { digestOf, parseDigest } from '../../server/registry/digest.js';
import { paths } from '../../server/registry/paths.js';
import { rangeHeader } from '../../server/registry/errors.js';
import { UploadStore } from '../../server/registry/upload-store.js';
import { StorageUploadSessions } from '../../server/registry/upload-sessions.js';
import { bodyOf, failingBody, gatedBody, readAll, rejectsOci, rejectsWith, tempDir } from './support.js';

const NAME = 'ddn-k8s/docker.io/langgenius/dify-api';
const digest = (content: string | Buffer, algorithm: 'sha256' | 'sha512' = 'sha256') => parseDigest(digestOf(content, algorithm))!;

describe('upload store', () => {
  let root: string;
  let cleanup: () => Promise<void>;
  let driver: FilesystemDriver;
  let blobs: BlobStore;
  let uploads: UploadStore;
  before(async () => {
    ({ path: root, cleanup } = await tempDir('uploads'));
  });
  after(() => cleanup());
  beforeEach(() => {
    driver = new FilesystemDriver({ rootdirectory: root });
    blobs = new BlobStore(driver);
    uploads = new UploadStore(driver, blobs);
  });

  /** A second process (or a restarted one): new objects over the same directory, no live hash. */
  const restarted = () => {
    const fresh = new FilesystemDriver({ rootdirectory: root });
    return { driver: fresh, blobs: new BlobStore(fresh), uploads: new UploadStore(fresh, new BlobStore(fresh)) };
  };
  const onDisk = (path: string) => join(root, path);
  const blobContent = async (content: string) => (await driver.getContent(paths.blobData(digest(content)))).toString();

  it('creates a session stored as state.json with offset 0', async () => {
    const state = await uploads.create(NAME);
    expect(state.id).to.match(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(state.name).to.equal(NAME);
    expect(state.offset).to.equal(0);
    expect(state.sha256).to.equal(digest('').hex);
    expect(Date.now() - Date.parse(state.startedAt)).to.be.within(0, 10_000);
    expect(await uploads.get(NAME, state.id)).to.deep.equal(state);
    expect(JSON.parse(await readFile(onDisk(paths.uploadState(NAME, state.id)), 'utf8'))).to.deep.equal(state);
    expect(rangeHeader(state)).to.deep.equal({ Range: '0-0' });
  });

  it('answers BLOB_UPLOAD_UNKNOWN for a malformed id, an unknown id, or another repository', async () => {
    await rejectsOci(uploads.get(NAME, '../../etc'), 404, 'BLOB_UPLOAD_UNKNOWN');
    await rejectsOci(uploads.get(NAME, '00000000-0000-0000-0000-000000000000'), 404, 'BLOB_UPLOAD_UNKNOWN');
    const state = await uploads.create(NAME);
    await rejectsOci(uploads.get('library/other', state.id), 404, 'BLOB_UPLOAD_UNKNOWN');
    await rejectsOci(uploads.append('library/other', state.id, { body: bodyOf('x') }), 404, 'BLOB_UPLOAD_UNKNOWN');
  });

  it('appends chunks at their offsets, with and without Content-Range', async () => {
    const state = await uploads.create(NAME);
    const first = await uploads.append(NAME, state.id, { body: bodyOf('hello '), length: 6, range: { start: 0, end: 5 } });
    expect(first.offset).to.equal(6);
    expect(first.sha256).to.equal(digest('hello ').hex);
    expect(rangeHeader(first)).to.deep.equal({ Range: '0-5' });
    const second = await uploads.append(NAME, state.id, { body: bodyOf('wor', 'ld'), range: { start: 6, end: 10 } });
    expect(second.offset).to.equal(11);
    const third = await uploads.append(NAME, state.id, { body: bodyOf('!') }); // streamed, no range
    expect(third.offset).to.equal(12);
    expect(third.sha256).to.equal(digest('hello world!').hex);
    expect((await uploads.get(NAME, state.id)).offset).to.equal(12);
    expect(await readFile(onDisk(paths.uploadData(NAME, state.id)), 'utf8')).to.equal('hello world!');
  });

  it('refuses a chunk that does not start at the offset with 416 and the current Range', async () => {
    const state = await uploads.create(NAME);
    await uploads.append(NAME, state.id, { body: bodyOf('12345') });
    for (const start of [0, 4, 6]) {
      const error = await rejectsOci(
        uploads.append(NAME, state.id, { body: bodyOf('x'), length: 1, range: { start, end: start } }),
        416,
        'BLOB_UPLOAD_INVALID',
      );
      expect(error.headers).to.deep.equal({ Range: '0-4' });
    }
    expect((await uploads.get(NAME, state.id)).offset).to.equal(5);
    expect(await readFile(onDisk(paths.uploadData(NAME, state.id)), 'utf8')).to.equal('12345');
  });

  it('refuses a Content-Range that disagrees with Content-Length with 416', async () => {
    const state = await uploads.create(NAME);
    await rejectsOci(uploads.append(NAME, state.id, { body: bodyOf('abc'), length: 3, range: { start: 0, end: 9 } }), 416, 'BLOB_UPLOAD_INVALID');
    expect((await uploads.get(NAME, state.id)).offset).to.equal(0);
  });

  it('refuses a body shorter or longer than declared with SIZE_INVALID and keeps the earlier bytes', async () => {
    const state = await uploads.create(NAME);
    await uploads.append(NAME, state.id, { body: bodyOf('keep') });
    await rejectsOci(uploads.append(NAME, state.id, { body: bodyOf('ab'), length: 5 }), 400, 'SIZE_INVALID');
    await rejectsOci(uploads.append(NAME, state.id, { body: bodyOf('abc', 'def'), range: { start: 4, end: 7 } }), 400, 'SIZE_INVALID');
    const after = await uploads.get(NAME, state.id);
    expect(after.offset).to.equal(4);
    expect([undefined, digest('keep').hex]).to.include(after.sha256);
    expect((await stat(onDisk(paths.uploadData(NAME, state.id)))).size).to.equal(4);
    // The session is still usable after the failures, and the digest still verifies.
    await uploads.append(NAME, state.id, { body: bodyOf('+ok') });
    const blob = await uploads.complete(NAME, state.id, digest('keep+ok'));
    expect(blob).to.deep.equal({ digest: digest('keep+ok').digest, size: 7 });
  });

  it('completes with a final chunk, storing the blob content-addressed and linking it', async () => {
    const state = await uploads.create(NAME);
    await uploads.append(NAME, state.id, { body: bodyOf('part one, ') });
    const d = digest('part one, part two');
    const blob = await uploads.complete(NAME, state.id, d, { body: bodyOf('part two'), length: 8 });
    expect(blob).to.deep.equal({ digest: d.digest, size: 18 });
    expect(await blobContent('part one, part two')).to.equal('part one, part two');
    expect((await driver.getContent(paths.layerLink(NAME, d))).toString()).to.equal(d.digest);
    expect(await blobs.stat(NAME, d)).to.deep.equal({ digest: d.digest, size: 18 });
    await rejectsOci(uploads.get(NAME, state.id), 404, 'BLOB_UPLOAD_UNKNOWN');
    await rejectsWith(driver.stat(paths.upload(NAME, state.id)), PathNotFoundError);
  });

  it('completes body-less after an append (docker: one streamed PATCH, then PUT)', async () => {
    const content = Buffer.alloc(300 * 1024, 7);
    const state = await uploads.create(NAME);
    await uploads.append(NAME, state.id, { body: bodyOf(content.subarray(0, 100_000), content.subarray(100_000)) });
    const blob = await uploads.complete(NAME, state.id, digest(content));
    expect(blob.size).to.equal(content.length);
    expect((await driver.getContent(paths.blobData(digest(content)))).equals(content)).to.equal(true);
  });

  it('completes an empty upload', async () => {
    const state = await uploads.create(NAME);
    const blob = await uploads.complete(NAME, state.id, digest(''));
    expect(blob).to.deep.equal({ digest: digest('').digest, size: 0 });
    expect((await driver.getContent(paths.blobData(digest('')))).length).to.equal(0);
    expect(await blobs.isLinked(NAME, digest(''))).to.equal(true);
  });

  it('completes a monolithic upload (the whole body in the PUT)', async () => {
    const state = await uploads.create(NAME);
    const blob = await uploads.complete(NAME, state.id, digest('monolithic'), { body: bodyOf('monolithic'), length: 10 });
    expect(blob.size).to.equal(10);
    expect(await blobContent('monolithic')).to.equal('monolithic');
  });

  it('verifies a sha512 digest', async () => {
    const state = await uploads.create(NAME);
    await uploads.append(NAME, state.id, { body: bodyOf('sha512 content') });
    const d = digest('sha512 content', 'sha512');
    expect(await uploads.complete(NAME, state.id, d)).to.deep.equal({ digest: d.digest, size: 14 });
    expect((await driver.getContent(paths.blobData(d))).toString()).to.equal('sha512 content');
  });

  it('refuses a wrong digest with DIGEST_INVALID, stores nothing, and ends the session', async () => {
    const state = await uploads.create(NAME);
    await uploads.append(NAME, state.id, { body: bodyOf('actual') });
    const wrong = digest('expected');
    const error = await rejectsOci(uploads.complete(NAME, state.id, wrong), 400, 'DIGEST_INVALID');
    expect(error.detail).to.deep.equal({ expected: wrong.digest, actual: digest('actual').digest });
    expect(await blobs.statGlobal(wrong)).to.equal(undefined);
    expect(await blobs.statGlobal(digest('actual'))).to.equal(undefined);
    await rejectsOci(uploads.get(NAME, state.id), 404, 'BLOB_UPLOAD_UNKNOWN');
  });

  it('refuses a wrong sha512 digest too', async () => {
    const state = await uploads.create(NAME);
    await uploads.append(NAME, state.id, { body: bodyOf('abc') });
    await rejectsOci(uploads.complete(NAME, state.id, digest('abd', 'sha512')), 400, 'DIGEST_INVALID');
  });

  it('links without rewriting when the blob already exists from another repository', async () => {
    const other = await uploads.create('library/first');
    await uploads.complete('library/first', other.id, digest('shared'), { body: bodyOf('shared') });
    const before = await stat(onDisk(paths.blobData(digest('shared'))));
    const state = await uploads.create(NAME);
    await uploads.complete(NAME, state.id, digest('shared'), { body: bodyOf('shared') });
    const after = await stat(onDisk(paths.blobData(digest('shared'))));
    expect(after.ino).to.equal(before.ino);
    expect(await blobs.isLinked(NAME, digest('shared'))).to.equal(true);
    await rejectsOci(uploads.get(NAME, state.id), 404, 'BLOB_UPLOAD_UNKNOWN');
  });

  it('cancel removes the session and its data', async () => {
    const state = await uploads.create(NAME);
    await uploads.append(NAME, state.id, { body: bodyOf('abc') });
    await uploads.cancel(NAME, state.id);
    await rejectsOci(uploads.get(NAME, state.id), 404, 'BLOB_UPLOAD_UNKNOWN');
    const remaining = await readdir(onDisk(`${paths.repository(NAME)}/_uploads`));
    expect(remaining).to.not.include(state.id);
    await rejectsOci(uploads.cancel(NAME, state.id), 404, 'BLOB_UPLOAD_UNKNOWN');
  });

  it('answers 404 BLOB_UPLOAD_UNKNOWN, not a server error, when the session data vanished under a request', async () => {
    // As when another process purges or ends the session between this request's claim and its write.
    const state = await uploads.create(NAME);
    await uploads.append(NAME, state.id, { body: bodyOf('abc') });
    await driver.deleteFile(paths.uploadData(NAME, state.id));
    await rejectsOci(uploads.append(NAME, state.id, { body: bodyOf('def'), range: { start: 3, end: 5 } }), 404, 'BLOB_UPLOAD_UNKNOWN');
    await rejectsOci(uploads.complete(NAME, state.id, digest('abc')), 404, 'BLOB_UPLOAD_UNKNOWN');
  });

  it('refuses a concurrent append to the same upload with 416, then accepts the next one', async () => {
    const state = await uploads.create(NAME);
    const { body, sending, release } = gatedBody('abc', 'def');
    const first = uploads.append(NAME, state.id, { body });
    await sending;
    const error = await rejectsOci(uploads.append(NAME, state.id, { body: bodyOf('zzz') }), 416, 'BLOB_UPLOAD_INVALID');
    expect(error.headers).to.deep.equal({ Range: '0-0' });
    // Another process refuses it too (the lock is in storage, not in memory).
    await rejectsOci(restarted().uploads.append(NAME, state.id, { body: bodyOf('zzz') }), 416, 'BLOB_UPLOAD_INVALID');
    await rejectsOci(uploads.complete(NAME, state.id, digest('abcdef')), 416, 'BLOB_UPLOAD_INVALID');
    release();
    expect((await first).offset).to.equal(6);
    const next = await uploads.append(NAME, state.id, { body: bodyOf('ghi'), range: { start: 6, end: 8 } });
    expect(next.offset).to.equal(9);
    expect((await uploads.complete(NAME, state.id, digest('abcdefghi'))).size).to.equal(9);
  });

  for (const where of ['this process', 'another process']) {
    it(`a cancel from ${where} during a chunk ends the session: the chunk answers unknown and nothing is left`, async () => {
      const state = await uploads.create(NAME);
      await uploads.append(NAME, state.id, { body: bodyOf('abc') });
      const { body, sending, release } = gatedBody('def', 'ghi');
      const chunk = uploads.append(NAME, state.id, { body, range: { start: 3, end: 8 } });
      await sending;
      const canceller = where === 'this process' ? uploads : restarted().uploads;
      await canceller.cancel(NAME, state.id);
      await rejectsOci(uploads.get(NAME, state.id), 404, 'BLOB_UPLOAD_UNKNOWN');
      await rejectsOci(restarted().uploads.get(NAME, state.id), 404, 'BLOB_UPLOAD_UNKNOWN');
      release();
      await rejectsOci(chunk, 404, 'BLOB_UPLOAD_UNKNOWN');
      const remaining = await readdir(onDisk(`${paths.repository(NAME)}/_uploads`));
      expect(remaining, 'the session directory').to.not.include(state.id);
      await rejectsOci(uploads.append(NAME, state.id, { body: bodyOf('x'), range: { start: 9, end: 9 } }), 404, 'BLOB_UPLOAD_UNKNOWN');
      await rejectsOci(uploads.complete(NAME, state.id, digest('abcdefghi')), 404, 'BLOB_UPLOAD_UNKNOWN');
      await rejectsOci(uploads.cancel(NAME, state.id), 404, 'BLOB_UPLOAD_UNKNOWN');
    });
  }

  for (const where of ['this process', 'another process']) {
    it(`a cancel from ${where} during a chunk that then fails (the client went): nothing of the session is left`, async () => {
      const state = await uploads.create(NAME);
      await uploads.append(NAME, state.id, { body: bodyOf('abc') });
      const { body, sending, fail } = failingBody('def');
      const chunk = uploads.append(NAME, state.id, { body });
      await sending;
      await (where === 'this process' ? uploads : restarted().uploads).cancel(NAME, state.id);
      fail(new Error('aborted'));
      expect((await rejectsWith(chunk, Error)).message).to.equal('aborted');
      expect(await readdir(onDisk(`${paths.repository(NAME)}/_uploads`)), 'the session directory').to.not.include(state.id);
      await rejectsOci(uploads.get(NAME, state.id), 404, 'BLOB_UPLOAD_UNKNOWN');
    });
  }

  it('a chunk in the moment a failing holder of a cancelled session removes its data does not bring the session back', async () => {
    // The interleaving real I/O does not produce on demand: the holder's removal of the session waits on a
    // gate, which the late chunk opens when it is about to write (and waits for the removal to finish).
    let gate: Promise<void> | undefined;
    let removing!: () => void;
    const removalStarted = new Promise<void>((resolve) => (removing = resolve));
    let removed!: () => void;
    const removalDone = new Promise<void>((resolve) => (removed = resolve));
    let beforeWriter: (() => Promise<void>) | undefined;
    class Gated extends FilesystemDriver {
      override async delete(path: string): Promise<void> {
        if (!gate || !path.includes('/_uploads/')) return super.delete(path);
        const wait = gate;
        gate = undefined;
        removing();
        await wait;
        await super.delete(path).finally(removed);
      }
      override async writer(path: string, options?: WriterOptions): Promise<FileWriter> {
        const hook = beforeWriter;
        beforeWriter = undefined;
        await hook?.();
        return super.writer(path, options);
      }
    }
    const gated = new Gated({ rootdirectory: root });
    const here = new UploadStore(gated, new BlobStore(gated)); // remembers the session's step 0
    const state = await here.create(NAME);
    const { body, sending, fail } = failingBody('abc');
    const holder = here.append(NAME, state.id, { body });
    await sending;
    await restarted().uploads.cancel(NAME, state.id); // 204: the holder removes the data once it lets go
    let open!: () => void;
    gate = new Promise<void>((resolve) => (open = resolve));
    fail(new Error('client went'));
    await removalStarted; // the holder let go of its claim and is about to remove the session
    beforeWriter = async () => {
      open();
      await removalDone;
    };
    const outcome = await here.append(NAME, state.id, { body: bodyOf('xyz') }).then(() => 'accepted', (error: unknown) => error);
    open();
    await holder.catch(() => undefined);
    expect((outcome as { status?: number }).status, String(outcome)).to.equal(404);
    await rejectsOci(restarted().uploads.get(NAME, state.id), 404, 'BLOB_UPLOAD_UNKNOWN');
    expect(await readdir(onDisk(`${paths.repository(NAME)}/_uploads`)), 'the session directory').to.not.include(state.id);
  });

  it('cancels racing a chunk or the final PUT: never a 500, a cancelled session stays gone, nothing is left', async () => {
    const content = Buffer.alloc(2000, 'x');
    const outcomes = new Map<string, number>();
    const count = (what: string) => outcomes.set(what, (outcomes.get(what) ?? 0) + 1);
    const settle = async (what: string, work: Promise<unknown>) => {
      try {
        await work;
        count(`${what} ok`);
      } catch (error) {
        const status = (error as { status?: number }).status;
        expect(status, `${what}: ${(error as Error).stack}`).to.be.oneOf([404, 416]);
        count(`${what} ${status}`);
      }
    };
    for (let i = 0; i < 60; i++) {
      const other = i % 3 === 0 ? restarted().uploads : uploads;
      const state = await uploads.create(NAME);
      const write = i % 2 === 0
        ? uploads.complete(NAME, state.id, digest(content), { body: bodyOf(content) })
        : uploads.append(NAME, state.id, { body: bodyOf(content) });
      const cancelled = other.cancel(NAME, state.id).then(() => true, () => false);
      await Promise.all([settle(i % 2 === 0 ? 'PUT' : 'PATCH', write), settle('DELETE', cancelled)]);
      if (await cancelled) {
        // A cancel that answered 204 ended the session for good, whatever the writer did.
        await rejectsOci(uploads.get(NAME, state.id), 404, 'BLOB_UPLOAD_UNKNOWN');
        await rejectsOci(restarted().uploads.get(NAME, state.id), 404, 'BLOB_UPLOAD_UNKNOWN');
        expect(await readdir(onDisk(`${paths.repository(NAME)}/_uploads`)), `round ${i}: the session directory`).to.not.include(state.id);
      }
    }
    expect([...outcomes.keys()].join(', ')).to.include('DELETE');
  });

  it('a cancel during the final PUT lets the PUT finish the blob', async () => {
    const state = await uploads.create(NAME);
    const { body, sending, release } = gatedBody('last ', 'chunk');
    const put = uploads.complete(NAME, state.id, digest('last chunk'), { body });
    await sending;
    await uploads.cancel(NAME, state.id);
    release();
    expect((await put).size).to.equal(10);
    expect(await blobContent('last chunk')).to.equal('last chunk');
    expect(await readdir(onDisk(`${paths.repository(NAME)}/_uploads`))).to.not.include(state.id);
  });

  it('a single-request push whose commit fails cancels its writer (nothing left open until purged)', async () => {
    let cancelled = 0;
    const atomic = Object.assign(Object.create(driver) as FilesystemDriver, {
      writersCommitAtomically: true,
      async writer(path: string, options?: WriterOptions) {
        const inner = await driver.writer(path, options);
        return Object.assign(Object.create(inner) as FileWriter, {
          write: (chunk: Buffer) => inner.write(chunk),
          commit: async () => Promise.reject(new Error('commit failed')),
          cancel: async () => {
            cancelled++;
            await inner.cancel();
          },
        });
      },
    });
    const store = new UploadStore(atomic, new BlobStore(atomic));
    const error = await store.putWhole(NAME, digest('whole'), { body: bodyOf('whole'), length: 5 }).then(() => undefined, (e: Error) => e);
    expect(error?.message).to.equal('commit failed');
    expect(cancelled).to.equal(1);
  });

  it('a writer whose claim is no longer sure (it stalled past the expiry) stops writing: 416, nothing of the chunk kept', async () => {
    const base = new StorageUploadSessions(driver);
    let held = true;
    const sessions = Object.assign(Object.create(base) as StorageUploadSessions, {
      async claim(name: string, id: string) {
        const claim = await base.claim(name, id);
        // The same claim (save checks its class), its lock as sure as the test says.
        return claim && (Object.create(claim, { lock: { value: { release: () => claim.lock.release(), abandon: () => claim.lock.abandon?.(), isHeld: () => held } } }) as typeof claim);
      },
    });
    const store = new UploadStore(driver, new BlobStore(driver), sessions);
    const state = await store.create(NAME);
    const { body, sending, release } = gatedBody('abc', 'def');
    const chunk = store.append(NAME, state.id, { body });
    await sending;
    held = false; // meanwhile, another process took the session over
    release();
    await rejectsOci(chunk, 416, 'BLOB_UPLOAD_INVALID');
    expect((await store.get(NAME, state.id)).offset).to.equal(0);
  });

  describe('resuming in another process or after a crash (no live hash)', () => {
    it('completes body-less in a new UploadStore from the stored digest', async () => {
      const state = await uploads.create(NAME);
      await uploads.append(NAME, state.id, { body: bodyOf('written by process A') });
      const b = restarted();
      let reads = 0;
      const reader = b.driver.reader.bind(b.driver);
      b.driver.reader = (...args) => {
        reads++;
        return reader(...args);
      };
      expect((await b.uploads.complete(NAME, state.id, digest('written by process A'))).size).to.equal(20);
      expect(await blobContent('written by process A')).to.equal('written by process A');
      expect(reads, 'the data is not read again: the saved digest verifies it').to.equal(0);
    });

    it('appends in a new UploadStore and still verifies the digest', async () => {
      const state = await uploads.create(NAME);
      await uploads.append(NAME, state.id, { body: bodyOf('first half, ') });
      const b = restarted();
      const next = await b.uploads.append(NAME, state.id, { body: bodyOf('second half'), range: { start: 12, end: 22 } });
      expect(next.offset).to.equal(23);
      // Without the live hash the running digest may be left for the end, but if recorded it must be right.
      expect([undefined, digest('first half, second half').hex]).to.include(next.sha256);
      // And back on the first process, whose live hash is now stale.
      await uploads.append(NAME, state.id, { body: bodyOf('.') });
      expect((await b.uploads.complete(NAME, state.id, digest('first half, second half.'))).size).to.equal(24);
      await rejectsOci(b.uploads.complete(NAME, state.id, digest('first half, second half.')), 404, 'BLOB_UPLOAD_UNKNOWN');
    });

    it('drops bytes a crashed writer left beyond the committed offset, and takes over its lock', async () => {
      const state = await uploads.create(NAME);
      await uploads.append(NAME, state.id, { body: bodyOf('committed|') });
      // The crashed process: bytes written but never recorded in a state, and its claim on step 1 left behind.
      await appendFile(onDisk(paths.uploadData(NAME, state.id)), 'HALF-WRITTEN CHUNK');
      await driver.putContent(
        paths.uploadClaim(NAME, state.id, 1),
        JSON.stringify({ expires: Date.now() + 60_000, host: hostname(), pid: 99_999_999, instance: 'crashed' }),
      );
      const b = restarted();
      const status = await b.uploads.get(NAME, state.id);
      expect(status.offset).to.equal(10);
      const next = await b.uploads.append(NAME, state.id, { body: bodyOf('resumed'), range: { start: 10, end: 16 } });
      expect(next.offset).to.equal(17);
      expect(await readFile(onDisk(paths.uploadData(NAME, state.id)), 'utf8')).to.equal('committed|resumed');
      expect((await b.uploads.complete(NAME, state.id, digest('committed|resumed'))).size).to.equal(17);
      expect(await blobContent('committed|resumed')).to.equal('committed|resumed');
    });

    it('a body-less complete after a crash does not move the crashed writer\'s leftover bytes into the blob', async () => {
      const state = await uploads.create(NAME);
      await uploads.append(NAME, state.id, { body: bodyOf('the real blob') });
      // A later PATCH crashed after writing data but before recording it in state.json.
      await appendFile(onDisk(paths.uploadData(NAME, state.id)), 'LEFTOVER');
      const d = digest('the real blob');
      const blob = await restarted().uploads.complete(NAME, state.id, d);
      expect(blob.size).to.equal(13);
      // Regression: at b609441 the digest was verified from state.json and the data file moved as it was.
      const stored = await readAll(await driver.reader(paths.blobData(d)));
      expect(stored.toString()).to.equal('the real blob');
      expect(await blobs.stat(NAME, d)).to.deep.equal({ digest: d.digest, size: 13 });
    });

    it('reads the data once to rebuild the hash for a sha512 digest in a new process', async () => {
      const state = await uploads.create(NAME);
      await uploads.append(NAME, state.id, { body: bodyOf('abc') });
      const d = digest('abc', 'sha512');
      expect((await restarted().uploads.complete(NAME, state.id, d)).digest).to.equal(d.digest);
    });
  });
});
