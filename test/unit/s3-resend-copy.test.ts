// The second copy of a streamed S3 part: in memory within the process's budget, else a spill file, and
// none at all (without failing the write) where the temp directory is unusable.
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import type { Readable } from 'node:stream';
import { BufferPool } from '../../storage-drivers/buffer-pool.js';
import { RESEND_MEMORY_BYTES, resendCopy, resendMemoryInUse } from '../../storage-drivers/s3-resend-copy.js';

async function bytesOf(body: Readable | undefined): Promise<Buffer> {
  expect(body, 'a copy to resend').to.not.equal(undefined);
  const chunks: Buffer[] = [];
  for await (const chunk of body!) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

const spillFiles = async () => (await readdir(tmpdir())).filter((name) => name.startsWith('dify-registry-part-'));

describe('S3 resend copies', () => {
  const chunks = [randomBytes(1000), randomBytes(70_000), randomBytes(1)];
  const whole = Buffer.concat(chunks);
  const pool = new BufferPool(128 * 1024, 2);
  /** Takes the whole budget (in parts the size of the pool's buffers) until `release`. */
  const takeBudget = () => {
    const holders = Array.from({ length: Math.floor((RESEND_MEMORY_BYTES - resendMemoryInUse()) / pool.size) }, () => resendCopy(1, pool));
    return { release: () => Promise.all(holders.map((holder) => holder.drop())) };
  };

  it('copies into a pooled buffer within the budget, gives the bytes back as often as asked, and frees the budget', async () => {
    const before = resendMemoryInUse();
    const copy = resendCopy(whole.length, pool);
    expect(resendMemoryInUse()).to.equal(before + pool.size);
    for (const chunk of chunks) await copy.add(chunk);
    expect((await bytesOf(await copy.body())).equals(whole)).to.equal(true);
    expect((await bytesOf(await copy.body())).equals(whole), 'a second resend').to.equal(true);
    await copy.drop();
    await copy.drop();
    expect(resendMemoryInUse()).to.equal(before);
  });

  it('spills to a file in the temp directory once the budget is taken or for parts larger than the buffers, and removes it when dropped', async () => {
    const filesBefore = await spillFiles();
    const before = resendMemoryInUse();
    const budget = takeBudget();
    try {
      const copy = resendCopy(whole.length, pool);
      for (const chunk of chunks) await copy.add(chunk);
      expect((await spillFiles()).length).to.equal(filesBefore.length + 1);
      expect((await bytesOf(await copy.body())).equals(whole)).to.equal(true);
      await copy.drop();
      expect(await spillFiles()).to.deep.equal(filesBefore);
      const tooLarge = resendCopy(pool.size + 1, pool);
      await budget.release();
      const large = resendCopy(pool.size + 1, pool);
      expect(resendMemoryInUse(), 'a part larger than the pool buffers').to.equal(before);
      // A spill file opens in the background; a write waits for it (a bare readdir could run first).
      await Promise.all([tooLarge.add(chunks[2]!), large.add(chunks[2]!)]);
      expect((await spillFiles()).length).to.equal(filesBefore.length + 2);
      await Promise.all([tooLarge.drop(), large.drop()]);
    } finally {
      await budget.release();
    }
    expect(resendMemoryInUse()).to.equal(before);
  });

  it('has no copy, but takes the writes, where the temp directory is unusable', async () => {
    const budget = takeBudget();
    const saved = process.env.TMPDIR;
    process.env.TMPDIR = '/nonexistent/tmp';
    try {
      const copy = resendCopy(whole.length, pool);
      for (const chunk of chunks) await copy.add(chunk);
      expect(await copy.body()).to.equal(undefined);
      await copy.drop();
    } finally {
      if (saved === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = saved;
      await budget.release();
    }
  });
});
