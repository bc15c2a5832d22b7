import { expect } from 'chai';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { chooseStorageDriver, existingDriver, overlayWorks } from '../../builder/storage-driver.js';
import { removeTree } from '../helpers/cleanup.js';
import { run, tempDir } from '../helpers/process.js';
import { JobError, RetryableJobError } from '../../server/jobs/job.js';

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

  it('answers "no" where the driver refuses (a directory on overlayfs)', async () => {
    // An overlay mount of our own: buildah's overlay driver refuses to stack on it, whatever the kernel allows.
    for (const sub of ['lower', 'upper', 'work', 'merged']) await mkdir(join(dir, sub));
    const mounted = await run('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${dir}/lower,upperdir=${dir}/upper,workdir=${dir}/work`, join(dir, 'merged')], { allowFailure: true });
    if (mounted.code === 0) expect(await overlayWorks('buildah', join(dir, 'merged'))).to.equal(false);
    expect((await readdir(dir)).sort()).to.deep.equal(['lower', 'merged', 'upper', 'work']);
  });

  describe('a probe that cannot tell throws rather than answer "no" (that would make a vfs root for good)', () => {
    /** A stand-in for buildah: the faults of a busy or full machine, which the real one cannot be made to show. */
    async function fakeBuildah(script: string): Promise<string> {
      const path = join(dir, 'fake-buildah');
      await writeFile(path, `#!/bin/sh\n${script}\n`, { mode: 0o755 });
      return path;
    }
    async function failure(probe: Promise<boolean>): Promise<JobError> {
      const error = await probe.then(
        () => undefined,
        (thrown: unknown) => thrown,
      );
      expect(error).to.be.instanceOf(JobError);
      return error as JobError;
    }

    it('a refusal is "no"; a full disk, a timeout or a kill are retryable errors', async () => {
      const refusing = await fakeBuildah('echo \'Error: kernel does not support overlay fs: overlay: the backing xfs filesystem is formatted without d_type support\' >&2; exit 125');
      expect(await overlayWorks(refusing, dir)).to.equal(false);

      const full = await failure(overlayWorks(await fakeBuildah('echo \'Error: mkdir /x/overlay: no space left on device\' >&2; exit 125'), dir));
      expect(full).to.be.instanceOf(RetryableJobError);
      expect(full.message).to.include('no space left on device');

      const slow = await failure(overlayWorks(await fakeBuildah('exec sleep 30'), dir, 300));
      expect(slow).to.be.instanceOf(RetryableJobError);
      expect(slow.message).to.include('no answer in 0.3 s');

      const killed = await failure(overlayWorks(await fakeBuildah('kill -KILL $$'), dir));
      expect(killed).to.be.instanceOf(RetryableJobError);
      expect(killed.message).to.include('killed by SIGKILL');
    });

    it('a buildah that cannot start is a final error that says so', async () => {
      const missing = await failure(overlayWorks('/nonexistent/buildah', dir));
      expect(missing).not.to.be.instanceOf(RetryableJobError);
      expect(missing.code).to.equal('BUILDER_UNAVAILABLE');
      expect(missing.message).to.include('/nonexistent/buildah');
    });

    it('auto: the choice fails with the probe, it does not fall back to vfs', async () => {
      const failed = await chooseStorageDriver('auto', join(dir, 'root'), () => overlayWorks('/nonexistent/buildah', dir)).catch((error: unknown) => error);
      expect(failed).to.be.instanceOf(JobError);
    });
  });

  it('a root it cannot read is an error, not a new root beside the old one', async () => {
    await writeFile(join(dir, 'file'), '');
    let failed: unknown;
    await existingDriver(join(dir, 'file')).catch((error: unknown) => (failed = error));
    expect((failed as NodeJS.ErrnoException | undefined)?.code).to.equal('ENOTDIR');
  });
});
