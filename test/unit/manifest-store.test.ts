import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'chai';
import { PathNotFoundError } from '../../storage-drivers/driver.js';
import { FilesystemDriver } from '../../storage-drivers/filesystem.js';
import { BlobStore } from '../../server/registry/blob-store.js';
import type { Descriptor } from '../../server/registry/descriptor.js';
import { digestOf, parseDigest } from '../../server/registry/digest.js';
import { ManifestStore, parseReference } from '../../server/registry/manifest-store.js';
import { DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST } from '../../server/registry/media-types.js';
import { OciError } from '../../server/registry/errors.js';
import { paths } from '../../server/registry/paths.js';
import { ReferrerStore } from '../../server/registry/referrer-store.js';
import { TagStore } from '../../server/registry/tag-store.js';
import { rejectsOci, rejectsWith, tempDir, throwsOci } from './support.js';

const NAME = 'ddn-k8s/docker.io/langgenius/dify-api';
const pd = (digest: string) => parseDigest(digest)!;

describe('manifest store', () => {
  let root: string;
  let cleanup: () => Promise<void>;
  let driver: FilesystemDriver;
  let blobs: BlobStore;
  let tags: TagStore;
  let referrers: ReferrerStore;
  let manifests: ManifestStore;
  let repoCounter = 0;
  let name: string;

  const build = () => {
    driver = new FilesystemDriver({ rootdirectory: root });
    blobs = new BlobStore(driver);
    tags = new TagStore(driver);
    referrers = new ReferrerStore(driver);
    manifests = new ManifestStore(driver, blobs, tags, referrers);
  };
  /** A store without the in-memory cache: another process, or this one restarted. */
  const fresh = () => {
    const d = new FilesystemDriver({ rootdirectory: root });
    const b = new BlobStore(d);
    const t = new TagStore(d);
    return new ManifestStore(d, b, t, new ReferrerStore(d));
  };

  before(async () => ({ path: root, cleanup } = await tempDir('manifests')));
  after(() => cleanup());
  beforeEach(() => {
    build();
    // Every test in its own repository so none sees another's content.
    name = `${NAME}-${++repoCounter}`;
  });

  async function pushBlob(repo: string, content: string, mediaType: string): Promise<Descriptor> {
    const digest = pd(digestOf(content));
    await blobs.putVerified(digest, Buffer.from(content));
    await blobs.link(repo, digest);
    return { mediaType, digest: digest.digest, size: Buffer.byteLength(content) };
  }
  async function imageManifest(repo: string, seed: string, extra: Record<string, unknown> = {}) {
    const config = await pushBlob(repo, `{"config":"${seed}"}`, 'application/vnd.oci.image.config.v1+json');
    const layer = await pushBlob(repo, `layer ${seed}`, 'application/vnd.oci.image.layer.v1.tar+gzip');
    const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers: [layer], ...extra }, null, 2));
    return { bytes, digest: digestOf(bytes), config, layer };
  }

  describe('put and get', () => {
    it('stores by tag: exact bytes, content-addressed, with a revision link and a tag link', async () => {
      const { bytes, digest } = await imageManifest(name, 'tagged');
      const parsed = await manifests.put(name, '1.12.1', bytes, OCI_MANIFEST);
      expect(parsed.digest).to.equal(digest);
      expect(parsed.mediaType).to.equal(OCI_MANIFEST);
      expect(parsed.size).to.equal(bytes.length);
      const byTag = await manifests.get(name, '1.12.1');
      expect(byTag.digest).to.equal(digest);
      expect(byTag.mediaType).to.equal(OCI_MANIFEST);
      expect(byTag.bytes.equals(bytes)).to.equal(true);
      const byDigest = await manifests.get(name, digest);
      expect(byDigest.bytes.equals(bytes)).to.equal(true);
      expect((await readFile(join(root, paths.blobData(pd(digest))))).equals(bytes)).to.equal(true);
      expect(await readFile(join(root, paths.revisionLink(name, pd(digest))), 'utf8')).to.equal(digest);
      expect(await readFile(join(root, paths.tagLink(name, '1.12.1')), 'utf8')).to.equal(digest);
      expect(await tags.all(name)).to.deep.equal(['1.12.1']);
    });

    it('keeps whitespace: the digest is over the bytes as pushed', async () => {
      const { config, layer } = await imageManifest(name, 'ws');
      const compact = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers: [layer] }));
      const spaced = Buffer.from(`${JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers: [layer] }, null, 8)}\n\n`);
      const a = await manifests.put(name, 'compact', compact, OCI_MANIFEST);
      const b = await manifests.put(name, 'spaced', spaced, OCI_MANIFEST);
      expect(a.digest).to.equal(digestOf(compact));
      expect(b.digest).to.equal(digestOf(spaced));
      expect(a.digest).to.not.equal(b.digest);
      expect((await fresh().get(name, 'spaced')).bytes.equals(spaced)).to.equal(true);
    });

    it('stores by digest reference, without a tag', async () => {
      const { bytes, digest } = await imageManifest(name, 'by-digest');
      expect((await manifests.put(name, digest, bytes, OCI_MANIFEST)).digest).to.equal(digest);
      expect((await manifests.get(name, digest)).bytes.equals(bytes)).to.equal(true);
      expect(await tags.all(name)).to.deep.equal([]);
    });

    it('accepts a sha512 digest reference and serves it by that digest', async () => {
      const { bytes } = await imageManifest(name, 'sha512');
      const sha512 = digestOf(bytes, 'sha512');
      expect((await manifests.put(name, sha512, bytes, OCI_MANIFEST)).digest).to.equal(sha512);
      expect((await fresh().get(name, sha512)).bytes.equals(bytes)).to.equal(true);
    });

    it('refuses a digest reference that does not match the bytes with DIGEST_INVALID', async () => {
      const { bytes } = await imageManifest(name, 'mismatch');
      const other = digestOf(Buffer.concat([bytes, Buffer.from(' ')]));
      await rejectsOci(manifests.put(name, other, bytes, OCI_MANIFEST), 400, 'DIGEST_INVALID');
      await rejectsOci(manifests.get(name, other), 404, 'MANIFEST_UNKNOWN');
      await rejectsOci(manifests.get(name, digestOf(bytes)), 404, 'MANIFEST_UNKNOWN');
    });

    it('moves a tag to a new manifest', async () => {
      const one = await imageManifest(name, 'one');
      const two = await imageManifest(name, 'two');
      await manifests.put(name, 'latest', one.bytes, OCI_MANIFEST);
      await manifests.put(name, 'latest', two.bytes, OCI_MANIFEST);
      expect((await manifests.get(name, 'latest')).digest).to.equal(two.digest);
      expect((await manifests.get(name, one.digest)).digest).to.equal(one.digest);
    });

    it('serves the stored media type from a fresh process (no cache) for all four types', async () => {
      const oci = await imageManifest(name, 'types');
      await manifests.put(name, 'oci', oci.bytes, OCI_MANIFEST);
      const dockerConfig = await pushBlob(name, '{"docker":1}', 'application/vnd.docker.container.image.v1+json');
      const dockerLayer = await pushBlob(name, 'docker layer', 'application/vnd.docker.image.rootfs.diff.tar.gzip');
      const docker = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: DOCKER_MANIFEST, config: dockerConfig, layers: [dockerLayer] }));
      const dockerDigest = (await manifests.put(name, 'docker', docker, DOCKER_MANIFEST)).digest;
      const list = Buffer.from(
        JSON.stringify({ schemaVersion: 2, mediaType: DOCKER_MANIFEST_LIST, manifests: [{ mediaType: DOCKER_MANIFEST, digest: dockerDigest, size: docker.length, platform: { architecture: 'amd64', os: 'linux' } }] }),
      );
      await manifests.put(name, 'list', list, DOCKER_MANIFEST_LIST);
      const index = Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: OCI_MANIFEST, digest: oci.digest, size: oci.bytes.length }] }));
      await manifests.put(name, 'index', index, OCI_INDEX);
      const other = fresh();
      expect((await other.get(name, 'oci')).mediaType).to.equal(OCI_MANIFEST);
      expect((await other.get(name, 'docker')).mediaType).to.equal(DOCKER_MANIFEST);
      expect((await other.get(name, 'list')).mediaType).to.equal(DOCKER_MANIFEST_LIST);
      expect((await other.get(name, 'index')).mediaType).to.equal(OCI_INDEX);
    });

    it('answers MANIFEST_UNKNOWN for an unknown tag or digest, and for a malformed tag on read', async () => {
      await rejectsOci(manifests.get(name, 'nope'), 404, 'MANIFEST_UNKNOWN');
      await rejectsOci(manifests.get(name, digestOf('nothing')), 404, 'MANIFEST_UNKNOWN');
      await rejectsOci(manifests.get(name, '.bad tag'), 404, 'MANIFEST_UNKNOWN');
      await rejectsOci(manifests.get(name, 'sha256:abc'), 400, 'DIGEST_INVALID');
    });

    it('refuses a malformed tag or digest reference on put', async () => {
      const { bytes } = await imageManifest(name, 'bad-ref');
      await rejectsOci(manifests.put(name, '.bad', bytes, OCI_MANIFEST), 400, 'TAG_INVALID');
      await rejectsOci(manifests.put(name, 'x'.repeat(129), bytes, OCI_MANIFEST), 400, 'TAG_INVALID');
      await rejectsOci(manifests.put(name, 'sha256:abc', bytes, OCI_MANIFEST), 400, 'DIGEST_INVALID');
    });

    it('does not show a manifest of one repository through another', async () => {
      const { bytes, digest } = await imageManifest(name, 'scoped');
      await manifests.put(name, 'v1', bytes, OCI_MANIFEST);
      await rejectsOci(manifests.get(`${name}-elsewhere`, digest), 404, 'MANIFEST_UNKNOWN');
      await rejectsOci(manifests.get(`${name}-elsewhere`, 'v1'), 404, 'MANIFEST_UNKNOWN');
    });

    it('refuses invalid manifests before storing anything', async () => {
      await rejectsOci(manifests.put(name, 'bad', Buffer.from('{'), OCI_MANIFEST), 400, 'MANIFEST_INVALID');
      await rejectsOci(manifests.put(name, 'big', Buffer.alloc(4 * 1024 * 1024 + 1, ' '), OCI_MANIFEST), 413, 'SIZE_INVALID');
      await rejectsWith(driver.stat(paths.repository(name)), PathNotFoundError);
    });
  });

  describe('referenced content', () => {
    it('refuses MANIFEST_BLOB_UNKNOWN when the config or a layer is missing, naming the digests', async () => {
      const config = await pushBlob(name, '{"present":true}', 'application/vnd.oci.image.config.v1+json');
      const missing = { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: digestOf('never pushed'), size: 12 };
      const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers: [missing] }));
      const error = await rejectsOci(manifests.put(name, 'v1', bytes, OCI_MANIFEST), 400, 'MANIFEST_BLOB_UNKNOWN');
      expect(error.detail).to.deep.equal({ digests: [missing.digest] });
      await rejectsOci(manifests.get(name, 'v1'), 404, 'MANIFEST_UNKNOWN');
      await rejectsWith(driver.stat(paths.blobData(pd(digestOf(bytes)))), PathNotFoundError);
    });

    it('refuses blobs that exist only in another repository', async () => {
      const { bytes } = await imageManifest(`${name}-source`, 'elsewhere');
      const error = await rejectsOci(manifests.put(name, 'v1', bytes, OCI_MANIFEST), 400, 'MANIFEST_BLOB_UNKNOWN');
      expect((error.detail as { digests: string[] }).digests).to.have.length(2);
    });

    it('refuses a descriptor size that differs from the stored blob with MANIFEST_INVALID', async () => {
      const config = await pushBlob(name, '{"sized":1}', 'application/vnd.oci.image.config.v1+json');
      const layer = await pushBlob(name, 'sized layer', 'application/vnd.oci.image.layer.v1.tar+gzip');
      const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers: [{ ...layer, size: layer.size + 1 }] }));
      const error = await rejectsOci(manifests.put(name, 'v1', bytes, OCI_MANIFEST), 400, 'MANIFEST_INVALID');
      expect(error.detail).to.deep.equal({ digest: layer.digest, declared: layer.size + 1, stored: layer.size });
    });

    it('does not require foreign layers (with urls) to be present', async () => {
      const config = await pushBlob(name, '{"foreign":1}', 'application/vnd.docker.container.image.v1+json');
      const foreign = { mediaType: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip', digest: digestOf('windows base'), size: 99, urls: ['https://example.com/base'] };
      const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: DOCKER_MANIFEST, config, layers: [foreign] }));
      expect((await manifests.put(name, 'win', bytes, DOCKER_MANIFEST)).digest).to.equal(digestOf(bytes));
    });

    it('requires a config with urls to be present all the same', async () => {
      const missing = { mediaType: 'application/vnd.oci.image.config.v1+json', digest: digestOf('{"elsewhere":1}'), size: 15, urls: ['https://example.com/config'] };
      const layer = await pushBlob(name, 'a layer', 'application/vnd.oci.image.layer.v1.tar+gzip');
      const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: missing, layers: [layer] }));
      const error = await rejectsOci(manifests.put(name, 'config-elsewhere', bytes, OCI_MANIFEST), 400, 'MANIFEST_BLOB_UNKNOWN');
      expect(error.detail).to.deep.equal({ digests: [missing.digest] });
    });

    it('requires the children of an index to be manifests of this repository', async () => {
      const child = await imageManifest(name, 'child');
      const entry = { mediaType: OCI_MANIFEST, digest: child.digest, size: child.bytes.length, platform: { architecture: 'arm64', os: 'linux' } };
      const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [entry] }));
      const error = await rejectsOci(manifests.put(name, 'multi', index, OCI_INDEX), 400, 'MANIFEST_BLOB_UNKNOWN');
      expect(error.detail).to.deep.equal({ digests: [child.digest] });
      await manifests.put(name, child.digest, child.bytes, OCI_MANIFEST);
      expect((await manifests.put(name, 'multi', index, OCI_INDEX)).manifests).to.deep.equal([entry]);
      expect((await manifests.get(name, 'multi')).mediaType).to.equal(OCI_INDEX);
    });

    it('accepts a BuildKit cache index whose entries are layer and cache-config blobs', async () => {
      const layer = await pushBlob(name, 'cached layer', 'application/vnd.docker.image.rootfs.diff.tar.gzip');
      const cacheConfig = await pushBlob(name, '{"layers":[]}', 'application/vnd.buildkit.cacheconfig.v0');
      const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: DOCKER_MANIFEST_LIST, manifests: [layer, cacheConfig] }));
      expect((await manifests.put(name, 'buildcache', bytes, DOCKER_MANIFEST_LIST)).digest).to.equal(digestOf(bytes));
      expect((await fresh().get(name, 'buildcache')).bytes.equals(bytes)).to.equal(true);
    });

    it('accepts a BuildKit cache image manifest (config application/vnd.buildkit.cacheconfig.v0)', async () => {
      const layer = await pushBlob(name, 'cached layer 2', 'application/vnd.oci.image.layer.v1.tar+gzip');
      const config = await pushBlob(name, '{"layers":[1]}', 'application/vnd.buildkit.cacheconfig.v0');
      const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers: [layer] }));
      expect((await manifests.put(name, 'cache', bytes, OCI_MANIFEST)).artifactType).to.equal('application/vnd.buildkit.cacheconfig.v0');
    });
  });

  describe('delete', () => {
    it('by tag removes only the tag', async () => {
      const { bytes, digest } = await imageManifest(name, 'del-tag');
      await manifests.put(name, 'a', bytes, OCI_MANIFEST);
      await manifests.put(name, 'b', bytes, OCI_MANIFEST);
      await manifests.delete(name, 'a');
      await rejectsOci(manifests.get(name, 'a'), 404, 'MANIFEST_UNKNOWN');
      expect((await manifests.get(name, 'b')).digest).to.equal(digest);
      expect((await manifests.get(name, digest)).digest).to.equal(digest);
      expect(await tags.all(name)).to.deep.equal(['b']);
      await rejectsOci(manifests.delete(name, 'a'), 404, 'MANIFEST_UNKNOWN');
    });

    it('by digest removes the manifest and every tag on it, keeping other tags', async () => {
      const doomed = await imageManifest(name, 'doomed');
      const kept = await imageManifest(name, 'kept');
      await manifests.put(name, 'x', doomed.bytes, OCI_MANIFEST);
      await manifests.put(name, 'y', doomed.bytes, OCI_MANIFEST);
      await manifests.put(name, 'z', kept.bytes, OCI_MANIFEST);
      await manifests.get(name, doomed.digest); // cached now: the delete must still be seen
      await manifests.delete(name, doomed.digest);
      await rejectsOci(manifests.get(name, doomed.digest), 404, 'MANIFEST_UNKNOWN');
      await rejectsOci(manifests.get(name, 'x'), 404, 'MANIFEST_UNKNOWN');
      await rejectsOci(fresh().get(name, doomed.digest), 404, 'MANIFEST_UNKNOWN');
      expect(await tags.all(name)).to.deep.equal(['z']);
      expect((await manifests.get(name, 'z')).digest).to.equal(kept.digest);
      await rejectsWith(driver.stat(paths.revisionLink(name, pd(doomed.digest))), PathNotFoundError);
      await rejectsOci(manifests.delete(name, doomed.digest), 404, 'MANIFEST_UNKNOWN');
    });

    it('answers MANIFEST_UNKNOWN for unknown or malformed references', async () => {
      await rejectsOci(manifests.delete(name, digestOf('never')), 404, 'MANIFEST_UNKNOWN');
      await rejectsOci(manifests.delete(name, 'never'), 404, 'MANIFEST_UNKNOWN');
      await rejectsOci(manifests.delete(name, '-bad'), 404, 'MANIFEST_UNKNOWN');
    });

    it('can push the same manifest again after deleting it', async () => {
      const { bytes, digest } = await imageManifest(name, 'again');
      await manifests.put(name, 'v', bytes, OCI_MANIFEST);
      await manifests.delete(name, digest);
      await manifests.put(name, 'v', bytes, OCI_MANIFEST);
      expect((await manifests.get(name, 'v')).digest).to.equal(digest);
    });
  });

  describe('a tag PUT racing a DELETE by digest of the same manifest', () => {
    it('a DELETE that ran wholly between the PUT\'s tagging and its check: the PUT wins, tag and manifest pull', async () => {
      // The interleaving real I/O does not produce on demand: the PUT's look at its revision waits on a gate.
      let gatePath: string | undefined;
      let reached!: () => void;
      const atCheck = new Promise<void>((resolve) => (reached = resolve));
      let open!: () => void;
      const gate = new Promise<void>((resolve) => (open = resolve));
      class Gated extends FilesystemDriver {
        override async stat(path: string, options?: { file?: boolean }) {
          if (path === gatePath) {
            gatePath = undefined;
            reached();
            await gate;
          }
          return super.stat(path, options);
        }
      }
      const gated = new Gated({ rootdirectory: root });
      const putter = new ManifestStore(gated, new BlobStore(gated), new TagStore(gated), new ReferrerStore(gated));
      const { bytes, digest } = await imageManifest(name, 'wholly-between');
      await putter.put(name, digest, bytes, OCI_MANIFEST);
      gatePath = paths.revisionLink(name, pd(digest));
      const put = putter.put(name, 'v1', bytes, OCI_MANIFEST);
      await atCheck; // revision written and tag set
      await fresh().delete(name, digest); // sees v1: removes it and the revision
      open();
      await put;
      expect((await fresh().get(name, 'v1')).digest, 'the tag answered 201 pulls').to.equal(digest);
      expect((await fresh().get(name, digest)).digest).to.equal(digest);
    });

    for (const where of ['this process', 'another process']) {
      it(`never leaves a listed tag that does not pull (the delete from ${where})`, async () => {
        const { bytes, digest } = await imageManifest(name, `race-${where}`);
        for (let i = 0; i < 25; i++) {
          await manifests.put(name, digest, bytes, OCI_MANIFEST);
          const deleter = where === 'this process' ? manifests : fresh();
          const [put, deleted] = await Promise.allSettled([manifests.put(name, `v${i}`, bytes, OCI_MANIFEST), deleter.delete(name, digest)]);
          expect(put.status, String((put as PromiseRejectedResult).reason)).to.equal('fulfilled');
          expect(deleted.status, String((deleted as PromiseRejectedResult).reason)).to.equal('fulfilled');
          const listed = (await new TagStore(new FilesystemDriver({ rootdirectory: root })).all(name).catch(() => [] as string[])).includes(`v${i}`);
          const pulls = await fresh().get(name, `v${i}`).then(() => true, () => false);
          expect(pulls, `round ${i}: tag v${i} listed: ${listed}`).to.equal(listed);
          if (listed) await manifests.delete(name, `v${i}`);
        }
      });
    }
  });

  describe('referrers', () => {
    it('lists a manifest with a subject after its put and forgets it after its delete', async () => {
      const subject = await imageManifest(name, 'subject');
      await manifests.put(name, 'app', subject.bytes, OCI_MANIFEST);
      const subjectDescriptor = { mediaType: OCI_MANIFEST, digest: subject.digest, size: subject.bytes.length };
      const empty = await pushBlob(name, '{}', 'application/vnd.oci.empty.v1+json');
      const sbomLayer = await pushBlob(name, '{"spdx":true}', 'application/spdx+json');
      const sbom = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI_MANIFEST,
          artifactType: 'application/vnd.example.sbom.v1',
          config: empty,
          layers: [sbomLayer],
          subject: subjectDescriptor,
          annotations: { 'org.opencontainers.image.created': '2026-01-01T00:00:00Z' },
        }),
      );
      const sbomDigest = (await manifests.put(name, digestOf(sbom), sbom, OCI_MANIFEST)).digest;
      // A second referrer without artifactType: the config media type stands in.
      const sigConfig = await pushBlob(name, '{"sig":1}', 'application/vnd.example.signature.config.v1+json');
      const sig = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: sigConfig, layers: [], subject: subjectDescriptor }));
      const sigDigest = (await manifests.put(name, digestOf(sig), sig, OCI_MANIFEST)).digest;

      const expected = [
        {
          mediaType: OCI_MANIFEST,
          digest: sbomDigest,
          size: sbom.length,
          artifactType: 'application/vnd.example.sbom.v1',
          annotations: { 'org.opencontainers.image.created': '2026-01-01T00:00:00Z' },
        },
        { mediaType: OCI_MANIFEST, digest: sigDigest, size: sig.length, artifactType: 'application/vnd.example.signature.config.v1+json' },
      ].sort((a, b) => a.digest.localeCompare(b.digest));
      expect(await referrers.list(name, pd(subject.digest))).to.deep.equal(expected);
      expect(await new ReferrerStore(new FilesystemDriver({ rootdirectory: root })).list(name, pd(subject.digest))).to.deep.equal(expected);
      expect(await referrers.list(`${name}-other`, pd(subject.digest))).to.deep.equal([]);

      await manifests.delete(name, sbomDigest);
      expect((await referrers.list(name, pd(subject.digest))).map((d) => d.digest)).to.deep.equal([sigDigest]);
      await manifests.delete(name, sigDigest);
      expect(await referrers.list(name, pd(subject.digest))).to.deep.equal([]);
    });

    it('accepts a subject that does not exist (yet) and lists it', async () => {
      const ghost = { mediaType: OCI_MANIFEST, digest: digestOf('not pushed yet'), size: 14 };
      const empty = await pushBlob(name, '{}', 'application/vnd.oci.empty.v1+json');
      const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, artifactType: 'application/x', config: empty, layers: [], subject: ghost }));
      await manifests.put(name, 'early', bytes, OCI_MANIFEST);
      expect((await referrers.list(name, pd(ghost.digest))).map((d) => d.digest)).to.deep.equal([digestOf(bytes)]);
    });

    it('lists an index with a subject, with its artifactType', async () => {
      const subject = await imageManifest(name, 'idx-subject');
      await manifests.put(name, subject.digest, subject.bytes, OCI_MANIFEST);
      const bytes = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI_INDEX,
          artifactType: 'application/vnd.example.bundle',
          manifests: [],
          subject: { mediaType: OCI_MANIFEST, digest: subject.digest, size: subject.bytes.length },
        }),
      );
      await manifests.put(name, digestOf(bytes), bytes, OCI_INDEX);
      expect(await referrers.list(name, pd(subject.digest))).to.deep.equal([
        { mediaType: OCI_INDEX, digest: digestOf(bytes), size: bytes.length, artifactType: 'application/vnd.example.bundle' },
      ]);
    });

    it('keeps the referrer when only a tag of it is deleted', async () => {
      const subject = await imageManifest(name, 'tag-only');
      const empty = await pushBlob(name, '{}', 'application/vnd.oci.empty.v1+json');
      const bytes = Buffer.from(
        JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, artifactType: 'application/y', config: empty, layers: [], subject: { mediaType: OCI_MANIFEST, digest: subject.digest, size: subject.bytes.length } }),
      );
      await manifests.put(name, 'sig', bytes, OCI_MANIFEST);
      await manifests.delete(name, 'sig');
      expect((await referrers.list(name, pd(subject.digest))).map((d) => d.digest)).to.deep.equal([digestOf(bytes)]);
    });
  });

  describe('parseReference', () => {
    it('splits digests from tags and validates both', () => {
      const digest = digestOf('x');
      expect(parseReference(digest)).to.deep.equal({ digest: pd(digest) });
      expect(parseReference('1.12.1-linuxarm64')).to.deep.equal({ tag: '1.12.1-linuxarm64' });
      throwsOci(() => parseReference('sha256:short'), 400, 'DIGEST_INVALID');
      throwsOci(() => parseReference('a/b'), 400, 'TAG_INVALID');
    });
  });

  describe('regressions', () => {
    it('refuses a Docker manifest without a mediaType field (it would read back as OCI), as Distribution does', async () => {
      const config = await pushBlob(name, '{"nomediatype":1}', 'application/vnd.docker.container.image.v1+json');
      const layer = await pushBlob(name, 'nomediatype layer', 'application/vnd.docker.image.rootfs.diff.tar.gzip');
      const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, config, layers: [layer] }));
      const error = await manifests.put(name, 'v1', bytes, DOCKER_MANIFEST).then(() => undefined, (e: unknown) => e);
      expect(error).to.be.instanceOf(OciError);
      expect((error as OciError).code).to.equal('MANIFEST_INVALID');
      expect((error as OciError).status).to.equal(400);
      const missing = await fresh().get(name, 'v1').then(() => undefined, (e: unknown) => e);
      expect((missing as OciError).code, 'nothing was tagged').to.equal('MANIFEST_UNKNOWN');
    });
  });
});
