import { hostname } from 'node:os';
import { expect } from 'chai';
import { PathNotFoundError, type StorageDriver } from '../../storage-drivers/driver.js';
import { FilesystemDriver } from '../../storage-drivers/filesystem.js';
import { tryLock } from '../../server/registry/upload-lock.js';
import { rejectsWith, tempDir } from './support.js';

/** A pid above Linux's pid_max (2^22): no process can have it. */
const DEAD_PID = 99_999_999;

describe('upload lock', () => {
  let cleanup: () => Promise<void>;
  let driver: FilesystemDriver;
  let n = 0;
  let path: string;
  before(async () => {
    const dir = await tempDir('lock');
    cleanup = dir.cleanup;
    driver = new FilesystemDriver({ rootdirectory: dir.path });
  });
  after(() => cleanup());
  beforeEach(() => {
    path = `/locks/${++n}/lock`;
  });

  const owner = (fields: Record<string, unknown>) => driver.putContent(path, JSON.stringify(fields));

  it('is taken once, records its owner and expiry, and is free again after release', async () => {
    const now = () => 1_000_000;
    const lock = await tryLock(driver, path, { now });
    expect(lock).to.not.equal(undefined);
    const content = JSON.parse((await driver.getContent(path)).toString()) as Record<string, unknown>;
    expect(content.expires).to.equal(1_060_000);
    expect(content.host).to.equal(hostname());
    expect(content.pid).to.equal(process.pid);
    expect(content.instance).to.be.a('string');
    expect(await tryLock(driver, path, { now })).to.equal(undefined);
    await lock!.release();
    await rejectsWith(driver.stat(path), PathNotFoundError);
    const again = await tryLock(driver, path, { now });
    expect(again).to.not.equal(undefined);
    await again!.release();
  });

  it('once abandoned (its file deleted with its directory), neither renews nor removes anything', async () => {
    const lock = await tryLock(driver, path);
    await driver.delete(path.replace(/\/lock$/, ''));
    lock!.abandon!();
    const successor = await tryLock(driver, path);
    expect(successor, 'the path is free').to.not.equal(undefined);
    await lock!.release();
    expect((await driver.getContent(path)).length, "the successor's lock stays").to.be.greaterThan(0);
    await successor!.release();
  });

  it('tells its holder when it can no longer be sure of it (no renewal for half the expiry)', async () => {
    let at = 1_000_000;
    const lock = (await tryLock(driver, path, { now: () => at }))!;
    expect(lock.isHeld!()).to.equal(true);
    at += 29_000;
    expect(lock.isHeld!()).to.equal(true);
    at += 2_000; // renewals (every 20 s) did not land: someone may take it over once it expires
    expect(lock.isHeld!()).to.equal(false);
    await lock.release();
  });

  it('once unsure, lost for good: later renewals neither bring it back nor overwrite a new holder', async () => {
    let at = 1_000_000;
    const lock = (await tryLock(driver, path, { now: () => at, renewMs: 10 }))!;
    at += 31_000; // renewals did not land for half the expiry
    await new Promise((resolve) => setTimeout(resolve, 50));
    at -= 31_000; // storage is back: a renewal would succeed now
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(lock.isHeld!()).to.equal(false);
    await owner({ expires: Date.now() + 60_000, host: 'other', pid: 1, instance: 'x', token: 'theirs' });
    await new Promise((resolve) => setTimeout(resolve, 50));
    await lock.release();
    expect(JSON.parse((await driver.getContent(path)).toString()).token, 'the new holder keeps its lock').to.equal('theirs');
  });

  it('is lost when a renewal finds another holder\'s lock in its place', async () => {
    const lock = (await tryLock(driver, path, { renewMs: 10 }))!;
    await owner({ expires: Date.now() + 60_000, host: 'other', pid: 1, instance: 'x', token: 'theirs' });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(lock.isHeld!()).to.equal(false);
    await lock.release();
    expect(JSON.parse((await driver.getContent(path)).toString()).token).to.equal('theirs');
  });

  it('lets one of many concurrent claims win', async () => {
    const locks = await Promise.all(Array.from({ length: 8 }, () => tryLock(driver, path)));
    const held = locks.filter((lock) => lock !== undefined);
    expect(held).to.have.length(1);
    await held[0]!.release();
  });

  it('refuses a live lock of another host', async () => {
    await owner({ expires: Date.now() + 30_000, host: 'some-other-host', pid: DEAD_PID, instance: 'x' });
    expect(await tryLock(driver, path)).to.equal(undefined);
  });

  it('takes over an expired lock of another host', async () => {
    await owner({ expires: 5_000, host: 'some-other-host', pid: 1, instance: 'x' });
    const lock = await tryLock(driver, path, { now: () => 10_000 });
    expect(lock).to.not.equal(undefined);
    expect(JSON.parse((await driver.getContent(path)).toString()).expires).to.equal(70_000);
    await lock!.release();
  });

  it('takes over at once a lock of a dead process on this host', async () => {
    await owner({ expires: Date.now() + 30_000, host: hostname(), pid: DEAD_PID, instance: 'x' });
    const lock = await tryLock(driver, path);
    expect(lock).to.not.equal(undefined);
    await lock!.release();
  });

  it('takes over a lock of an earlier life of this very pid (container restart)', async () => {
    await owner({ expires: Date.now() + 30_000, host: hostname(), pid: process.pid, instance: 'an-earlier-instance' });
    const lock = await tryLock(driver, path);
    expect(lock).to.not.equal(undefined);
    await lock!.release();
  });

  it('refuses a live lock of another living process on this host', async () => {
    await owner({ expires: Date.now() + 30_000, host: hostname(), pid: process.ppid, instance: 'x' });
    expect(await tryLock(driver, path)).to.equal(undefined);
  });

  it('treats an unreadable lock file as stale', async () => {
    await driver.putContent(path, 'not json');
    const lock = await tryLock(driver, path);
    expect(lock).to.not.equal(undefined);
    await lock!.release();
  });

  it('treats a lock without an expiry as stale', async () => {
    await owner({ host: 'some-other-host', pid: 1 });
    const lock = await tryLock(driver, path);
    expect(lock).to.not.equal(undefined);
    await lock!.release();
  });

  describe('taking over a stale lock', () => {
    /** The driver as one process sees it, with a pause after reading the lock. */
    function pausingAfterRead(inner: StorageDriver, pause: () => Promise<void>): StorageDriver {
      return new Proxy(inner, {
        get(target, property, receiver) {
          if (property === 'getContent') {
            return async (p: string) => {
              const content = await target.getContent(p);
              await pause();
              return content;
            };
          }
          const value = Reflect.get(target, property, receiver);
          return typeof value === 'function' ? value.bind(target) : value;
        },
      });
    }

    it('gives it to exactly one of two processes that both saw it stale', async () => {
      await owner({ expires: 1, host: 'crashed-host', pid: 1, instance: 'x' });
      let aHolds!: () => void;
      const aHasIt = new Promise<void>((resolve) => (aHolds = resolve));
      // B reads the stale lock, then waits until A has taken it over completely before acting on what it read.
      const b = pausingAfterRead(driver, () => aHasIt);
      const lockBPromise = tryLock(b, path);
      const lockA = await tryLock(driver, path);
      aHolds();
      const lockB = await lockBPromise;
      expect(lockA, 'A took over the stale lock').not.to.equal(undefined);
      expect(lockB, 'B acted on a stale read').to.equal(undefined);
      await lockA?.release();
    });

    it('gives it to exactly one of many concurrent claimants', async () => {
      await owner({ expires: 1, host: 'crashed-host', pid: 1, instance: 'x' });
      const locks = await Promise.all(Array.from({ length: 8 }, () => tryLock(driver, path)));
      expect(locks.filter((lock) => lock !== undefined), 'holders of one lock').to.have.length(1);
      await Promise.all(locks.map((lock) => lock?.release()));
      expect(await tryLock(driver, path), 'free again after release').not.to.equal(undefined);
    });
  });
});
