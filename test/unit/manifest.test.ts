import { expect } from 'chai';
import { detectMediaType, MAX_MANIFEST_BYTES, parseManifest } from '../../server/registry/manifest.js';
import { digestOf } from '../../server/registry/digest.js';
import {
  DOCKER_MANIFEST,
  DOCKER_MANIFEST_LIST,
  DOCKER_SCHEMA1,
  DOCKER_SCHEMA1_SIGNED,
  OCI_INDEX,
  OCI_MANIFEST,
} from '../../server/registry/media-types.js';
import { throwsOci } from './support.js';

const d = (c: string) => digestOf(c);
const CONFIG = { mediaType: 'application/vnd.oci.image.config.v1+json', digest: d('config'), size: 6 };
const LAYER = { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: d('layer'), size: 5 };
const DOCKER_CONFIG = { mediaType: 'application/vnd.docker.container.image.v1+json', digest: d('config'), size: 6 };
const DOCKER_LAYER = { mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', digest: d('layer'), size: 5 };
const EMPTY = { mediaType: 'application/vnd.oci.empty.v1+json', digest: digestOf('{}'), size: 2 };
const SUBJECT = { mediaType: OCI_MANIFEST, digest: d('subject'), size: 100 };
const AMD64 = { mediaType: OCI_MANIFEST, digest: d('amd64'), size: 400, platform: { architecture: 'amd64', os: 'linux' } };
const ARM64 = { mediaType: OCI_MANIFEST, digest: d('arm64'), size: 401, platform: { architecture: 'arm64', os: 'linux', variant: 'v8' } };

const json = (value: unknown) => Buffer.from(JSON.stringify(value));
const ociManifest = (extra: Record<string, unknown> = {}) => ({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: CONFIG, layers: [LAYER], ...extra });

describe('manifest: parseManifest accepts', () => {
  it('an OCI image manifest', () => {
    const bytes = json(ociManifest({ annotations: { 'org.opencontainers.image.created': '2024-01-01T00:00:00Z' } }));
    const parsed = parseManifest(bytes, OCI_MANIFEST);
    expect(parsed).to.deep.equal({
      mediaType: OCI_MANIFEST,
      digest: digestOf(bytes),
      size: bytes.length,
      blobs: [CONFIG, LAYER],
      manifests: [],
      artifactType: CONFIG.mediaType,
      annotations: { 'org.opencontainers.image.created': '2024-01-01T00:00:00Z' },
    });
  });

  it('an OCI index, keeping platforms', () => {
    const bytes = json({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [AMD64, ARM64] });
    const parsed = parseManifest(bytes, OCI_INDEX);
    expect(parsed.mediaType).to.equal(OCI_INDEX);
    expect(parsed.blobs).to.deep.equal([]);
    expect(parsed.manifests).to.deep.equal([AMD64, ARM64]);
    expect(parsed.manifests[1]!.platform).to.deep.equal({ architecture: 'arm64', os: 'linux', variant: 'v8' });
    expect(parsed.artifactType).to.equal(undefined);
    expect(parsed.subject).to.equal(undefined);
  });

  it('an empty OCI index', () => {
    const parsed = parseManifest(json({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] }), OCI_INDEX);
    expect(parsed.manifests).to.deep.equal([]);
  });

  it('a Docker schema2 manifest', () => {
    const bytes = json({ schemaVersion: 2, mediaType: DOCKER_MANIFEST, config: DOCKER_CONFIG, layers: [DOCKER_LAYER] });
    const parsed = parseManifest(bytes, DOCKER_MANIFEST);
    expect(parsed.mediaType).to.equal(DOCKER_MANIFEST);
    expect(parsed.blobs).to.deep.equal([DOCKER_CONFIG, DOCKER_LAYER]);
    expect(parsed.digest).to.equal(digestOf(bytes));
  });

  it('a Docker manifest list', () => {
    const entries = [
      { ...AMD64, mediaType: DOCKER_MANIFEST },
      { ...ARM64, mediaType: DOCKER_MANIFEST },
    ];
    const parsed = parseManifest(json({ schemaVersion: 2, mediaType: DOCKER_MANIFEST_LIST, manifests: entries }), DOCKER_MANIFEST_LIST);
    expect(parsed.mediaType).to.equal(DOCKER_MANIFEST_LIST);
    expect(parsed.manifests.map((m) => m.digest)).to.deep.equal([d('amd64'), d('arm64')]);
  });

  it('an artifact manifest with artifactType, an empty config and a subject', () => {
    const bytes = json({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      artifactType: 'application/vnd.example.sbom.v1',
      config: EMPTY,
      layers: [{ mediaType: 'application/spdx+json', digest: d('sbom'), size: 4 }],
      subject: SUBJECT,
      annotations: { 'org.example.kind': 'sbom' },
    });
    const parsed = parseManifest(bytes, OCI_MANIFEST);
    expect(parsed.artifactType).to.equal('application/vnd.example.sbom.v1');
    expect(parsed.subject).to.deep.equal(SUBJECT);
    expect(parsed.blobs.map((b) => b.mediaType)).to.deep.equal(['application/vnd.oci.empty.v1+json', 'application/spdx+json']);
    expect(parsed.annotations).to.deep.equal({ 'org.example.kind': 'sbom' });
  });

  it('an empty artifactType counts as missing: the config media type is the artifact type (spec: listing referrers)', () => {
    const parsed = parseManifest(json(ociManifest({ artifactType: '', config: { ...EMPTY, mediaType: 'application/vnd.example.cfg' }, layers: [] })), OCI_MANIFEST);
    expect(parsed.artifactType).to.equal('application/vnd.example.cfg');
  });

  it('an artifact manifest with no layers', () => {
    const parsed = parseManifest(json(ociManifest({ artifactType: 'application/vnd.example', config: EMPTY, layers: [] })), OCI_MANIFEST);
    expect(parsed.blobs).to.deep.equal([EMPTY]);
  });

  it('an OCI index with a subject and artifactType', () => {
    const parsed = parseManifest(
      json({ schemaVersion: 2, mediaType: OCI_INDEX, artifactType: 'application/vnd.example.set', manifests: [AMD64], subject: SUBJECT }),
      OCI_INDEX,
    );
    expect(parsed.subject).to.deep.equal(SUBJECT);
    expect(parsed.artifactType).to.equal('application/vnd.example.set');
  });

  it('a BuildKit cache manifest (image-manifest=true): config of type application/vnd.buildkit.cacheconfig.v0', () => {
    const cacheConfig = { mediaType: 'application/vnd.buildkit.cacheconfig.v0', digest: d('cache'), size: 5 };
    const parsed = parseManifest(json(ociManifest({ config: cacheConfig })), OCI_MANIFEST);
    expect(parsed.blobs[0]).to.deep.equal(cacheConfig);
    expect(parsed.artifactType).to.equal('application/vnd.buildkit.cacheconfig.v0');
  });

  it('a BuildKit cache index (the default registry cache export): layers and the cache config as entries', () => {
    const entries = [
      { mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', digest: d('layer'), size: 5, annotations: { 'buildkit/createdat': 'x' } },
      { mediaType: 'application/vnd.buildkit.cacheconfig.v0', digest: d('cache'), size: 5 },
    ];
    const parsed = parseManifest(json({ schemaVersion: 2, mediaType: DOCKER_MANIFEST_LIST, manifests: entries }), DOCKER_MANIFEST_LIST);
    expect(parsed.manifests).to.deep.equal(entries);
  });

  it('leaves foreign layers (with urls) out of the blobs that must be stored, but never the config', () => {
    const foreign = { ...DOCKER_LAYER, mediaType: 'application/vnd.docker.image.rootfs.foreign.diff.tar', urls: ['https://example.com/layer'] };
    const config = { ...DOCKER_CONFIG, urls: ['https://example.com/config'] };
    const parsed = parseManifest(json({ schemaVersion: 2, mediaType: DOCKER_MANIFEST, config, layers: [foreign, DOCKER_LAYER] }), DOCKER_MANIFEST);
    expect(parsed.blobs.map((blob) => blob.digest)).to.deep.equal([DOCKER_CONFIG.digest, DOCKER_LAYER.digest]);
  });
});

describe('manifest: media type resolution', () => {
  it('infers an OCI manifest without a mediaType field from its Content-Type', () => {
    const parsed = parseManifest(json({ schemaVersion: 2, config: CONFIG, layers: [LAYER] }), `${OCI_MANIFEST}; charset=utf-8`);
    expect(parsed.mediaType).to.equal(OCI_MANIFEST);
  });

  it('infers an OCI manifest without a mediaType field from its structure (no or generic Content-Type)', () => {
    const bytes = json({ schemaVersion: 2, config: CONFIG, layers: [LAYER] });
    expect(parseManifest(bytes, undefined).mediaType).to.equal(OCI_MANIFEST);
    expect(parseManifest(bytes, 'application/json').mediaType).to.equal(OCI_MANIFEST);
    expect(parseManifest(bytes, 'application/octet-stream').mediaType).to.equal(OCI_MANIFEST);
  });

  it('infers an OCI index without a mediaType field from its structure', () => {
    expect(parseManifest(json({ schemaVersion: 2, manifests: [AMD64] }), undefined).mediaType).to.equal(OCI_INDEX);
  });

  it('uses the mediaType field when the Content-Type is generic', () => {
    const bytes = json({ schemaVersion: 2, mediaType: DOCKER_MANIFEST, config: DOCKER_CONFIG, layers: [DOCKER_LAYER] });
    expect(parseManifest(bytes, 'application/json').mediaType).to.equal(DOCKER_MANIFEST);
    expect(parseManifest(bytes, undefined).mediaType).to.equal(DOCKER_MANIFEST);
  });

  it('refuses a mediaType field that contradicts the Content-Type', () => {
    const error = throwsOci(() => parseManifest(json(ociManifest()), DOCKER_MANIFEST), 400, 'MANIFEST_INVALID');
    expect(error.detail).to.deep.equal({ mediaType: OCI_MANIFEST, contentType: DOCKER_MANIFEST });
    throwsOci(() => parseManifest(json(ociManifest()), OCI_INDEX), 400, 'MANIFEST_INVALID');
  });

  it('refuses an index Content-Type over a manifest without mediaType', () => {
    throwsOci(() => parseManifest(json({ schemaVersion: 2, config: CONFIG, layers: [LAYER] }), OCI_INDEX), 400, 'MANIFEST_INVALID');
  });

  it('refuses a structure it cannot recognise and unknown media types', () => {
    expect(throwsOci(() => parseManifest(json({ schemaVersion: 2 }), undefined), 400, 'MANIFEST_INVALID').detail).to.deep.equal({ mediaType: null });
    throwsOci(() => parseManifest(json({ schemaVersion: 2, config: CONFIG, layers: [] }), 'text/plain'), 400, 'MANIFEST_INVALID');
    throwsOci(
      () => parseManifest(json({ schemaVersion: 2, mediaType: 'application/vnd.oci.artifact.manifest.v1+json', blobs: [] }), undefined),
      400,
      'MANIFEST_INVALID',
    );
  });

  it('refuses Docker schema 1 by header, signed header, or schemaVersion', () => {
    const schema1 = json({ schemaVersion: 1, name: 'a', tag: 'latest', architecture: 'amd64', fsLayers: [], history: [] });
    for (const type of [DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED, undefined, 'application/json']) {
      const error = throwsOci(() => parseManifest(schema1, type), 400, 'MANIFEST_INVALID');
      expect(error.message).to.match(/schema 1/);
    }
    // A schema1 Content-Type refuses even a well-formed schema2 body.
    throwsOci(() => parseManifest(json(ociManifest()), DOCKER_SCHEMA1_SIGNED), 400, 'MANIFEST_INVALID');
  });

  it('requires schemaVersion 2', () => {
    throwsOci(() => parseManifest(json(ociManifest({ schemaVersion: 3 })), OCI_MANIFEST), 400, 'MANIFEST_INVALID');
    throwsOci(() => parseManifest(json(ociManifest({ schemaVersion: '2' })), OCI_MANIFEST), 400, 'MANIFEST_INVALID');
    const { schemaVersion: _omit, ...without } = ociManifest();
    throwsOci(() => parseManifest(json(without), OCI_MANIFEST), 400, 'MANIFEST_INVALID');
  });

  it('detectMediaType follows the field, then manifests, then config', () => {
    expect(detectMediaType({ mediaType: DOCKER_MANIFEST_LIST, manifests: [] })).to.equal(DOCKER_MANIFEST_LIST);
    expect(detectMediaType({ manifests: [] })).to.equal(OCI_INDEX);
    expect(detectMediaType({ config: {} })).to.equal(OCI_MANIFEST);
    expect(detectMediaType({ layers: [] })).to.equal(undefined);
  });
});

describe('manifest: parseManifest refuses', () => {
  it('invalid JSON', () => {
    const error = throwsOci(() => parseManifest(Buffer.from('{"schemaVersion": 2,'), OCI_MANIFEST), 400, 'MANIFEST_INVALID');
    expect(error.message).to.equal('manifest is not valid JSON');
  });

  it('JSON that is not an object', () => {
    for (const text of ['[]', '"x"', '2', 'null', 'true']) {
      const error = throwsOci(() => parseManifest(Buffer.from(text), OCI_MANIFEST), 400, 'MANIFEST_INVALID');
      expect(error.message, text).to.equal('manifest must be a JSON object');
    }
  });

  const badDescriptors: Array<[string, unknown]> = [
    ['a missing config', undefined],
    ['a config that is a string', 'sha256:abc'],
    ['a config without mediaType', { digest: CONFIG.digest, size: 6 }],
    ['a config with an empty mediaType', { ...CONFIG, mediaType: '' }],
    ['a config with an invalid digest', { ...CONFIG, digest: 'sha256:xyz' }],
    ['a config with an uppercase digest', { ...CONFIG, digest: CONFIG.digest.toUpperCase() }],
    ['a config with a negative size', { ...CONFIG, size: -1 }],
    ['a config with a fractional size', { ...CONFIG, size: 1.5 }],
    ['a config with a string size', { ...CONFIG, size: '6' }],
    ['a config with urls that are not strings', { ...CONFIG, urls: [1] }],
    ['a config with a url that is no http(s) URL', { ...CONFIG, urls: ['file:///etc/passwd'] }],
    ['a config with a relative url', { ...CONFIG, urls: ['/v2/x/blobs/y'] }],
    ['a config with a url with a fragment', { ...CONFIG, urls: ['https://example.com/layer#part'] }],
    ['a config with non-string annotations', { ...CONFIG, annotations: { a: 1 } }],
  ];
  for (const [why, config] of badDescriptors) {
    it(why, () => {
      throwsOci(() => parseManifest(json(ociManifest({ config })), OCI_MANIFEST), 400, 'MANIFEST_INVALID');
    });
  }

  it('a bad layer descriptor, naming it', () => {
    const error = throwsOci(
      () => parseManifest(json(ociManifest({ layers: [LAYER, { ...LAYER, digest: 'md5:abc' }] })), OCI_MANIFEST),
      400,
      'MANIFEST_INVALID',
    );
    expect(error.message).to.equal('layers[1].digest is not a valid digest');
  });

  it('a bad index entry, naming it', () => {
    const error = throwsOci(
      () => parseManifest(json({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [AMD64, { ...ARM64, size: null }] }), OCI_INDEX),
      400,
      'MANIFEST_INVALID',
    );
    expect(error.message).to.equal('manifests[1].size must be a non-negative integer');
  });

  it('an image manifest without layers, or with manifests', () => {
    throwsOci(() => parseManifest(json(ociManifest({ layers: undefined })), OCI_MANIFEST), 400, 'MANIFEST_INVALID');
    throwsOci(() => parseManifest(json(ociManifest({ layers: {} })), OCI_MANIFEST), 400, 'MANIFEST_INVALID');
    throwsOci(() => parseManifest(json(ociManifest({ manifests: [] })), OCI_MANIFEST), 400, 'MANIFEST_INVALID');
  });

  it('an index without a manifests array', () => {
    throwsOci(() => parseManifest(json({ schemaVersion: 2, mediaType: OCI_INDEX }), OCI_INDEX), 400, 'MANIFEST_INVALID');
    throwsOci(() => parseManifest(json({ schemaVersion: 2, mediaType: DOCKER_MANIFEST_LIST, manifests: {} }), undefined), 400, 'MANIFEST_INVALID');
  });

  it('a Docker manifest with no layers', () => {
    throwsOci(
      () => parseManifest(json({ schemaVersion: 2, mediaType: DOCKER_MANIFEST, config: DOCKER_CONFIG, layers: [] }), DOCKER_MANIFEST),
      400,
      'MANIFEST_INVALID',
    );
  });

  it('a subject on Docker types', () => {
    const error = throwsOci(
      () =>
        parseManifest(
          json({ schemaVersion: 2, mediaType: DOCKER_MANIFEST, config: DOCKER_CONFIG, layers: [DOCKER_LAYER], subject: SUBJECT }),
          DOCKER_MANIFEST,
        ),
      400,
      'MANIFEST_INVALID',
    );
    expect(error.message).to.equal('"subject" is only allowed in OCI manifests');
    throwsOci(
      () => parseManifest(json({ schemaVersion: 2, mediaType: DOCKER_MANIFEST_LIST, manifests: [AMD64], subject: SUBJECT }), DOCKER_MANIFEST_LIST),
      400,
      'MANIFEST_INVALID',
    );
  });

  it('a bad subject, artifactType or annotations', () => {
    throwsOci(() => parseManifest(json(ociManifest({ subject: { digest: SUBJECT.digest } })), OCI_MANIFEST), 400, 'MANIFEST_INVALID');
    throwsOci(() => parseManifest(json(ociManifest({ artifactType: 5 })), OCI_MANIFEST), 400, 'MANIFEST_INVALID');
    throwsOci(() => parseManifest(json(ociManifest({ annotations: ['a'] })), OCI_MANIFEST), 400, 'MANIFEST_INVALID');
    throwsOci(() => parseManifest(json(ociManifest({ annotations: { a: true } })), OCI_MANIFEST), 400, 'MANIFEST_INVALID');
  });
});

describe('manifest: size limit and exact bytes', () => {
  /** A valid manifest padded with trailing spaces to exactly `size` bytes. */
  const padded = (size: number) => {
    const base = JSON.stringify(ociManifest());
    return Buffer.concat([Buffer.from(base), Buffer.alloc(size - base.length, ' ')]);
  };

  it('accepts exactly 4 MiB', () => {
    expect(MAX_MANIFEST_BYTES).to.equal(4 * 1024 * 1024);
    const bytes = padded(MAX_MANIFEST_BYTES);
    const parsed = parseManifest(bytes, OCI_MANIFEST);
    expect(parsed.size).to.equal(4 * 1024 * 1024);
    expect(parsed.digest).to.equal(digestOf(bytes));
  });

  it('refuses one byte more with 413 SIZE_INVALID, before parsing', () => {
    const error = throwsOci(() => parseManifest(padded(MAX_MANIFEST_BYTES + 1), OCI_MANIFEST), 413, 'SIZE_INVALID');
    expect(error.detail).to.deep.equal({ size: MAX_MANIFEST_BYTES + 1 });
    // Even garbage: the size is checked first.
    throwsOci(() => parseManifest(Buffer.alloc(MAX_MANIFEST_BYTES + 1, 'x'), OCI_MANIFEST), 413, 'SIZE_INVALID');
  });

  it('digests the exact bytes, whitespace and key order included', () => {
    const compact = Buffer.from(JSON.stringify(ociManifest()));
    const pretty = Buffer.from(`${JSON.stringify(ociManifest(), null, 3)}\n`);
    const reordered = Buffer.from(JSON.stringify({ layers: [LAYER], config: CONFIG, mediaType: OCI_MANIFEST, schemaVersion: 2 }));
    const results = [compact, pretty, reordered].map((bytes) => parseManifest(bytes, OCI_MANIFEST));
    expect(results.map((r) => r.digest)).to.deep.equal([digestOf(compact), digestOf(pretty), digestOf(reordered)]);
    expect(new Set(results.map((r) => r.digest)).size).to.equal(3);
    expect(results.map((r) => r.size)).to.deep.equal([compact.length, pretty.length, reordered.length]);
  });

  it('digests bytes, not decoded text (a non-ASCII annotation)', () => {
    const bytes = Buffer.from(JSON.stringify(ociManifest({ annotations: { note: 'héllo ✓' } })));
    const parsed = parseManifest(bytes, OCI_MANIFEST);
    expect(parsed.size).to.equal(bytes.length);
    expect(parsed.size).to.be.above(JSON.stringify(ociManifest({ annotations: { note: 'héllo ✓' } })).length);
    expect(parsed.digest).to.equal(digestOf(bytes));
  });
});
