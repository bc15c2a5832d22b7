import { expect } from 'chai';
import { FilesystemDriver } from '../../storage-drivers/filesystem.js';
import { digestOf, parseDigest } from '../../server/registry/digest.js';
import { paths } from '../../server/registry/paths.js';
import { TagStore } from '../../server/registry/tag-store.js';
import { listRepositories } from '../../server/registry/catalog.js';
import { rejectsOci, tempDir } from './support.js';

const d = (content: string) => parseDigest(digestOf(content))!;

describe('tag store', () => {
  let cleanup: () => Promise<void>;
  let driver: FilesystemDriver;
  let tags: TagStore;
  before(async () => {
    const dir = await tempDir('tags');
    cleanup = dir.cleanup;
    driver = new FilesystemDriver({ rootdirectory: dir.path });
    tags = new TagStore(driver);
  });
  after(() => cleanup());

  it('sets, resolves and moves a tag through its current/link', async () => {
    await tags.set('r/one', '1.12.1', d('a'));
    expect((await tags.resolve('r/one', '1.12.1')).digest).to.equal(digestOf('a'));
    expect((await driver.getContent(paths.tagLink('r/one', '1.12.1'))).toString()).to.equal(digestOf('a'));
    await tags.set('r/one', '1.12.1', d('b'));
    expect((await tags.resolve('r/one', '1.12.1')).digest).to.equal(digestOf('b'));
  });

  it('answers MANIFEST_UNKNOWN for an unknown tag and for an unreadable link', async () => {
    await rejectsOci(tags.resolve('r/one', 'missing'), 404, 'MANIFEST_UNKNOWN');
    await driver.putContent(paths.tagLink('r/one', 'corrupt'), '');
    await rejectsOci(tags.resolve('r/one', 'corrupt'), 404, 'MANIFEST_UNKNOWN');
    await driver.delete(paths.tag('r/one', 'corrupt'));
  });

  it('accepts a link with a trailing newline (as other tools write it)', async () => {
    await driver.putContent(paths.tagLink('r/one', 'newline'), `${digestOf('c')}\n`);
    expect((await tags.resolve('r/one', 'newline')).digest).to.equal(digestOf('c'));
    await driver.delete(paths.tag('r/one', 'newline'));
  });

  it('lists tags sorted in byte order', async () => {
    for (const tag of ['latest', '1.12.1-linuxarm64', 'V2', '1.12.1', '_x']) await tags.set('r/list', tag, d(tag));
    expect(await tags.all('r/list')).to.deep.equal(['1.12.1', '1.12.1-linuxarm64', 'V2', '_x', 'latest']);
  });

  it('finds the tags pointing at a digest', async () => {
    await tags.set('r/point', 'a', d('x'));
    await tags.set('r/point', 'b', d('y'));
    await tags.set('r/point', 'c', d('x'));
    expect((await tags.pointingAt('r/point', digestOf('x'))).sort()).to.deep.equal(['a', 'c']);
    expect(await tags.pointingAt('r/point', digestOf('z'))).to.deep.equal([]);
    expect(await tags.pointingAt('r/none', digestOf('x'))).to.deep.equal([]);
  });

  it('deletes a tag, and answers MANIFEST_UNKNOWN for one that does not exist', async () => {
    await tags.set('r/del', 'gone', d('g'));
    await tags.set('r/del', 'kept', d('g'));
    await tags.delete('r/del', 'gone');
    expect(await tags.all('r/del')).to.deep.equal(['kept']);
    await rejectsOci(tags.delete('r/del', 'gone'), 404, 'MANIFEST_UNKNOWN');
  });

  it('answers NAME_UNKNOWN for a repository that does not exist, and [] for one without tags', async () => {
    await rejectsOci(tags.all('r/never'), 404, 'NAME_UNKNOWN');
    await driver.putContent(paths.layerLink('r/untagged', d('l')), digestOf('l'));
    expect(await tags.all('r/untagged')).to.deep.equal([]);
  });

  it('answers NAME_UNKNOWN for the parents of a nested repository and for a name with only uploads, writing nothing', async () => {
    await tags.set('ddn-k8s/docker.io/langgenius/dify-api', '1.12.1-linuxarm64', d('nested'));
    await driver.putContent(paths.uploadState('r/uploading', 'session'), '{}');
    for (const name of ['ddn-k8s', 'ddn-k8s/docker.io', 'ddn-k8s/docker.io/langgenius', 'r/uploading']) {
      await rejectsOci(tags.all(name), 404, 'NAME_UNKNOWN');
      const children = (await driver.list(paths.repository(name))).map((child) => child.slice(child.lastIndexOf('/') + 1));
      expect(children, name).to.not.include('_manifests');
    }
    expect(await listRepositories(driver)).to.include('ddn-k8s/docker.io/langgenius/dify-api').and.not.include('ddn-k8s');
  });

  describe('cached listing', () => {
    /** Counts list() calls, to see whether a listing came from the cache. */
    function counting(inner: FilesystemDriver): { driver: FilesystemDriver; lists: () => number } {
      let count = 0;
      const proxy = new Proxy(inner, {
        get(target, property, receiver) {
          if (property === 'list') return (p: string) => (count++, target.list(p));
          const value = Reflect.get(target, property, receiver);
          return typeof value === 'function' ? value.bind(target) : value;
        },
      });
      return { driver: proxy, lists: () => count };
    }

    it('serves a repeated listing from the cache, and sees changes made by another process', async () => {
      const mine = counting(driver);
      const here = new TagStore(mine.driver);
      const elsewhere = new TagStore(driver); // another process on the same storage
      await elsewhere.set('r/cached', 'a', d('1'));
      expect(await here.all('r/cached')).to.deep.equal(['a']);
      const afterFirst = mine.lists();
      expect(await here.all('r/cached')).to.deep.equal(['a']);
      expect(mine.lists(), 'second listing came from the cache').to.equal(afterFirst);
      await elsewhere.set('r/cached', 'b', d('2'));
      expect(await here.all('r/cached')).to.deep.equal(['a', 'b']);
      await elsewhere.delete('r/cached', 'a');
      expect(await here.all('r/cached')).to.deep.equal(['b']);
    });

    it('lists a repository written without a version marker (as by Distribution), then caches it', async () => {
      await driver.putContent(paths.tagLink('r/legacy', 'v1'), digestOf('x'));
      const mine = counting(driver);
      const here = new TagStore(mine.driver);
      expect(await here.all('r/legacy')).to.deep.equal(['v1']);
      const afterFirst = mine.lists();
      expect(await here.all('r/legacy')).to.deep.equal(['v1']);
      expect(mine.lists()).to.equal(afterFirst);
    });

    it('creates no version marker, and so no repository, when listing an unknown one', async () => {
      await rejectsOci(tags.all('r/never'), 404, 'NAME_UNKNOWN');
      await rejectsOci(tags.all('r/never'), 404, 'NAME_UNKNOWN');
    });
  });
});
