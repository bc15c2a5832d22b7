import { closeSync, openSync, readSync } from 'node:fs';
import { appendFile, readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'chai';
import { assertSafePath, InvalidPathError, isNotFound, PathNotFoundError } from '../../storage-drivers/driver.js';
import { FilesystemDriver } from '../../storage-drivers/filesystem.js';
import { readAll, rejectsWith, tempDir } from './support.js';

describe('storage driver contract: assertSafePath', () => {
  it('passes absolute, clean paths through', () => {
    expect(assertSafePath('/docker/registry/v2/blobs')).to.equal('/docker/registry/v2/blobs');
    expect(assertSafePath('/')).to.equal('/');
    expect(assertSafePath('/a/..b/c..')).to.equal('/a/..b/c..');
  });

  for (const bad of ['/a/../b', '/..', '/a/..', '..', 'relative/path', '', '/a/./b', '/.', '/a\0b']) {
    it(`rejects ${JSON.stringify(bad)}`, () => {
      expect(() => assertSafePath(bad)).to.throw(InvalidPathError);
    });
  }

  it('recognises PathNotFoundError and nothing else as not-found', () => {
    expect(isNotFound(new PathNotFoundError('/x'))).to.equal(true);
    expect(new PathNotFoundError('/x').message).to.equal('path not found: /x');
    expect(isNotFound(Object.assign(new Error('x'), { code: 'ENOENT' }))).to.equal(false);
    expect(isNotFound(undefined)).to.equal(false);
  });
});

describe('filesystem driver', () => {
  let root: string;
  let cleanup: () => Promise<void>;
  let driver: FilesystemDriver;
  before(async () => {
    ({ path: root, cleanup } = await tempDir('fs'));
    driver = new FilesystemDriver({ rootdirectory: root });
  });
  after(() => cleanup());

  const onDisk = (path: string) => join(root, path);

  describe('putContent / getContent', () => {
    it('writes a file, creating parents, readable whole and from disk', async () => {
      await driver.putContent('/p/a/b/link', 'sha256:abc');
      expect((await driver.getContent('/p/a/b/link')).toString()).to.equal('sha256:abc');
      expect(await readFile(onDisk('/p/a/b/link'), 'utf8')).to.equal('sha256:abc');
      await driver.putContent('/p/bin', Buffer.from([0, 1, 2, 255]));
      expect([...(await driver.getContent('/p/bin'))]).to.deep.equal([0, 1, 2, 255]);
    });

    it('replaces existing content, including with an empty file', async () => {
      await driver.putContent('/p/replace', 'a much longer first version');
      await driver.putContent('/p/replace', 'v2');
      expect((await driver.getContent('/p/replace')).toString()).to.equal('v2');
      await driver.putContent('/p/replace', Buffer.alloc(0));
      expect((await driver.getContent('/p/replace')).length).to.equal(0);
    });

    it('replaces atomically: concurrent readers see the old or the new content, never a mix or an empty file', async () => {
      const a = 'A'.repeat(64 * 1024);
      const b = 'B'.repeat(32 * 1024);
      await driver.putContent('/p/atomic', a);
      const seen = new Set<string>();
      let writing = true;
      const readers = Array.from({ length: 4 }, async () => {
        while (writing) {
          const content = (await driver.getContent('/p/atomic')).toString();
          seen.add(content === a ? 'a' : content === b ? 'b' : `other:${content.length}`);
        }
      });
      for (let i = 0; i < 40; i++) await driver.putContent('/p/atomic', i % 2 ? a : b);
      writing = false;
      await Promise.all(readers);
      expect([...seen].filter((s) => s.startsWith('other'))).to.deep.equal([]);
      expect(seen.size).to.be.at.least(1);
    });

    it('leaves no temporary file behind and none inside the content tree', async () => {
      await driver.putContent('/p/clean/x', 'x');
      expect(await readdir(onDisk('/p/clean'))).to.deep.equal(['x']);
      expect(await readdir(onDisk('/_tmp'))).to.deep.equal([]);
    });

    it('throws PathNotFoundError for a missing file or a missing parent', async () => {
      const error = await rejectsWith(driver.getContent('/p/missing'), PathNotFoundError);
      expect(error.path).to.equal('/p/missing');
      await rejectsWith(driver.getContent('/p/bin/below-a-file'), PathNotFoundError);
    });
  });

  describe('putContentIfAbsent', () => {
    it('creates the file the first time and returns false afterwards, leaving it unchanged', async () => {
      expect(await driver.putContentIfAbsent('/q/lock', 'first')).to.equal(true);
      expect(await driver.putContentIfAbsent('/q/lock', 'second')).to.equal(false);
      expect((await driver.getContent('/q/lock')).toString()).to.equal('first');
      expect(await readdir(onDisk('/_tmp'))).to.deep.equal([]);
    });

    it('lets exactly one of many concurrent claims win', async () => {
      const results = await Promise.all(Array.from({ length: 10 }, (_, i) => driver.putContentIfAbsent('/q/race', String(i))));
      expect(results.filter(Boolean)).to.have.length(1);
      const winner = results.indexOf(true);
      expect((await driver.getContent('/q/race')).toString()).to.equal(String(winner));
    });

    it('can claim again after a delete', async () => {
      await driver.delete('/q/lock');
      expect(await driver.putContentIfAbsent('/q/lock', 'third')).to.equal(true);
      expect((await driver.getContent('/q/lock')).toString()).to.equal('third');
    });

    it('inExistingDirectory: a missing directory is PathNotFoundError and is not made; an existing one works', async () => {
      await rejectsWith(driver.putContentIfAbsent('/gone/dir/claim', 'x', { inExistingDirectory: true }), PathNotFoundError);
      await rejectsWith(stat(onDisk('/gone')), Error);
      expect(await readdir(onDisk('/_tmp'))).to.deep.equal([]);
      expect(await driver.putContentIfAbsent('/q/claim', 'x', { inExistingDirectory: true })).to.equal(true);
    });
  });

  describe('writer', () => {
    it('writes a new file, reporting its size, durable at commit', async () => {
      const writer = await driver.writer('/w/new/data');
      expect(writer.size).to.equal(0);
      await writer.write(Buffer.from('hello '));
      await writer.write(Buffer.from('world'));
      expect(writer.size).to.equal(11);
      await writer.commit();
      await writer.commit(); // a second commit is harmless
      expect((await driver.getContent('/w/new/data')).toString()).to.equal('hello world');
    });

    it('resumes at a checkpoint size', async () => {
      await driver.putContent('/w/append', 'hello ');
      const writer = await driver.writer('/w/append', { resume: { size: 6 } });
      expect(writer.size).to.equal(6);
      await writer.write(Buffer.from('world'));
      expect(writer.size).to.equal(11);
      await writer.commit();
      expect((await driver.getContent('/w/append')).toString()).to.equal('hello world');
    });

    it('checkpoint makes the bytes durable and tells where a later writer continues', async () => {
      await driver.putContent('/w/checkpointed/state', 'started');
      const first = await driver.writer('/w/checkpointed/data', { resume: { size: 0 } });
      await first.write(Buffer.from('chunk one;'));
      const checkpoint = await first.checkpoint();
      expect(checkpoint.size).to.equal(10);
      const second = await driver.writer('/w/checkpointed/data', { resume: checkpoint });
      expect(second.size).to.equal(10);
      await second.write(Buffer.from('chunk two'));
      expect((await second.checkpoint()).size).to.equal(19);
      const last = await driver.writer('/w/checkpointed/data', { resume: { size: 19 } });
      await last.commit();
      expect((await driver.getContent('/w/checkpointed/data')).toString()).to.equal('chunk one;chunk two');
    });

    it('drops crash leftovers beyond the checkpoint before resuming', async () => {
      await driver.putContent('/w/leftovers', 'committed');
      await appendFile(onDisk('/w/leftovers'), 'GARBAGE FROM A CRASHED WRITER');
      const writer = await driver.writer('/w/leftovers', { resume: { size: 9 } });
      expect(writer.size).to.equal(9);
      expect((await stat(onDisk('/w/leftovers'))).size).to.equal(9);
      await writer.write(Buffer.from('+more'));
      await writer.commit();
      expect((await driver.getContent('/w/leftovers')).toString()).to.equal('committed+more');
    });

    it('refuses to resume when the file holds fewer bytes than the checkpoint', async () => {
      await driver.putContent('/w/short', 'abc');
      let caught: unknown;
      try {
        await driver.writer('/w/short', { resume: { size: 10 } });
      } catch (error) {
        caught = error;
      }
      expect(caught).to.be.instanceOf(Error);
      expect((caught as Error).message).to.match(/holds 3 bytes, fewer than the 10/);
      expect((await driver.getContent('/w/short')).toString()).to.equal('abc');
    });

    it('creates a missing file when resuming at 0 in an existing directory, and refuses a resume at more than 0 or in a missing directory', async () => {
      await driver.putContent('/w/fresh/state', 'started');
      const writer = await driver.writer('/w/fresh/data', { resume: { size: 0 } });
      await writer.write(Buffer.from('x'));
      await writer.commit();
      expect((await driver.getContent('/w/fresh/data')).toString()).to.equal('x');
      await rejectsWith(driver.writer('/w/absent/data', { resume: { size: 5 } }), PathNotFoundError);
      await rejectsWith(driver.writer('/w/absent/data', { resume: { size: 0 } }), PathNotFoundError);
      await rejectsWith(stat(onDisk('/w/absent')), Error);
    });

    it('cancel of a resumed writer restores the earlier size and content', async () => {
      await driver.putContent('/w/cancel', 'keep me');
      const writer = await driver.writer('/w/cancel', { resume: { size: 7 } });
      // Two batches' worth, so that at least the first one has reached the file before the cancel.
      await writer.write(Buffer.alloc(2 * 1024 * 1024, 1));
      await writer.write(Buffer.alloc(2 * 1024 * 1024, 2));
      expect((await stat(onDisk('/w/cancel'))).size).to.be.at.least(7 + 2 * 1024 * 1024);
      await writer.cancel();
      await writer.cancel(); // harmless twice
      expect((await driver.getContent('/w/cancel')).toString()).to.equal('keep me');
    });

    it('cancel of a resumed writer after dropping leftovers restores the checkpoint size', async () => {
      await driver.putContent('/w/cancel2', 'abc');
      await appendFile(onDisk('/w/cancel2'), 'junk');
      const writer = await driver.writer('/w/cancel2', { resume: { size: 3 } });
      await writer.write(Buffer.from('def'));
      await writer.cancel();
      expect((await driver.getContent('/w/cancel2')).toString()).to.equal('abc');
    });

    it('cancel of a writer that created the file removes it', async () => {
      const writer = await driver.writer('/w/cancelled-new');
      await writer.write(Buffer.from('x'));
      await writer.cancel();
      await rejectsWith(driver.stat('/w/cancelled-new'), PathNotFoundError);
      const appender = await driver.writer('/w/cancelled-append', { resume: { size: 0 } });
      await appender.write(Buffer.from('x'));
      await appender.cancel();
      await rejectsWith(driver.stat('/w/cancelled-append'), PathNotFoundError);
    });
  });

  describe('reader', () => {
    before(() => driver.putContent('/r/data', '0123456789'));

    it('reads the whole file', async () => {
      expect((await readAll(await driver.reader('/r/data'))).toString()).to.equal('0123456789');
    });

    it('reads from an offset', async () => {
      expect((await readAll(await driver.reader('/r/data', 7))).toString()).to.equal('789');
    });

    it('reads a length from an offset', async () => {
      expect((await readAll(await driver.reader('/r/data', 2, 3))).toString()).to.equal('234');
      expect((await readAll(await driver.reader('/r/data', 0, 1))).toString()).to.equal('0');
      expect((await readAll(await driver.reader('/r/data', 9, 1))).toString()).to.equal('9');
    });

    it('stops at the end of the file when the length runs past it', async () => {
      expect((await readAll(await driver.reader('/r/data', 8, 100))).toString()).to.equal('89');
      expect((await readAll(await driver.reader('/r/data', 10))).length).to.equal(0);
    });

    it('reads an empty file', async () => {
      await driver.putContent('/r/empty', '');
      expect((await readAll(await driver.reader('/r/empty'))).length).to.equal(0);
    });

    it('throws PathNotFoundError for a missing file', async () => {
      await rejectsWith(driver.reader('/r/missing'), PathNotFoundError);
    });

    it('reader closes its file descriptor once (a reused fd number is not closed again)', async () => {
      // Regression (fixed in b0d4368): the stream closed the raw fd and then handle.close() closed the same
      // number again, closing whatever file had been opened in between. The file opened in between is made
      // deterministic by opening it in a close listener that runs first.
      await driver.putContent('/bug/a', 'aaaa');
      await driver.putContent('/bug/other', 'OTHER');
      const stream = await driver.reader('/bug/a');
      let victim = -1;
      stream.prependListener('close', () => {
        victim = openSync(onDisk('/bug/other'), 'r');
      });
      expect((await readAll(stream)).toString()).to.equal('aaaa');
      await new Promise((resolve) => setTimeout(resolve, 20));
      expect(victim).to.be.at.least(0);
      const buffer = Buffer.alloc(5);
      let readError: string | undefined;
      try {
        readSync(victim, buffer, 0, 5, 0);
      } catch (error) {
        readError = (error as NodeJS.ErrnoException).code;
      } finally {
        try {
          closeSync(victim);
        } catch {
          // already closed by the driver: that is the bug
        }
      }
      expect(readError, 'a file opened by someone else was closed by the driver').to.equal(undefined);
      expect(buffer.toString()).to.equal('OTHER');
    });

    it('reads large files across several chunks', async () => {
      const big = Buffer.alloc(600 * 1024);
      for (let i = 0; i < big.length; i++) big[i] = i % 251;
      await driver.putContent('/r/big', big);
      const part = await readAll(await driver.reader('/r/big', 100_000, 400_000));
      expect(part.length).to.equal(400_000);
      expect(part.equals(big.subarray(100_000, 500_000))).to.equal(true);
    });
  });

  describe('stat, list, move, delete', () => {
    before(async () => {
      await driver.putContent('/s/dir/one', '1');
      await driver.putContent('/s/dir/two', '22');
      await driver.putContent('/s/dir/sub/three', '333');
    });

    it('stats files and directories', async () => {
      const file = await driver.stat('/s/dir/two');
      expect({ path: file.path, size: file.size, isDir: file.isDir }).to.deep.equal({ path: '/s/dir/two', size: 2, isDir: false });
      expect(file.modTime).to.be.instanceOf(Date);
      expect((await driver.stat('/s/dir')).isDir).to.equal(true);
      await rejectsWith(driver.stat('/s/nothing'), PathNotFoundError);
    });

    it('lists direct children as full paths', async () => {
      expect((await driver.list('/s/dir')).sort()).to.deep.equal(['/s/dir/one', '/s/dir/sub', '/s/dir/two']);
      expect((await driver.list('/s/dir/')).sort()).to.deep.equal(['/s/dir/one', '/s/dir/sub', '/s/dir/two']);
      expect(await driver.list('/s')).to.deep.equal(['/s/dir']);
    });

    it('throws PathNotFoundError listing a missing directory or a file', async () => {
      await rejectsWith(driver.list('/s/none'), PathNotFoundError);
      await rejectsWith(driver.list('/s/dir/one'), PathNotFoundError);
    });

    it('moves a file, creating the destination parents and replacing an existing destination', async () => {
      await driver.putContent('/m/source', 'moved');
      await driver.move('/m/source', '/m/deep/er/target');
      expect((await driver.getContent('/m/deep/er/target')).toString()).to.equal('moved');
      await rejectsWith(driver.stat('/m/source'), PathNotFoundError);
      await driver.putContent('/m/source2', 'newer');
      await driver.move('/m/source2', '/m/deep/er/target');
      expect((await driver.getContent('/m/deep/er/target')).toString()).to.equal('newer');
    });

    it('throws PathNotFoundError moving a missing source', async () => {
      const error = await rejectsWith(driver.move('/m/none', '/m/elsewhere'), PathNotFoundError);
      expect(error.path).to.equal('/m/none');
    });

    it('deletes a file, a whole tree, and ignores missing paths', async () => {
      await driver.delete('/s/dir/one');
      expect((await driver.list('/s/dir')).sort()).to.deep.equal(['/s/dir/sub', '/s/dir/two']);
      await driver.delete('/s/dir');
      await rejectsWith(driver.stat('/s/dir'), PathNotFoundError);
      await driver.delete('/s/dir');
      await driver.delete('/never/existed');
    });
  });

  describe('path safety', () => {
    it('refuses traversal in every operation', async () => {
      await rejectsWith(driver.getContent('/../outside-marker'), InvalidPathError);
      await rejectsWith(driver.putContent('/a/../../escape', 'x'), InvalidPathError);
      await rejectsWith(driver.putContentIfAbsent('/a/../../escape', 'x'), InvalidPathError);
      await rejectsWith(driver.reader('/../x'), InvalidPathError);
      await rejectsWith(driver.writer('/../x'), InvalidPathError);
      await rejectsWith(driver.stat('/..'), InvalidPathError);
      await rejectsWith(driver.list('/a/..'), InvalidPathError);
      await rejectsWith(driver.move('/a', '/../b'), InvalidPathError);
      await rejectsWith(driver.move('/../a', '/b'), InvalidPathError);
      await rejectsWith(driver.delete('/..'), InvalidPathError);
      await rejectsWith(driver.getContent('relative'), InvalidPathError);
    });

    it('healthCheck succeeds on a writable root', async () => {
      await driver.healthCheck();
      expect(await driver.redirectURL()).to.equal(undefined);
      expect(driver.name).to.equal('filesystem');
    });
  });

  describe('regressions', () => {
    it('reader(path, offset, 0) gives an empty stream (it threw a RangeError and leaked the handle)', async () => {
      await driver.putContent('/bug/zero', '0123456789');
      let caught: unknown;
      let content: Buffer | undefined;
      try {
        content = await readAll(await driver.reader('/bug/zero', 3, 0));
      } catch (error) {
        caught = error;
      }
      expect((caught as Error | undefined)?.message).to.equal(undefined);
      expect(content?.length).to.equal(0);
    });

    it('putContent with a refused path leaves no temporary file in /_tmp', async () => {
      const before = await readdir(onDisk('/_tmp'));
      await rejectsWith(driver.putContent('/a/../../escape', 'x'), InvalidPathError);
      expect(await readdir(onDisk('/_tmp'))).to.deep.equal(before);
    });
  });
});
