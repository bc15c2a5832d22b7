import { expect } from 'chai';
import {
  planMirror,
  platformTagSuffix,
  resolveDdnTag,
  targetRepository,
  upstreamRepository,
  type MirrorRequest,
  type TagWrite,
} from '../../server/mirror/layouts.js';
import { formatPlatform, parsePlatform, samePlatform } from '../../server/mirror/platforms.js';
import { digestOf } from '../../server/registry/digest.js';
import type { Descriptor } from '../../server/registry/descriptor.js';
import { DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST } from '../../server/registry/media-types.js';

const d = (s: string) => digestOf(s);
const entry = (name: string, os: string, architecture: string, variant?: string, mediaType: string = OCI_MANIFEST): Descriptor => ({
  mediaType,
  digest: d(name),
  size: 500,
  platform: { os, architecture, ...(variant ? { variant } : {}) },
});
const attestation = (name: string, subject: Descriptor): Descriptor => ({
  mediaType: OCI_MANIFEST,
  digest: d(name),
  size: 800,
  platform: { os: 'unknown', architecture: 'unknown' },
  annotations: { 'vnd.docker.reference.digest': subject.digest, 'vnd.docker.reference.type': 'attestation-manifest' },
});

const AMD64 = entry('amd64', 'linux', 'amd64');
const ARM64 = entry('arm64', 'linux', 'arm64', 'v8');
const ARMV7 = entry('armv7', 'linux', 'arm', 'v7');
const PPC = entry('ppc', 'linux', 'ppc64le');
const INDEX = { digest: d('index'), mediaType: OCI_INDEX, manifests: [AMD64, ARM64, ARMV7, PPC, attestation('att-amd64', AMD64), attestation('att-arm64', ARM64)] };

function plan(overrides: Partial<MirrorRequest>) {
  return planMirror({ upstream: 'docker.io', repository: 'langgenius/dify-api', tag: '1.12.1', manifest: INDEX, layouts: ['ddn-k8s'], ...overrides });
}
const brief = (writes: TagWrite[]) => writes.map((w) => `${w.repository}:${w.tag}@${w.digest === INDEX.digest ? 'index' : w.platform}`);

describe('mirror layouts: repositories', () => {
  it('docker.io official images live under library/ upstream, only for docker.io and one-component names', () => {
    expect(upstreamRepository('docker.io', 'nginx')).to.equal('library/nginx');
    expect(upstreamRepository('docker.io', 'library/nginx')).to.equal('library/nginx');
    expect(upstreamRepository('docker.io', 'langgenius/dify-api')).to.equal('langgenius/dify-api');
    expect(upstreamRepository('ghcr.io', 'nginx')).to.equal('nginx');
    expect(upstreamRepository('quay.io', 'a/b/c')).to.equal('a/b/c');
  });

  it('maps the repository as the user wrote it into each layout, with the upstream name (not its host)', () => {
    expect(targetRepository('same-name', 'docker.io', 'langgenius/dify-api')).to.equal('langgenius/dify-api');
    expect(targetRepository('same-name', 'docker.io', 'nginx')).to.equal('nginx');
    expect(targetRepository('ddn-k8s', 'docker.io', 'langgenius/dify-api')).to.equal('ddn-k8s/docker.io/langgenius/dify-api');
    expect(targetRepository('ddn-k8s', 'docker.io', 'nginx')).to.equal('ddn-k8s/docker.io/nginx');
    expect(targetRepository({ prefix: 'mirrors/hub' }, 'docker.io', 'nginx')).to.equal('mirrors/hub/nginx');
    expect(targetRepository({ prefix: '/mirrors/hub/' }, 'docker.io', 'nginx')).to.equal('mirrors/hub/nginx');
    expect(() => targetRepository({ prefix: 'Bad Prefix' }, 'docker.io', 'nginx')).to.throw(/prefix/);
    expect(() => targetRepository({ prefix: '' }, 'docker.io', 'nginx')).to.throw(/prefix/);
  });

  it('the plan asks the upstream for library/nginx but writes ddn-k8s/docker.io/nginx', () => {
    const p = plan({ repository: 'nginx', layouts: ['ddn-k8s', 'same-name'] });
    expect(p.upstreamRepository).to.equal('library/nginx');
    expect([...new Set(p.writes.map((w) => w.repository))]).to.deep.equal(['ddn-k8s/docker.io/nginx', 'nginx']);
  });

  it('rejects invalid repositories and tags', () => {
    expect(() => plan({ repository: 'Bad/Name' })).to.throw(/repository/);
    expect(() => plan({ tag: '-bad' })).to.throw(/tag/);
  });
});

describe('mirror layouts: platform tag suffixes', () => {
  const cases: Array<[string, string | undefined]> = [
    ['linux/amd64', ''],
    ['linux/arm64', '-linuxarm64'],
    ['linux/arm64/v8', '-linuxarm64'],
    ['linux/arm/v7', '-linuxarmv7'],
    ['linux/arm/v6', '-linuxarmv6'],
    ['linux/arm', '-linuxarmv7'], // containerd reads a bare arm as v7
    ['linux/ppc64le', '-linuxppc64le'],
    ['linux/s390x', '-linuxs390x'],
    ['linux/386', '-linux386'],
    ['linux/riscv64', '-linuxriscv64'],
    ['linux/amd64/v3', '-linuxamd64v3'],
    ['linux/arm64/v9', '-linuxarm64v9'],
    ['windows/amd64', '-windowsamd64'],
    ['unknown/unknown', undefined],
    ['linux', undefined],
    ['linux/amd64/v2/x', undefined],
  ];
  for (const [platform, suffix] of cases) {
    it(`${platform} -> ${suffix === undefined ? 'no tag' : suffix === '' ? 'the plain tag' : suffix}`, () => {
      expect(platformTagSuffix(platform)).to.equal(suffix);
    });
  }

  it('takes platform objects too, and normalises aliases', () => {
    expect(platformTagSuffix({ os: 'linux', architecture: 'arm64', variant: 'v8' })).to.equal('-linuxarm64');
    expect(platformTagSuffix({ os: 'linux', architecture: 'aarch64' })).to.equal('-linuxarm64');
    expect(platformTagSuffix({ os: 'linux', architecture: 'x86_64' })).to.equal('');
    expect(platformTagSuffix({ os: 'unknown', architecture: 'unknown' })).to.equal(undefined);
    expect(formatPlatform('linux/arm64/v8')).to.equal('linux/arm64');
    expect(samePlatform('linux/arm64/v8', { os: 'linux', architecture: 'arm64' })).to.equal(true);
    expect(parsePlatform('nonsense')).to.equal(undefined);
  });
});

describe('mirror layouts: ddn-k8s', () => {
  it('writes one single-platform tag per platform, amd64 plain, the arm64 v8 variant dropped, no tags for attestations', () => {
    const p = plan({});
    expect(brief(p.writes)).to.deep.equal([
      'ddn-k8s/docker.io/langgenius/dify-api:1.12.1@linux/amd64',
      'ddn-k8s/docker.io/langgenius/dify-api:1.12.1-linuxarm64@linux/arm64',
      'ddn-k8s/docker.io/langgenius/dify-api:1.12.1-linuxarmv7@linux/arm/v7',
      'ddn-k8s/docker.io/langgenius/dify-api:1.12.1-linuxppc64le@linux/ppc64le',
    ]);
    // Byte-identical to upstream: the digests and media types of the index entries themselves.
    expect(p.writes.map((w) => [w.digest, w.mediaType])).to.deep.equal([AMD64, ARM64, ARMV7, PPC].map((e) => [e.digest, e.mediaType]));
    expect(p.writes.every((w) => w.layout === 'ddn-k8s' && w.children.length === 0)).to.equal(true);
    expect(p.skipped.map((s) => [s.reason, s.platform])).to.deep.equal([['attestation', 'unknown/unknown'], ['attestation', 'unknown/unknown']]);
  });

  it('a platforms filter keeps only the wanted platforms (variants normalised in the filter too)', () => {
    const p = plan({ platforms: ['linux/amd64', 'linux/arm64/v8'] });
    expect(p.writes.map((w) => w.tag)).to.deep.equal(['1.12.1', '1.12.1-linuxarm64']);
    expect(p.skipped.filter((s) => s.reason === 'platform filtered out').map((s) => s.platform)).to.deep.equal(['linux/arm/v7', 'linux/ppc64le']);
    expect(() => plan({ platforms: ['amd64'] })).to.throw(/platform/);
  });

  it('two entries for one platform: the first wins, the other is reported as skipped', () => {
    const second = entry('amd64-again', 'linux', 'amd64');
    const arm64NoVariant = entry('arm64-plain', 'linux', 'arm64'); // same platform as ARM64 (v8) once normalised
    const manifest = { ...INDEX, manifests: [AMD64, ARM64, second, arm64NoVariant] };
    const p = plan({ manifest });
    expect(p.writes.map((w) => [w.tag, w.digest])).to.deep.equal([['1.12.1', AMD64.digest], ['1.12.1-linuxarm64', ARM64.digest]]);
    expect(p.skipped.map((s) => [s.reason, s.digest])).to.deep.equal([['duplicate platform', second.digest], ['duplicate platform', arm64NoVariant.digest]]);
  });

  it('non-linux platforms get their OS in the suffix (Windows), with the same first-wins rule per OS version', () => {
    const win2019 = { ...entry('win2019', 'windows', 'amd64', undefined, DOCKER_MANIFEST), platform: { os: 'windows', architecture: 'amd64', 'os.version': '10.0.17763.1' } };
    const win2022 = { ...entry('win2022', 'windows', 'amd64', undefined, DOCKER_MANIFEST), platform: { os: 'windows', architecture: 'amd64', 'os.version': '10.0.20348.1' } };
    const manifest = { digest: d('list'), mediaType: DOCKER_MANIFEST_LIST, manifests: [entry('lin', 'linux', 'amd64', undefined, DOCKER_MANIFEST), win2019, win2022] };
    const p = plan({ manifest, tag: '8.0' });
    expect(p.writes.map((w) => [w.tag, w.digest, w.mediaType])).to.deep.equal([
      ['8.0', d('lin'), DOCKER_MANIFEST],
      ['8.0-windowsamd64', d('win2019'), DOCKER_MANIFEST],
    ]);
    expect(p.skipped).to.deep.equal([{ layout: 'ddn-k8s', digest: d('win2022'), platform: 'windows/amd64', reason: 'duplicate platform' }]);
  });

  it('a single-platform upstream tag is tagged by its own platform', () => {
    const arm = { digest: d('single-arm64'), mediaType: DOCKER_MANIFEST, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } };
    expect(plan({ manifest: arm }).writes.map((w) => [w.tag, w.digest, w.mediaType, w.platform])).to.deep.equal([
      ['1.12.1-linuxarm64', arm.digest, DOCKER_MANIFEST, 'linux/arm64'],
    ]);
    const amd = { digest: d('single-amd64'), mediaType: OCI_MANIFEST, platform: { os: 'linux', architecture: 'amd64' } };
    expect(plan({ manifest: amd }).writes.map((w) => w.tag)).to.deep.equal(['1.12.1']);
    expect(plan({ manifest: amd, platforms: ['linux/arm64'] }).writes).to.deep.equal([]);
  });

  it('entries without a platform, nested indexes and manifests of unknown platform get no tag', () => {
    const noPlatform: Descriptor = { mediaType: OCI_MANIFEST, digest: d('np'), size: 10 };
    const nested = entry('nested', 'linux', 'arm64', undefined, OCI_INDEX);
    const p = plan({ manifest: { ...INDEX, manifests: [noPlatform, nested, AMD64] } });
    expect(p.writes.map((w) => w.tag)).to.deep.equal(['1.12.1']);
    expect(p.skipped.map((s) => s.reason)).to.deep.equal(['no platform', 'not a platform manifest']);
    const single = plan({ manifest: { digest: d('x'), mediaType: OCI_MANIFEST } });
    expect(single.writes).to.deep.equal([]);
    expect(single.skipped.map((s) => s.reason)).to.deep.equal(['no platform']);
  });

  it('a tag that would exceed 128 characters with its suffix is skipped, not truncated', () => {
    const tag = 'a'.repeat(120);
    const p = plan({ tag });
    expect(p.writes.map((w) => w.tag)).to.deep.equal([tag]);
    expect(p.skipped.filter((s) => s.reason === 'tag too long').map((s) => s.platform)).to.deep.equal(['linux/arm64', 'linux/arm/v7', 'linux/ppc64le']);
  });
});

describe('mirror layouts: same-name and prefix', () => {
  it('same-name writes the index byte-identical under the same tag, naming every child (attestations included)', () => {
    const p = plan({ layouts: ['same-name'] });
    expect(p.writes).to.deep.equal([{
      layout: 'same-name', repository: 'langgenius/dify-api', tag: '1.12.1', digest: INDEX.digest, mediaType: OCI_INDEX, children: INDEX.manifests,
    }]);
  });

  it('a prefix layout is same-name under the prefix', () => {
    const p = plan({ layouts: [{ prefix: 'hub' }], repository: 'nginx' });
    expect(p.writes).to.deep.equal([{ layout: 'prefix', repository: 'hub/nginx', tag: '1.12.1', digest: INDEX.digest, mediaType: OCI_INDEX, children: INDEX.manifests }]);
  });

  it('with a platforms filter the index is still written whole (its digest must not change), unless no platform is wanted', () => {
    const some = plan({ layouts: ['same-name', 'ddn-k8s'], platforms: ['linux/arm64'] });
    expect(brief(some.writes)).to.deep.equal([
      'langgenius/dify-api:1.12.1@index',
      'ddn-k8s/docker.io/langgenius/dify-api:1.12.1-linuxarm64@linux/arm64',
    ]);
    expect(some.writes[0]!.children).to.have.length(6);
    const none = plan({ layouts: ['same-name'], platforms: ['linux/s390x'] });
    expect(none.writes).to.deep.equal([]);
    expect(none.skipped).to.deep.equal([{ layout: 'same-name', digest: INDEX.digest, reason: 'platform filtered out' }]);
  });

  it('a single-platform tag is written as it is, with its platform', () => {
    const amd = { digest: d('single'), mediaType: DOCKER_MANIFEST, platform: { os: 'linux', architecture: 'amd64' } };
    expect(plan({ manifest: amd, layouts: ['same-name'] }).writes).to.deep.equal([
      { layout: 'same-name', repository: 'langgenius/dify-api', tag: '1.12.1', digest: amd.digest, mediaType: DOCKER_MANIFEST, platform: 'linux/amd64', children: [] },
    ]);
  });

  it('an index of artifacts without platforms is still mirrored by same-name when no filter is given', () => {
    const artifacts = { digest: d('artifacts'), mediaType: OCI_INDEX, manifests: [{ mediaType: OCI_MANIFEST, digest: d('sbom'), size: 3 }] };
    expect(plan({ manifest: artifacts, layouts: ['same-name'] }).writes.map((w) => w.digest)).to.deep.equal([artifacts.digest]);
  });

  it('all three layouts at once, in the order asked', () => {
    const p = plan({ layouts: ['same-name', 'ddn-k8s', { prefix: 'mirror' }], platforms: ['linux/amd64', 'linux/arm64'] });
    expect(brief(p.writes)).to.deep.equal([
      'langgenius/dify-api:1.12.1@index',
      'ddn-k8s/docker.io/langgenius/dify-api:1.12.1@linux/amd64',
      'ddn-k8s/docker.io/langgenius/dify-api:1.12.1-linuxarm64@linux/arm64',
      'mirror/langgenius/dify-api:1.12.1@index',
    ]);
  });
});

describe('mirror layouts: resolveDdnTag (pull-through)', () => {
  const cases: Array<[string, string, string]> = [
    ['1.12.1', '1.12.1', 'linux/amd64'],
    ['latest', 'latest', 'linux/amd64'],
    ['1.12.1-linuxarm64', '1.12.1', 'linux/arm64'],
    ['1.12.1-linuxarmv7', '1.12.1', 'linux/arm/v7'],
    ['1.12.1-linuxarmv6', '1.12.1', 'linux/arm/v6'],
    ['1.12.1-linuxppc64le', '1.12.1', 'linux/ppc64le'],
    ['1.12.1-linuxs390x', '1.12.1', 'linux/s390x'],
    ['8.0-windowsamd64', '8.0', 'windows/amd64'],
    ['3.19-rc-linuxarm64', '3.19-rc', 'linux/arm64'],
    ['1.0-linuxamd64v3', '1.0', 'linux/amd64/v3'],
    // Not suffixes the forward mapping writes: plain tags.
    ['1.0-linuxamd64', '1.0-linuxamd64', 'linux/amd64'],
    ['1.0-linuxarm64v8', '1.0-linuxarm64v8', 'linux/amd64'],
    ['1.0-linuxarm', '1.0-linuxarm', 'linux/amd64'],
    ['1.0-linuxfoo', '1.0-linuxfoo', 'linux/amd64'],
    ['1.0-alpine', '1.0-alpine', 'linux/amd64'],
    ['linuxarm64', 'linuxarm64', 'linux/amd64'],
  ];
  for (const [tag, upstreamTag, platform] of cases) {
    it(`${tag} -> ${upstreamTag} + ${platform}`, () => {
      const resolved = resolveDdnTag(tag);
      expect([resolved.upstreamTag, resolved.platform]).to.deep.equal([upstreamTag, platform]);
    });
  }

  it('is the exact inverse of the forward mapping', () => {
    for (const platform of ['linux/amd64', 'linux/arm64', 'linux/arm/v7', 'linux/arm/v6', 'linux/ppc64le', 'linux/s390x', 'linux/386', 'linux/riscv64', 'windows/amd64', 'linux/amd64/v2']) {
      const tag = `2.0.1${platformTagSuffix(platform)}`;
      expect(resolveDdnTag(tag), tag).to.include({ upstreamTag: '2.0.1', platform: formatPlatform(platform) });
    }
  });

  it('the suffix always wins: an upstream tag that itself ends in -linuxarm64 reads as a platform tag', () => {
    // Documented ambiguity: a caller may fall back to the literal tag (as linux/amd64) when the upstream lacks `v1`.
    expect(resolveDdnTag('v1-linuxarm64')).to.deep.equal({ upstreamTag: 'v1', platform: 'linux/arm64', suffix: '-linuxarm64' });
  });
});
