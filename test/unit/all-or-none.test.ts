import { expect } from 'chai';
import { allOrNone } from '../../server/mirror/all-or-none.js';

/** Resolves after `ms`, or rejects with the signal's reason when it aborts first. */
const work = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      reject(signal.reason);
    }, { once: true });
  });

describe('allOrNone', () => {
  it('runs every item and resolves when all succeed', async () => {
    const done: number[] = [];
    await allOrNone([1, 2, 3], new AbortController().signal, async (n, signal) => {
      await work(n * 5, signal);
      done.push(n);
    });
    expect(done.sort()).to.deep.equal([1, 2, 3]);
  });

  it('stops the others at the first failure, waits for them, and throws that failure', async () => {
    const ended: string[] = [];
    const failure = new Error('blob 2 failed');
    const started = Date.now();
    const error = await allOrNone(['slow', 'failing', 'slower'], new AbortController().signal, async (item, signal) => {
      try {
        if (item === 'failing') throw failure;
        await work(item === 'slow' ? 5_000 : 10_000, signal);
      } finally {
        ended.push(item);
      }
    }).then(() => undefined, (caught: unknown) => caught);
    expect(error).to.equal(failure);
    expect(ended.sort(), 'none outlives the call').to.deep.equal(['failing', 'slow', 'slower']);
    expect(Date.now() - started).to.be.below(1_000);
  });

  it('stops every item when the parent signal aborts', async () => {
    const parent = new AbortController();
    setTimeout(() => parent.abort(new Error('job cancelled')), 10);
    const error = await allOrNone([1, 2], parent.signal, (_, signal) => work(10_000, signal)).then(() => undefined, (caught: unknown) => caught);
    expect((error as Error).message).to.equal('job cancelled');
  });
});
