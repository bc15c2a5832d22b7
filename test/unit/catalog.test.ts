import { expect } from 'chai';
import { FilesystemDriver } from '../../storage-drivers/filesystem.js';
import { listRepositories } from '../../server/registry/catalog.js';
import { digestOf, parseDigest } from '../../server/registry/digest.js';
import { paths } from '../../server/registry/paths.js';
import { tempDir } from './support.js';

const d = parseDigest(digestOf('x'))!;

describe('catalog', () => {
  let cleanup: () => Promise<void>;
  let driver: FilesystemDriver;
  before(async () => {
    const dir = await tempDir('catalog');
    cleanup = dir.cleanup;
    driver = new FilesystemDriver({ rootdirectory: dir.path });
  });
  after(() => cleanup());

  it('is empty for an empty storage', async () => {
    expect(await listRepositories(driver)).to.deep.equal([]);
  });

  it('lists repositories holding manifests or layers, nested names included, sorted', async () => {
    await driver.putContent(paths.tagLink('ddn-k8s/docker.io/langgenius/dify-api', '1.12.1'), d.digest);
    await driver.putContent(paths.revisionLink('ddn-k8s/docker.io/nginx', d), d.digest);
    await driver.putContent(paths.layerLink('langgenius/dify-api', d), d.digest);
    await driver.putContent(paths.layerLink('langgenius', d), d.digest); // a parent that is a repository too
    await driver.putContent(paths.layerLink('a', d), d.digest);
    // An upload alone does not make a repository.
    await driver.putContent(paths.uploadState('only/uploads', '0b8e6d0e-5b8c-4d7e-9d2a-0f6f1b2c3d4e'), '{}');
    expect(await listRepositories(driver)).to.deep.equal([
      'a',
      'ddn-k8s/docker.io/langgenius/dify-api',
      'ddn-k8s/docker.io/nginx',
      'langgenius',
      'langgenius/dify-api',
    ]);
  });
});
