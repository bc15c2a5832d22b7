import { expect } from 'chai';
import { ManifestCache } from '../../server/registry/manifest-cache.js';

const entry = (size: number, mediaType = 'application/vnd.oci.image.manifest.v1+json') => ({ bytes: Buffer.alloc(size, 1), mediaType });

describe('manifest cache', () => {
  it('returns what was set', () => {
    const cache = new ManifestCache(100);
    const value = entry(10);
    cache.set('sha256:a', value);
    expect(cache.get('sha256:a')).to.equal(value);
    expect(cache.get('sha256:b')).to.equal(undefined);
  });

  it('evicts the least recently used entries beyond the byte budget', () => {
    const cache = new ManifestCache(100);
    cache.set('a', entry(40));
    cache.set('b', entry(40));
    expect(cache.get('a')).to.not.equal(undefined); // a is now the most recent
    cache.set('c', entry(40)); // 120 > 100: evicts b
    expect(cache.get('b')).to.equal(undefined);
    expect(cache.get('a')).to.not.equal(undefined);
    expect(cache.get('c')).to.not.equal(undefined);
  });

  it('never holds an entry larger than the budget', () => {
    const cache = new ManifestCache(100);
    cache.set('a', entry(50));
    cache.set('big', entry(101));
    expect(cache.get('big')).to.equal(undefined);
    expect(cache.get('a')).to.not.equal(undefined);
  });

  it('keeps the first entry for a digest (content-addressed: it cannot change)', () => {
    const cache = new ManifestCache(100);
    const first = entry(10, 'x');
    cache.set('a', first);
    cache.set('a', entry(10, 'y'));
    expect(cache.get('a')).to.equal(first);
    // The duplicate was not counted: three more entries of 30 fit with the first (10 + 90 = 100).
    cache.set('b', entry(30));
    cache.set('c', entry(30));
    cache.set('d', entry(30));
    expect(cache.get('a')).to.equal(first);
  });
});
