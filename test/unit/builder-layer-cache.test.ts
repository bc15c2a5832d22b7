import { expect } from 'chai';
import { evictable, parseImageList, reusedImage } from '../../builder/layer-cache.js';

describe("builder: what trimming buildah's layer cache removes", () => {
  const id = (n: number) => String(n).repeat(64).slice(0, 64);

  it('reads `buildah images --all --json --no-trunc` (ids without sha256:, null names) and `--> Using cache` lines', () => {
    const listed = parseImageList(JSON.stringify([{ id: `sha256:${id(1)}`, names: null, created: 1795825983 }, { id: `sha256:${id(2)}`, names: ['localhost/base:1'] }, { names: ['no id'] }]));
    expect(listed).to.deep.equal([
      { id: id(1), names: [], created: 1795825983 },
      { id: id(2), names: ['localhost/base:1'], created: 0 },
    ]);
    expect(parseImageList('null')).to.deep.equal([]);
    expect(reusedImage(`--> Using cache ${id(3)}`)).to.equal(id(3));
    expect(reusedImage('--> 6cbc79ef4ff')).to.equal(undefined);
    expect(reusedImage(`STEP 2/5: RUN echo --> Using cache ${id(3)}`)).to.equal(undefined);
  });

  it('removes only unnamed images that were there before the build and that it did not reuse, oldest first', () => {
    const images = [
      { id: id(1), names: [], created: 300 }, // old, unused: may go
      { id: id(2), names: [], created: 100 }, // old, reused: stays
      { id: id(3), names: [], created: 400 }, // made by this build: stays
      { id: id(4), names: ['localhost/dify-registry-build/a:linux-amd64'], created: 50 }, // named: stays
      { id: id(5), names: [], created: 200 }, // old, unused, older than 1: goes first
    ];
    expect(evictable(images, new Set([id(1), id(2), id(4), id(5)]), new Set([id(2)]))).to.deep.equal([id(5), id(1)]);
  });
});
