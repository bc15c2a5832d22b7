import { expect } from 'chai';
import { isJobId, jobIdTime, newJobId } from '../../server/jobs/ids.js';

describe('job ids', () => {
  it('are UUIDv7 strings that sort by creation, also within one millisecond', () => {
    const now = Date.UTC(2030, 0, 2, 3, 4, 5, 6);
    const ids = [newJobId(now - 1), ...Array.from({ length: 5000 }, () => newJobId(now)), newJobId(now + 1)];
    expect(new Set(ids).size).to.equal(ids.length);
    expect([...ids].sort()).to.deep.equal(ids);
    expect(ids.every(isJobId)).to.equal(true);
    expect(jobIdTime(ids[0]!)).to.equal(now - 1);
    expect(jobIdTime(ids.at(-1)!)).to.be.at.least(now + 1);
    // The clock stepped back (here: from 2030 to today): ids follow it rather than stay in the future.
    const today = Date.now();
    expect(jobIdTime(newJobId())).to.be.within(today, today + 1_000);
  });

  it('rejects anything else, so an id never becomes a storage path', () => {
    for (const value of ['', '../x', '01a21d5c-3dfb-7618-9d18-cf7cb6ed622', '01A21D5C-3DFB-7618-9D18-CF7CB6ED6220', '01a21d5c-3dfb-4618-9d18-cf7cb6ed6220/x']) {
      expect(isJobId(value), value).to.equal(false);
    }
  });
});
