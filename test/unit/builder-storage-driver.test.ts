import { expect } from 'chai';
import { mkdir, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { chooseStorageDriver, existingDriver, overlayMounts } from '../../builder/storage-driver.js';
import { removeTree } from '../helpers/cleanup.js';
import { tempDir } from '../helpers/process.js';

describe("builder: buildah's storage driver", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await tempDir('storage-driver');
  });
  afterEach(async () => {
    await removeTree(dir);
  });

  const probe = (answer: boolean) => {
    const calls: number[] = [];
    return { calls, supported: async () => (calls.push(1), answer) };
  };

  it('uses a configured driver as it is, without probing', async () => {
    const overlay = probe(true);
    expect(await chooseStorageDriver('vfs', join(dir, 'root'), overlay.supported)).to.equal('vfs');
    expect(await chooseStorageDriver('btrfs', join(dir, 'root'), overlay.supported)).to.equal('btrfs');
    expect(overlay.calls).to.have.length(0);
  });

  it('auto: a storage root keeps the driver it was made with, whatever the kernel supports', async () => {
    await mkdir(join(dir, 'vfs-root', 'vfs-layers'), { recursive: true });
    await mkdir(join(dir, 'overlay-root', 'overlay-layers'), { recursive: true });
    expect(await existingDriver(join(dir, 'vfs-root'))).to.equal('vfs');
    expect(await chooseStorageDriver('auto', join(dir, 'vfs-root'), probe(true).supported)).to.equal('vfs');
    expect(await chooseStorageDriver('auto', join(dir, 'overlay-root'), probe(false).supported)).to.equal('overlay');
  });

  it('auto: a new storage root gets overlay where it mounts, else vfs', async () => {
    expect(await existingDriver(join(dir, 'missing'))).to.equal(undefined);
    expect(await chooseStorageDriver('auto', join(dir, 'missing'), probe(true).supported)).to.equal('overlay');
    expect(await chooseStorageDriver('auto', join(dir, 'missing'), probe(false).supported)).to.equal('vfs');
  });

  it('probes overlay with a real mount and leaves neither a mount nor a directory behind', async () => {
    const supported = await overlayMounts(dir);
    expect(supported).to.be.a('boolean');
    expect(await readdir(dir)).to.deep.equal([]);
    expect(await readFile('/proc/self/mounts', 'utf8')).not.to.include(dir);
  });

  it('answers "no" when the mount fails or cannot run, never throws', async () => {
    expect(await overlayMounts(dir, 'false')).to.equal(false);
    expect(await overlayMounts(dir, '/nonexistent/mount')).to.equal(false);
    expect(await readdir(dir)).to.deep.equal([]);
  });
});
