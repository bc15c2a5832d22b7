import { execFileSync } from 'node:child_process';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'chai';
import { dockerfileIn, fetchSource } from '../../builder/source.js';
import { FilesystemDriver } from '../../storage-drivers/filesystem.js';
import { JobError } from '../../server/jobs/job.js';
import { tempDir } from './support.js';

/** A git repository with an `api` context whose links lead out of it, as an untrusted branch may have. */
async function repositoryWithLinks(dir: string): Promise<string> {
  const repo = join(dir, 'repo');
  await mkdir(join(repo, 'api'), { recursive: true });
  await writeFile(join(repo, 'api', 'Dockerfile'), 'FROM scratch\n');
  await symlink('/etc/passwd', join(repo, 'api', 'Dockerfile.passwd'));
  await symlink('/dev/zero', join(repo, 'api', 'Dockerfile.zero'));
  await symlink('/', join(repo, 'escape'));
  await symlink('.', join(repo, 'api', 'here'));
  const git = (...args: string[]) => execFileSync('git', ['-C', repo, '-c', 'user.name=t', '-c', 'user.email=t@t', ...args]);
  git('init', '-q', '-b', 'main');
  git('add', '-A');
  git('commit', '-qm', 'links');
  return repo;
}

describe('builder source: nothing the build reads leaves the checkout', () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  let repo: string;
  before(async () => {
    dir = await tempDir('builder-source');
    repo = await repositoryWithLinks(dir.path);
  });
  after(() => dir.cleanup());

  const options = () => ({ git: 'git', driver: new FilesystemDriver({ rootdirectory: dir.path }), signal: new AbortController().signal, log: () => undefined });
  let n = 0;
  const fetch = (path?: string) => fetchSource({ git: repo, ref: 'main', ...(path ? { path } : {}) }, join(dir.path, `checkout-${++n}`), options());
  const refused = async (promise: Promise<unknown>, code: string) => {
    const error = await promise.then(() => undefined, (caught: unknown) => caught);
    expect(error, 'refused').to.be.instanceOf(JobError);
    expect((error as JobError).code).to.equal(code);
  };

  it('takes a context path and a Dockerfile inside the checkout, links inside it included', async () => {
    const source = await fetch('api');
    expect(await dockerfileIn(source, 'Dockerfile')).to.equal(join(source.contextDir, 'Dockerfile'));
    expect(await dockerfileIn(source, 'here/Dockerfile')).to.equal(join(source.contextDir, 'Dockerfile'));
  });

  it('refuses a context path that is a link out of the checkout', async () => {
    await refused(fetch('escape'), 'CONTEXT_INVALID');
    await refused(fetch('../..'), 'CONTEXT_INVALID');
  });

  it('refuses a Dockerfile that is a link out of it, a device, or missing', async () => {
    const source = await fetch('api');
    await refused(dockerfileIn(source, 'Dockerfile.passwd'), 'DOCKERFILE_INVALID');
    await refused(dockerfileIn(source, 'Dockerfile.zero'), 'DOCKERFILE_INVALID');
    await refused(dockerfileIn(source, '../escape/etc/passwd'), 'DOCKERFILE_INVALID');
    await refused(dockerfileIn(source, 'Dockerfile.missing'), 'DOCKERFILE_INVALID');
  });
});
