// buildah's layer cache kept within builder.buildah.cachesize: the engine itself, with a real buildah and
// a real registry to push to. Over the limit, a build removes the cached images it did not use and keeps
// its own, so its rebuild is still fully cached.
import { execFile } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { BuildahEngine } from '../../builder/buildah-engine.js';
import { parseImageList } from '../../builder/layer-cache.js';
import type { JobError } from '../../server/jobs/job.js';
import { removeTree } from '../helpers/cleanup.js';
import { tempDir } from '../helpers/process.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';

const run = promisify(execFile);
const PLATFORM = 'linux/amd64';

describe('builder: the layer cache within builder.buildah.cachesize (buildah)', () => {
  let registry: RunningRegistry;
  let dir: string;

  before(async () => {
    registry = await startRegistry();
    dir = await tempDir('layer-cache');
  });
  after(async () => {
    await registry?.stop();
    if (dir) await removeTree(dir);
  });

  /** A context whose first file decides the whole chain of steps. */
  async function context(name: string, first: string): Promise<string> {
    const contextDir = join(dir, `context-${name}`);
    await mkdir(contextDir, { recursive: true });
    await writeFile(join(contextDir, 'first.txt'), first);
    await writeFile(join(contextDir, 'second.txt'), 'the same in every build\n');
    await writeFile(join(contextDir, 'Dockerfile'), 'FROM scratch\nCOPY first.txt /first.txt\nENV STAGE=one\nCOPY second.txt /second.txt\nENV STAGE=two\n');
    return contextDir;
  }

  async function build(engine: BuildahEngine, contextDir: string): Promise<string[]> {
    const { lines, error } = await attempt(engine, contextDir);
    if (error) throw error;
    return lines;
  }

  async function attempt(engine: BuildahEngine, contextDir: string): Promise<{ lines: string[]; error?: unknown }> {
    const lines: string[] = [];
    const error = await engine.build({
      platform: PLATFORM,
      contextDir,
      dockerfile: join(contextDir, 'Dockerfile'),
      buildArgs: {},
      labels: {},
      destination: `${registry.hostPort}/cache/test:latest`,
      insecureRegistries: [registry.hostPort],
      signal: new AbortController().signal,
      timeoutMs: 300_000,
      log: (line) => lines.push(line),
      progress: () => undefined,
    }).then(
      () => undefined,
      (failed: unknown) => failed,
    );
    return { lines, error };
  }

  async function cachedImages(cachedir: string, which: 'all' | 'unnamed' = 'all'): Promise<string[]> {
    const root = join(cachedir, 'storage', PLATFORM.replace('/', '-'));
    const driver = (await run('ls', [root])).stdout.includes('overlay-layers') ? 'overlay' : 'vfs';
    const { stdout } = await run('buildah', ['--root', root, '--runroot', join(cachedir, 'run', 'probe'), '--storage-driver', driver, 'images', '--all', '--json']);
    return parseImageList(stdout)
      .filter((image) => which === 'all' || image.names.length === 0)
      .map((image) => image.id);
  }

  const reusedSteps = (lines: string[]) => lines.filter((line) => line.startsWith('--> Using cache ')).length;

  it('over the limit, a build removes the cached images it did not use and keeps its own', async () => {
    const cachedir = join(dir, 'small');
    const engine = new BuildahEngine({ path: 'buildah', cachedir, storagedriver: 'auto', isolation: 'chroot', pull: 'never', cachesize: 1 });
    const first = await build(engine, await context('a', 'first build\n'));
    expect(first.find((line) => line.startsWith('layer cache ')), first.join('\n')).to.match(/: removed 0 cached images/);
    const afterFirst = await cachedImages(cachedir);
    expect(afterFirst.length, 'one image per step').to.be.at.least(4);

    // Another chain (its first file differs): the first build's images are over the limit and unused.
    const second = await build(engine, await context('b', 'second build\n'));
    expect(reusedSteps(second)).to.equal(0);
    expect(second.find((line) => line.startsWith('layer cache ')), second.join('\n')).to.match(/over builder\.buildah\.cachesize 0\.0 GiB: removed [1-9]\d* cached images this build did not use/);
    const afterSecond = await cachedImages(cachedir);
    expect(afterSecond.filter((id) => afterFirst.includes(id)), 'images of the first build').to.deep.equal([]);
    expect(afterSecond.length).to.be.at.least(4);

    // The build that trimmed is still cached: every step of its rebuild is reused, and nothing goes.
    const again = await build(engine, join(dir, 'context-b'));
    expect(reusedSteps(again), again.join('\n')).to.equal(4);
    expect(await cachedImages(cachedir)).to.have.members(afterSecond);
    // ... while the first one starts from nothing.
    expect(reusedSteps(await build(engine, join(dir, 'context-a')))).to.equal(0);
  });

  it('a failed build is held to the limit too, and keeps the steps it finished', async () => {
    const cachedir = join(dir, 'failing');
    const engine = new BuildahEngine({ path: 'buildah', cachedir, storagedriver: 'auto', isolation: 'chroot', pull: 'never', cachesize: 1 });
    await build(engine, await context('f', 'before the failure\n'));
    // Its result keeps its name (no later build of the repository took it) and stays: the steps go.
    const afterFirst = await cachedImages(cachedir, 'unnamed');
    expect(afterFirst).not.to.deep.equal([]);

    // Two steps of another chain, then a step that fails (its file is not in the context).
    const broken = await context('g', 'a failing build\n');
    await writeFile(join(broken, 'Dockerfile'), 'FROM scratch\nCOPY first.txt /first.txt\nENV STAGE=one\nCOPY missing.txt /missing.txt\n');
    const failed = await attempt(engine, broken);
    expect((failed.error as JobError | undefined)?.code, failed.lines.join('\n')).to.equal('BUILD_FAILED');
    expect(failed.lines.find((line) => line.startsWith('layer cache ')), failed.lines.join('\n')).to.match(/: removed [1-9]\d* cached images this build did not use/);
    const afterFailure = await cachedImages(cachedir);
    expect(afterFailure.filter((id) => afterFirst.includes(id)), 'images of the first build').to.deep.equal([]);

    // Its finished steps are still cached: fixed, the build reuses them.
    await writeFile(join(broken, 'missing.txt'), 'here now\n');
    expect(reusedSteps(await build(engine, broken))).to.equal(2);
  });

  it('under the limit, nothing is removed', async () => {
    const cachedir = join(dir, 'large');
    const engine = new BuildahEngine({ path: 'buildah', cachedir, storagedriver: 'auto', isolation: 'chroot', pull: 'never', cachesize: 1024 ** 3 });
    await build(engine, await context('c', 'third\n'));
    const before = await cachedImages(cachedir);
    const lines = await build(engine, await context('d', 'fourth\n'));
    expect(lines.some((line) => line.startsWith('layer cache '))).to.equal(false);
    const after = await cachedImages(cachedir);
    for (const id of before) expect(after).to.include(id);
  });
});
