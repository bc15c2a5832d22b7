import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { exists, type StorageDriver } from '../../storage-drivers/driver.js';
import { FilesystemDriver } from '../../storage-drivers/filesystem.js';
import { paths } from '../../server/registry/paths.js';
import { StorageUploadSessions, type SessionClaim, type UploadState } from '../../server/registry/upload-sessions.js';
import { rejectsOci, tempDir } from './support.js';

const NAME = 'journal/test';

/** The driver, with the names of the operations called on it recorded (and its flags overridden). */
function counted(driver: StorageDriver, flags: Partial<StorageDriver> = {}): { driver: StorageDriver; calls: string[] } {
  const calls: string[] = [];
  const proxy = new Proxy(driver, {
    get(target, property, receiver) {
      if (property in flags) return flags[property as keyof StorageDriver];
      const value = Reflect.get(target, property, receiver) as unknown;
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        calls.push(String(property));
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  return { driver: proxy, calls };
}

describe('upload sessions in storage (a journal of steps)', () => {
  let cleanup: () => Promise<void>;
  let driver: FilesystemDriver;
  before(async () => {
    const dir = await tempDir('sessions');
    cleanup = dir.cleanup;
    driver = new FilesystemDriver({ rootdirectory: dir.path });
  });
  after(() => cleanup());

  const newState = (): UploadState => ({ id: randomUUID(), name: NAME, offset: 0, startedAt: new Date().toISOString() });
  /** The state after a chunk: as the upload store saves it, with where the data continues. */
  const advance = (claim: SessionClaim, bytes: number): UploadState => {
    const offset = claim.state.offset + bytes;
    return { ...claim.state, offset, checkpoint: { size: offset, token: `parts up to ${offset}` } };
  };

  async function chunk(sessions: StorageUploadSessions, id: string, bytes: number): Promise<UploadState> {
    const claim = await sessions.claim(NAME, id);
    expect(claim, 'claimed').to.not.equal(undefined);
    const next = advance(claim!, bytes);
    await sessions.save(next, claim!);
    await claim!.lock.release();
    return next;
  }

  for (const prefixes of [false, true]) {
    const where = prefixes ? 'where directories are key prefixes (S3)' : 'on a filesystem';
    it(`claims the next chunk with one create (and two looks) when this process wrote the last step, and saves with one more, ${where}`, async () => {
      const { driver: watched, calls } = counted(driver, { directoriesArePrefixes: prefixes });
      const sessions = new StorageUploadSessions(watched);
      const state = newState();
      await sessions.create(state);
      await chunk(sessions, state.id, 5);
      calls.length = 0;
      const claim = await sessions.claim(NAME, state.id);
      expect(claim!.state.offset).to.equal(5);
      await sessions.save(advance(claim!, 7), claim!);
      await claim!.lock.release();
      // It also checks that the state is still there and has no next step (another process may have ended the
      // session): where directories are real, the state before the claim (creating it would bring the
      // directory back) and the next step after it; else both meanwhile.
      expect(calls).to.deep.equal(prefixes ? ['putContentIfAbsent', 'stat', 'stat', 'putContentIfAbsent'] : ['stat', 'putContentIfAbsent', 'stat', 'putContentIfAbsent']);
      expect((await sessions.load(NAME, state.id))!.offset).to.equal(12);
    });
  }

  it('continues where another process left off, whichever process took the previous chunk', async () => {
    const a = new StorageUploadSessions(driver);
    const b = new StorageUploadSessions(driver);
    const state = newState();
    await a.create(state);
    await chunk(a, state.id, 1);
    await chunk(b, state.id, 10); // b never saw the session: it lists it
    const third = await a.claim(NAME, state.id); // a's step is out of date: its claim fails, then it lists
    expect(third!.state.offset).to.equal(11);
    await a.save(advance(third!, 100), third!);
    await third!.lock.release();
    expect((await b.load(NAME, state.id))!.offset).to.equal(111);
  });

  it('gives a step to one request at a time; a claim released without a new state frees the same step', async () => {
    const a = new StorageUploadSessions(driver);
    const b = new StorageUploadSessions(driver);
    const state = newState();
    await a.create(state);
    const held = await a.claim(NAME, state.id);
    expect(await a.claim(NAME, state.id), 'same process').to.equal(undefined);
    expect(await b.claim(NAME, state.id), 'other process').to.equal(undefined);
    await held!.lock.release(); // the chunk failed: nothing saved
    const again = await b.claim(NAME, state.id);
    expect(again!.state.offset).to.equal(0);
    await again!.lock.release();
  });

  it('lets one of many concurrent claims win', async () => {
    const processes = Array.from({ length: 6 }, () => new StorageUploadSessions(driver));
    const state = newState();
    await processes[0]!.create(state);
    await chunk(processes[0]!, state.id, 3);
    const claims = await Promise.all(processes.flatMap((sessions) => [sessions.claim(NAME, state.id), sessions.claim(NAME, state.id)]));
    const won = claims.filter((claim) => claim !== undefined);
    expect(won).to.have.length(1);
    expect(won[0]!.state.offset).to.equal(3);
    await won[0]!.lock.release();
  });

  it('refuses to save over a step someone else wrote (a holder that lost its claim), with the newer range', async () => {
    const sessions = new StorageUploadSessions(driver);
    const state = newState();
    await sessions.create(state);
    const stalled = await sessions.claim(NAME, state.id);
    // Its successor (after the stalled claim expired) already wrote step 1.
    await driver.putContent(paths.uploadStep(NAME, state.id, 1), JSON.stringify({ ...state, offset: 42 }));
    const error = await rejectsOci(sessions.save(advance(stalled!, 7), stalled!), 416, 'BLOB_UPLOAD_INVALID');
    expect(error.headers).to.deep.equal({ Range: '0-41' });
    await stalled!.lock.release();
    // Step 0 stays claimed (a newer state exists): this process does not take it again from memory.
    expect(await exists(driver, paths.uploadClaim(NAME, state.id, 0)), 'claim-0 kept').to.equal(true);
    const next = await sessions.claim(NAME, state.id);
    expect(next!.state.offset).to.equal(42);
    await next!.lock.release();
  });

  it('counts a state write retried after its answer was lost as done', async () => {
    const sessions = new StorageUploadSessions(driver);
    const state = newState();
    await sessions.create(state);
    const claim = await sessions.claim(NAME, state.id);
    const next = advance(claim!, 9);
    // The first attempt arrived; only its answer did not.
    await driver.putContent(paths.uploadStep(NAME, state.id, 1), JSON.stringify(next));
    await sessions.save(next, claim!);
    await claim!.lock.release();
    expect((await sessions.load(NAME, state.id))!.offset).to.equal(9);
  });

  for (const prefixes of [false, true]) {
    it(`does not bring back a session removed by another process${prefixes ? ', where directories are key prefixes' : ''}`, async () => {
      const { driver: watched } = counted(driver, { directoriesArePrefixes: prefixes });
      const sessions = new StorageUploadSessions(watched);
      const state = newState();
      await sessions.create(state);
      await chunk(sessions, state.id, 2);
      await driver.delete(paths.upload(NAME, state.id));
      expect(await sessions.claim(NAME, state.id)).to.equal(undefined);
      expect(await sessions.load(NAME, state.id)).to.equal(undefined);
      const left = await driver.list(paths.upload(NAME, state.id)).catch(() => undefined);
      if (prefixes) expect(left ?? [], 'the claim was given back').to.deep.equal([]);
      else expect(left, 'no directory made again').to.equal(undefined);
    });
  }

  it('treats a session whose latest state is unreadable as unknown (the client starts again), not as a failure', async () => {
    const sessions = new StorageUploadSessions(driver);
    const state = newState();
    await sessions.create(state);
    await driver.putContent(paths.uploadStep(NAME, state.id, 1), '{"offset": "garbage');
    const fresh = new StorageUploadSessions(driver);
    expect(await fresh.load(NAME, state.id)).to.equal(undefined);
    expect(await fresh.claim(NAME, state.id)).to.equal(undefined);
  });

  it('reads a session written by an earlier version (one rewritten state.json) as its first step', async () => {
    const state = { ...newState(), offset: 9 };
    await driver.putContent(paths.uploadState(NAME, state.id), JSON.stringify(state));
    const sessions = new StorageUploadSessions(driver);
    const next = await chunk(sessions, state.id, 1);
    expect(next.offset).to.equal(10);
    expect((await new StorageUploadSessions(driver).load(NAME, state.id))!.offset).to.equal(10);
  });
});
