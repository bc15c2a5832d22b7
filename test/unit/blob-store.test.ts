import { expect } from 'chai';
import { PathNotFoundError } from '../../storage-drivers/driver.js';
import { FilesystemDriver } from '../../storage-drivers/filesystem.js';
import { BlobStore } from '../../server/registry/blob-store.js';
import { digestOf, parseDigest } from '../../server/registry/digest.js';
import { paths } from '../../server/registry/paths.js';
import { readAll, rejectsOci, rejectsWith, tempDir } from './support.js';

const d = (content: string) => parseDigest(digestOf(content))!;

describe('blob store', () => {
  let cleanup: () => Promise<void>;
  let driver: FilesystemDriver;
  let blobs: BlobStore;
  before(async () => {
    const dir = await tempDir('blobs');
    cleanup = dir.cleanup;
    driver = new FilesystemDriver({ rootdirectory: dir.path });
    blobs = new BlobStore(driver);
    await blobs.putVerified(d('0123456789'), Buffer.from('0123456789'));
    await blobs.link('lib/a', d('0123456789'));
  });
  after(() => cleanup());

  it('stats a blob through a repository that links it', async () => {
    expect(await blobs.stat('lib/a', d('0123456789'))).to.deep.equal({ digest: digestOf('0123456789'), size: 10 });
    expect(await blobs.isLinked('lib/a', d('0123456789'))).to.equal(true);
    expect((await driver.getContent(paths.layerLink('lib/a', d('0123456789')))).toString()).to.equal(digestOf('0123456789'));
  });

  it('answers BLOB_UNKNOWN through a repository that does not link it, or for unknown content', async () => {
    await rejectsOci(blobs.stat('lib/b', d('0123456789')), 404, 'BLOB_UNKNOWN');
    expect(await blobs.isLinked('lib/b', d('0123456789'))).to.equal(false);
    await rejectsOci(blobs.stat('lib/a', d('unknown')), 404, 'BLOB_UNKNOWN');
    expect(await blobs.statGlobal(d('unknown'))).to.equal(undefined);
    expect(await blobs.statGlobal(d('0123456789'))).to.equal(10);
  });

  it('answers BLOB_UNKNOWN when a link exists but the data is gone', async () => {
    await blobs.link('lib/a', d('dangling'));
    await rejectsOci(blobs.stat('lib/a', d('dangling')), 404, 'BLOB_UNKNOWN');
    await rejectsOci(blobs.read(d('dangling')), 404, 'BLOB_UNKNOWN');
  });

  it('reads whole or by range', async () => {
    expect((await readAll(await blobs.read(d('0123456789')))).toString()).to.equal('0123456789');
    expect((await readAll(await blobs.read(d('0123456789'), 3, 4))).toString()).to.equal('3456');
    expect(await blobs.redirectURL(d('0123456789'), 'GET')).to.equal(undefined);
  });

  it('mounts from a named repository only when linked there', async () => {
    expect(await blobs.mount('lib/c', d('0123456789'), 'lib/nowhere')).to.equal(undefined);
    expect(await blobs.isLinked('lib/c', d('0123456789'))).to.equal(false);
    expect(await blobs.mount('lib/c', d('0123456789'), 'lib/a')).to.deep.equal({ digest: digestOf('0123456789'), size: 10 });
    expect(await blobs.isLinked('lib/c', d('0123456789'))).to.equal(true);
  });

  it('mounts automatically (no from) when the data exists anywhere, never for unknown content', async () => {
    expect(await blobs.mount('lib/d', d('0123456789'), undefined)).to.deep.equal({ digest: digestOf('0123456789'), size: 10 });
    expect(await blobs.mount('lib/d', d('unknown'), undefined)).to.equal(undefined);
    expect(await blobs.isLinked('lib/d', d('unknown'))).to.equal(false);
  });

  it('unlinks from one repository, keeping the data and other links', async () => {
    await blobs.link('lib/e', d('0123456789'));
    await blobs.unlink('lib/e', d('0123456789'));
    await rejectsOci(blobs.stat('lib/e', d('0123456789')), 404, 'BLOB_UNKNOWN');
    await rejectsWith(driver.stat(`${paths.repository('lib/e')}/_layers/sha256/${d('0123456789').hex}`), PathNotFoundError);
    expect(await blobs.statGlobal(d('0123456789'))).to.equal(10);
    expect((await blobs.stat('lib/a', d('0123456789'))).size).to.equal(10);
    await rejectsOci(blobs.unlink('lib/e', d('0123456789')), 404, 'BLOB_UNKNOWN');
  });

  it('putVerified does not rewrite existing content', async () => {
    await blobs.putVerified(d('0123456789'), Buffer.from('0123456789'));
    expect((await driver.getContent(paths.blobData(d('0123456789')))).toString()).to.equal('0123456789');
  });
});
