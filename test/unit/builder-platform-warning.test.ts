import { expect } from 'chai';
import { printedPlatform, sameArchitecture } from '../../builder/buildah-engine.js';

describe('builder: platforms in buildah\'s "image platform does not match" warning', () => {
  it('reads Go\'s struct printing and the os/arch form', () => {
    expect(printedPlatform('{amd64 linux  [] }')).to.equal('linux/amd64');
    expect(printedPlatform('{arm64 linux  [] v8}')).to.equal('linux/arm64');
    expect(printedPlatform('{arm linux  [] v7}')).to.equal('linux/arm/v7');
    expect(printedPlatform('{amd64 windows 10.0.17763 [] }')).to.equal('windows/amd64');
    expect(printedPlatform('linux/amd64')).to.equal('linux/amd64');
    expect(printedPlatform('not a platform')).to.equal(undefined);
  });

  it('counts only another OS or architecture as a mismatch, not a variant', () => {
    expect(sameArchitecture('linux/amd64', 'linux/arm64')).to.equal(false);
    expect(sameArchitecture('windows/amd64', 'linux/amd64')).to.equal(false);
    expect(sameArchitecture('linux/amd64', 'linux/amd64/v3')).to.equal(true);
    expect(sameArchitecture('linux/arm/v6', 'linux/arm/v7')).to.equal(true);
  });
});
