import { expect } from 'chai';
import { buildIndex, digestOf, plannedTagNames, provenanceArtifact, PROVENANCE_TYPE, tagWrites, type ProvenanceDocument } from '../../builder/assembly.js';
import { TagOwners } from '../../builder/tag-owners.js';
import { loadConfig } from '../../server/config.js';
import { parseManifest } from '../../server/registry/manifest.js';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const d = (n: number) => `sha256:${String(n).repeat(64).slice(0, 64)}`;
const images = [
  { platform: 'linux/amd64', digest: d(1), mediaType: OCI_MANIFEST, size: 100 },
  { platform: 'linux/arm64', digest: d(2), mediaType: OCI_MANIFEST, size: 200 },
];

describe('builder: index, tags and provenance', () => {
  it('writes an OCI index with one platform entry per image and the annotations, sorted', () => {
    const index = buildIndex(images, { 'org.opencontainers.image.version': '1.12.1', 'org.opencontainers.image.created': 'now' });
    expect(index.digest).to.equal(digestOf(index.bytes));
    const parsed = parseManifest(index.bytes, index.mediaType);
    expect(parsed.mediaType).to.equal('application/vnd.oci.image.index.v1+json');
    const body = JSON.parse(index.bytes.toString()) as { manifests: Array<{ platform: unknown; digest: string }>; annotations: Record<string, string> };
    expect(body.manifests.map((m) => m.platform)).to.deep.equal([{ architecture: 'amd64', os: 'linux' }, { architecture: 'arm64', os: 'linux' }]);
    expect(Object.keys(body.annotations)).to.deep.equal(['org.opencontainers.image.created', 'org.opencontainers.image.version']);
  });

  it('tags the index (same-name) and each platform image the ddn-k8s way, as the mirror does', () => {
    const writes = tagWrites({ repository: 'langgenius/dify-api', tags: ['1.12.1', 'cd03e0a'], layouts: ['same-name', 'ddn-k8s'], index: { digest: d(9), size: 10 }, images });
    expect(writes.map((w) => `${w.repository}:${w.tag} ${w.digest}`)).to.deep.equal([
      `langgenius/dify-api:1.12.1 ${d(9)}`,
      `ddn-k8s/docker.io/langgenius/dify-api:1.12.1 ${d(1)}`,
      `ddn-k8s/docker.io/langgenius/dify-api:1.12.1-linuxarm64 ${d(2)}`,
      `langgenius/dify-api:cd03e0a ${d(9)}`,
      `ddn-k8s/docker.io/langgenius/dify-api:cd03e0a ${d(1)}`,
      `ddn-k8s/docker.io/langgenius/dify-api:cd03e0a-linuxarm64 ${d(2)}`,
    ]);
    expect(plannedTagNames({ repository: 'a/b', tags: ['x'], layouts: ['ddn-k8s'], platforms: ['linux/amd64', 'linux/arm/v7'] })).to.deep.equal([
      { repository: 'ddn-k8s/docker.io/a/b', tag: 'x' },
      { repository: 'ddn-k8s/docker.io/a/b', tag: 'x-linuxarmv7' },
    ]);
  });

  it('makes the provenance an artifact whose subject is the index', () => {
    const provenance = { _type: 'https://dify-registry/build-provenance/v1', finishedAt: '2026-01-01T00:00:00Z' } as unknown as ProvenanceDocument;
    const { blob, manifest } = provenanceArtifact(provenance, { digest: d(9), size: 321 });
    const parsed = parseManifest(manifest.bytes, manifest.mediaType);
    expect(parsed.artifactType).to.equal(PROVENANCE_TYPE);
    expect(parsed.subject).to.deep.include({ digest: d(9), size: 321 });
    expect(parsed.blobs.map((b) => b.digest)).to.deep.equal([digestOf('{}'), blob.digest]);
    expect(JSON.parse(blob.bytes.toString())).to.deep.equal(provenance);
  });
});

describe('builder: tags owned by mirror sync rules', () => {
  const owners = (sync: unknown[]) =>
    new TagOwners(loadConfig(undefined, {}, () => undefined).mirror.sync.concat(sync as never[]));
  const rule = (extra: Record<string, unknown>) => ({ name: 'r', upstream: 'docker.io', repositories: ['langgenius/dify-api'], layouts: ['same-name'], interval: '6h', ...extra });

  it('matches listed tags, regexes and semver ranges in the rule layouts repositories', async () => {
    expect(await owners([rule({ tags: ['1.12.1'] })]).ownerOf('langgenius/dify-api', '1.12.1')).to.equal('r');
    expect(await owners([rule({ tags: ['1.12.1'] })]).ownerOf('langgenius/dify-api', '1.12.2')).to.equal(undefined);
    expect(await owners([rule({ tagregex: '1\\.12\\..*' })]).ownerOf('langgenius/dify-api', '1.12.9')).to.equal('r');
    expect(await owners([rule({ semver: '>=1.12.0' })]).ownerOf('langgenius/dify-api', '1.13.0')).to.equal('r');
    expect(await owners([rule({ semver: '>=1.12.0' })]).ownerOf('langgenius/dify-api', 'cd03e0a')).to.equal(undefined);
    expect(await owners([rule({ tags: ['1.12.1'] })]).ownerOf('other/repo', '1.12.1')).to.equal(undefined);
    // Without a filter a rule mirrors every tag (tagRegex .*).
    expect(await owners([rule({})]).ownerOf('langgenius/dify-api', 'anything')).to.equal('r');
  });

  it('reads ddn-k8s platform tags back to their upstream tag', async () => {
    const ddn = owners([rule({ tags: ['1.12.1'], layouts: ['ddn-k8s'] })]);
    expect(await ddn.ownerOf('ddn-k8s/docker.io/langgenius/dify-api', '1.12.1-linuxarm64')).to.equal('r');
    expect(await ddn.ownerOf('ddn-k8s/docker.io/langgenius/dify-api', '1.12.1')).to.equal('r');
    expect(await ddn.ownerOf('langgenius/dify-api', '1.12.1')).to.equal(undefined);
    expect(await ddn.owned([{ repository: 'ddn-k8s/docker.io/langgenius/dify-api', tag: '1.12.2' }])).to.deep.equal([]);
  });
});
