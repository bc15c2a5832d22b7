import { expect } from 'chai';
import {
  baseMediaType,
  DOCKER_MANIFEST,
  DOCKER_MANIFEST_LIST,
  DOCKER_SCHEMA1,
  DOCKER_SCHEMA1_SIGNED,
  isIndexMediaType,
  isManifestMediaType,
  MANIFEST_MEDIA_TYPES,
  OCI_INDEX,
  OCI_MANIFEST,
} from '../../server/registry/media-types.js';

describe('media types', () => {
  it('has the exact registered strings', () => {
    expect(OCI_MANIFEST).to.equal('application/vnd.oci.image.manifest.v1+json');
    expect(OCI_INDEX).to.equal('application/vnd.oci.image.index.v1+json');
    expect(DOCKER_MANIFEST).to.equal('application/vnd.docker.distribution.manifest.v2+json');
    expect(DOCKER_MANIFEST_LIST).to.equal('application/vnd.docker.distribution.manifest.list.v2+json');
    expect(DOCKER_SCHEMA1).to.equal('application/vnd.docker.distribution.manifest.v1+json');
    expect(DOCKER_SCHEMA1_SIGNED).to.equal('application/vnd.docker.distribution.manifest.v1+prettyjws');
    expect([...MANIFEST_MEDIA_TYPES]).to.deep.equal([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST]);
  });

  it('accepts the four manifest types and nothing else', () => {
    for (const type of MANIFEST_MEDIA_TYPES) expect(isManifestMediaType(type)).to.equal(true);
    for (const type of [
      DOCKER_SCHEMA1,
      DOCKER_SCHEMA1_SIGNED,
      'application/vnd.oci.artifact.manifest.v1+json',
      'application/vnd.buildkit.cacheconfig.v0',
      'application/json',
      `${OCI_MANIFEST}; charset=utf-8`,
      OCI_MANIFEST.toUpperCase(),
      '',
    ]) {
      expect(isManifestMediaType(type), type).to.equal(false);
    }
  });

  it('knows which types are indexes', () => {
    expect(isIndexMediaType(OCI_INDEX)).to.equal(true);
    expect(isIndexMediaType(DOCKER_MANIFEST_LIST)).to.equal(true);
    expect(isIndexMediaType(OCI_MANIFEST)).to.equal(false);
    expect(isIndexMediaType(DOCKER_MANIFEST)).to.equal(false);
  });

  it('reduces a Content-Type to its lowercase base type', () => {
    expect(baseMediaType('application/json; charset=utf-8')).to.equal('application/json');
    expect(baseMediaType(` ${OCI_MANIFEST} `)).to.equal(OCI_MANIFEST);
    expect(baseMediaType('Application/VND.OCI.Image.Manifest.v1+JSON;q=1')).to.equal(OCI_MANIFEST);
    expect(baseMediaType(undefined)).to.equal(undefined);
    expect(baseMediaType('')).to.equal(undefined);
    expect(baseMediaType('; charset=utf-8')).to.equal(undefined);
  });
});
