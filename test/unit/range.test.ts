import { expect } from 'chai';
import { parseContentRange, parseRangeHeader } from '../../server/registry/range.js';

describe('range: Range header of blob reads', () => {
  const cases: Array<[string | undefined, number, ReturnType<typeof parseRangeHeader>]> = [
    [undefined, 10, undefined],
    ['', 10, undefined],
    ['bytes=0-0', 10, { start: 0, end: 0 }],
    ['bytes=0-9', 10, { start: 0, end: 9 }],
    ['bytes=2-5', 10, { start: 2, end: 5 }],
    [' bytes=2-5 ', 10, { start: 2, end: 5 }],
    ['bytes=5-', 10, { start: 5, end: 9 }],
    ['bytes=9-', 10, { start: 9, end: 9 }],
    ['bytes=-3', 10, { start: 7, end: 9 }],
    ['bytes=-10', 10, { start: 0, end: 9 }],
    ['bytes=-20', 10, { start: 0, end: 9 }],
    ['bytes=3-100', 10, { start: 3, end: 9 }],
    ['bytes=0-99999999999999999999', 10, { start: 0, end: 9 }],
    ['bytes=10-', 10, 'unsatisfiable'],
    ['bytes=10-20', 10, 'unsatisfiable'],
    ['bytes=5-3', 10, 'unsatisfiable'],
    ['bytes=-0', 10, 'unsatisfiable'],
    ['bytes=-', 10, 'unsatisfiable'],
    ['bytes=abc', 10, 'unsatisfiable'],
    ['bytes=99999999999999999999-', 10, 'unsatisfiable'],
    // Multi-range and other units are ignored: the whole blob is served.
    ['bytes=0-1,3-4', 10, undefined],
    ['bytes=0-1, 3-4', 10, undefined],
    ['items=0-5', 10, undefined],
    ['0-5', 10, undefined],
    // A zero-length blob has no satisfiable range.
    ['bytes=0-', 0, 'unsatisfiable'],
    ['bytes=0-0', 0, 'unsatisfiable'],
    ['bytes=-5', 0, 'unsatisfiable'],
    ['bytes=0-1,2-3', 0, undefined],
    [undefined, 0, undefined],
  ];
  for (const [header, size, expected] of cases) {
    it(`${JSON.stringify(header)} against ${size} bytes -> ${JSON.stringify(expected)}`, () => {
      expect(parseRangeHeader(header, size)).to.deep.equal(expected);
    });
  }
});

describe('range: Content-Range of upload chunks', () => {
  const cases: Array<[string | undefined, ReturnType<typeof parseContentRange>]> = [
    [undefined, undefined],
    ['0-0', { start: 0, end: 0 }],
    ['0-99', { start: 0, end: 99 }],
    ['100-199', { start: 100, end: 199 }],
    [' 5-9 ', { start: 5, end: 9 }],
    ['bytes 0-99', { start: 0, end: 99 }],
    ['bytes=0-99', { start: 0, end: 99 }],
    ['bytes 0-99/100', { start: 0, end: 99 }],
    ['0-99/*', { start: 0, end: 99 }],
    ['', 'invalid'],
    ['5-3', 'invalid'],
    ['abc', 'invalid'],
    ['0-', 'invalid'],
    ['-5', 'invalid'],
    ['bytes */100', 'invalid'],
    ['0-99/abc', 'invalid'],
    ['0-99999999999999999999', 'invalid'],
    ['1-2,3-4', 'invalid'],
  ];
  for (const [header, expected] of cases) {
    it(`${JSON.stringify(header)} -> ${JSON.stringify(expected)}`, () => {
      expect(parseContentRange(header)).to.deep.equal(expected);
    });
  }
});
