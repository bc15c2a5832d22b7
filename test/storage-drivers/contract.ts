// The storage-driver contract as one suite every driver runs (not a test file: drivers.test.ts calls it).
// Each case states the behaviour the registry relies on; none of them looks at a driver's internals, so a
// driver passes by doing what storage-drivers/driver.ts promises, whatever its backend.
import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { expect } from 'chai';
import {
  InvalidPathError,
  isNotFound,
  PathNotFoundError,
  type FileWriter,
  type StorageDriver,
  type WriterCheckpoint,
} from '../../storage-drivers/driver.js';

const MiB = 1024 * 1024;

export interface DriverHarness {
  driver: StorageDriver;
  cleanup(): Promise<void>;
  /** A second driver instance over the same storage, as another process (or a restarted one) would have. */
  reopen?(): Promise<StorageDriver>;
  /** true: redirectURL must give a URL plain fetch can use; false or absent: it must give undefined. */
  redirects?: boolean;
  /** Misconfigured instances: their healthCheck must fail quickly, with a message matching `message`. */
  broken?(): Promise<Array<{ what: string; driver: StorageDriver; message: RegExp }>>;
  /** Multipart uploads still open at or under `path` (their keys); absent for backends without any. */
  openUploads?(path: string): Promise<string[]>;
}

export function driverContract(name: string, makeDriver: () => Promise<DriverHarness>): void {
  describe(`storage driver contract: ${name}`, () => {
    let harness: DriverHarness;
    let driver: StorageDriver;

    before(async () => {
      harness = await makeDriver();
      driver = harness.driver;
    });
    after(async () => {
      await harness?.cleanup();
    });

    const reopen = async (): Promise<StorageDriver> => {
      expect(harness.reopen, `the ${name} harness must offer reopen()`).to.be.a('function');
      return harness.reopen!();
    };

    describe('putContent / getContent', () => {
      it('round-trips text and binary content, creating parents', async () => {
        await driver.putContent('/pc/a/b/c/link', 'sha256:abc');
        expect((await driver.getContent('/pc/a/b/c/link')).toString()).to.equal('sha256:abc');
        const binary = Buffer.from([0, 1, 2, 127, 128, 254, 255, 0]);
        await driver.putContent('/pc/bin', binary);
        expectSameBytes(await driver.getContent('/pc/bin'), binary, '/pc/bin');
      });

      it('replaces content, with something shorter and with nothing', async () => {
        await driver.putContent('/pc/replace', 'a much longer first version');
        await driver.putContent('/pc/replace', 'v2');
        expect((await driver.getContent('/pc/replace')).toString()).to.equal('v2');
        await driver.putContent('/pc/replace', Buffer.alloc(0));
        expect((await driver.getContent('/pc/replace')).length).to.equal(0);
        expect((await driver.stat('/pc/replace')).size).to.equal(0);
      });

      it('replaces atomically: concurrent readers see the old or the new content, never a mix or nothing', async () => {
        const a = Buffer.alloc(256 * 1024, 'A');
        const b = Buffer.alloc(96 * 1024, 'B');
        await driver.putContent('/pc/atomic', a);
        const seen = new Map<string, number>();
        let writing = true;
        const readers = Array.from({ length: 3 }, async () => {
          while (writing) {
            const content = await driver.getContent('/pc/atomic');
            const kind = content.equals(a) ? 'a' : content.equals(b) ? 'b' : `other(${content.length} bytes)`;
            seen.set(kind, (seen.get(kind) ?? 0) + 1);
          }
        });
        try {
          for (let i = 0; i < 16; i++) await driver.putContent('/pc/atomic', i % 2 ? a : b);
        } finally {
          writing = false;
          await Promise.all(readers);
        }
        expect([...seen.keys()].filter((kind) => kind.startsWith('other'))).to.deep.equal([]);
        expect((await driver.getContent('/pc/atomic')).equals(a)).to.equal(true);
      });

      it('throws PathNotFoundError naming the path for a missing file, a missing parent, a path below a file', async () => {
        const error = await rejectsWith(driver.getContent('/pc/missing'), PathNotFoundError);
        expect(error.path).to.equal('/pc/missing');
        await rejectsWith(driver.getContent('/pc-none/x/y'), PathNotFoundError);
        await rejectsWith(driver.getContent('/pc/bin/below-a-file'), PathNotFoundError);
      });
    });

    describe('putContentIfAbsent', () => {
      it('creates the file the first time, then returns false and leaves it unchanged', async () => {
        expect(await driver.putContentIfAbsent('/pia/lock', 'first')).to.equal(true);
        expect(await driver.putContentIfAbsent('/pia/lock', 'second')).to.equal(false);
        expect((await driver.getContent('/pia/lock')).toString()).to.equal('first');
      });

      it('returns false for a file written by putContent', async () => {
        await driver.putContent('/pia/existing', 'there');
        expect(await driver.putContentIfAbsent('/pia/existing', 'claim')).to.equal(false);
        expect((await driver.getContent('/pia/existing')).toString()).to.equal('there');
      });

      it('lets exactly one of 10 concurrent claims win, and its content is the one stored (5 rounds)', async () => {
        for (let round = 0; round < 5; round++) {
          const path = `/pia/race-${round}`;
          const results = await Promise.all(Array.from({ length: 10 }, (_, i) => driver.putContentIfAbsent(path, `claim ${i}`)));
          expect(results.filter(Boolean), `round ${round}: ${JSON.stringify(results)}`).to.have.length(1);
          expect((await driver.getContent(path)).toString()).to.equal(`claim ${results.indexOf(true)}`);
        }
      });

      it('can claim again after a delete', async () => {
        await driver.delete('/pia/lock');
        expect(await driver.putContentIfAbsent('/pia/lock', 'third')).to.equal(true);
        expect((await driver.getContent('/pia/lock')).toString()).to.equal('third');
      });
    });

    describe('writer: write, commit, cancel', () => {
      it('writes a new file, reporting its size as it grows, readable after commit; a second commit is harmless', async () => {
        const writer = await driver.writer('/w/new/data');
        expect(writer.size).to.equal(0);
        await writer.write(Buffer.from('hello '));
        await writer.write(Buffer.alloc(0));
        await writer.write(Buffer.from('world'));
        expect(writer.size).to.equal(11);
        await writer.commit();
        await writer.commit();
        expect((await driver.getContent('/w/new/data')).toString()).to.equal('hello world');
        expect((await driver.stat('/w/new/data')).size).to.equal(11);
      });

      it('commits an empty file', async () => {
        const writer = await driver.writer('/w/empty/data');
        await writer.commit();
        expect((await driver.stat('/w/empty/data')).size).to.equal(0);
        expect((await driver.getContent('/w/empty/data')).length).to.equal(0);
      });

      it('replaces an existing file on commit', async () => {
        await driver.putContent('/w/replaced', 'old content, longer than the new');
        const writer = await driver.writer('/w/replaced');
        await writer.write(Buffer.from('new'));
        await writer.commit();
        expect((await driver.getContent('/w/replaced')).toString()).to.equal('new');
      });

      it('cancel of a fresh writer leaves nothing behind (small, and larger than a part)', async () => {
        const small = await driver.writer('/w/cancelled/small');
        await small.write(Buffer.from('x'));
        await small.cancel();
        await small.cancel(); // harmless twice
        const large = await driver.writer('/w/cancelled/large');
        await large.write(randomBytes(6 * MiB));
        await large.write(Buffer.from('tail'));
        await large.cancel();
        await rejectsWith(driver.stat('/w/cancelled/small'), PathNotFoundError);
        await rejectsWith(driver.stat('/w/cancelled/large'), PathNotFoundError);
        await expectNothingIn(driver, '/w/cancelled');
        if (harness.openUploads) expect(await harness.openUploads('/w/cancelled')).to.deep.equal([]);
      });

      it('where writers commit atomically, nothing is visible at the path before commit, and cancel keeps the old file', async function () {
        if (!driver.writersCommitAtomically) return this.skip();
        await driver.putContent('/w/atomic/kept', 'old');
        for (const [path, size] of [['/w/atomic/small', 1000], ['/w/atomic/large', 6 * MiB + 3]] as const) {
          const writer = await driver.writer(path);
          await writer.write(randomBytes(size));
          await rejectsWith(driver.stat(path), PathNotFoundError);
          await writer.commit();
          expect((await driver.stat(path)).size).to.equal(size);
        }
        // Announced sizes (S3 streams those in one request): still nothing before commit, even with every byte written.
        const data = randomBytes(6 * MiB + 5);
        const announced = await driver.writer('/w/atomic/announced', { size: data.length });
        for (let at = 0; at < data.length; at += 64 * 1024) await announced.write(data.subarray(at, at + 64 * 1024));
        await rejectsWith(driver.stat('/w/atomic/announced'), PathNotFoundError);
        await announced.commit();
        expect((await driver.getContent('/w/atomic/announced')).equals(data)).to.equal(true);
        const abandoned = await driver.writer('/w/atomic/abandoned', { size: data.length });
        await abandoned.write(data.subarray(0, 3 * MiB));
        await abandoned.write(data.subarray(3 * MiB));
        await abandoned.cancel();
        await rejectsWith(driver.stat('/w/atomic/abandoned'), PathNotFoundError);
        const replacing = await driver.writer('/w/atomic/kept');
        await replacing.write(randomBytes(6 * MiB));
        expect((await driver.getContent('/w/atomic/kept')).toString()).to.equal('old');
        await replacing.cancel();
        expect((await driver.getContent('/w/atomic/kept')).toString()).to.equal('old');
      });

      it('abortStaleWriters (where offered) aborts writers started before the cutoff, and only those', async function () {
        if (!driver.abortStaleWriters) return this.skip();
        const stale = await driver.writer('/w/stale/dir/a');
        await stale.write(randomBytes(6 * MiB)); // a whole part: the upload exists now
        const cutoff = new Date(Date.now() + 2_000);
        await new Promise((resolve) => setTimeout(resolve, 2_500));
        const fresh = await driver.writer('/w/stale/dir/b');
        await fresh.write(randomBytes(6 * MiB));
        expect(await driver.abortStaleWriters('/w/stale', cutoff)).to.equal(1);
        if (harness.openUploads) expect(await harness.openUploads('/w/stale')).to.have.length(1);
        await fresh.commit();
        expect((await driver.stat('/w/stale/dir/b')).size).to.equal(6 * MiB);
        await rejectsWith(driver.stat('/w/stale/dir/a'), PathNotFoundError);
        await stale.cancel();
      });

      it('writes a file of announced size, in odd chunk sizes, read back identical', async () => {
        const data = randomBytes(11 * MiB + 17);
        const writer = await driver.writer('/w/announced/file', { size: data.length });
        for (let at = 0, step = 1; at < data.length; at += step, step = (step * 7 + 13) % (700 * 1024) + 1) await writer.write(data.subarray(at, at + step));
        expect(writer.size).to.equal(data.length);
        await writer.commit();
        expect((await driver.getContent('/w/announced/file')).equals(data)).to.equal(true);
      });

      it('continues with announced sizes (streamed parts where the driver can): checkpoint, a cancelled chunk, commit', async () => {
        const data = randomBytes(5 * MiB + 6 * MiB + 5 * MiB + 1);
        const cuts = [0, 5 * MiB, 11 * MiB, data.length];
        const first = await driver.writer('/w/announced-resume/file');
        await first.write(data.subarray(0, cuts[1]));
        let checkpoint = await first.checkpoint();
        const second = await driver.writer('/w/announced-resume/file', { resume: checkpoint, size: cuts[2]! - cuts[1]! });
        await second.write(data.subarray(cuts[1], cuts[1]! + MiB));
        await second.write(data.subarray(cuts[1]! + MiB, cuts[2]));
        checkpoint = await second.checkpoint();
        expect(checkpoint.size).to.equal(cuts[2]);
        // A chunk that breaks off is cancelled; the checkpoint before it still holds.
        const broken = await driver.writer('/w/announced-resume/file', { resume: checkpoint, size: cuts[3]! - cuts[2]! });
        await broken.write(data.subarray(cuts[2], cuts[2]! + 2 * MiB));
        await broken.cancel();
        const last = await driver.writer('/w/announced-resume/file', { resume: checkpoint, size: cuts[3]! - cuts[2]! });
        for (let at = cuts[2]!; at < cuts[3]!; at += 700 * 1024) await last.write(data.subarray(at, Math.min(at + 700 * 1024, cuts[3]!)));
        await last.commit();
        expect((await driver.getContent('/w/announced-resume/file')).equals(data)).to.equal(true);
        if (harness.openUploads) expect(await harness.openUploads('/w/announced-resume')).to.deep.equal([]);
      });

      it('continues with an announced size even where the temp directory is unusable', async () => {
        const data = randomBytes(5 * MiB + 6 * MiB);
        const first = await driver.writer('/w/announced-notmp/file');
        await first.write(data.subarray(0, 5 * MiB));
        const checkpoint = await first.checkpoint();
        const saved = process.env.TMPDIR;
        process.env.TMPDIR = '/nonexistent/tmp';
        try {
          const second = await driver.writer('/w/announced-notmp/file', { resume: checkpoint, size: 6 * MiB });
          await second.write(data.subarray(5 * MiB));
          await second.commit();
        } finally {
          if (saved === undefined) delete process.env.TMPDIR;
          else process.env.TMPDIR = saved;
        }
        expect((await driver.getContent('/w/announced-notmp/file')).equals(data)).to.equal(true);
      });

      it('writes larger than several parts, in odd chunk sizes, read back identical', async () => {
        const sizes = [1, 7 * MiB, 3 * MiB + 1, 0, 5 * MiB, 17, 2 * MiB - 18, 1];
        const data = randomBytes(sizes.reduce((sum, size) => sum + size, 0));
        const writer = await driver.writer('/w/large/data');
        let offset = 0;
        for (const size of sizes) {
          await writer.write(data.subarray(offset, offset + size));
          offset += size;
          expect(writer.size).to.equal(offset);
        }
        await writer.commit();
        expect((await driver.stat('/w/large/data')).size).to.equal(data.length);
        expectSameBytes(await readAll(await driver.reader('/w/large/data')), data, 'whole file');
        // Ranges across the part boundaries a 5 MiB part size would put there.
        for (const [start, length] of [[5 * MiB - 3, 10], [10 * MiB - 1, 2], [MiB, 6 * MiB], [data.length - 5, 5]] as const) {
          expectSameBytes(await readAll(await driver.reader('/w/large/data', start, length)), data.subarray(start, start + length), `range ${start}+${length}`);
        }
      });

      it('writes exactly two parts in one buffer (nothing left over at commit)', async () => {
        const data = randomBytes(10 * MiB);
        const writer = await driver.writer('/w/exact/data');
        await writer.write(data);
        await writer.commit();
        expectSameBytes(await driver.getContent('/w/exact/data'), data, 'exact parts');
      });

      it('writes to different paths concurrently without mixing them up', async () => {
        const contents = [randomBytes(6 * MiB + 7), randomBytes(5 * MiB + 1), randomBytes(1000), randomBytes(3), Buffer.alloc(0)];
        await Promise.all(
          contents.map(async (content, i) => {
            const writer = await driver.writer(`/w/concurrent/${i}/data`);
            for (let offset = 0; offset < content.length; offset += 1024 * 1024 + 13) {
              await writer.write(content.subarray(offset, offset + 1024 * 1024 + 13));
              await new Promise((resolve) => setImmediate(resolve));
            }
            await writer.commit();
          }),
        );
        for (const [i, content] of contents.entries()) {
          expectSameBytes(await driver.getContent(`/w/concurrent/${i}/data`), content, `writer ${i}`);
        }
      });
    });

    describe('writer: checkpoint and resume', () => {
      it('appends through checkpoints, each resume continuing where the last stopped', async () => {
        await driver.putContent('/cp/basic/state', 'started'); // as an upload session's: its directory exists
        const first = await driver.writer('/cp/basic/data', { resume: { size: 0 } });
        await first.write(Buffer.from('chunk one;'));
        const one = await first.checkpoint();
        expect(one.size).to.equal(10);
        const second = await driver.writer('/cp/basic/data', { resume: one });
        expect(second.size).to.equal(10);
        await second.write(Buffer.from('chunk two'));
        expect(second.size).to.equal(19);
        const two = await second.checkpoint();
        expect(two.size).to.equal(19);
        const last = await driver.writer('/cp/basic/data', { resume: two });
        expect(last.size).to.equal(19);
        await last.commit();
        expect((await driver.getContent('/cp/basic/data')).toString()).to.equal('chunk one;chunk two');
      });

      it('a resume never makes its directory: where directories are real, a removed one is PathNotFoundError', async () => {
        if (!driver.directoriesArePrefixes) {
          const error = await driver.writer('/cp/removed/data', { resume: { size: 0 } }).then(() => undefined, (e: unknown) => e);
          expect(isNotFound(error), String(error)).to.equal(true);
          expect(await driver.list('/cp').catch(() => [] as string[])).to.not.include('/cp/removed');
        }
      });

      it('resumes an empty checkpoint and commits an empty file', async () => {
        const first = await driver.writer('/cp/empty/data');
        const checkpoint = await first.checkpoint();
        expect(checkpoint.size).to.equal(0);
        const last = await driver.writer('/cp/empty/data', { resume: checkpoint });
        await last.commit();
        expect((await driver.getContent('/cp/empty/data')).length).to.equal(0);
      });

      it('checkpoints on an exact part boundary and commits with nothing more written', async () => {
        const data = randomBytes(5 * MiB);
        const first = await driver.writer('/cp/boundary/data');
        await first.write(data);
        const checkpoint = await first.checkpoint();
        expect(checkpoint.size).to.equal(data.length);
        const last = await driver.writer('/cp/boundary/data', { resume: checkpoint });
        await last.commit();
        expectSameBytes(await driver.getContent('/cp/boundary/data'), data, 'boundary');
      });

      it('cancel of a resumed writer keeps the checkpointed bytes and drops its own', async () => {
        const data = randomBytes(5 * MiB + 300);
        const first = await driver.writer('/cp/cancel/data');
        await first.write(data);
        const checkpoint = await first.checkpoint();
        // As a PATCH whose client went away: several parts' worth written, then cancelled.
        const cancelled = await driver.writer('/cp/cancel/data', { resume: checkpoint });
        await cancelled.write(randomBytes(12 * MiB));
        await cancelled.write(Buffer.from('junk'));
        await cancelled.cancel();
        const last = await driver.writer('/cp/cancel/data', { resume: checkpoint });
        expect(last.size).to.equal(data.length);
        await last.write(Buffer.from('end'));
        await last.commit();
        expectSameBytes(await driver.getContent('/cp/cancel/data'), Buffer.concat([data, Buffer.from('end')]), 'after cancel');
        expect(await driver.list('/cp/cancel')).to.deep.equal(['/cp/cancel/data']);
        if (harness.openUploads) expect(await harness.openUploads('/cp/cancel')).to.deep.equal([]);
      });

      it('drops bytes beyond an older checkpoint that a later (crashed) writer wrote', async () => {
        const kept = randomBytes(6 * MiB + 3);
        const dropped = randomBytes(11 * MiB + 5);
        const added = randomBytes(MiB + 1);
        const first = await driver.writer('/cp/crash/data');
        await first.write(kept);
        const older = await first.checkpoint();
        // The crashed writer: it wrote on and even checkpointed, but its caller never recorded that checkpoint.
        const crashed = await driver.writer('/cp/crash/data', { resume: older });
        await crashed.write(dropped.subarray(0, 4 * MiB));
        await crashed.write(dropped.subarray(4 * MiB));
        await crashed.checkpoint();
        const next = await driver.writer('/cp/crash/data', { resume: older });
        expect(next.size).to.equal(kept.length);
        await next.write(added);
        await next.commit();
        expectSameBytes(await driver.getContent('/cp/crash/data'), Buffer.concat([kept, added]), 'after crash');
        expect(await driver.list('/cp/crash')).to.deep.equal(['/cp/crash/data']);
        if (harness.openUploads) expect(await harness.openUploads('/cp/crash')).to.deep.equal([]);
      });

      it('drops crash leftovers on small files too', async () => {
        const first = await driver.writer('/cp/crash-small/data');
        await first.write(Buffer.from('committed'));
        const older = await first.checkpoint();
        const crashed = await driver.writer('/cp/crash-small/data', { resume: older });
        await crashed.write(Buffer.from('GARBAGE FROM A CRASHED WRITER'));
        await crashed.checkpoint();
        const next = await driver.writer('/cp/crash-small/data', { resume: older });
        await next.write(Buffer.from('+more'));
        await next.commit();
        expect((await driver.getContent('/cp/crash-small/data')).toString()).to.equal('committed+more');
      });

      it('continues in another driver instance (another process) and back', async () => {
        const other = await reopen();
        // Sizes chosen so that a driver with a part size above 5.5 MiB hands a 5.5 MiB tail to one with 5 MiB parts.
        const parts = [randomBytes(3 * MiB + 11), randomBytes(2.5 * MiB), randomBytes(MiB - 1), randomBytes(2 * MiB + 5)];
        const first = await driver.writer('/cp/other/data');
        await first.write(parts[0]!);
        const one = await first.checkpoint();
        const second = await other.writer('/cp/other/data', { resume: roundTrip(one) });
        expect(second.size).to.equal(parts[0]!.length);
        await second.write(parts[1]!);
        const two = await second.checkpoint();
        const third = await driver.writer('/cp/other/data', { resume: roundTrip(two) });
        await third.write(parts[2]!);
        const three = await third.checkpoint();
        const last = await other.writer('/cp/other/data', { resume: roundTrip(three) });
        await last.write(parts[3]!);
        await last.commit();
        const expected = Buffer.concat(parts);
        expectSameBytes(await driver.getContent('/cp/other/data'), expected, 'read by the first instance');
        expectSameBytes(await readAll(await other.reader('/cp/other/data')), expected, 'read by the second instance');
      });

      it('commit leaves only the finished file in its directory, whatever checkpoints came before', async () => {
        let checkpoint: WriterCheckpoint | undefined;
        const expected: Buffer[] = [];
        for (const size of [10, 5 * MiB + 2, 100]) {
          const writer = await driver.writer('/cp/tidy/data', checkpoint ? { resume: checkpoint } : {});
          const chunk = randomBytes(size);
          expected.push(chunk);
          await writer.write(chunk);
          checkpoint = await writer.checkpoint();
        }
        const last = await driver.writer('/cp/tidy/data', { resume: checkpoint! });
        await last.commit();
        expectSameBytes(await driver.getContent('/cp/tidy/data'), Buffer.concat(expected), 'tidy');
        expect(await driver.list('/cp/tidy')).to.deep.equal(['/cp/tidy/data']);
        if (harness.openUploads) expect(await harness.openUploads('/cp/tidy')).to.deep.equal([]);
      });

      it('refuses a resume the stored data cannot back', async () => {
        await driver.putContent('/cp/short', 'abc');
        await rejectsWith(driver.writer('/cp/short', { resume: { size: 10 } }), Error);
        await rejectsWith(driver.writer('/cp/absent/data', { resume: { size: 5 } }), Error);
        expect((await driver.getContent('/cp/short')).toString()).to.equal('abc');
      });
    });

    describe('reader', () => {
      before(() => driver.putContent('/r/data', '0123456789'));

      it('reads the whole file, from an offset, and a length from an offset', async () => {
        expect((await readAll(await driver.reader('/r/data'))).toString()).to.equal('0123456789');
        expect((await readAll(await driver.reader('/r/data', 7))).toString()).to.equal('789');
        expect((await readAll(await driver.reader('/r/data', 2, 3))).toString()).to.equal('234');
        expect((await readAll(await driver.reader('/r/data', 0, 1))).toString()).to.equal('0');
        expect((await readAll(await driver.reader('/r/data', 9, 1))).toString()).to.equal('9');
        expect((await readAll(await driver.reader('/r/data', 0, 10))).toString()).to.equal('0123456789');
      });

      it('gives an empty stream for length 0, and stops at the end of the file', async () => {
        expect((await readAll(await driver.reader('/r/data', 3, 0))).length).to.equal(0);
        expect((await readAll(await driver.reader('/r/data', 0, 0))).length).to.equal(0);
        expect((await readAll(await driver.reader('/r/data', 8, 100))).toString()).to.equal('89');
        expect((await readAll(await driver.reader('/r/data', 10))).length).to.equal(0);
      });

      it('reads an empty file', async () => {
        await driver.putContent('/r/empty', '');
        expect((await readAll(await driver.reader('/r/empty'))).length).to.equal(0);
        expect((await readAll(await driver.reader('/r/empty', 0, 0))).length).to.equal(0);
      });

      it('throws PathNotFoundError for a missing file, also with a range or length 0', async () => {
        const error = await rejectsWith(driver.reader('/r/missing'), PathNotFoundError);
        expect(error.path).to.equal('/r/missing');
        await rejectsWith(driver.reader('/r/missing', 2, 3), PathNotFoundError);
        await rejectsWith(driver.reader('/r/missing', 0, 0), PathNotFoundError);
      });
    });

    describe('stat', () => {
      before(async () => {
        await driver.putContent('/st/dir/one', '1');
        await driver.putContent('/st/dir/sub/deeper/three', '333');
        await driver.putContent('/st/dirx', 'a sibling file whose name starts like the directory');
      });

      it('stats a file: path, size, recent modTime, not a directory', async () => {
        const file = await driver.stat('/st/dirx');
        expect({ path: file.path, size: file.size, isDir: file.isDir }).to.deep.equal({
          path: '/st/dirx',
          size: 'a sibling file whose name starts like the directory'.length,
          isDir: false,
        });
        expect(file.modTime).to.be.instanceOf(Date);
        expect(Math.abs(file.modTime.getTime() - Date.now())).to.be.below(10 * 60 * 1000);
      });

      it('stats directories, including ones holding only directories, the root, and with a trailing slash', async () => {
        for (const path of ['/st/dir', '/st/dir/sub', '/st', '/st/dir/']) {
          const info = await driver.stat(path);
          expect(info.isDir, path).to.equal(true);
          expect(info.path, path).to.equal(path);
        }
        expect((await driver.stat('/')).isDir).to.equal(true);
      });

      it('throws PathNotFoundError for missing paths, prefixes of names, and paths below a file', async () => {
        const error = await rejectsWith(driver.stat('/st/nothing'), PathNotFoundError);
        expect(error.path).to.equal('/st/nothing');
        await rejectsWith(driver.stat('/st/di'), PathNotFoundError);
        await rejectsWith(driver.stat('/st/dir/on'), PathNotFoundError);
        await rejectsWith(driver.stat('/st/dir/one/below'), PathNotFoundError);
      });

      it('with { file: true }, stats files only: a directory or a missing path is not found', async () => {
        expect((await driver.stat('/st/dir/one', { file: true })).size).to.equal(1);
        await rejectsWith(driver.stat('/st/dir', { file: true }), PathNotFoundError);
        await rejectsWith(driver.stat('/st/nothing', { file: true }), PathNotFoundError);
      });
    });

    describe('list', () => {
      before(async () => {
        await driver.putContent('/ls/dir/one', '1');
        await driver.putContent('/ls/dir/two', '22');
        await driver.putContent('/ls/dir/sub/three', '333');
        await driver.putContent('/ls/dir/sub/four', '4444');
        await driver.putContent('/ls/dirx/not-a-child', 'x');
        await driver.putContent('/ls/di', 'x');
      });

      it('lists direct children once each, as full paths, with or without a trailing slash', async () => {
        const expected = ['/ls/dir/one', '/ls/dir/sub', '/ls/dir/two'];
        expectSameSet(await driver.list('/ls/dir'), expected, 'list /ls/dir');
        expectSameSet(await driver.list('/ls/dir/'), expected, 'list /ls/dir/');
        expectSameSet(await driver.list('/ls'), ['/ls/di', '/ls/dir', '/ls/dirx'], 'list /ls');
        expect(await driver.list('/')).to.include('/ls');
      });

      it('throws PathNotFoundError for a missing directory, a file, and a name prefix', async () => {
        const error = await rejectsWith(driver.list('/ls/none'), PathNotFoundError);
        expect(error.path).to.equal('/ls/none');
        await rejectsWith(driver.list('/ls/dir/one'), PathNotFoundError);
        await rejectsWith(driver.list('/ls/dir/s'), PathNotFoundError);
        await rejectsWith(driver.list('/ls-none/deeper'), PathNotFoundError);
      });

      it('lists more than 1,000 children (pagination) exactly once each', async () => {
        const files = Array.from({ length: 1050 }, (_, i) => `/many/dir/file-${String(i).padStart(4, '0')}`);
        const dirs = ['/many/dir/a-sub', '/many/dir/m-sub', '/many/dir/zz-sub'];
        await inBatches([...files, ...dirs.map((dir) => `${dir}/x`), '/many/dirx/other', '/many/di'], 50, (path) => driver.putContent(path, path));
        const listed = await driver.list('/many/dir');
        expect(listed.length, 'entries listed').to.equal(files.length + dirs.length);
        expectSameSet(listed, [...files, ...dirs], 'list /many/dir');
      });

      it('walks a nested tree with list and stat', async () => {
        const files = ['/walk/a', '/walk/b/c', '/walk/b/d/e', '/walk/b/d/f', '/walk/g/h/i/j', '/walk/g/k'];
        for (const file of files) await driver.putContent(file, file);
        const found: string[] = [];
        const walk = async (dir: string): Promise<void> => {
          for (const child of await driver.list(dir)) {
            if ((await driver.stat(child)).isDir) await walk(child);
            else found.push(child);
          }
        };
        await walk('/walk');
        expectSameSet(found, files, 'walked files');
      });
    });

    describe('move', () => {
      it('moves a file to a new place, creating parents; the source is gone', async () => {
        await driver.putContent('/mv/source', 'moved');
        await driver.move('/mv/source', '/mv/deep/er/target');
        expect((await driver.getContent('/mv/deep/er/target')).toString()).to.equal('moved');
        await rejectsWith(driver.stat('/mv/source'), PathNotFoundError);
      });

      it('replaces an existing destination', async () => {
        await driver.putContent('/mv/existing', 'old, and longer than the new content');
        await driver.putContent('/mv/newer', 'newer');
        await driver.move('/mv/newer', '/mv/existing');
        expect((await driver.getContent('/mv/existing')).toString()).to.equal('newer');
        await rejectsWith(driver.getContent('/mv/newer'), PathNotFoundError);
      });

      it('moves a multi-part file intact', async () => {
        const data = randomBytes(6 * MiB + 17);
        const writer = await driver.writer('/mv/big/upload');
        await writer.write(data);
        await writer.commit();
        await driver.move('/mv/big/upload', '/mv/big/blob');
        expectSameBytes(await driver.getContent('/mv/big/blob'), data, 'moved big file');
        await rejectsWith(driver.stat('/mv/big/upload'), PathNotFoundError);
      });

      it('throws PathNotFoundError naming the source when it is missing, and creates nothing', async () => {
        const error = await rejectsWith(driver.move('/mv/none', '/mv/elsewhere'), PathNotFoundError);
        expect(error.path).to.equal('/mv/none');
        await rejectsWith(driver.stat('/mv/elsewhere'), PathNotFoundError);
      });
    });

    describe('copy (where the backend copies by itself)', () => {
      it('copies a file, a multi-part one intact, replacing an existing destination; the source stays', async function () {
        if (!driver.copy) this.skip();
        const data = randomBytes(6 * MiB + 17);
        const writer = await driver.writer('/cp2/big/upload');
        await writer.write(data);
        await writer.commit();
        await driver.putContent('/cp2/big/blob', 'old, and longer than nothing');
        await driver.copy!('/cp2/big/upload', '/cp2/big/blob');
        expectSameBytes(await driver.getContent('/cp2/big/blob'), data, 'copied big file');
        expectSameBytes(await driver.getContent('/cp2/big/upload'), data, 'source');
      });

      it('throws PathNotFoundError naming the source when it is missing, and creates nothing', async function () {
        if (!driver.copy) this.skip();
        const error = await rejectsWith(driver.copy!('/cp2/none', '/cp2/elsewhere'), PathNotFoundError);
        expect(error.path).to.equal('/cp2/none');
        await rejectsWith(driver.stat('/cp2/elsewhere'), PathNotFoundError);
      });
    });

    describe('delete', () => {
      it('deletes a file, leaving its siblings (including ones whose names start the same)', async () => {
        await driver.putContent('/del/f/one', '1');
        await driver.putContent('/del/f/one-more', '2');
        await driver.putContent('/del/f/one.d/x', '3');
        await driver.delete('/del/f/one');
        expectSameSet(await driver.list('/del/f'), ['/del/f/one-more', '/del/f/one.d'], 'after deleting a file');
        await rejectsWith(driver.getContent('/del/f/one'), PathNotFoundError);
        expect((await driver.getContent('/del/f/one.d/x')).toString()).to.equal('3');
      });

      it('deleteFile removes one file only, and ignores a missing one', async () => {
        await driver.putContent('/delfile/a', '1');
        await driver.putContent('/delfile/a.d/x', '2');
        await driver.putContent('/delfile/ab', '3');
        await driver.deleteFile('/delfile/a');
        await driver.deleteFile('/delfile/a');
        await driver.deleteFile('/delfile/never-there');
        await rejectsWith(driver.getContent('/delfile/a'), PathNotFoundError);
        expect((await driver.getContent('/delfile/a.d/x')).toString()).to.equal('2');
        expect((await driver.getContent('/delfile/ab')).toString()).to.equal('3');
      });

      it('deleteFiles (where offered) removes many files only, ignoring missing ones; delete of an empty directory works', async () => {
        const files = Array.from({ length: 1005 }, (_, i) => `/delmany/${i % 7}/f${i}`);
        await Promise.all(files.map((file) => driver.putContent(file, 'x')));
        await driver.putContent('/delmany/keep', 'k');
        if (driver.deleteFiles) {
          await driver.deleteFiles([...files, '/delmany/never-there']);
        } else {
          for (const file of files) await driver.deleteFile(file);
        }
        expectSameSet(await driver.list('/delmany'), driver.directoriesArePrefixes ? ['/delmany/keep'] : ['/delmany/keep', ...[0, 1, 2, 3, 4, 5, 6].map((i) => `/delmany/${i}`)], 'after deleting');
        if (!driver.directoriesArePrefixes) {
          for (let i = 0; i < 7; i++) await driver.delete(`/delmany/${i}`);
          expectSameSet(await driver.list('/delmany'), ['/delmany/keep'], 'after deleting the empty directories');
        }
        expect((await driver.getContent('/delmany/keep')).toString()).to.equal('k');
      });

      it('deletes a whole tree, not its name-prefix siblings, and ignores missing paths', async () => {
        await driver.putContent('/del/t/tree/a', 'a');
        await driver.putContent('/del/t/tree/b/c', 'c');
        await driver.putContent('/del/t/tree/b/d/e', 'e');
        await driver.putContent('/del/t/treex', 'sibling file');
        await driver.putContent('/del/t/treey/z', 'sibling dir');
        await driver.delete('/del/t/tree');
        await rejectsWith(driver.stat('/del/t/tree'), PathNotFoundError);
        await rejectsWith(driver.list('/del/t/tree'), PathNotFoundError);
        await rejectsWith(driver.getContent('/del/t/tree/b/d/e'), PathNotFoundError);
        expectSameSet(await driver.list('/del/t'), ['/del/t/treex', '/del/t/treey'], 'siblings kept');
        await driver.delete('/del/t/tree');
        await driver.delete('/never/existed/at/all');
      });

      it('deletes a tree, not a sibling whose name looks like a checkpoint tail of it (a tag v1.tail-keep)', async () => {
        await driver.putContent('/del/tags/v1/current/link', 'v1');
        await driver.putContent('/del/tags/v1.tail-keep/current/link', 'kept');
        await driver.putContent('/del/tags/v1.tail-01234567-89ab-cdef-0123-456789abcdef/current/link', 'kept too');
        await driver.delete('/del/tags/v1');
        expectSameSet(await driver.list('/del/tags'), ['/del/tags/v1.tail-keep', '/del/tags/v1.tail-01234567-89ab-cdef-0123-456789abcdef'], 'siblings kept');
      });

      it('deletes with { finished: true } a tree whose writers committed, a single file, and missing paths', async () => {
        const writer = await driver.writer('/del/fin/tree/data');
        await writer.write(randomBytes(6 * MiB));
        await writer.commit();
        await driver.putContent('/del/fin/tree/state', 's');
        await driver.putContent('/del/fin/treex', 'sibling');
        await driver.putContent('/del/fin/file', 'f');
        await driver.delete('/del/fin/tree', { finished: true });
        await driver.delete('/del/fin/file', { finished: true });
        await driver.delete('/del/fin/missing', { finished: true });
        await rejectsWith(driver.stat('/del/fin/tree'), PathNotFoundError);
        await rejectsWith(driver.stat('/del/fin/file'), PathNotFoundError);
        expectSameSet(await driver.list('/del/fin'), ['/del/fin/treex'], 'sibling kept');
      });

      it('deletes a tree of more than 1,000 files', async () => {
        await inBatches(Array.from({ length: 1010 }, (_, i) => `/del/big/${i % 3}/f${i}`), 50, (path) => driver.putContent(path, 'x'));
        await driver.delete('/del/big');
        await rejectsWith(driver.list('/del/big'), PathNotFoundError);
        await rejectsWith(driver.stat('/del/big'), PathNotFoundError);
      });

      it('deletes unfinished (checkpointed) files in a tree, and their open uploads', async () => {
        const big = await driver.writer('/del/up/one/data');
        await big.write(randomBytes(5 * MiB + 10));
        const checkpoint = await big.checkpoint();
        const small = await driver.writer('/del/up/two/data');
        await small.write(Buffer.from('small'));
        await small.checkpoint();
        if (harness.openUploads) expect(await harness.openUploads('/del/up'), 'an upload is open before the delete').to.have.length(1);
        await driver.delete('/del/up');
        await rejectsWith(driver.list('/del/up'), PathNotFoundError);
        await rejectsWith(driver.stat('/del/up/one/data'), PathNotFoundError);
        if (harness.openUploads) expect(await harness.openUploads('/del/up')).to.deep.equal([]);
        // The deleted data cannot be continued.
        let resumed: FileWriter | undefined;
        try {
          resumed = await driver.writer('/del/up/one/data', { resume: checkpoint });
          await resumed.write(Buffer.from('more'));
          await resumed.commit();
          expect.fail('resuming deleted data succeeded');
        } catch (error) {
          expect(error).to.be.instanceOf(Error);
          expect((error as Error).message).not.to.equal('resuming deleted data succeeded');
        }
      });

      it('deletes a single unfinished (checkpointed) file: nothing of it is left in its directory', async () => {
        const writer = await driver.writer('/del/single/data');
        await writer.write(randomBytes(5 * MiB + 10));
        await writer.checkpoint();
        await driver.putContent('/del/single/other', 'stays');
        await driver.delete('/del/single/data');
        expect(await driver.list('/del/single')).to.deep.equal(['/del/single/other']);
        await rejectsWith(driver.stat('/del/single/data'), PathNotFoundError);
        if (harness.openUploads) expect(await harness.openUploads('/del/single')).to.deep.equal([]);
      });
    });

    describe('redirectURL', () => {
      before(() => driver.putContent('/rd/blob', 'redirected content'));

      it('gives a URL for GET and HEAD that plain fetch can use, or undefined where the driver streams', async () => {
          const get = await driver.redirectURL('/rd/blob', 'GET');
          const head = await driver.redirectURL('/rd/blob', 'HEAD');
          if (!harness.redirects) {
            expect(get).to.equal(undefined);
            expect(head).to.equal(undefined);
            return;
          }
          expect(get, 'GET URL').to.be.a('string');
          expect(head, 'HEAD URL').to.be.a('string');
          const got = await fetch(get!);
          expect(got.status, await got.clone().text()).to.equal(200);
          expect(await got.text()).to.equal('redirected content');
          const headed = await fetch(head!, { method: 'HEAD' });
          expect(headed.status).to.equal(200);
          expect(headed.headers.get('content-length')).to.equal(String('redirected content'.length));
          // A URL signed for HEAD is not a GET URL, and the signature covers the key.
          expect((await fetch(head!)).status).to.be.oneOf([403, 400]);
          const tampered = get!.replace('/rd/blob', '/rd/other');
          expect(tampered).not.to.equal(get);
          expect((await fetch(tampered)).status).to.equal(403);
      });

      it('refuses traversal (a driver that never redirects may ignore the path)', async () => {
        if (harness.redirects) await rejectsWith(driver.redirectURL('/../x', 'GET'), InvalidPathError);
        else expect(await driver.redirectURL('/../x', 'GET').catch((error: unknown) => error)).to.satisfy(
          (outcome: unknown) => outcome === undefined || outcome instanceof InvalidPathError,
        );
      });
    });

    describe('healthCheck', () => {
      it('succeeds on a working backend', async () => {
        await driver.healthCheck();
      });

      it('fails quickly, with a clear error, on a misconfigured backend (and never hangs)', async () => {
        const broken = harness.broken ? await harness.broken() : [];
        expect(broken.length, `the ${name} harness offers misconfigured instances`).to.be.above(0);
        for (const { what, driver: bad, message } of broken) {
          const started = Date.now();
          let timer: NodeJS.Timeout | undefined;
          const outcome = await Promise.race([
            bad.healthCheck().then(
              () => 'succeeded',
              (error: unknown) => error,
            ),
            new Promise((resolve) => (timer = setTimeout(resolve, 20_000, 'still running after 20 s'))),
          ]).finally(() => clearTimeout(timer));
          const elapsed = Date.now() - started;
          expect(outcome, `${what}: healthCheck`).to.be.instanceOf(Error);
          expect(outcome, `${what}: a misconfiguration is not a missing path`).not.to.be.instanceOf(PathNotFoundError);
          expect((outcome as Error).message, what).to.match(message);
          expect(elapsed, `${what}: ms to fail`).to.be.below(10_000);
        }
      });
    });

    describe('unusual names', () => {
      const names = ['sha256:abc', 'a b', 'plus+sign', 'eq=1&x', 'at@v1', 'pct%20x', 'tilde~', 'comma,semi;', 'unicodé-名前', '..dots..'];

      it('stores, lists, moves and redirects names with reserved and non-ASCII characters', async () => {
        for (const name of names) await driver.putContent(`/odd/${name}/file`, name);
        expectSameSet(await driver.list('/odd'), names.map((name) => `/odd/${name}`), 'list /odd');
        for (const name of names) {
          expect((await driver.getContent(`/odd/${name}/file`)).toString(), name).to.equal(name);
          expect((await driver.stat(`/odd/${name}`)).isDir, name).to.equal(true);
          await driver.move(`/odd/${name}/file`, `/odd/${name}/moved ${name}`);
          expect((await driver.getContent(`/odd/${name}/moved ${name}`)).toString(), `moved ${name}`).to.equal(name);
          await rejectsWith(driver.stat(`/odd/${name}/file`), PathNotFoundError);
          if (harness.redirects) {
            const url = await driver.redirectURL(`/odd/${name}/moved ${name}`, 'GET');
            const response = await fetch(url!);
            expect(response.status, `GET redirect for ${name}`).to.equal(200);
            expect(await response.text()).to.equal(name);
          }
        }
        await driver.delete('/odd/a b');
        expect(await driver.list('/odd')).not.to.include('/odd/a b');
        await rejectsWith(driver.getContent('/odd/a b/moved a b'), PathNotFoundError);
      });
    });

    describe('path safety', () => {
      it('refuses ".." and relative paths in every operation, before touching storage', async () => {
        const attempts: Array<[string, () => Promise<unknown>]> = [
          ['getContent', () => driver.getContent('/../outside-marker')],
          ['putContent', () => driver.putContent('/a/../../escape', 'x')],
          ['putContentIfAbsent', () => driver.putContentIfAbsent('/a/../../escape', 'x')],
          ['reader', () => driver.reader('/../x')],
          ['reader length 0', () => driver.reader('/../x', 0, 0)],
          ['writer', () => driver.writer('/../x')],
          ['writer resume', () => driver.writer('/a/../x', { resume: { size: 0 } })],
          ['stat', () => driver.stat('/..')],
          ['list', () => driver.list('/a/..')],
          ['move destination', () => driver.move('/ps/source', '/../b')],
          ['move source', () => driver.move('/../a', '/b')],
          ['delete', () => driver.delete('/..')],
          ['relative', () => driver.getContent('relative')],
          ['dot', () => driver.stat('/a/./b')],
        ];
        await driver.putContent('/ps/source', 'stays');
        for (const [what, attempt] of attempts) {
          let caught: unknown;
          try {
            const result = await attempt();
            if (result && typeof (result as FileWriter).cancel === 'function') await (result as FileWriter).cancel();
          } catch (error) {
            caught = error;
          }
          expect(caught, `${what}: ${String(caught)}`).to.be.instanceOf(InvalidPathError);
        }
        expect((await driver.getContent('/ps/source')).toString()).to.equal('stays');
      });
    });
  });
}

// Helpers.

export async function readAll(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(Buffer.from(part as Buffer));
  return Buffer.concat(parts);
}

/** Asserts that `promise` rejects with an instance of `type`, and returns the error. */
export async function rejectsWith<E extends Error>(promise: Promise<unknown>, type: new (...args: never[]) => E): Promise<E> {
  let caught: unknown;
  let resolved = false;
  try {
    await promise;
    resolved = true;
  } catch (error) {
    caught = error;
  }
  expect(caught, resolved ? `expected ${type.name}, the promise resolved` : `expected ${type.name}, got ${String(caught)}`).to.be.instanceOf(type);
  return caught as E;
}

/** Compares bytes without dumping megabytes into the failure message. */
function expectSameBytes(actual: Buffer, expected: Buffer, what: string): void {
  if (actual.equals(expected)) return;
  let first = 0;
  while (first < Math.min(actual.length, expected.length) && actual[first] === expected[first]) first++;
  expect.fail(`${what}: ${actual.length} bytes read, ${expected.length} expected; first difference at byte ${first}`);
}

/** No entries under `dir`: an empty directory (filesystem) or none at all (object stores). */
async function expectNothingIn(driver: StorageDriver, dir: string): Promise<void> {
  let entries: string[] = [];
  try {
    entries = await driver.list(dir);
  } catch (error) {
    expect(error, `list ${dir}`).to.be.instanceOf(PathNotFoundError);
  }
  expect(entries, `entries left in ${dir}`).to.deep.equal([]);
}

function expectSameSet(actual: string[], expected: string[], what: string): void {
  const duplicates = actual.filter((item, i) => actual.indexOf(item) !== i);
  expect(duplicates, `${what}: listed twice`).to.deep.equal([]);
  expect([...actual].sort(), what).to.deep.equal([...expected].sort());
}

/** A checkpoint as the caller stores it: JSON in an upload's state file. */
function roundTrip(checkpoint: WriterCheckpoint): WriterCheckpoint {
  return JSON.parse(JSON.stringify(checkpoint)) as WriterCheckpoint;
}

async function inBatches<T>(items: T[], size: number, run: (item: T) => Promise<unknown>): Promise<void> {
  for (let i = 0; i < items.length; i += size) await Promise.all(items.slice(i, i + size).map(run));
}
