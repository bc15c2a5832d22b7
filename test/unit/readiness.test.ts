import { expect } from 'chai';
import pino from 'pino';
import { Readiness } from '../../server/http/health.js';
import type { StorageDriver } from '../../storage-drivers/driver.js';
import { FilesystemDriver } from '../../storage-drivers/filesystem.js';
import { tempDir } from './support.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('readiness: the storage check', () => {
  it('a storage that never answers (a hung mount) is unready after the timeout, with one check at a time', async () => {
    const dir = await tempDir('readiness-hung');
    const real = new FilesystemDriver({ rootdirectory: dir.path });
    let calls = 0;
    let answer: (() => void) | undefined;
    let hung = false;
    // The one fault a real filesystem cannot be made to show here: a health check that never settles.
    const driver = new Proxy(real, {
      get(target, key, receiver) {
        if (key !== 'healthCheck') return Reflect.get(target, key, receiver);
        return async () => {
          calls++;
          if (hung) await new Promise<void>((resolve) => (answer = resolve));
          return target.healthCheck();
        };
      },
    }) as StorageDriver;
    const readiness = new Readiness(driver, { intervalMs: 20, threshold: 3, enabled: true, timeoutMs: 100 }, pino({ level: 'silent' }));
    try {
      readiness.start();
      await sleep(60);
      expect(readiness.report().ready).to.equal(true);
      hung = true;
      await sleep(400);
      const report = readiness.report();
      expect(report.ready).to.equal(false);
      expect(report.failed).to.deep.equal(['storage']);
      expect(report.checks.storage!.error).to.match(/has not answered for \d+ s/);
      const callsWhileHung = calls;
      await sleep(200);
      expect(calls, 'no second check starts while one hangs').to.equal(callsWhileHung);
      // The mount answers again: ready at the next check.
      hung = false;
      answer!();
      await sleep(100);
      expect(readiness.report().ready).to.equal(true);
      expect(calls).to.be.above(callsWhileHung);
    } finally {
      readiness.stop();
      await dir.cleanup();
    }
  });
});
