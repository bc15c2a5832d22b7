import { expect } from 'chai';
import { compareCodeUnits, paginate } from '../../server/registry/pagination.js';

describe('pagination', () => {
  const all = ['a', 'b', 'c', 'd', 'e'];

  it('returns everything without n or last', () => {
    expect(paginate(all, undefined, undefined)).to.deep.equal({ items: all });
  });

  it('cuts to n and names the next page by its last item', () => {
    expect(paginate(all, 2, undefined)).to.deep.equal({ items: ['a', 'b'], next: 'b' });
    expect(paginate(all, 2, 'b')).to.deep.equal({ items: ['c', 'd'], next: 'd' });
    expect(paginate(all, 2, 'd')).to.deep.equal({ items: ['e'] });
  });

  it('has no next page when the rest fits exactly', () => {
    expect(paginate(all, 5, undefined)).to.deep.equal({ items: all });
    expect(paginate(all, 3, 'b')).to.deep.equal({ items: ['c', 'd', 'e'] });
  });

  it('starts after a last that is not in the list', () => {
    expect(paginate(all, undefined, 'bb')).to.deep.equal({ items: ['c', 'd', 'e'] });
    expect(paginate(all, undefined, 'z')).to.deep.equal({ items: [] });
    expect(paginate(all, undefined, '')).to.deep.equal({ items: all });
  });

  it('gives an empty page for n=0 when items remain', () => {
    const page = paginate(all, 0, undefined);
    expect(page.items).to.deep.equal([]);
    expect(page.next).to.equal(undefined);
  });

  it('orders by UTF-16 code units (byte order for ASCII), as Distribution', () => {
    expect(['b', 'a', 'B', '_', '1', 'a.b', 'a-b'].sort(compareCodeUnits)).to.deep.equal(['1', 'B', '_', 'a', 'a-b', 'a.b', 'b']);
    expect(compareCodeUnits('a', 'a')).to.equal(0);
    expect(compareCodeUnits('a', 'b')).to.equal(-1);
    expect(compareCodeUnits('b', 'a')).to.equal(1);
    const tags = ['v1.10', 'v1.9', 'latest', 'V2'].sort(compareCodeUnits);
    expect(tags).to.deep.equal(['V2', 'latest', 'v1.10', 'v1.9']);
    expect(paginate(tags, 1, 'latest')).to.deep.equal({ items: ['v1.10'], next: 'v1.10' });
  });
});
