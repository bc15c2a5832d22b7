import { expect } from 'chai';
import { parseDigest } from '../../server/registry/digest.js';
import { paths, REPOSITORIES, ROOT } from '../../server/registry/paths.js';

const HEX = 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad';
const SUBJECT_HEX = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
const d = parseDigest(`sha256:${HEX}`)!;
const subject = parseDigest(`sha256:${SUBJECT_HEX}`)!;
const NAME = 'ddn-k8s/docker.io/langgenius/dify-api';

describe('paths: CNCF Distribution layout', () => {
  it('roots everything at /docker/registry/v2', () => {
    expect(ROOT).to.equal('/docker/registry/v2');
    expect(REPOSITORIES).to.equal('/docker/registry/v2/repositories');
  });

  it('stores blob data content-addressed with a two-character fan-out', () => {
    expect(paths.blobData(d)).to.equal(`/docker/registry/v2/blobs/sha256/ba/${HEX}/data`);
    const long = parseDigest(`sha512:${'0f'.repeat(64)}`)!;
    expect(paths.blobData(long)).to.equal(`/docker/registry/v2/blobs/sha512/0f/${'0f'.repeat(64)}/data`);
  });

  it('places repository links where Distribution does', () => {
    expect(paths.repository(NAME)).to.equal(`/docker/registry/v2/repositories/${NAME}`);
    expect(paths.layerLink(NAME, d)).to.equal(`/docker/registry/v2/repositories/${NAME}/_layers/sha256/${HEX}/link`);
    expect(paths.revisionLink(NAME, d)).to.equal(`/docker/registry/v2/repositories/${NAME}/_manifests/revisions/sha256/${HEX}/link`);
    expect(paths.tags(NAME)).to.equal(`/docker/registry/v2/repositories/${NAME}/_manifests/tags`);
    expect(paths.tag(NAME, '1.12.1-linuxarm64')).to.equal(`/docker/registry/v2/repositories/${NAME}/_manifests/tags/1.12.1-linuxarm64`);
    expect(paths.tagLink(NAME, '1.12.1')).to.equal(`/docker/registry/v2/repositories/${NAME}/_manifests/tags/1.12.1/current/link`);
  });

  it('keeps upload sessions under _uploads/<id>', () => {
    const id = '0b8e6d0e-5b8c-4d7e-9d2a-0f6f1b2c3d4e';
    expect(paths.upload('a/b', id)).to.equal(`/docker/registry/v2/repositories/a/b/_uploads/${id}`);
    expect(paths.uploadData('a/b', id)).to.equal(`/docker/registry/v2/repositories/a/b/_uploads/${id}/data`);
    expect(paths.uploadState('a/b', id)).to.equal(`/docker/registry/v2/repositories/a/b/_uploads/${id}/state.json`);
    expect(paths.uploadStep('a/b', id, 0)).to.equal(paths.uploadState('a/b', id));
    expect(paths.uploadStep('a/b', id, 3)).to.equal(`/docker/registry/v2/repositories/a/b/_uploads/${id}/state-3.json`);
    expect(paths.uploadClaim('a/b', id, 3)).to.equal(`/docker/registry/v2/repositories/a/b/_uploads/${id}/claim-3`);
  });

  it('indexes referrers per subject', () => {
    expect(paths.referrers('a', subject)).to.equal(`/docker/registry/v2/repositories/a/_referrers/sha256/${SUBJECT_HEX}`);
    expect(paths.referrer('a', subject, d)).to.equal(
      `/docker/registry/v2/repositories/a/_referrers/sha256/${SUBJECT_HEX}/sha256-${HEX}.json`,
    );
  });
});
