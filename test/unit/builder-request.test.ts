import { expect } from 'chai';
import { buildTags, buildVersion, knownTags, parseBuildRequest, platformQueue } from '../../builder/request.js';
import { throwsOci } from './support.js';

describe('builder: build requests', () => {
  it('fills the dify-api recipe defaults: repository, source, context folder, platforms, layouts', () => {
    const { request, recipe } = parseBuildRequest({ recipe: 'dify-api', context: { ref: '1.12.1' } });
    expect(recipe?.labels['org.opencontainers.image.title']).to.equal('dify');
    expect(request).to.deep.equal({
      recipe: 'dify-api',
      context: { git: 'https://github.com/langgenius/dify.git', ref: '1.12.1', path: 'api' },
      platforms: ['linux/amd64', 'linux/arm64'],
      buildArgs: {},
      repository: 'langgenius/dify-api',
      layouts: ['same-name'],
      force: false,
    });
  });

  it('accepts the Linux architectures images are built for, with their variants', () => {
    const platforms = ['linux/arm/v7', 'linux/arm/v6', 'linux/386', 'linux/amd64/v3', 'linux/ppc64le', 'linux/s390x', 'linux/riscv64'];
    const { request } = parseBuildRequest({ recipe: 'dify-api', context: { ref: '1' }, platforms });
    expect(request.platforms).to.deep.equal(platforms);
  });

  it('keeps what the request says, normalising platforms and dropping duplicates', () => {
    const { request } = parseBuildRequest({
      dockerfile: 'docker/Dockerfile',
      repository: 'team/app',
      context: { git: 'https://git.example/app.git', ref: 'main', path: 'svc' },
      platforms: ['linux/arm64/v8', 'linux/arm64', 'linux/x86_64'],
      tags: ['a', 'a', 'b'],
      layouts: ['ddn-k8s', 'same-name', 'ddn-k8s'],
      buildArgs: { DEBIAN_MIRROR: 'http://mirror/debian' },
      force: true,
    });
    expect(request.platforms).to.deep.equal(['linux/arm64', 'linux/amd64']);
    expect(request.tags).to.deep.equal(['a', 'b']);
    expect(request.layouts).to.deep.equal(['ddn-k8s', 'same-name']);
    expect(request).to.deep.include({ dockerfile: 'docker/Dockerfile', repository: 'team/app', force: true });
  });

  it('refuses bodies that cannot work, naming the field', () => {
    const cases: Array<[unknown, RegExp]> = [
      [{ context: { ref: '1' } }, /exactly one of recipe or dockerfile/],
      [{ recipe: 'dify-api', dockerfile: 'D', context: { ref: '1' } }, /exactly one of recipe or dockerfile/],
      [{ dockerfile: 'D', context: { git: 'g', ref: '1' } }, /repository/],
      [{ recipe: 'nope', context: { ref: '1' } }, /no recipe named "nope"/],
      [{ recipe: 'dify-api', context: { ref: '--upload-pack=x' } }, /ref/],
      [{ recipe: 'dify-api', context: { ref: '1', path: '../x' } }, /context/],
      [{ recipe: 'dify-api', context: { ref: '1' }, platforms: ['linux'] }, /platforms/],
      // Not the name of a queue or a directory (with Redis, these were a 500).
      [{ recipe: 'dify-api', context: { ref: '1' }, platforms: ['linux/arm_64'] }, /platforms/],
      [{ recipe: 'dify-api', context: { ref: '1' }, platforms: ['linux/amd64:x'] }, /platforms/],
      [{ recipe: 'dify-api', context: { ref: '1' }, platforms: ['linux/x86_64/v3.1'] }, /platforms/],
      // Platforms name work queues, which are metric labels: a closed list, not whatever a request invents.
      [{ recipe: 'dify-api', context: { ref: '1' }, platforms: ['linux/x1'] }, /platforms/],
      [{ recipe: 'dify-api', context: { ref: '1' }, platforms: ['linux/zz9'] }, /platforms/],
      [{ recipe: 'dify-api', context: { ref: '1' }, platforms: ['windows/amd64'] }, /platforms/],
      [{ recipe: 'dify-api', context: { ref: '1' }, platforms: ['linux/arm/v8'] }, /platforms/],
      [{ recipe: 'dify-api', context: { ref: '1' }, tags: ['bad tag'] }, /tags/],
      [{ recipe: 'dify-api', context: { upload: '01234567-89ab-cdef-0123-456789abcdef' } }, /needs tags/],
      [{ recipe: 'dify-api', context: { ref: '1' }, layouts: ['prefix'] }, /layouts/],
      [{ recipe: 'dify-api', context: { ref: '1' }, extra: true }, /extra|Unrecognized/i],
    ];
    for (const [body, message] of cases) {
      const error = throwsOci(() => parseBuildRequest(body), 400, 'INVALID_REQUEST');
      expect(error.message, JSON.stringify(body)).to.match(message);
    }
  });

  it('tags the ref and the short commit unless told otherwise; a commit ref only by its short form', () => {
    const { request } = parseBuildRequest({ recipe: 'dify-api', context: { ref: '1.12.1' } });
    expect(knownTags(request)).to.deep.equal(['1.12.1']);
    expect(buildTags(request, 'cd03e0a9ef7f2383853ace444e3aefe4fac05cde')).to.deep.equal(['1.12.1', 'cd03e0a']);
    expect(buildVersion(request)).to.equal('1.12.1');
    const bySha = parseBuildRequest({ recipe: 'dify-api', context: { ref: 'cd03e0a9ef7f2383853ace444e3aefe4fac05cde' } }).request;
    expect(buildTags(bySha, 'cd03e0a9ef7f2383853ace444e3aefe4fac05cde')).to.deep.equal(['cd03e0a']);
    const byTagRef = parseBuildRequest({ recipe: 'dify-api', context: { ref: 'refs/tags/1.12.1' } }).request;
    expect(buildTags(byTagRef, undefined)).to.deep.equal(['1.12.1']);
    const explicit = parseBuildRequest({ recipe: 'dify-api', context: { ref: 'main' }, tags: ['edge'] }).request;
    expect(buildTags(explicit, 'cd03e0a9ef7f2383853ace444e3aefe4fac05cde')).to.deep.equal(['edge']);
  });

  it('names one work queue per platform', () => {
    expect(platformQueue('linux/amd64')).to.equal('build-linux-amd64');
    expect(platformQueue('linux/arm64/v8')).to.equal('build-linux-arm64');
    expect(platformQueue('linux/arm/v7')).to.equal('build-linux-arm-v7');
  });
});
