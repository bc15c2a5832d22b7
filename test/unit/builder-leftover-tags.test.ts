import { expect } from 'chai';
import { removeLeftoverTempTags } from '../../builder/leftover-tags.js';
import { tempTag } from '../../builder/platform-build.js';
import { newJobId } from '../../server/jobs/ids.js';
import { LocalJobQueue } from '../../server/jobs/local-queue.js';
import type { JobQueue } from '../../server/jobs/queue.js';
import { digestOf, parseDigest } from '../../server/registry/digest.js';
import { OCI_MANIFEST } from '../../server/registry/media-types.js';
import { Registry } from '../../server/registry/registry.js';
import { FilesystemDriver } from '../../storage-drivers/filesystem.js';
import { tempDir } from './support.js';

describe('builder: temporary tags that outlived their builds', () => {
  let root: string;
  let cleanup: () => Promise<void>;
  let registry: Registry;
  let queue: LocalJobQueue;
  const logger = { info: () => undefined, warn: () => undefined };
  const REPO = 'langgenius/dify-api';

  beforeEach(async () => {
    ({ path: root, cleanup } = await tempDir('leftover-tags'));
    const driver = new FilesystemDriver({ rootdirectory: root });
    registry = new Registry(driver, { deleteEnabled: true });
    queue = new LocalJobQueue(driver); // never started: submitted jobs stay queued
  });
  afterEach(async () => {
    await queue.close();
    await cleanup();
  });

  async function image(repo: string, tags: string[]): Promise<void> {
    const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux' }));
    await registry.blobs.putVerified(parseDigest(digestOf(config))!, config);
    await registry.blobs.link(repo, parseDigest(digestOf(config))!);
    const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: digestOf(config), size: config.length }, layers: [] }));
    for (const tag of tags) await registry.manifests.put(repo, tag, manifest, OCI_MANIFEST);
  }

  it('removes the tags of ended and long-unknown builds; keeps those of builds that may still use them, and every other tag', async () => {
    const cancelled = await queue.submit('build', { repository: REPO });
    await queue.cancel(cancelled.id);
    const waiting = await queue.submit('build', { repository: REPO });
    const elsewhere = await queue.submit('build', { repository: 'team/api' });
    await queue.cancel(elsewhere.id);
    const forgotten = newJobId(Date.now() - 8 * 86_400_000);
    const recent = newJobId(Date.now() - 60_000);
    await image(REPO, [
      '1.12.1',
      tempTag(cancelled.id, 'linux/amd64'),
      tempTag(cancelled.id, 'linux/arm64'),
      tempTag(waiting.id, 'linux/amd64'),
      tempTag(forgotten, 'linux/arm64'),
      tempTag(recent, 'linux/arm64'),
      'build-tmp-not-a-job-id',
    ]);
    await image('team/api', [tempTag(elsewhere.id, 'linux/arm64'), 'latest']);
    // A repository no build job names is not looked at.
    await image('other/app', [tempTag(forgotten, 'linux/amd64')]);

    const removed = await removeLeftoverTempTags({ queue, registry, logger });
    expect(removed.sort()).to.deep.equal(
      [
        `${REPO}:${tempTag(cancelled.id, 'linux/amd64')}`,
        `${REPO}:${tempTag(cancelled.id, 'linux/arm64')}`,
        `${REPO}:${tempTag(forgotten, 'linux/arm64')}`,
        `team/api:${tempTag(elsewhere.id, 'linux/arm64')}`,
      ].sort(),
    );
    expect((await registry.tags.all(REPO)).sort()).to.deep.equal(['1.12.1', 'build-tmp-not-a-job-id', tempTag(recent, 'linux/arm64'), tempTag(waiting.id, 'linux/amd64')].sort());
    expect(await registry.tags.all('team/api')).to.deep.equal(['latest']);
    expect(await registry.tags.all('other/app')).to.deep.equal([tempTag(forgotten, 'linux/amd64')]);
    // Nothing left to do the second time.
    expect(await removeLeftoverTempTags({ queue, registry, logger })).to.deep.equal([]);
  });

  it('keeps a tag whose job cannot be looked up now', async () => {
    const cancelled = await queue.submit('build', { repository: REPO });
    await queue.cancel(cancelled.id);
    await image(REPO, [tempTag(cancelled.id, 'linux/amd64')]);
    const flaky: Pick<JobQueue, 'list' | 'get'> = { list: (query) => queue.list(query), get: () => Promise.reject(new Error('redis: connection lost')) };
    expect(await removeLeftoverTempTags({ queue: flaky, registry, logger })).to.deep.equal([]);
    expect(await registry.tags.all(REPO)).to.deep.equal([tempTag(cancelled.id, 'linux/amd64')]);
  });
});
