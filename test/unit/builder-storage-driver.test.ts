import { expect } from 'chai';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { chooseStorageDriver, existingDriver, overlayWorks } from '../../builder/storage-driver.js';
import { removeTree } from '../helpers/cleanup.js';
import { run, tempDir } from '../helpers/process.js';

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

  it("probes with buildah's own overlay driver, and leaves neither a mount nor a directory behind", async () => {
    const supported = await overlayWorks('buildah', dir);
    expect(supported).to.be.a('boolean');
    expect(await readdir(dir)).to.deep.equal([]);
    expect(await readFile('/proc/self/mounts', 'utf8')).not.to.include(dir);
  });

  it('answers "no" where the driver refuses (a directory on overlayfs) or buildah cannot run, never throws', async () => {
    // An overlay mount of our own: buildah's overlay driver refuses to stack on it, whatever the kernel allows.
    for (const sub of ['lower', 'upper', 'work', 'merged']) await mkdir(join(dir, sub));
    const mounted = await run('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${dir}/lower,upperdir=${dir}/upper,workdir=${dir}/work`, join(dir, 'merged')], { allowFailure: true });
    if (mounted.code === 0) expect(await overlayWorks('buildah', join(dir, 'merged'))).to.equal(false);
    expect(await overlayWorks('/nonexistent/buildah', dir)).to.equal(false);
    expect((await readdir(dir)).sort()).to.deep.equal(['lower', 'merged', 'upper', 'work']);
  });

  it('a root it cannot read is an error, not a new root beside the old one', async () => {
    await writeFile(join(dir, 'file'), '');
    let failed: unknown;
    await existingDriver(join(dir, 'file')).catch((error: unknown) => (failed = error));
    expect((failed as NodeJS.ErrnoException | undefined)?.code).to.equal('ENOTDIR');
  });
});
