import { expect } from 'chai';
import { assertDigest, digestOf, isDigest, newHash, parseDigest } from '../../server/registry/digest.js';
import { throwsOci } from './support.js';

const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
const ABC_SHA256 = 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad';
const ABC_SHA512 =
  'ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f';

describe('digest', () => {
  it('parses a sha256 digest', () => {
    expect(parseDigest(`sha256:${ABC_SHA256}`)).to.deep.equal({ algorithm: 'sha256', hex: ABC_SHA256, digest: `sha256:${ABC_SHA256}` });
  });

  it('parses a sha512 digest', () => {
    expect(parseDigest(`sha512:${ABC_SHA512}`)).to.deep.equal({ algorithm: 'sha512', hex: ABC_SHA512, digest: `sha512:${ABC_SHA512}` });
  });

  const invalid: Array<[string, string]> = [
    [`sha256:${ABC_SHA256.slice(1)}`, '63 hex characters'],
    [`sha256:${ABC_SHA256}0`, '65 hex characters'],
    [`sha512:${ABC_SHA256}`, 'sha512 with 64 hex characters'],
    [`sha256:${ABC_SHA512}`, 'sha256 with 128 hex characters'],
    [`sha256:${ABC_SHA256.toUpperCase()}`, 'uppercase hex'],
    [`SHA256:${ABC_SHA256}`, 'an uppercase algorithm'],
    [`md5:${'a'.repeat(32)}`, 'an unknown algorithm'],
    [`sha384:${'a'.repeat(96)}`, 'an unsupported algorithm'],
    [`sha256:${'g'.repeat(64)}`, 'non-hex characters'],
    ['sha256:', 'no hex'],
    [ABC_SHA256, 'no algorithm'],
    [`:${ABC_SHA256}`, 'an empty algorithm'],
    ['sha256:../../../../etc/passwd', 'a traversal string'],
    [`sha256:../${ABC_SHA256.slice(3)}`, 'a traversal of the right length'],
    [`sha256/${ABC_SHA256}`, 'a slash instead of a colon'],
    [`../sha256:${ABC_SHA256}`, 'a traversal prefix'],
    [`sha256:${ABC_SHA256}/../x`, 'a traversal suffix'],
    [`sha256:${ABC_SHA256}\n`, 'a trailing newline'],
    [` sha256:${ABC_SHA256}`, 'a leading space'],
    ['', 'empty'],
  ];
  for (const [value, why] of invalid) {
    it(`refuses ${why}`, () => {
      expect(parseDigest(value)).to.equal(undefined);
      expect(isDigest(value)).to.equal(false);
      throwsOci(() => assertDigest(value), 400, 'DIGEST_INVALID');
    });
  }

  it('treats a missing digest as DIGEST_INVALID', () => {
    expect(throwsOci(() => assertDigest(undefined), 400, 'DIGEST_INVALID').message).to.equal('digest missing');
    throwsOci(() => assertDigest(null), 400, 'DIGEST_INVALID');
  });

  it('hashes with the known vectors', () => {
    expect(digestOf('')).to.equal(`sha256:${EMPTY_SHA256}`);
    expect(digestOf(Buffer.from('abc'))).to.equal(`sha256:${ABC_SHA256}`);
    expect(digestOf('abc', 'sha512')).to.equal(`sha512:${ABC_SHA512}`);
    expect(newHash().update('a').update('bc').digest('hex')).to.equal(ABC_SHA256);
    expect(newHash('sha512').update('abc').digest('hex')).to.equal(ABC_SHA512);
  });

  it('hashes bytes, not a re-encoding (a space and a newline change the digest)', () => {
    expect(digestOf('{"a":1}')).to.not.equal(digestOf('{"a": 1}'));
    expect(digestOf('{"a":1}')).to.not.equal(digestOf('{"a":1}\n'));
    expect(isDigest(digestOf('anything'))).to.equal(true);
  });
});
