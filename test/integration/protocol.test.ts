// The OCI Distribution Spec v1.1 over HTTP, endpoint by endpoint.
//
// Part 1 ("conformance") re-expresses, in order and with the same permissiveness, every check of the
// official conformance suite (opencontainers/distribution-spec v1.1.1, conformance/, with pull, push,
// content discovery and content management enabled and automatic cross-mount on). Its checks share
// state in order, as the original's do. Part 2 ("endpoints") is stricter and self-contained per test:
// what our registry promises beyond the conformance suite (exact bytes, headers, ranges, pagination,
// referrers details, every manifest type we accept).
//
// Suites are functions of a TargetFactory (test/helpers/targets.ts): the same checks run on every
// storage backend, or against an external registry with TEST_REGISTRY_URL.
import { expect } from 'chai';
import {
  EMPTY_JSON_DIGEST,
  MediaType,
  OCI_ERROR_CODES,
  OciClient,
  content,
  describeReply,
  descriptorOf,
  emptyJsonBlob,
  expectOciError,
  expectStatus,
  gzipLayer,
  imageConfig,
  imageManifest,
  indexManifest,
  artifactManifest,
  nextLink,
  pathOf,
  randomBlob,
  randomHex,
  sha256,
  uniqueNamespace,
  type Content,
  type Descriptor,
  type Reply,
} from '../helpers/oci.js';
import { suiteTargets, type RegistryTarget, type TargetFactory } from '../helpers/targets.js';

interface Ctx {
  oci: OciClient;
  target: RegistryTarget;
}

function is2xx(r: Reply): boolean {
  return r.status >= 200 && r.status < 300;
}

function expect2xx(r: Reply, ...orAlso: number[]): void {
  expect(is2xx(r) || orAlso.includes(r.status), describeReply(r)).to.equal(true);
}

function header(r: Reply, name: string): string | null {
  return r.headers.get(name);
}

interface TagList { name: string; tags: string[] | null }
interface IndexDoc { schemaVersion: number; mediaType?: string; manifests: Descriptor[] | null }

export function protocolSuite(factory: TargetFactory): void {
  describe(`protocol: OCI distribution spec v1.1 [${factory.name}]`, function () {
    this.timeout(60_000);
    const ctx = {} as Ctx;
    before(async function () {
      this.timeout(120_000);
      ctx.target = await factory.start();
      ctx.oci = new OciClient(ctx.target.url);
    });
    after(async function () {
      this.timeout(60_000);
      await ctx.target?.stop();
    });

    conformanceChecks(ctx);
    endpointChecks(ctx);
  });
}

// =============================================================================================
// Part 1: the conformance suite's checks, re-expressed

function conformanceChecks(ctx: Ctx): void {
  describe('conformance (distribution-spec v1.1.1 checks)', function () {
    const name = `${uniqueNamespace('conformance')}/main`;
    const crossmount = `${uniqueNamespace('conformance')}/crossmount`;
    const nonexistentManifest = '.INVALID_MANIFEST_NAME';
    const dummyDigest = sha256('hello world');
    const annotationKey = 'org.opencontainers.conformance.test';

    // Five configs and five manifests, one per workflow (pull, push, discovery, management, referrers).
    const configs = Array.from({ length: 5 }, () => imageConfig());
    const layer = gzipLayer(300);
    // Descriptors carry `data` and a field unknown to the image spec; layers carry it as null.
    const manifests = configs.map((config) => imageManifest({
      config: descriptorOf(config, {
        data: config.bytes.toString('base64'),
        newUnspecifiedField: Buffer.from('hello world').toString('base64'),
      }),
      layers: [descriptorOf(layer, { newUnspecifiedField: null })],
    }));
    const emptyLayerManifest = imageManifest({
      mediaType: null,
      contentType: MediaType.ociManifest,
      config: descriptorOf(configs[1] as Content, { data: (configs[1] as Content).bytes.toString('base64') }),
      layers: [],
    });
    const blobA = content(randomBlob(42));
    let blobB = content(randomBlob(42));
    let chunk1 = blobB.bytes.subarray(0, 22);
    let chunk2 = blobB.bytes.subarray(22);
    const rebuildChunkedBlob = (size: number) => {
      blobB = content(randomBlob(size));
      chunk1 = blobB.bytes.subarray(0, Math.floor(size / 2) + 1);
      chunk2 = blobB.bytes.subarray(chunk1.length);
    };
    const chunk1Range = () => `0-${chunk1.length - 1}`;
    const chunk2Range = () => `${chunk1.length}-${blobB.size - 1}`;

    // Referrers fixtures: artifacts whose subject is manifests[4] (and one whose subject, manifests[3], is never pushed).
    const emptyJson = emptyJsonBlob();
    const refBlobA = content('a referrer blob, type A');
    const refBlobB = content('a referrer blob, type B');
    const artifactTypeA = 'application/vnd.example.conformance.type-a';
    const artifactTypeB = 'application/vnd.example.conformance.type-b';
    const artifactTypeIndex = 'application/vnd.example.conformance.index';
    const subject4 = descriptorOf(manifests[4] as Content);
    const subject3 = descriptorOf(manifests[3] as Content);
    const refAConfig = imageManifest({ config: descriptorOf(refBlobA, { mediaType: artifactTypeA }), layers: [descriptorOf(emptyJson)], subject: subject4, annotations: { [annotationKey]: 'config a' } });
    const refBConfig = imageManifest({ config: descriptorOf(refBlobB, { mediaType: artifactTypeB }), layers: [descriptorOf(emptyJson)], subject: subject4, annotations: { [annotationKey]: 'config b' } });
    const refALayer = imageManifest({ artifactType: artifactTypeA, config: descriptorOf(emptyJson), layers: [descriptorOf(refBlobA, { mediaType: artifactTypeA })], subject: subject4, annotations: { [annotationKey]: 'layer a' } });
    const refBLayer = imageManifest({ artifactType: artifactTypeB, config: descriptorOf(emptyJson), layers: [descriptorOf(refBlobB, { mediaType: artifactTypeB })], subject: subject4, annotations: { [annotationKey]: 'layer b' } });
    const refCLayer = imageManifest({ artifactType: artifactTypeB, config: descriptorOf(emptyJson), layers: [descriptorOf(refBlobB, { mediaType: artifactTypeB })], subject: subject3 });
    const refIndex = indexManifest({ artifactType: artifactTypeIndex, manifests: [descriptorOf(refAConfig), descriptorOf(refALayer)], subject: subject4, annotations: { [annotationKey]: 'index' } });
    const annotationOf = new Map<string, string>([
      [refAConfig.digest, 'config a'], [refBConfig.digest, 'config b'], [refALayer.digest, 'layer a'],
      [refBLayer.digest, 'layer b'], [refIndex.digest, 'index'],
    ]);

    const oci = () => ctx.oci;
    /** POST, then PUT with the whole body; the conformance setup steps only require 2xx. */
    const populate = async (blob: Content, repo = name) => {
      const post = await oci().startUpload(repo);
      const put = await oci().closeUpload(header(post, 'location') ?? '/missing-location', blob.digest, blob.bytes);
      expect2xx(put);
    };

    describe('pull', function () {
      describe('setup', function () {
        it('populates the registry with config[0]', async () => populate(configs[0] as Content));
        it('populates the registry with config[1]', async () => populate(configs[1] as Content));
        it('populates the registry with the layer', async () => populate(layer));
        it('populates the registry with manifest[0] by tag', async () => {
          expect2xx(await oci().putManifest(name, 'tagtest0', manifests[0] as Content));
        });
        it('populates the registry with manifest[1] by digest', async () => {
          const m = manifests[1] as Content;
          expect2xx(await oci().putManifest(name, m.digest, m));
        });
      });

      describe('pull blobs', function () {
        it('HEAD of a nonexistent blob is 404', async () => {
          expectStatus(await oci().headBlob(name, dummyDigest), 404);
        });
        it('HEAD of an existing blob is 200 (with its digest if Docker-Content-Digest is sent)', async () => {
          const r = await oci().headBlob(name, (configs[0] as Content).digest);
          expectStatus(r, 200);
          if (header(r, 'docker-content-digest')) expect(header(r, 'docker-content-digest')).to.equal((configs[0] as Content).digest);
        });
        it('GET of a nonexistent blob is 404', async () => {
          expectStatus(await oci().getBlob(name, dummyDigest), 404);
        });
        it('GET of an existing blob is 200', async () => {
          expectStatus(await oci().getBlob(name, (configs[0] as Content).digest), 200);
        });
      });

      describe('pull manifests', function () {
        it('HEAD of a nonexistent manifest is 404', async () => {
          expectStatus(await oci().headManifest(name, nonexistentManifest), 404);
        });
        for (const i of [0, 1]) {
          it(`HEAD of manifest[${i}] by digest is 200`, async () => {
            const m = manifests[i] as Content;
            const r = await oci().headManifest(name, m.digest, MediaType.ociManifest);
            expectStatus(r, 200);
            if (header(r, 'docker-content-digest')) expect(header(r, 'docker-content-digest')).to.equal(m.digest);
          });
        }
        it('HEAD of manifest[0] by tag is 200', async () => {
          const r = await oci().headManifest(name, 'tagtest0', MediaType.ociManifest);
          expectStatus(r, 200);
          if (header(r, 'docker-content-digest')) expect(header(r, 'docker-content-digest')).to.equal((manifests[0] as Content).digest);
        });
        it('GET of a nonexistent manifest is 404', async () => {
          expectStatus(await oci().getManifest(name, nonexistentManifest), 404);
        });
        for (const i of [0, 1]) {
          it(`GET of manifest[${i}] by digest is 200`, async () => {
            expectStatus(await oci().getManifest(name, (manifests[i] as Content).digest, MediaType.ociManifest), 200);
          });
        }
        it('GET of manifest[0] by tag is 200', async () => {
          expectStatus(await oci().getManifest(name, 'tagtest0', MediaType.ociManifest), 200);
        });
      });

      describe('error codes', function () {
        it('a 400 answer carries an OCI error body (GET manifests/sha256:totallywrong: 400 or 404)', async () => {
          const r = await oci().getManifest(name, 'sha256:totallywrong', MediaType.ociManifest);
          expectStatus(r, 400, 404);
          if (r.status === 400) expectOciError(r, 400, [...OCI_ERROR_CODES]);
        });
      });

      describe('teardown', function () {
        for (const i of [0, 1]) {
          it(`deletes manifest[${i}] (2xx or 405)`, async () => {
            expect2xx(await oci().delete(`/v2/${name}/manifests/${(manifests[i] as Content).digest}`), 405);
          });
        }
        for (const [label, blob] of [['config[0]', configs[0]], ['config[1]', configs[1]], ['layer', layer]] as const) {
          it(`deletes the ${label} blob (2xx, 404 or 405)`, async () => {
            expect2xx(await oci().delete(`/v2/${name}/blobs/${(blob as Content).digest}`), 404, 405);
          });
        }
      });
    });

    describe('push', function () {
      let lastResponse: Reply | undefined;
      let prevResponse: Reply | undefined;
      let emptyLayerPushed = false;
      const locationOf = (r: Reply | undefined): string => {
        expect(r, 'the previous step did not complete').to.not.equal(undefined);
        const location = header(r as Reply, 'location');
        expect(location, `no Location in ${describeReply(r as Reply)}`).to.be.a('string').and.not.equal('');
        return location as string;
      };

      describe('blob upload streamed', function () {
        it('PATCH with the blob in the body is 202', async () => {
          const post = await oci().startUpload(name);
          const location = locationOf(post);
          const r = await oci().patchChunk(location, blobA.bytes);
          expectStatus(r, 202);
          lastResponse = r;
        });
        it('PUT to the session URL with the digest is 201 with a Location', async () => {
          const r = await oci().closeUpload(locationOf(lastResponse), blobA.digest);
          expectStatus(r, 201);
          expect(header(r, 'location'), describeReply(r)).to.be.a('string').and.not.equal('');
        });
      });

      describe('blob upload monolithic', function () {
        it('GET of a nonexistent blob is 404', async () => {
          expectStatus(await oci().getBlob(name, dummyDigest), 404);
        });
        it('POST with the digest and the blob is 201 or 202, with a Location', async () => {
          const c = configs[1] as Content;
          const r = await oci().startUpload(name, { query: { digest: c.digest }, headers: { 'Content-Type': 'application/octet-stream' }, body: c.bytes });
          expect(header(r, 'location'), describeReply(r)).to.be.a('string').and.not.equal('');
          expectStatus(r, 201, 202);
          lastResponse = r;
        });
        it('GET of that blob is 200 after a 201, 404 after a 202', async () => {
          expect(lastResponse).to.not.equal(undefined);
          const r = await oci().getBlob(name, (configs[1] as Content).digest);
          expectStatus(r, (lastResponse as Reply).status === 202 ? 404 : 200);
        });
        it('POST yields a session (202)', async () => {
          const r = await oci().startUpload(name);
          expectStatus(r, 202);
          lastResponse = r;
        });
        it('PUT of the whole blob to the session is 201 with a Location', async () => {
          const c = configs[1] as Content;
          const r = await oci().closeUpload(locationOf(lastResponse), c.digest, c.bytes);
          expect(header(r, 'location'), describeReply(r)).to.be.a('string').and.not.equal('');
          expectStatus(r, 201);
        });
        it('GET of the blob is 200', async () => {
          expectStatus(await oci().getBlob(name, (configs[1] as Content).digest), 200);
        });
        it('POST then PUT of a layer is 201 with a Location', async () => {
          const post = await oci().startUpload(name);
          const r = await oci().closeUpload(locationOf(post), layer.digest, layer.bytes);
          expect(header(r, 'location'), describeReply(r)).to.be.a('string').and.not.equal('');
          expectStatus(r, 201);
        });
        it('GET of the layer is 200', async () => {
          expectStatus(await oci().getBlob(name, layer.digest), 200);
        });
      });

      describe('blob upload chunked', function () {
        it('an out-of-order chunk is 416', async () => {
          const post = await oci().startUpload(name, { headers: { 'Content-Length': '0' } });
          const location = locationOf(post);
          const minLength = header(post, 'oci-chunk-min-length');
          if (minLength) {
            const min = Number(minLength);
            expect(Number.isInteger(min), `OCI-Chunk-Min-Length: ${minLength}`).to.equal(true);
            if (min > chunk1.length) rebuildChunkedBlob(min * 2 - 2);
          }
          const r = await oci().request('PATCH', location, {
            headers: { 'Content-Type': 'application/octet-stream', 'Content-Range': chunk2Range() },
            body: chunk2,
          });
          expectStatus(r, 416);
        });
        it('PATCH of the first chunk is 202 with its Range', async () => {
          const post = await oci().startUpload(name, { headers: { 'Content-Length': '0' } });
          locationOf(post);
          prevResponse = post;
          const r = await oci().request('PATCH', locationOf(post), {
            headers: { 'Content-Type': 'application/octet-stream', 'Content-Range': chunk1Range() },
            body: chunk1,
          });
          expectStatus(r, 202);
          expect(header(r, 'range'), describeReply(r)).to.equal(chunk1Range());
          lastResponse = r;
        });
        it('retrying the previous chunk is 416', async () => {
          const r = await oci().request('PATCH', locationOf(prevResponse), {
            headers: { 'Content-Type': 'application/octet-stream', 'Content-Range': chunk1Range() },
            body: chunk1,
          });
          expectStatus(r, 416);
        });
        it('GET of the upload through the stale (POST) location is 204 with Range and Location', async () => {
          const r = await oci().get(locationOf(prevResponse));
          expectStatus(r, 204);
          expect(header(r, 'location'), describeReply(r)).to.be.a('string').and.not.equal('');
          expect(header(r, 'range'), describeReply(r)).to.equal(chunk1Range());
          lastResponse = r;
        });
        it('PATCH of the second chunk is 202 with a Location', async () => {
          const r = await oci().request('PATCH', locationOf(lastResponse), {
            headers: { 'Content-Type': 'application/octet-stream', 'Content-Range': chunk2Range() },
            body: chunk2,
          });
          expectStatus(r, 202);
          expect(header(r, 'location'), describeReply(r)).to.be.a('string').and.not.equal('');
          lastResponse = r;
        });
        it('PUT with the digest is 201 with a Location', async () => {
          const r = await oci().closeUpload(locationOf(lastResponse), blobB.digest);
          expectStatus(r, 201);
          expect(header(r, 'location'), describeReply(r)).to.be.a('string').and.not.equal('');
        });
      });

      describe('cross-repository blob mount', function () {
        it('mounting without "from" a blob that exists nowhere yields a session (202 + Location)', async () => {
          const r = await oci().startUpload(crossmount, { query: { mount: dummyDigest } });
          expectStatus(r, 202);
          expect(header(r, 'location'), describeReply(r)).to.be.a('string').and.not.equal('');
        });
        it('mounting another repository\'s blob is 201 or 202', async () => {
          const r = await oci().startUpload(crossmount, { query: { mount: blobA.digest, from: name } });
          expectStatus(r, 201, 202);
          lastResponse = r;
        });
        it('after a 201, the Location is the blob in the mount target and GET of it is 200', async function () {
          if (lastResponse?.status !== 201) this.skip();
          const location = locationOf(lastResponse);
          expect(pathOf(location).split('?')[0]).to.equal(`/v2/${crossmount}/blobs/${blobA.digest}`);
          expectStatus(await oci().get(location), 200);
        });
        it('after a 202, the Location is an upload session in the mount target', async function () {
          if (lastResponse?.status !== 202) this.skip();
          expect(pathOf(locationOf(lastResponse))).to.match(new RegExp(`^/v2/${crossmount}/blobs/uploads/`));
        });
        it('mounting without "from" is 201 (automatic cross-mount enabled)', async function () {
          if (lastResponse?.status !== 201) this.skip();
          const r = await oci().startUpload(crossmount, { query: { mount: blobA.digest } });
          expectStatus(r, 201);
        });
      });

      describe('manifest upload', function () {
        it('GET of a nonexistent manifest is 404', async () => {
          expectStatus(await oci().getManifest(name, nonexistentManifest), 404);
        });
        it('PUT of a manifest to four tags is 201 with a Location each', async () => {
          for (let i = 0; i < 4; i++) {
            const r = await oci().putManifest(name, `test${i}`, manifests[1] as Content);
            expect(header(r, 'location'), describeReply(r)).to.be.a('string').and.not.equal('');
            expectStatus(r, 201);
          }
        });
        it('a manifest with no layers (and no mediaType field) is accepted, or at least not a server error', async () => {
          const r = await oci().putManifest(name, 'emptylayer', emptyLayerManifest);
          if (r.status === 201) {
            emptyLayerPushed = true;
            expect(header(r, 'location'), describeReply(r)).to.be.a('string').and.not.equal('');
          } else {
            expect(r.status, describeReply(r)).to.be.below(500);
          }
        });
        it('GET of the manifest by digest is 200', async () => {
          expectStatus(await oci().getManifest(name, (manifests[1] as Content).digest, MediaType.ociManifest), 200);
        });
      });

      describe('teardown', function () {
        it('deletes the manifests (2xx or 405)', async () => {
          expect2xx(await oci().delete(`/v2/${name}/manifests/${(manifests[1] as Content).digest}`), 405);
          if (emptyLayerPushed) expect2xx(await oci().delete(`/v2/${name}/manifests/${emptyLayerManifest.digest}`), 405);
        });
        it('deletes the config blob (2xx, 404 or 405)', async () => {
          expect2xx(await oci().delete(`/v2/${name}/blobs/${(configs[1] as Content).digest}`), 404, 405);
        });
        it('deletes the layer blob (2xx, 404 or 405)', async () => {
          expect2xx(await oci().delete(`/v2/${name}/blobs/${layer.digest}`), 404, 405);
        });
      });
    });

    describe('content discovery', function () {
      let tagList: string[] = [];
      let numTags = 4;

      describe('setup', function () {
        it('populates the registry with config[2] and the layer', async () => {
          await populate(configs[2] as Content);
          await populate(layer);
        });
        it('populates the registry with four tags', async () => {
          for (let i = 0; i < 4; i++) expect2xx(await oci().putManifest(name, `test${i}`, manifests[2] as Content));
          const r = await oci().tags(name);
          tagList = r.status === 200 ? (r.json<TagList>().tags ?? []) : [];
        });
        it('pushes referrers (before and after their subject) and each PUT answers OCI-Subject', async () => {
          expect(emptyJson.digest).to.equal(EMPTY_JSON_DIGEST);
          await populate(emptyJson);
          await populate(refBlobA);
          for (const m of [refAConfig, refALayer, refIndex]) {
            const r = await oci().putManifest(name, m.digest, m);
            expect2xx(r);
            expect(header(r, 'oci-subject'), describeReply(r)).to.equal(subject4.digest);
          }
          await populate(configs[4] as Content);
          await populate(layer);
          expect2xx(await oci().putManifest(name, 'tagtest0', manifests[4] as Content));
          await populate(refBlobB);
          for (const m of [refBConfig, refBLayer]) {
            const r = await oci().putManifest(name, m.digest, m);
            expect2xx(r);
            expect(header(r, 'oci-subject'), describeReply(r)).to.equal(subject4.digest);
          }
          const r = await oci().putManifest(name, refCLayer.digest, refCLayer);
          expect2xx(r);
          expect(header(r, 'oci-subject'), describeReply(r)).to.equal(subject3.digest);
        });
      });

      describe('listing tags', function () {
        it('GET of the tag list is 200', async () => {
          const r = await oci().tags(name);
          expectStatus(r, 200);
          tagList = r.json<TagList>().tags ?? [];
          numTags = tagList.length;
        });
        it('the number of tags is limited by n', async () => {
          const n = Math.floor(numTags / 2);
          const r = await oci().tags(name, { n });
          expectStatus(r, 200);
          expect(r.json<TagList>().tags ?? [], describeReply(r)).to.have.length(n);
        });
        it('the start of the list is set by last', async () => {
          const n = Math.floor(numTags / 2);
          const first = await oci().tags(name, { n });
          const page = first.json<TagList>().tags ?? [];
          expect(page.length, describeReply(first)).to.be.at.least(n);
          const r = await oci().tags(name, { n, last: page[n - 1] });
          expectStatus(r, 200);
          expect(page.length, describeReply(first)).to.be.at.most(n);
          expect(page).to.include(page[n - 1]);
        });
      });

      describe('listing referrers', function () {
        const expectIndex = (r: Reply): IndexDoc => {
          expectStatus(r, 200);
          expect(header(r, 'content-type'), describeReply(r)).to.equal(MediaType.ociIndex);
          return r.json<IndexDoc>();
        };
        it('referrers of a nonexistent manifest: 200 and an empty index', async () => {
          const index = expectIndex(await oci().referrers(name, dummyDigest));
          expect(index.manifests ?? []).to.have.length(0);
        });
        it('referrers of an existing manifest: 200 and all five, each with its annotation', async () => {
          const index = expectIndex(await oci().referrers(name, subject4.digest));
          const list = index.manifests ?? [];
          expect(list, JSON.stringify(index)).to.have.length(5);
          expect(list[0]?.digest).to.not.equal(list[1]?.digest);
          for (const d of list) {
            expect(Object.keys(d.annotations ?? {}), JSON.stringify(d)).to.have.length(1);
            expect(d.annotations?.[annotationKey], JSON.stringify(d)).to.equal(annotationOf.get(d.digest));
          }
        });
        it('referrers filtered by artifactType: 200, and two with OCI-Filters-Applied (else all five)', async () => {
          const r = await oci().referrers(name, subject4.digest, { artifactType: artifactTypeA });
          const list = expectIndex(r).manifests ?? [];
          if (header(r, 'oci-filters-applied')) {
            expect(list, r.text()).to.have.length(2);
            expect(header(r, 'oci-filters-applied')).to.equal('artifactType');
          } else {
            expect(list, r.text()).to.have.length(5);
          }
          for (const d of list) {
            expect(Object.keys(d.annotations ?? {}), JSON.stringify(d)).to.have.length(1);
            expect(d.annotations?.[annotationKey], JSON.stringify(d)).to.equal(annotationOf.get(d.digest));
          }
        });
        it('referrers of a manifest that was never pushed: 200 and its one referrer', async () => {
          const list = expectIndex(await oci().referrers(name, subject3.digest)).manifests ?? [];
          expect(list).to.have.length(1);
          expect(list[0]?.digest).to.equal(refCLayer.digest);
        });
      });

      describe('teardown', function () {
        const deletable = (r: Reply) => expect2xx(r, 404, 405);
        it('deletes the manifests and their tags', async () => {
          for (const m of [refIndex, manifests[2], manifests[4], refAConfig, refALayer, refBConfig, refBLayer, refCLayer]) {
            deletable(await oci().delete(`/v2/${name}/manifests/${(m as Content).digest}`));
          }
        });
        it('deletes the config blob', async () => deletable(await oci().delete(`/v2/${name}/blobs/${(configs[2] as Content).digest}`)));
        it('deletes the layer blob', async () => deletable(await oci().delete(`/v2/${name}/blobs/${layer.digest}`)));
        it('deletes the referrers\' blobs', async () => {
          for (const b of [configs[4] as Content, refBlobA, refBlobB, emptyJson]) deletable(await oci().delete(`/v2/${name}/blobs/${b.digest}`));
        });
      });
    });

    describe('content management', function () {
      let numTags = 0;
      let blobDeleteAllowed = true;

      describe('setup', function () {
        it('populates the registry with config[3]', async () => populate(configs[3] as Content));
        it('populates the registry with the layer', async () => populate(layer));
        it('populates the registry with a tag', async () => {
          expect2xx(await oci().putManifest(name, 'tagtest0', manifests[3] as Content));
        });
        it('counts the tags before deleting', async () => {
          const r = await oci().tags(name);
          expectStatus(r, 200);
          numTags = (r.json<TagList>().tags ?? []).length;
        });
      });

      describe('manifest delete', function () {
        it('DELETE of a tag is 202, or 400 UNSUPPORTED / 405 when tag deletion is disabled', async () => {
          const r = await oci().delete(`/v2/${name}/manifests/tagtest0`);
          expectStatus(r, 202, 400, 405);
          if (r.status === 400) expectOciError(r, 400, 'UNSUPPORTED');
        });
        it('DELETE of the manifest by digest is 202 (or 404 if already gone)', async () => {
          expectStatus(await oci().delete(`/v2/${name}/manifests/${(manifests[3] as Content).digest}`), 202, 404);
        });
        it('GET of the deleted manifest is 404 (200 only where deletion is disabled)', async () => {
          expectStatus(await oci().getManifest(name, (manifests[3] as Content).digest), 404, 200);
        });
        it('the tag list reflects the deletion', async () => {
          const r = await oci().tags(name);
          expectStatus(r, 200, 404);
          if (r.status === 200) expect(r.json<TagList>().tags ?? [], r.text()).to.have.length(numTags - 1);
          else expect(numTags - 1).to.equal(0);
        });
      });

      describe('blob delete', function () {
        it('DELETE of the blobs is 202 (404 or 405 allowed)', async () => {
          expectStatus(await oci().delete(`/v2/${name}/blobs/${(configs[3] as Content).digest}`), 202, 404, 405);
          const r = await oci().delete(`/v2/${name}/blobs/${layer.digest}`);
          expectStatus(r, 202, 404, 405);
          if (r.status === 405) blobDeleteAllowed = false;
        });
        it('GET of a deleted blob is 404', async function () {
          if (!blobDeleteAllowed) this.skip();
          expectStatus(await oci().getBlob(name, (configs[3] as Content).digest), 404);
        });
      });
    });
  });
}

// =============================================================================================
// Part 2: every endpoint, strictly

function endpointChecks(ctx: Ctx): void {
  const ns = uniqueNamespace('proto');
  const oci = () => ctx.oci;

  /** Asserts a manifest answer: status, exact bytes, Content-Type, Docker-Content-Digest, Content-Length. */
  const expectManifest = (r: Reply, m: Content, contentType: string = m.mediaType) => {
    expectStatus(r, 200);
    expect(header(r, 'content-type'), describeReply(r)).to.equal(contentType);
    expect(header(r, 'docker-content-digest'), describeReply(r)).to.equal(m.digest);
    expect(header(r, 'content-length'), describeReply(r)).to.equal(String(m.size));
    if (!r.request.startsWith('HEAD ')) {
      expect(sha256(r.body), `digest of the body of ${r.request}`).to.equal(m.digest);
      expect(r.text()).to.equal(m.bytes.toString());
    }
  };

  describe('endpoints', function () {
    describe('GET /v2/', function () {
      it('is 200 with Docker-Distribution-API-Version: registry/2.0', async () => {
        const r = await oci().get('/v2/');
        expectStatus(r, 200);
        expect(header(r, 'docker-distribution-api-version'), describeReply(r)).to.equal('registry/2.0');
      });

      it('GET /v2 without the slash is sent there (301), as Distribution does', async () => {
        const r = await oci().get('/v2', { redirect: 'manual' });
        expectStatus(r, 301);
        expect(new URL(header(r, 'location') ?? '', ctx.target.url).pathname, describeReply(r)).to.equal('/v2/');
      });
    });

    describe('blobs: GET, HEAD, Range, DELETE', function () {
      const repo = `${ns}/blobs`;
      const blob = content(randomBlob(1000));
      before(async () => { await oci().pushBlob(repo, blob); });

      it('GET returns the exact bytes with Content-Length, Docker-Content-Digest and ETag (or 307 to storage)', async () => {
        const first = await oci().get(`/v2/${repo}/blobs/${blob.digest}`, { redirect: 'manual' });
        expectStatus(first, 200, 307);
        expect(header(first, 'docker-content-digest'), describeReply(first)).to.equal(blob.digest);
        if (first.status === 307) expect(header(first, 'location'), describeReply(first)).to.match(/^https?:\/\//);
        else expect(header(first, 'etag'), describeReply(first)).to.be.a('string').and.not.equal('');
        const r = await oci().getBlob(repo, blob.digest);
        expectStatus(r, 200);
        expect(sha256(r.body)).to.equal(blob.digest);
        expect(header(r, 'content-length'), describeReply(r)).to.equal('1000');
      });

      it('HEAD answers 200 with Content-Length, Docker-Content-Digest and ETag', async () => {
        const r = await oci().headBlob(repo, blob.digest);
        expectStatus(r, 200);
        expect(header(r, 'content-length'), describeReply(r)).to.equal('1000');
        expect(header(r, 'docker-content-digest'), describeReply(r)).to.equal(blob.digest);
        expect(header(r, 'etag'), describeReply(r)).to.be.a('string').and.not.equal('');
      });

      it('an unknown blob is 404 BLOB_UNKNOWN (HEAD: 404)', async () => {
        const unknown = sha256(randomBlob(16));
        expectOciError(await oci().getBlob(repo, unknown), 404, 'BLOB_UNKNOWN');
        expectStatus(await oci().headBlob(repo, unknown), 404);
      });

      it('a blob pushed to one repository is not readable through another', async () => {
        const other = `${ns}/blobs-other`;
        await oci().pushBlob(other, content(randomBlob(10)));
        expectOciError(await oci().getBlob(other, blob.digest), 404, 'BLOB_UNKNOWN');
        expectStatus(await oci().headBlob(other, blob.digest), 404);
      });

      it('Range: bytes=0-9 is 206 with Content-Range and the first 10 bytes', async () => {
        const r = await oci().getBlob(repo, blob.digest, { Range: 'bytes=0-9' });
        expectStatus(r, 206);
        expect(header(r, 'content-range'), describeReply(r)).to.equal('bytes 0-9/1000');
        expect(header(r, 'content-length'), describeReply(r)).to.equal('10');
        expect(r.body.equals(blob.bytes.subarray(0, 10))).to.equal(true);
      });

      it('Range: bytes=990- (open-ended) is 206 with the last 10 bytes', async () => {
        const r = await oci().getBlob(repo, blob.digest, { Range: 'bytes=990-' });
        expectStatus(r, 206);
        expect(header(r, 'content-range'), describeReply(r)).to.equal('bytes 990-999/1000');
        expect(r.body.equals(blob.bytes.subarray(990))).to.equal(true);
      });

      it('Range: bytes=-5 (suffix) is 206 with the last 5 bytes', async () => {
        const r = await oci().getBlob(repo, blob.digest, { Range: 'bytes=-5' });
        expectStatus(r, 206);
        expect(header(r, 'content-range'), describeReply(r)).to.equal('bytes 995-999/1000');
        expect(r.body.equals(blob.bytes.subarray(995))).to.equal(true);
      });

      it('an unsatisfiable Range is 416', async () => {
        expectStatus(await oci().getBlob(repo, blob.digest, { Range: 'bytes=1000-' }), 416);
        expectStatus(await oci().getBlob(repo, blob.digest, { Range: 'bytes=2000-3000' }), 416);
      });

      it('a zero-length blob can be pushed and read', async () => {
        const empty = content(Buffer.alloc(0));
        await oci().pushBlob(repo, empty);
        const r = await oci().getBlob(repo, empty.digest);
        expectStatus(r, 200);
        expect(r.body.length).to.equal(0);
        const head = await oci().headBlob(repo, empty.digest);
        expect(header(head, 'docker-content-digest'), describeReply(head)).to.equal(empty.digest);
      });

      it('DELETE is 202; then HEAD is 404 and GET and DELETE are 404 BLOB_UNKNOWN', async () => {
        const victim = content(randomBlob(100));
        await oci().pushBlob(repo, victim);
        expectStatus(await oci().delete(`/v2/${repo}/blobs/${victim.digest}`), 202);
        expectStatus(await oci().headBlob(repo, victim.digest), 404);
        expectOciError(await oci().getBlob(repo, victim.digest), 404, 'BLOB_UNKNOWN');
        expectOciError(await oci().delete(`/v2/${repo}/blobs/${victim.digest}`), 404, 'BLOB_UNKNOWN');
      });

      it('DELETE in one repository leaves the same blob readable in another', async () => {
        const shared = content(randomBlob(100));
        const other = `${ns}/blobs-keep`;
        await oci().pushBlob(repo, shared);
        await oci().pushBlob(other, shared);
        expectStatus(await oci().delete(`/v2/${repo}/blobs/${shared.digest}`), 202);
        const r = await oci().getBlob(other, shared.digest);
        expectStatus(r, 200);
        expect(sha256(r.body)).to.equal(shared.digest);
      });
    });

    describe('uploads', function () {
      const repo = `${ns}/uploads`;
      let chunkSize = 1024;

      it('POST starts a session: 202, Location, Docker-Upload-UUID, OCI-Chunk-Min-Length', async () => {
        const r = await oci().startUpload(repo, { headers: { 'Content-Length': '0' } });
        expectStatus(r, 202);
        const location = header(r, 'location');
        const uuid = header(r, 'docker-upload-uuid');
        expect(location, describeReply(r)).to.be.a('string').and.not.equal('');
        expect(uuid, describeReply(r)).to.be.a('string').and.not.equal('');
        expect(location, 'the Location contains the session id').to.include(uuid as string);
        expect(pathOf(location as string)).to.match(new RegExp(`^/v2/${repo}/blobs/uploads/`));
        const min = header(r, 'oci-chunk-min-length');
        expect(min, `${describeReply(r)}: OCI-Chunk-Min-Length`).to.match(/^\d+$/);
        chunkSize = Math.max(chunkSize, Number(min));
        const again = await oci().startUpload(repo, { headers: { 'Content-Length': '0' } });
        expect(header(again, 'docker-upload-uuid'), 'two sessions have different ids').to.not.equal(uuid);
      });

      it('POST ?digest= with the blob (single-request monolithic push) is 201 with the blob Location', async () => {
        const blob = content(randomBlob(300));
        const r = await oci().startUpload(repo, { query: { digest: blob.digest }, headers: { 'Content-Type': 'application/octet-stream' }, body: blob.bytes });
        expectStatus(r, 201);
        expect(pathOf(header(r, 'location') ?? '')).to.equal(`/v2/${repo}/blobs/${blob.digest}`);
        expect(header(r, 'docker-content-digest'), describeReply(r)).to.equal(blob.digest);
        const got = await oci().getBlob(repo, blob.digest);
        expectStatus(got, 200);
        expect(got.body.equals(blob.bytes)).to.equal(true);
      });

      it('POST then PUT with the blob is 201; the Location serves the blob', async () => {
        const blob = content(randomBlob(300));
        const { location } = await oci().openSession(repo);
        const r = await oci().closeUpload(location, blob.digest, blob.bytes);
        expectStatus(r, 201);
        expect(header(r, 'docker-content-digest'), describeReply(r)).to.equal(blob.digest);
        const got = await oci().get(header(r, 'location') ?? '/no-location');
        expectStatus(got, 200);
        expect(got.body.equals(blob.bytes)).to.equal(true);
      });

      it('chunked PATCHes with Content-Range answer 202 with Range and Location; PUT completes', async () => {
        const blob = content(randomBlob(chunkSize * 2 + 100));
        let { location } = await oci().openSession(repo);
        for (let start = 0; start < blob.size; start += chunkSize) {
          const chunk = blob.bytes.subarray(start, Math.min(start + chunkSize, blob.size));
          const r = await oci().patchChunk(location, chunk, { start });
          expectStatus(r, 202);
          expect(header(r, 'range'), describeReply(r)).to.equal(`0-${start + chunk.length - 1}`);
          expect(header(r, 'location'), describeReply(r)).to.be.a('string').and.not.equal('');
          location = header(r, 'location') as string;
        }
        const r = await oci().closeUpload(location, blob.digest);
        expectStatus(r, 201);
        const got = await oci().getBlob(repo, blob.digest);
        expect(sha256(got.body)).to.equal(blob.digest);
      });

      it('the last chunk may come in the closing PUT', async () => {
        const blob = content(randomBlob(chunkSize + 500));
        const { location } = await oci().openSession(repo);
        const first = blob.bytes.subarray(0, chunkSize);
        const patched = await oci().patchChunk(location, first, { start: 0 });
        expectStatus(patched, 202);
        const rest = blob.bytes.subarray(chunkSize);
        const r = await oci().closeUpload(header(patched, 'location') ?? location, blob.digest, rest, {
          'Content-Range': `${chunkSize}-${blob.size - 1}`,
        });
        expectStatus(r, 201);
        const got = await oci().getBlob(repo, blob.digest);
        expect(sha256(got.body)).to.equal(blob.digest);
      });

      it('streamed PATCHes without Content-Range append (202, Range 0-N); a body-less PUT completes', async () => {
        const part1 = randomBlob(700);
        const part2 = randomBlob(300);
        const blob = content(Buffer.concat([part1, part2]));
        const { location } = await oci().openSession(repo);
        const r1 = await oci().patchChunk(location, part1);
        expectStatus(r1, 202);
        expect(header(r1, 'range'), describeReply(r1)).to.equal('0-699');
        const r2 = await oci().patchChunk(header(r1, 'location') ?? location, part2);
        expectStatus(r2, 202);
        expect(header(r2, 'range'), describeReply(r2)).to.equal('0-999');
        const put = await oci().closeUpload(header(r2, 'location') ?? location, blob.digest);
        expectStatus(put, 201);
        const got = await oci().getBlob(repo, blob.digest);
        expect(got.body.equals(blob.bytes)).to.equal(true);
      });

      it('GET of a session is 204 with Location, Range and Docker-Upload-UUID', async () => {
        const { location, reply } = await oci().openSession(repo);
        const fresh = await oci().get(location);
        expectStatus(fresh, 204);
        expect(header(fresh, 'location'), describeReply(fresh)).to.be.a('string').and.not.equal('');
        const patched = await oci().patchChunk(location, randomBlob(123));
        expectStatus(patched, 202);
        const r = await oci().get(header(patched, 'location') ?? location);
        expectStatus(r, 204);
        expect(header(r, 'range'), describeReply(r)).to.equal('0-122');
        expect(header(r, 'location'), describeReply(r)).to.be.a('string').and.not.equal('');
        expect(header(r, 'docker-upload-uuid'), describeReply(r)).to.equal(header(reply, 'docker-upload-uuid'));
      });

      it('DELETE cancels a session (204); then GET, PATCH and PUT are 404 BLOB_UPLOAD_UNKNOWN', async () => {
        const { location } = await oci().openSession(repo);
        const data = randomBlob(50);
        expectStatus(await oci().patchChunk(location, data), 202);
        expectStatus(await oci().delete(location), 204);
        expectOciError(await oci().get(location), 404, 'BLOB_UPLOAD_UNKNOWN');
        expectOciError(await oci().patchChunk(location, data), 404, 'BLOB_UPLOAD_UNKNOWN');
        expectOciError(await oci().closeUpload(location, sha256(data)), 404, 'BLOB_UPLOAD_UNKNOWN');
        expectStatus(await oci().headBlob(repo, sha256(data)), 404);
      });

      it('a completed session is gone: GET of its Location is 404 BLOB_UPLOAD_UNKNOWN', async () => {
        const blob = content(randomBlob(64));
        const { location } = await oci().openSession(repo);
        expectStatus(await oci().closeUpload(location, blob.digest, blob.bytes), 201);
        expectOciError(await oci().get(location), 404, 'BLOB_UPLOAD_UNKNOWN');
      });

      describe('cross-repository mount', function () {
        const from = `${ns}/mount-from`;
        const blob = content(randomBlob(200));
        before(async () => { await oci().pushBlob(from, blob); });

        it('mount with from: 201, Location of the blob in the target, then readable there', async () => {
          const to = `${ns}/mount-to`;
          expectStatus(await oci().headBlob(to, blob.digest), 404);
          const r = await oci().startUpload(to, { query: { mount: blob.digest, from } });
          expectStatus(r, 201);
          expect(pathOf(header(r, 'location') ?? '')).to.equal(`/v2/${to}/blobs/${blob.digest}`);
          expect(header(r, 'docker-content-digest'), describeReply(r)).to.equal(blob.digest);
          const got = await oci().getBlob(to, blob.digest);
          expectStatus(got, 200);
          expect(got.body.equals(blob.bytes)).to.equal(true);
        });

        it('mount without from (automatic cross-mount): 201, then readable', async () => {
          const to = `${ns}/mount-auto`;
          const r = await oci().startUpload(to, { query: { mount: blob.digest } });
          expectStatus(r, 201);
          expect(pathOf(header(r, 'location') ?? '')).to.equal(`/v2/${to}/blobs/${blob.digest}`);
          const got = await oci().getBlob(to, blob.digest);
          expectStatus(got, 200);
          expect(got.body.equals(blob.bytes)).to.equal(true);
        });

        it('mount of an unknown blob falls back to a session (202) that works', async () => {
          const to = `${ns}/mount-fallback`;
          const missing = content(randomBlob(80));
          for (const query of [{ mount: missing.digest, from }, { mount: missing.digest }]) {
            const r = await oci().startUpload(to, { query });
            expectStatus(r, 202);
            const location = header(r, 'location') ?? '';
            expect(pathOf(location), describeReply(r)).to.match(new RegExp(`^/v2/${to}/blobs/uploads/`));
            expect(header(r, 'docker-upload-uuid'), describeReply(r)).to.be.a('string').and.not.equal('');
            if (query.from === undefined) {
              expectStatus(await oci().closeUpload(location, missing.digest, missing.bytes), 201);
              expectStatus(await oci().headBlob(to, missing.digest), 200);
            }
          }
        });
      });
    });

    describe('manifests', function () {
      const repo = `${ns}/manifests`;

      /** Pushes blobs, PUTs by tag (201, Location, Docker-Content-Digest), then reads back by tag and digest. */
      const roundTrip = async (m: Content, tag: string, blobs: Content[]) => {
        for (const b of blobs) await oci().pushBlob(repo, b);
        const put = await oci().putManifest(repo, tag, m);
        expectStatus(put, 201);
        expect(header(put, 'docker-content-digest'), describeReply(put)).to.equal(m.digest);
        expect(header(put, 'location'), describeReply(put)).to.be.a('string').and.not.equal('');
        expectManifest(await oci().getManifest(repo, tag), m);
        expectManifest(await oci().getManifest(repo, m.digest), m);
        expectManifest(await oci().headManifest(repo, tag), m);
        expectManifest(await oci().headManifest(repo, m.digest), m);
        expectManifest(await oci().getManifest(repo, tag, m.mediaType), m);
      };

      it('OCI image manifest (tab-indented, unknown fields, data field) round-trips byte for byte', async () => {
        const config = imageConfig();
        const layers = [gzipLayer(), gzipLayer()];
        const m = imageManifest({
          config: descriptorOf(config, { data: config.bytes.toString('base64'), newUnspecifiedField: 'aGVsbG8=' }),
          layers: layers.map((l) => descriptorOf(l, { annotations: { 'org.example.layer': 'x' } })),
          annotations: { 'org.opencontainers.image.created': '2026-01-01T00:00:00Z' },
          extra: { 'x-unknown-top-level': { nested: [1, 2, 3] } },
        });
        await roundTrip(m, 'oci-manifest', [config, ...layers]);
      });

      it('OCI image manifest without a mediaType field and without layers', async () => {
        const config = imageConfig();
        const m = imageManifest({ mediaType: null, contentType: MediaType.ociManifest, config: descriptorOf(config), layers: [] });
        await roundTrip(m, 'oci-no-mediatype', [config]);
      });

      it('whitespace and key order are preserved exactly (compact, CRLF, trailing spaces)', async () => {
        const config = imageConfig();
        const layer = gzipLayer();
        const compact = imageManifest({ config: descriptorOf(config), layers: [descriptorOf(layer)], indent: 0 });
        await roundTrip(compact, 'compact', [config, layer]);
        const odd = content(
          `{\r\n  "layers" : [ ${JSON.stringify(descriptorOf(layer))} ] ,\r\n  "config":${JSON.stringify(descriptorOf(config))},  \r\n` +
          `  "mediaType": "${MediaType.ociManifest}", "schemaVersion"  :  2\r\n}\r\n\r\n`,
          MediaType.ociManifest,
        );
        await roundTrip(odd, 'odd-whitespace', []);
      });

      it('OCI image index of two platforms', async () => {
        const amd = await oci().pushImage(repo, undefined, { architecture: 'amd64' });
        const arm = await oci().pushImage(repo, undefined, { architecture: 'arm64' });
        const m = indexManifest({
          manifests: [
            descriptorOf(amd.manifest, { platform: { architecture: 'amd64', os: 'linux' } }),
            descriptorOf(arm.manifest, { platform: { architecture: 'arm64', os: 'linux', variant: 'v8' } }),
          ],
          annotations: { 'org.opencontainers.image.ref.name': 'multi' },
        });
        await roundTrip(m, 'oci-index', []);
      });

      it('Docker schema 2 manifest', async () => {
        const config = imageConfig({ mediaType: MediaType.dockerConfig });
        const layer = gzipLayer(256, MediaType.dockerLayerGzip);
        const m = imageManifest({ mediaType: MediaType.dockerManifest, config: descriptorOf(config), layers: [descriptorOf(layer)], indent: 3 });
        await roundTrip(m, 'docker-v2', [config, layer]);
      });

      it('Docker manifest list', async () => {
        const amd = await oci().pushImage(repo, undefined, { docker: true, architecture: 'amd64' });
        const arm = await oci().pushImage(repo, undefined, { docker: true, architecture: 'arm' });
        const m = indexManifest({
          mediaType: MediaType.dockerManifestList,
          manifests: [
            descriptorOf(amd.manifest, { platform: { architecture: 'amd64', os: 'linux' } }),
            descriptorOf(arm.manifest, { platform: { architecture: 'arm', os: 'linux', variant: 'v7' } }),
          ],
          indent: 3,
        });
        await roundTrip(m, 'docker-list', []);
      });

      it('artifact manifest (artifactType, empty config)', async () => {
        const layer = content('{"sbom":true}', 'application/spdx+json');
        const { manifest, blobs } = artifactManifest({ artifactType: 'application/vnd.example.sbom.v1', layer, annotations: { 'org.example.kind': 'sbom' } });
        await roundTrip(manifest, 'artifact', blobs);
      });

      it('BuildKit cache as an image manifest (config application/vnd.buildkit.cacheconfig.v0)', async () => {
        const cacheConfig = content(JSON.stringify({ layers: [{ blob: sha256('x') }], records: [{ digest: sha256('y') }] }), MediaType.buildkitCacheConfig);
        const layers = [gzipLayer(), gzipLayer()];
        const m = imageManifest({ config: descriptorOf(cacheConfig), layers: layers.map((l) => descriptorOf(l, { annotations: { 'buildkit/createdat': '2026-01-01T00:00:00Z' } })) });
        await roundTrip(m, 'buildcache-manifest', [cacheConfig, ...layers]);
      });

      it('BuildKit cache as an index whose entries are layer blobs and the cache config', async () => {
        const cacheConfig = content(JSON.stringify({ layers: [], records: [{ digest: sha256(randomHex()) }] }), MediaType.buildkitCacheConfig);
        const layers = [gzipLayer(), gzipLayer()];
        const m = indexManifest({ manifests: [...layers.map((l) => descriptorOf(l)), descriptorOf(cacheConfig)] });
        await roundTrip(m, 'buildcache', [cacheConfig, ...layers]);
      });

      it('PUT by digest is 201 and readable by digest', async () => {
        const config = imageConfig();
        const m = imageManifest({ config: descriptorOf(config), layers: [] });
        await oci().pushBlob(repo, config);
        const r = await oci().putManifest(repo, m.digest, m);
        expectStatus(r, 201);
        expect(pathOf(header(r, 'location') ?? '')).to.equal(`/v2/${repo}/manifests/${m.digest}`);
        expect(header(r, 'docker-content-digest')).to.equal(m.digest);
        expectManifest(await oci().getManifest(repo, m.digest), m);
      });

      it('re-tagging moves the tag; the old manifest stays readable by digest', async () => {
        const a = await oci().pushImage(repo, 'moving');
        const b = await oci().pushImage(repo, 'moving');
        expectManifest(await oci().getManifest(repo, 'moving'), b.manifest);
        expectManifest(await oci().getManifest(repo, a.manifest.digest), a.manifest);
      });

      it('several components, dots and dashes: ddn-k8s/docker.io/langgenius/dify-api:1.12.1-linuxarm64', async () => {
        const name = 'ddn-k8s/docker.io/langgenius/dify-api';
        const image = await oci().pushImage(name, '1.12.1-linuxarm64', { architecture: 'arm64' });
        expectManifest(await oci().getManifest(name, '1.12.1-linuxarm64'), image.manifest);
        const tags = await oci().tags(name);
        expectStatus(tags, 200);
        expect(tags.json<TagList>().name).to.equal(name);
        expect(tags.json<TagList>().tags).to.include('1.12.1-linuxarm64');
        const odd = `${ns}/a.b_c__d-e--f/x0`;
        const image2 = await oci().pushImage(odd, 'v1.0_rc-1');
        expectManifest(await oci().getManifest(odd, 'v1.0_rc-1'), image2.manifest);
      });

      it('an unknown manifest is 404 MANIFEST_UNKNOWN by tag and by digest; an unknown repository 404', async () => {
        expectOciError(await oci().getManifest(repo, 'no-such-tag'), 404, 'MANIFEST_UNKNOWN');
        expectOciError(await oci().getManifest(repo, sha256(randomHex())), 404, 'MANIFEST_UNKNOWN');
        expectStatus(await oci().headManifest(repo, 'no-such-tag'), 404);
        expectOciError(await oci().getManifest(`${ns}/never-pushed`, 'latest'), 404, ['NAME_UNKNOWN', 'MANIFEST_UNKNOWN']);
      });

      it('DELETE by digest is 202; the manifest and every tag on it are then 404 MANIFEST_UNKNOWN', async () => {
        const image = await oci().pushImage(repo, 'del-a');
        expectStatus(await oci().putManifest(repo, 'del-b', image.manifest), 201);
        const keep = await oci().pushImage(repo, 'del-keep');
        expectStatus(await oci().delete(`/v2/${repo}/manifests/${image.manifest.digest}`), 202);
        expectOciError(await oci().getManifest(repo, image.manifest.digest), 404, 'MANIFEST_UNKNOWN');
        expectStatus(await oci().headManifest(repo, image.manifest.digest), 404);
        expectOciError(await oci().getManifest(repo, 'del-a'), 404, 'MANIFEST_UNKNOWN');
        expectOciError(await oci().getManifest(repo, 'del-b'), 404, 'MANIFEST_UNKNOWN');
        const tags = (await oci().tags(repo)).json<TagList>().tags ?? [];
        expect(tags).to.not.include('del-a');
        expect(tags).to.not.include('del-b');
        expect(tags).to.include('del-keep');
        expectManifest(await oci().getManifest(repo, 'del-keep'), keep.manifest);
        expectOciError(await oci().delete(`/v2/${repo}/manifests/${image.manifest.digest}`), 404, 'MANIFEST_UNKNOWN');
      });

      it('DELETE of a tag is 202; only that tag is gone, the manifest and its other tags remain', async () => {
        const image = await oci().pushImage(repo, 'tag-del-1');
        expectStatus(await oci().putManifest(repo, 'tag-del-2', image.manifest), 201);
        expectStatus(await oci().delete(`/v2/${repo}/manifests/tag-del-1`), 202);
        expectOciError(await oci().getManifest(repo, 'tag-del-1'), 404, 'MANIFEST_UNKNOWN');
        expectManifest(await oci().getManifest(repo, 'tag-del-2'), image.manifest);
        expectManifest(await oci().getManifest(repo, image.manifest.digest), image.manifest);
        const tags = (await oci().tags(repo)).json<TagList>().tags ?? [];
        expect(tags).to.not.include('tag-del-1');
        expect(tags).to.include('tag-del-2');
        expectOciError(await oci().delete(`/v2/${repo}/manifests/tag-del-1`), 404, 'MANIFEST_UNKNOWN');
      });
    });

    describe('tags list', function () {
      const repo = `${ns}/tags`;
      const pushed = ['v2', '1.0', 'alpha', 'latest', 'beta', '1.1', '0.9-rc.1'];
      const sorted = [...pushed].sort();
      before(async () => {
        const image = await oci().pushImage(repo, pushed[0]);
        for (const t of pushed.slice(1)) expectStatus(await oci().putManifest(repo, t, image.manifest), 201);
      });

      it('lists every tag, sorted, with the repository name', async () => {
        const r = await oci().tags(repo);
        expectStatus(r, 200);
        expect(r.json<TagList>()).to.deep.equal({ name: repo, tags: sorted });
      });

      it('n limits the page and a Link header (rel="next") points to the next page', async () => {
        const r = await oci().tags(repo, { n: 2 });
        expectStatus(r, 200);
        expect(r.json<TagList>().tags, describeReply(r)).to.deep.equal(sorted.slice(0, 2));
        const link = header(r, 'link');
        expect(link, `${describeReply(r)}: no Link`).to.be.a('string');
        expect(link).to.match(/^<[^>]+>;\s*rel="next"$/);
        const next = new URL(nextLink(r) as string, 'http://x');
        expect(next.pathname).to.equal(`/v2/${repo}/tags/list`);
        expect(next.searchParams.get('n')).to.equal('2');
        expect(next.searchParams.get('last')).to.equal(sorted[1]);
      });

      it('following Link pages through every tag exactly once', async () => {
        const seen: string[] = [];
        let path: string | undefined = `/v2/${repo}/tags/list?n=3`;
        for (let pages = 0; path && pages < 10; pages++) {
          const r = await oci().get(path);
          expectStatus(r, 200);
          const page = r.json<TagList>().tags ?? [];
          expect(page.length, describeReply(r)).to.be.at.most(3);
          seen.push(...page);
          path = nextLink(r);
        }
        expect(seen).to.deep.equal(sorted);
      });

      it('last starts after the given tag, with and without n', async () => {
        let r = await oci().tags(repo, { last: 'beta' });
        expectStatus(r, 200);
        expect(r.json<TagList>().tags).to.deep.equal(sorted.slice(sorted.indexOf('beta') + 1));
        r = await oci().tags(repo, { n: 2, last: '1.0' });
        expect(r.json<TagList>().tags).to.deep.equal(sorted.slice(sorted.indexOf('1.0') + 1, sorted.indexOf('1.0') + 3));
        r = await oci().tags(repo, { n: 2, last: sorted[sorted.length - 1] });
        expectStatus(r, 200);
        expect(r.json<TagList>().tags ?? []).to.deep.equal([]);
        expect(header(r, 'link'), describeReply(r)).to.equal(null);
      });

      it('n=0 returns an empty list and no Link; n above the count returns all and no Link', async () => {
        let r = await oci().tags(repo, { n: 0 });
        expectStatus(r, 200);
        expect(r.json<TagList>().tags ?? [], describeReply(r)).to.deep.equal([]);
        expect(header(r, 'link'), describeReply(r)).to.equal(null);
        r = await oci().tags(repo, { n: 100 });
        expectStatus(r, 200);
        expect(r.json<TagList>().tags).to.deep.equal(sorted);
        expect(header(r, 'link'), describeReply(r)).to.equal(null);
      });

      it('an unknown repository is 404 NAME_UNKNOWN', async () => {
        expectOciError(await oci().tags(`${ns}/no-such-repo`), 404, 'NAME_UNKNOWN');
      });
    });

    describe('referrers', function () {
      const repo = `${ns}/referrers`;
      const other = `${ns}/referrers-other`;
      const sbomType = 'application/vnd.example.sbom.v1';
      const sigConfigType = 'application/vnd.example.signature.config.v1+json';
      const bundleType = 'application/vnd.example.bundle.v1';
      let subject: Content;
      let later: Content;
      let laterConfig: Content;
      const pushed: Record<string, { manifest: Content; expected: Descriptor }> = {};
      const entry = (key: string) => {
        const e = pushed[key];
        if (!e) throw new Error(`"${key}" was not pushed: the PUT step above failed`);
        return e;
      };

      const expectReferrers = async (digest: string, expected: Descriptor[], query?: Record<string, string>) => {
        const r = await oci().referrers(repo, digest, query);
        expectStatus(r, 200);
        expect(header(r, 'content-type'), describeReply(r)).to.equal(MediaType.ociIndex);
        const index = r.json<IndexDoc>();
        expect(index.schemaVersion, r.text()).to.equal(2);
        expect(index.mediaType, r.text()).to.equal(MediaType.ociIndex);
        expect(index.manifests, r.text()).to.be.an('array');
        const byDigest = (a: Descriptor, b: Descriptor) => (a.digest < b.digest ? -1 : 1);
        expect([...(index.manifests ?? [])].sort(byDigest), r.text()).to.deep.equal([...expected].sort(byDigest));
        return r;
      };

      before(async () => {
        subject = (await oci().pushImage(repo, 'subject')).manifest;
      });

      it('PUT of manifests and indexes with a subject answers 201 and OCI-Subject', async () => {
        const s = descriptorOf(subject);
        const sbom = artifactManifest({ subject: s, artifactType: sbomType, layer: content('{"spdx":1}', 'application/spdx+json'), annotations: { 'org.example.kind': 'sbom', 'org.opencontainers.image.created': '2026-01-01T00:00:00Z' } });
        const sig = artifactManifest({ subject: s, configMediaType: sigConfigType, layer: content('signature', 'application/vnd.example.signature.v1'), annotations: { 'org.example.kind': 'sig' } });
        for (const b of [...sbom.blobs, ...sig.blobs]) await oci().pushBlob(repo, b);
        const bundle = indexManifest({ artifactType: bundleType, manifests: [descriptorOf(sbom.manifest)], subject: s, annotations: { 'org.example.kind': 'bundle' } });
        const plainIndex = indexManifest({ manifests: [], subject: s, annotations: { 'org.example.kind': 'plain-index' } });
        // A referrer pushed before its subject exists must be accepted.
        laterConfig = imageConfig();
        const laterImage = imageManifest({ config: descriptorOf(laterConfig), layers: [] });
        const early = artifactManifest({ subject: descriptorOf(laterImage), artifactType: sbomType, layer: content('early', 'text/plain') });
        for (const b of early.blobs) await oci().pushBlob(repo, b);
        later = laterImage;

        const entries: Array<[string, Content, Descriptor, string]> = [
          ['sbom', sbom.manifest, { mediaType: MediaType.ociManifest, digest: sbom.manifest.digest, size: sbom.manifest.size, artifactType: sbomType, annotations: { 'org.example.kind': 'sbom', 'org.opencontainers.image.created': '2026-01-01T00:00:00Z' } }, subject.digest],
          ['sig', sig.manifest, { mediaType: MediaType.ociManifest, digest: sig.manifest.digest, size: sig.manifest.size, artifactType: sigConfigType, annotations: { 'org.example.kind': 'sig' } }, subject.digest],
          ['bundle', bundle, { mediaType: MediaType.ociIndex, digest: bundle.digest, size: bundle.size, artifactType: bundleType, annotations: { 'org.example.kind': 'bundle' } }, subject.digest],
          ['plainIndex', plainIndex, { mediaType: MediaType.ociIndex, digest: plainIndex.digest, size: plainIndex.size, annotations: { 'org.example.kind': 'plain-index' } }, subject.digest],
          ['early', early.manifest, { mediaType: MediaType.ociManifest, digest: early.manifest.digest, size: early.manifest.size, artifactType: sbomType }, laterImage.digest],
        ];
        const missingSubject: string[] = [];
        for (const [key, manifest, expected, subjectDigest] of entries) {
          const tag = `ref-${key.toLowerCase()}`;
          const r = await oci().putManifest(repo, key === 'sig' ? manifest.digest : tag, manifest);
          expectStatus(r, 201);
          pushed[key] = { manifest, expected };
          if (header(r, 'oci-subject') !== subjectDigest) missingSubject.push(`${describeReply(r)}: expected OCI-Subject: ${subjectDigest}`);
        }
        expect(missingSubject, missingSubject.join('\n')).to.deep.equal([]);
      });

      it('GET lists every referrer as an OCI index with mediaType, size, artifactType and annotations', async () => {
        await expectReferrers(subject.digest, ['sbom', 'sig', 'bundle', 'plainIndex'].map((k) => entry(k).expected));
      });

      it('?artifactType= filters and answers OCI-Filters-Applied: artifactType', async () => {
        let r = await expectReferrers(subject.digest, [entry('sbom').expected], { artifactType: sbomType });
        expect(header(r, 'oci-filters-applied'), describeReply(r)).to.equal('artifactType');
        r = await expectReferrers(subject.digest, [entry('sig').expected], { artifactType: sigConfigType });
        expect(header(r, 'oci-filters-applied'), describeReply(r)).to.equal('artifactType');
        r = await expectReferrers(subject.digest, [], { artifactType: 'application/vnd.example.none' });
        expect(header(r, 'oci-filters-applied'), describeReply(r)).to.equal('artifactType');
      });

      it('a digest without referrers gets an empty index (200)', async () => {
        await expectReferrers(sha256(randomHex()), []);
      });

      it('a referrer pushed before its subject is listed, before and after the subject arrives', async () => {
        const expected = [entry('early').expected];
        await expectReferrers(later.digest, expected);
        await oci().pushManifest(repo, later.digest, later, [laterConfig]);
        await expectReferrers(later.digest, expected);
      });

      it('referrers in another repository are not listed', async () => {
        const s = descriptorOf(subject);
        const foreign = artifactManifest({ subject: s, artifactType: sbomType, layer: content('foreign', 'text/plain') });
        for (const b of foreign.blobs) await oci().pushBlob(other, b);
        const r = await oci().putManifest(other, 'foreign', foreign.manifest);
        expectStatus(r, 201);
        await expectReferrers(subject.digest, ['sbom', 'sig', 'bundle', 'plainIndex'].map((k) => entry(k).expected));
      });

      it('a deleted referrer is no longer listed', async () => {
        const sbom = entry('sbom');
        expectStatus(await oci().delete(`/v2/${repo}/manifests/${sbom.manifest.digest}`), 202);
        await expectReferrers(subject.digest, ['sig', 'bundle', 'plainIndex'].map((k) => entry(k).expected));
      });
    });

    describe('catalog', function () {
      const repos = [`${ns}/cat-a`, `${ns}/cat-b`, `${ns}/cat-c`];
      before(async () => {
        for (const r of repos) await oci().pushImage(r, 'latest');
      });

      const fetchAll = async (n: number): Promise<string[]> => {
        const seen: string[] = [];
        let path: string | undefined = `/v2/_catalog?n=${n}`;
        for (let pages = 0; path && pages < 1000; pages++) {
          const r = await oci().get(path);
          expectStatus(r, 200);
          const page = r.json<{ repositories: string[] }>().repositories;
          expect(page, describeReply(r)).to.be.an('array');
          expect(page.length, describeReply(r)).to.be.at.most(n);
          seen.push(...page);
          path = nextLink(r);
        }
        return seen;
      };

      it('GET /v2/_catalog lists repositories, including multi-component names', async () => {
        const r = await oci().catalog();
        expectStatus(r, 200);
        const list = r.json<{ repositories: string[] }>().repositories;
        expect(list).to.include.members([...repos, 'ddn-k8s/docker.io/langgenius/dify-api']);
        const ours = list.filter((x) => repos.includes(x));
        expect(ours).to.deep.equal(repos);
        expect(new Set(list).size).to.equal(list.length);
      });

      it('n limits the page and Link pages through every repository once', async () => {
        const r = await oci().catalog({ n: 2 });
        expectStatus(r, 200);
        expect(r.json<{ repositories: string[] }>().repositories).to.have.length(2);
        expect(header(r, 'link'), describeReply(r)).to.match(/^<[^>]+>;\s*rel="next"$/);
        const all = (await oci().catalog()).json<{ repositories: string[] }>().repositories;
        expect(await fetchAll(2)).to.deep.equal(all);
      });

      it('last starts after the given repository', async () => {
        const r = await oci().catalog({ n: 2, last: repos[0] });
        expectStatus(r, 200);
        expect(r.json<{ repositories: string[] }>().repositories).to.deep.equal(repos.slice(1));
      });
    });
  });
}

for (const factory of suiteTargets()) protocolSuite(factory);
