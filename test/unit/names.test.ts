import { expect } from 'chai';
import { assertValidName, assertValidTag, isValidName, isValidTag, MAX_NAME_LENGTH } from '../../server/registry/names.js';
import { throwsOci } from './support.js';

describe('names: repository names', () => {
  const valid = [
    'a',
    'nginx',
    'library/nginx',
    'langgenius/dify-api',
    'ddn-k8s/docker.io/langgenius/dify-api',
    'ddn-k8s/docker.io/nginx',
    'a.b',
    'a_b',
    'a__b',
    'a-b',
    'a---b',
    'a0/b1/c2',
    '0',
    'foo.bar_baz__qux-quux/x',
  ];
  for (const name of valid) {
    it(`accepts ${name}`, () => {
      expect(isValidName(name)).to.equal(true);
      expect(assertValidName(name)).to.equal(name);
    });
  }

  const invalid: Array<[string, string]> = [
    ['', 'empty'],
    ['..', 'dot-dot'],
    ['a/../b', 'a dot-dot component'],
    ['../etc', 'leading dot-dot'],
    ['Nginx', 'uppercase'],
    ['langgenius/Dify-api', 'uppercase in a later component'],
    ['a//b', 'an empty component'],
    ['_x', 'a leading underscore'],
    ['-x', 'a leading dash'],
    ['.x', 'a leading dot'],
    ['/a', 'a leading slash'],
    ['a/', 'a trailing slash'],
    ['a-', 'a trailing dash'],
    ['a.', 'a trailing dot'],
    ['a_', 'a trailing underscore'],
    ['a__', 'a trailing double underscore'],
    ['a___b', 'a triple underscore'],
    ['a..b', 'two dots'],
    ['a._b', 'mixed separators'],
    ['a b', 'a space'],
    ['a:b', 'a colon'],
    ['a@b', 'an at sign'],
    ['docker.io/Library/nginx', 'uppercase'],
  ];
  for (const [name, why] of invalid) {
    it(`refuses ${JSON.stringify(name)} (${why})`, () => {
      expect(isValidName(name)).to.equal(false);
      throwsOci(() => assertValidName(name), 400, 'NAME_INVALID');
    });
  }

  it('allows exactly 255 characters and refuses 256', () => {
    expect(MAX_NAME_LENGTH).to.equal(255);
    const name255 = 'a'.repeat(255);
    expect(isValidName(name255)).to.equal(true);
    expect(isValidName('a'.repeat(256))).to.equal(false);
    // The same limit with components: 63 * 4 + 3 slashes = 255.
    const components = Array.from({ length: 4 }, (_, i) => String(i).repeat(63)).join('/');
    expect(components.length).to.equal(255);
    expect(isValidName(components)).to.equal(true);
    expect(isValidName(`${components}x`)).to.equal(false);
  });

  it('puts the name, cut to 256 characters, in the error detail', () => {
    const error = throwsOci(() => assertValidName('A'.repeat(1000)), 400, 'NAME_INVALID');
    expect((error.detail as { name: string }).name).to.have.length(256);
    expect(error.toBody().errors[0]!.code).to.equal('NAME_INVALID');
  });

  it('answers quickly for a long near-miss (no catastrophic backtracking)', () => {
    const started = Date.now();
    expect(isValidName(`${'a-'.repeat(120)}!`)).to.equal(false);
    expect(isValidName(`${'a_'.repeat(2000)}`)).to.equal(false);
    expect(Date.now() - started).to.be.below(200);
  });
});

describe('names: tags', () => {
  const valid = ['latest', '1.12.1', '1.12.1-linuxarm64', '1.12.1-linuxarmv7', '1.12.1-linuxppc64le', '_x', 'V1', 'a.b-c_d', '0', 'x'.repeat(128)];
  for (const tag of valid) {
    it(`accepts ${tag.length > 20 ? `a ${tag.length}-character tag` : tag}`, () => {
      expect(isValidTag(tag)).to.equal(true);
      expect(assertValidTag(tag)).to.equal(tag);
    });
  }

  const invalid: Array<[string, string]> = [
    ['', 'empty'],
    ['x'.repeat(129), '129 characters'],
    ['.hidden', 'a leading dot'],
    ['-x', 'a leading dash'],
    ['a/b', 'a slash'],
    ['a:b', 'a colon'],
    ['sha256:abc', 'a digest-looking tag'],
    ['a b', 'a space'],
    ['..', 'dot-dot'],
    ['a+b', 'a plus'],
  ];
  for (const [tag, why] of invalid) {
    it(`refuses ${tag.length > 20 ? 'a long tag' : JSON.stringify(tag)} (${why})`, () => {
      expect(isValidTag(tag)).to.equal(false);
      throwsOci(() => assertValidTag(tag), 400, 'TAG_INVALID');
    });
  }

  it('allows 128 characters starting with an underscore, not 129', () => {
    expect(isValidTag(`_${'a'.repeat(127)}`)).to.equal(true);
    expect(isValidTag(`_${'a'.repeat(128)}`)).to.equal(false);
  });
});
