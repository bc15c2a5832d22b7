import { expect } from 'chai';
import { parseBuildArgs } from '../../server/cli/build-command.js';
import { UsageError } from '../../server/cli/admin-command.js';
import { BuildProgressLog, buildSummary, platformRows, renderBuild } from '../../server/cli/build-view.js';

describe('builder: dify-registry build', () => {
  it('turns `build dify-api --ref 1.12.1` and its options into the request body', () => {
    const options = parseBuildArgs(
      ['dify-api', '--ref', '1.12.1', '-p', 'linux/amd64,linux/arm64', '-l', 'ddn-k8s', '--build-arg', 'DEBIAN_MIRROR=http://m/debian', '-t', 'x', '--force'],
      { REGISTRY_URL: 'http://registry:5000/', REGISTRY_USERNAME: 'admin', REGISTRY_PASSWORD: 'pw' },
    );
    expect(options).to.deep.equal({
      body: {
        recipe: 'dify-api',
        context: { ref: '1.12.1' },
        tags: ['x'],
        platforms: ['linux/amd64', 'linux/arm64'],
        layouts: ['ddn-k8s'],
        buildArgs: { DEBIAN_MIRROR: 'http://m/debian' },
        force: true,
      },
      server: 'http://registry:5000',
      username: 'admin',
      password: 'pw',
      wait: true,
      log: true,
      json: false,
    });
    const local = parseBuildArgs(['--dockerfile', 'Dockerfile', '-r', 'team/app', '--context', '.', '-t', 'dev', '--no-wait']);
    expect(local).to.deep.include({ context: '.', wait: false });
    expect((local as { body: unknown }).body).to.deep.equal({ dockerfile: 'Dockerfile', repository: 'team/app', tags: ['dev'] });
  });

  it('refuses what cannot work before asking the server', () => {
    for (const argv of [[], ['dify-api'], ['dify-api', '--ref', '1', '--context', '.'], ['a', 'b', '--ref', '1'], ['--dockerfile', 'D', '--ref', '1'], ['dify-api', '--ref', '1', '-p', 'linux'], ['dify-api', '--ref', '1', '--build-arg', 'X'], ['dify-api', '--ref', '1', '-l', 'prefix']]) {
      expect(() => parseBuildArgs(argv), argv.join(' ')).to.throw(UsageError);
    }
  });

  const running = {
    id: 'j',
    state: 'running',
    request: { platforms: ['linux/amd64', 'linux/arm64'] },
    progress: {
      children: {
        'linux/amd64': { state: 'running', progress: { phase: 'building', stage: { done: 2, total: 3 }, step: { done: 9, total: 36 } } },
        'linux/arm64': { state: 'queued', progress: {} },
      },
    },
  };

  it('draws a row per platform in request order, and change-only lines for logs', () => {
    expect(platformRows(running).map((row) => [row.platform, row.state, row.pct])).to.deep.equal([
      ['linux/amd64', 'running', 67],
      ['linux/arm64', 'queued', 0],
    ]);
    expect(renderBuild(running, { width: 100, tty: false })).to.deep.equal([
      'linux/amd64: 67% running, building, stage 3/3 step 10/36',
      'linux/arm64: 0% queued, waiting for a worker',
      'build: running',
    ]);
    const tty = renderBuild(running, { width: 60, tty: true });
    expect(tty.every((line) => line.length < 60)).to.equal(true);
    const log = new BuildProgressLog();
    expect(log.next(running)).to.have.length(3);
    expect(log.next(running)).to.deep.equal([]);
  });

  it('summarises what a finished build tagged', () => {
    const lines = buildSummary({
      id: 'j',
      result: {
        repository: 'langgenius/dify-api',
        commit: 'cd03e0a',
        index: { digest: 'sha256:i' },
        platforms: { 'linux/amd64': { digest: 'sha256:a', pushedBytes: 1048576, timings: { totalMs: 61_000 } } },
        tags: [{ repository: 'langgenius/dify-api', tag: '1.12.1', digest: 'sha256:i' }],
        provenance: { digest: 'sha256:p' },
      },
    });
    expect(lines).to.deep.equal([
      'built langgenius/dify-api@sha256:i (job j) from commit cd03e0a',
      '  linux/amd64: sha256:a, 61.0 s, 1.0 MiB new',
      '  langgenius/dify-api:1.12.1 -> sha256:i',
      '  provenance sha256:p',
    ]);
  });
});
