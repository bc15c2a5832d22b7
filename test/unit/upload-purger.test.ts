import { expect } from 'chai';
import { FilesystemDriver } from '../../storage-drivers/filesystem.js';
import { BlobStore } from '../../server/registry/blob-store.js';
import { BLOBS, paths, REPOSITORIES } from '../../server/registry/paths.js';
import { UploadStore } from '../../server/registry/upload-store.js';
import { purgeUploads } from '../../server/registry/upload-purger.js';
import { tempDir } from './support.js';

const HOUR = 3_600_000;

describe('upload purging', () => {
  let cleanup: () => Promise<void>;
  let driver: FilesystemDriver;
  let uploads: UploadStore;
  before(async () => {
    const dir = await tempDir('purge');
    cleanup = dir.cleanup;
    driver = new FilesystemDriver({ rootdirectory: dir.path });
    uploads = new UploadStore(driver, new BlobStore(driver));
  });
  after(() => cleanup());

  async function sessionAged(name: string, hours: number): Promise<string> {
    const state = await uploads.create(name);
    const startedAt = new Date(Date.now() - hours * HOUR).toISOString();
    await driver.putContent(paths.uploadState(name, state.id), JSON.stringify({ ...state, startedAt }));
    return state.id;
  }

  it('removes sessions older than the age, in nested repositories, and keeps younger ones', async () => {
    const old = await sessionAged('a/b.c/old', 200);
    const young = await sessionAged('a/b.c/young', 1);
    const purged = await purgeUploads(driver, { ageMs: 168 * HOUR, dryRun: false });
    expect(purged).to.deep.equal([paths.upload('a/b.c/old', old)]);
    await uploads.get('a/b.c/young', young);
    const error = await uploads.get('a/b.c/old', old).then(() => undefined, (e: { code?: string }) => e);
    expect(error?.code).to.equal('BLOB_UPLOAD_UNKNOWN');
  });

  it('aborts stale unfinished writes under blobs and repositories (where the driver has them), older than the age', async () => {
    const calls: Array<[string, number]> = [];
    const withWriters = Object.assign(Object.create(driver) as FilesystemDriver, {
      abortStaleWriters: async (path: string, startedBefore: Date) => {
        calls.push([path, startedBefore.getTime()]);
        return 0;
      },
    });
    const now = new Date();
    await purgeUploads(withWriters, { ageMs: 168 * HOUR, dryRun: false }, now);
    expect(calls).to.deep.equal([[BLOBS, now.getTime() - 168 * HOUR], [REPOSITORIES, now.getTime() - 168 * HOUR]]);
    calls.length = 0;
    await purgeUploads(withWriters, { ageMs: 168 * HOUR, dryRun: true }, now);
    expect(calls, 'not in a dry run').to.deep.equal([]);
  });

  it('only reports in dry-run mode', async () => {
    const old = await sessionAged('dry/run', 500);
    const purged = await purgeUploads(driver, { ageMs: 168 * HOUR, dryRun: true });
    expect(purged).to.include(paths.upload('dry/run', old));
    await uploads.get('dry/run', old);
  });

  it('uses the directory age when the state was never written (a crash right after creating it)', async () => {
    await driver.putContent(`${paths.upload('crashed/early', '00000000-0000-4000-8000-000000000000')}/data`, 'x');
    const purged = await purgeUploads(driver, { ageMs: 0, dryRun: false }, new Date(Date.now() + 1000));
    expect(purged).to.include(paths.upload('crashed/early', '00000000-0000-4000-8000-000000000000'));
  });
});
