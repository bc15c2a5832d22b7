// Bad input gets a clear OCI JSON error with the right status, never a 500, and never leaves partial
// content visible: invalid names, digests and tags, wrong digests, truncated bodies, wrong
// Content-Range, invalid manifests, concurrent pushes, and a registry killed in the middle of an upload.
//
// A suite of a TargetFactory (test/helpers/targets.ts), like the protocol suite.
import http from 'node:http';
import { createHash } from 'node:crypto';
import { readdir, stat, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'chai';
import {
  MediaType,
  OciClient,
  content,
  describeReply,
  descriptorOf,
  expectNoServerError,
  expectOciError,
  expectStatus,
  gzipLayer,
  imageConfig,
  imageManifest,
  indexManifest,
  pathOf,
  randomBlob,
  randomHex,
  rawRequest,
  sha256,
  sleep,
  stalledRequest,
  truncatedRequest,
  uniqueNamespace,
  type Content,
  type Reply,
} from '../helpers/oci.js';
import { filesystemTarget, suiteTargets, type RegistryTarget, type TargetFactory } from '../helpers/targets.js';

interface Ctx {
  oci: OciClient;
  target: RegistryTarget;
}

/** Collects every unexpected answer of a batch of requests, so that one failure lists them all. */
class Problems {
  readonly list: string[] = [];
  check(reply: Reply, ok: boolean, expected: string): void {
    if (!ok) this.list.push(`${describeReply(reply)}\n      expected ${expected}`);
  }
  /** Expects one of `statuses`; for a 400 (and for 404 when `json404`) an OCI error body with one of `codes`. */
  error(reply: Reply, statuses: number[], codes400: string[] | null, opts: { json404?: boolean } = {}): void {
    const expected = `${statuses.join(' or ')}${codes400 ? ` (400: ${codes400.join('|')})` : ''}`;
    if (!statuses.includes(reply.status)) return this.check(reply, false, expected);
    const head = reply.request.startsWith('HEAD ');
    const needsBody = !head && (reply.status !== 404 || opts.json404 !== false);
    if (!needsBody) return;
    let code: unknown;
    try {
      code = (JSON.parse(reply.text()) as { errors?: Array<{ code?: unknown }> }).errors?.[0]?.code;
    } catch {
      return this.check(reply, false, `${expected} with an OCI JSON error body`);
    }
    if (typeof code !== 'string') return this.check(reply, false, `${expected} with an OCI JSON error body`);
    if (reply.status === 400 && codes400 && !codes400.includes(code)) this.check(reply, false, expected);
  }
  assertNone(): void {
    if (this.list.length > 0) expect.fail(`${this.list.length} unexpected answer(s):\n    ${this.list.join('\n    ')}\n`);
  }
}

/** Reads the session state after an interruption: undefined when the session is gone (404), else its offset. */
async function sessionOffset(oci: OciClient, location: string): Promise<number | undefined> {
  const r = await oci.get(location);
  if (r.status === 404) {
    expectOciError(r, 404, 'BLOB_UPLOAD_UNKNOWN');
    return undefined;
  }
  expectStatus(r, 204);
  const range = r.headers.get('range');
  if (range === null || range === '0-0' || range === '0--1') return 0; // empty session ("0-0" is ambiguous; Distribution sends it for 0 bytes)
  const m = /^0-(\d+)$/.exec(range);
  expect(m, `${describeReply(r)}: malformed Range`).to.not.equal(null);
  return Number((m as RegExpExecArray)[1]) + 1;
}

/**
 * After an interrupted upload of `data`: either the session is gone (404 BLOB_UPLOAD_UNKNOWN), or it
 * reports an offset within [minOffset, maxOffset] and can be completed from there into exactly `data`.
 */
async function expectResumableOrGone(oci: OciClient, repo: string, location: string, data: Buffer, minOffset: number, maxOffset: number): Promise<'gone' | 'resumed'> {
  const offset = await sessionOffset(oci, location);
  if (offset === undefined) return 'gone';
  expect(offset, `session offset after the interruption (bytes that were sent: ${maxOffset})`).to.be.within(minOffset, maxOffset);
  let next = location;
  if (offset < data.length) {
    const r = await oci.patchChunk(location, data.subarray(offset), { start: offset });
    expectStatus(r, 202);
    next = r.headers.get('location') ?? location;
  }
  const put = await oci.closeUpload(next, sha256(data));
  expectStatus(put, 201);
  const got = await oci.getBlob(repo, sha256(data));
  expectStatus(got, 200);
  expect(got.body.equals(data), 'the completed blob has exactly the uploaded bytes').to.equal(true);
  return 'resumed';
}

/** Every regular file under `dir` whose size is `size` and whose sha256 is `digest`. */
async function filesWithContent(dir: string, size: number, digest: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const entry of await readdir(d, { withFileTypes: true }).catch(() => [])) {
      const p = join(d, entry.name);
      if (entry.isDirectory()) await walk(p);
      else if (entry.isFile()) {
        const st = await stat(p).catch(() => undefined);
        if (st?.size === size && `sha256:${createHash('sha256').update(await readFile(p)).digest('hex')}` === digest) found.push(p);
      }
    }
  };
  await walk(dir);
  return found;
}

export function badInputSuite(factory: TargetFactory): void {
  describe(`bad input: clear errors, never 500, nothing partial [${factory.name}]`, function () {
    this.timeout(60_000);
    const ctx = {} as Ctx;
    const ns = uniqueNamespace('bad');
    const oci = () => ctx.oci;
    const raw = (method: string, path: string, options?: { headers?: Record<string, string>; body?: Buffer | string }) =>
      rawRequest(ctx.target.url, method, path, options);

    before(async function () {
      this.timeout(120_000);
      ctx.target = await factory.start();
      ctx.oci = new OciClient(ctx.target.url);
    });
    after(async function () {
      this.timeout(60_000);
      await ctx.target?.stop();
    });

    describe('repository names', function () {
      const digest = sha256('anything');
      const badNames: Array<[string, string]> = [
        ['uppercase', 'Upper/Case'],
        ['a ".." component', 'a/../b'],
        ['path traversal a/../../etc', 'a/../../etc'],
        ['deep traversal', 'a/../../../../../../../../tmp/evil'],
        ['encoded dot-dot %2e%2e', '%2e%2e/%2e%2e/etc'],
        ['encoded dot-dot inside', 'a/%2e%2e/%2e%2e/etc'],
        ['encoded slashes', 'a%2f..%2f..%2fetc'],
        ['over 255 characters', 'a'.repeat(256)],
        ['over 255 characters in components', `${'a'.repeat(128)}/${'b'.repeat(128)}`],
        ['leading separator', '-abc'],
        ['trailing separator', 'abc-'],
        ['empty component', 'a//b'],
        ['leading dot', '.abc/x'],
        ['three underscores', 'a___b'],
        ['non-ASCII', 'caf%C3%A9'],
        ['backslash', 'a%5c..%5cetc'],
      ];
      for (const [label, name] of badNames) {
        it(`${label} (${name.length > 40 ? `${name.slice(0, 40)}...` : name}): 400 NAME_INVALID or 404 on every endpoint`, async () => {
          const p = new Problems();
          const manifest = imageManifest({ config: descriptorOf(imageConfig()), layers: [] });
          const requests: Array<[string, string, { headers?: Record<string, string>; body?: Buffer }?]> = [
            ['GET', `/v2/${name}/tags/list`],
            ['GET', `/v2/${name}/manifests/latest`],
            ['HEAD', `/v2/${name}/manifests/latest`],
            ['PUT', `/v2/${name}/manifests/latest`, { headers: { 'Content-Type': MediaType.ociManifest }, body: manifest.bytes }],
            ['DELETE', `/v2/${name}/manifests/${manifest.digest}`],
            ['GET', `/v2/${name}/blobs/${digest}`],
            ['HEAD', `/v2/${name}/blobs/${digest}`],
            ['DELETE', `/v2/${name}/blobs/${digest}`],
            ['POST', `/v2/${name}/blobs/uploads/`, { headers: { 'Content-Length': '0' } }],
            ['GET', `/v2/${name}/referrers/${digest}`],
          ];
          for (const [method, path, options] of requests) {
            p.error(await raw(method, path, options), [400, 404], ['NAME_INVALID']);
          }
          p.assertNone();
        });
      }

      it('a valid name of exactly 255 characters is accepted', async () => {
        const name = `${'a'.repeat(100)}/${'b'.repeat(100)}/${'c'.repeat(53)}`;
        expect(name).to.have.length(255);
        const blob = content(randomBlob(10));
        await oci().pushBlob(name, blob);
        expectStatus(await oci().headBlob(name, blob.digest), 200);
      });
    });

    it('a path in another case or with a trailing slash is no endpoint: 404 NAME_UNKNOWN, nothing written', async () => {
      const repo = `${ns}/exact-paths`;
      const manifest = JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: sha256('{}'), size: 2 }, layers: [] });
      const put = { headers: { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' }, body: manifest };
      const p = new Problems();
      for (const [method, path, options] of [
        ['GET', `/v2/${repo}/tags/list/`],
        ['GET', `/V2/${repo}/tags/list`],
        ['GET', `/v2/${repo}/TAGS/LIST`],
        ['PUT', `/v2/${repo}/manifests/t/`, put],
        ['PUT', `/V2/${repo}/manifests/t`, put],
        ['PUT', `/v2/${repo}/Manifests/t`, put],
        ['POST', `/v2/${repo}/blobs/uploads//`],
        ['GET', '/V2/_catalog'],
        ['GET', '/ADMIN/v1/jobs'],
      ] as Array<[string, string, { headers?: Record<string, string>; body?: string }?]>) {
        p.error(await raw(method, path, options), [404], ['NAME_UNKNOWN']);
      }
      p.error(await raw('GET', `/v2/${repo}/manifests/t`), [404], ['MANIFEST_UNKNOWN', 'NAME_UNKNOWN']);
      p.assertNone();
    });

    it('a method an endpoint does not have is 405 UNSUPPORTED, with Allow naming the ones it has', async () => {
      const repo = `${ns}/methods`;
      const digest = sha256('x');
      for (const [method, path, allow] of [
        ['POST', `/v2/${repo}/manifests/latest`, 'HEAD, GET, PUT, DELETE'],
        ['PATCH', `/v2/${repo}/blobs/${digest}`, 'HEAD, GET, DELETE'],
        ['PUT', `/v2/${repo}/tags/list`, 'HEAD, GET'],
        ['DELETE', '/v2/_catalog', 'HEAD, GET'],
      ] as const) {
        const reply = await raw(method, path);
        expectOciError(reply, 405, 'UNSUPPORTED');
        expect(reply.headers.get('allow')?.split(', ').sort(), `${method} ${path}`).to.deep.equal(allow.split(', ').sort());
      }
    });

    describe('digests', function () {
      const repo = `${ns}/digests`;
      before(async () => { await oci().pushImage(repo, 'latest'); });

      const malformed: Array<[string, string]> = [
        ['non-hex', 'sha256:zz'],
        ['63 hex digits', `sha256:${'a'.repeat(63)}`],
        ['65 hex digits', `sha256:${'a'.repeat(65)}`],
        ['uppercase hex', `sha256:${'A'.repeat(64)}`],
        ['empty encoded part', 'sha256:'],
        ['unknown algorithm', `md5:${'a'.repeat(32)}`],
        ['bad algorithm characters', `SHA256:${'a'.repeat(64)}`],
        ['traversal in the encoded part', 'sha256:..%2f..%2f..%2fetc%2fpasswd'],
      ];

      for (const [label, digest] of malformed) {
        it(`${label} (${digest.slice(0, 30)}): 400 DIGEST_INVALID or 404, never 500`, async () => {
          const p = new Problems();
          const codes = ['DIGEST_INVALID', 'UNSUPPORTED'];
          p.error(await raw('GET', `/v2/${repo}/blobs/${digest}`), [400, 404], codes);
          p.error(await raw('HEAD', `/v2/${repo}/blobs/${digest}`), [400, 404], codes);
          p.error(await raw('DELETE', `/v2/${repo}/blobs/${digest}`), [400, 404], codes);
          p.error(await raw('GET', `/v2/${repo}/manifests/${digest}`), [400, 404], [...codes, 'MANIFEST_INVALID', 'TAG_INVALID']);
          p.error(await raw('DELETE', `/v2/${repo}/manifests/${digest}`), [400, 404], [...codes, 'MANIFEST_INVALID', 'TAG_INVALID']);
          const manifest = imageManifest({ config: descriptorOf(imageConfig()), layers: [] });
          p.error(await raw('PUT', `/v2/${repo}/manifests/${digest}`, { headers: { 'Content-Type': MediaType.ociManifest }, body: manifest.bytes }), digest.includes('%2f') ? [400, 404] : [400], [...codes, 'MANIFEST_INVALID', 'TAG_INVALID']);
          // The referrers API must answer 400 to a digest with an invalid syntax.
          p.error(await raw('GET', `/v2/${repo}/referrers/${digest}`), digest.includes('%2f') ? [400, 404] : [400], codes);
          p.assertNone();
        });

        it(`${label}: as the digest of an upload: PUT is 400 DIGEST_INVALID and nothing is stored`, async () => {
          const data = randomBlob(64);
          const { location } = await oci().openSession(repo);
          const u = oci().url(location);
          u.searchParams.set('digest', decodeURIComponent(digest));
          const r = await oci().request('PUT', `${u.pathname}${u.search}`, { headers: { 'Content-Type': 'application/octet-stream' }, body: data });
          expectOciError(r, 400, codesFor(label));
          expectStatus(await oci().headBlob(repo, sha256(data)), 404);
          // A single-request POST or a mount with it: 400, or an ordinary session (202).
          const post = await oci().startUpload(repo, { query: { digest: decodeURIComponent(digest) }, headers: { 'Content-Type': 'application/octet-stream' }, body: data });
          if (post.status !== 202) expectOciError(post, 400, codesFor(label));
          const mount = await oci().startUpload(repo, { query: { mount: decodeURIComponent(digest), from: repo } });
          if (mount.status !== 202) expectOciError(mount, 400, codesFor(label));
          expectStatus(await oci().headBlob(repo, sha256(data)), 404);
        });
      }

      it('raw ".." and traversal in the digest position: 400 or 404', async () => {
        const p = new Problems();
        for (const digest of ['..', '..%2f..%2f..%2fetc%2fpasswd', '%2e%2e', 'sha256:..']) {
          p.error(await raw('GET', `/v2/${repo}/blobs/${digest}`), [400, 404], ['DIGEST_INVALID']);
          p.error(await raw('GET', `/v2/${repo}/referrers/${digest}`), [400, 404], ['DIGEST_INVALID']);
          p.error(await raw('GET', `/v2/${repo}/manifests/${digest}`), [400, 404], ['DIGEST_INVALID', 'TAG_INVALID', 'MANIFEST_INVALID']);
        }
        p.error(await raw('GET', `/v2/${repo}/blobs/../../../../etc/passwd`), [400, 404], ['DIGEST_INVALID', 'NAME_INVALID']);
        p.assertNone();
      });

      it('sha512 (valid syntax, maybe unsupported): never a 500; if accepted, readable by that digest', async () => {
        const data = randomBlob(64);
        const digest = `sha512:${createHash('sha512').update(data).digest('hex')}`;
        const get = await oci().getBlob(repo, digest);
        expect([400, 404], describeReply(get)).to.include(get.status);
        const { location } = await oci().openSession(repo);
        const put = await oci().closeUpload(location, digest, data);
        expectNoServerError(put);
        if (put.status === 201) expectStatus(await oci().headBlob(repo, digest), 200);
        else expectOciError(put, 400, ['DIGEST_INVALID', 'UNSUPPORTED']);
      });

      it('a wrong digest on the closing PUT is 400 DIGEST_INVALID; neither digest becomes visible', async () => {
        const data = randomBlob(500);
        const claimed = sha256(randomBlob(500));
        const { location } = await oci().openSession(repo);
        expectOciError(await oci().closeUpload(location, claimed, data), 400, 'DIGEST_INVALID');
        expectStatus(await oci().headBlob(repo, claimed), 404);
        expectStatus(await oci().headBlob(repo, sha256(data)), 404);
        // The same after chunks and a streamed PATCH.
        const second = await oci().openSession(repo);
        const patched = await oci().patchChunk(second.location, data);
        expectStatus(patched, 202);
        expectOciError(await oci().closeUpload(patched.headers.get('location') ?? second.location, claimed), 400, 'DIGEST_INVALID');
        expectStatus(await oci().headBlob(repo, claimed), 404);
        expectStatus(await oci().headBlob(repo, sha256(data)), 404);
        // And on a single-request POST.
        const post = await oci().startUpload(repo, { query: { digest: claimed }, headers: { 'Content-Type': 'application/octet-stream' }, body: data });
        if (post.status !== 202) expectOciError(post, 400, 'DIGEST_INVALID');
        expectStatus(await oci().headBlob(repo, claimed), 404);
        expectStatus(await oci().headBlob(repo, sha256(data)), 404);
      });

      it('a manifest PUT by a digest that is not the digest of the body is 400 DIGEST_INVALID', async () => {
        const config = imageConfig();
        await oci().pushBlob(repo, config);
        const m = imageManifest({ config: descriptorOf(config), layers: [] });
        const wrong = sha256(randomHex());
        expectOciError(await oci().putManifest(repo, wrong, m), 400, 'DIGEST_INVALID');
        expectStatus(await oci().headManifest(repo, wrong), 404);
        expectStatus(await oci().headManifest(repo, m.digest), 404);
      });
    });

    describe('tags', function () {
      const repo = `${ns}/tags`;
      let image: Content;
      before(async () => { image = (await oci().pushImage(repo, 'latest')).manifest; });

      it('an invalid tag in a manifest PUT is 400 TAG_INVALID or MANIFEST_INVALID and nothing is tagged', async () => {
        const p = new Problems();
        const invalid = ['-leading-dash', '.leading-dot', 'x'.repeat(129), 'has%20space', 't%C3%A4g', 'tag@x', 'a+b', 'semi%3Bcolon'];
        for (const tag of invalid) {
          const r = await raw('PUT', `/v2/${repo}/manifests/${tag}`, { headers: { 'Content-Type': image.mediaType }, body: image.bytes });
          p.error(r, [400], ['TAG_INVALID', 'MANIFEST_INVALID']);
        }
        const colon = await raw('PUT', `/v2/${repo}/manifests/bad:colon`, { headers: { 'Content-Type': image.mediaType }, body: image.bytes });
        p.error(colon, [400], ['TAG_INVALID', 'MANIFEST_INVALID', 'DIGEST_INVALID', 'UNSUPPORTED']);
        p.assertNone();
        const tags = await oci().tags(repo);
        expectStatus(tags, 200);
        expect(tags.json<{ tags: string[] }>().tags).to.deep.equal(['latest']);
      });

      it('a tag of exactly 128 characters is accepted', async () => {
        const tag = `T${'x'.repeat(127)}`;
        expectStatus(await oci().putManifest(repo, tag, image), 201);
        expectStatus(await oci().headManifest(repo, tag), 200);
        expectStatus(await oci().delete(`/v2/${repo}/manifests/${tag}`), 202, 400, 405);
      });

      it('GET of an invalid tag is 400 or 404, never 500', async () => {
        const p = new Problems();
        for (const tag of ['.INVALID_MANIFEST_NAME', '-x', 'x'.repeat(129), 'has%20space']) {
          p.error(await raw('GET', `/v2/${repo}/manifests/${tag}`), [400, 404], ['TAG_INVALID', 'MANIFEST_INVALID', 'MANIFEST_UNKNOWN']);
        }
        p.assertNone();
      });

      it('odd pagination parameters are never a 500', async () => {
        const p = new Problems();
        for (const q of ['n=abc', 'n=-1', 'n=1e3', 'n=99999999999999999999', 'last=%00', 'n=2&last=..%2F..']) {
          const t = await raw('GET', `/v2/${repo}/tags/list?${q}`);
          p.check(t, t.status < 500 && t.status !== 0, 'not a server error');
          const c = await raw('GET', `/v2/_catalog?${q}`);
          p.check(c, c.status < 500 && c.status !== 0, 'not a server error');
        }
        p.assertNone();
      });
    });

    describe('manifests with invalid content', function () {
      const repo = `${ns}/manifests`;
      const config = imageConfig();
      const layer = gzipLayer();
      before(async () => {
        await oci().pushBlob(repo, config);
        await oci().pushBlob(repo, layer);
      });
      const valid = () => imageManifest({ config: descriptorOf(config), layers: [descriptorOf(layer)], annotations: { n: randomHex() } });
      const expectNotTagged = async (tag: string) => {
        expectStatus(await oci().headManifest(repo, tag), 404);
        const tags = await oci().tags(repo);
        if (tags.status === 200) expect(tags.json<{ tags: string[] | null }>().tags ?? []).to.not.include(tag);
      };

      it('invalid JSON and non-manifest JSON are 400 MANIFEST_INVALID', async () => {
        const p = new Problems();
        const bodies = [
          'blablabla',
          '',
          '{"schemaVersion": 2, "mediaType": ',
          '[]',
          '"a string"',
          'null',
          `{"schemaVersion":2,"mediaType":"${MediaType.ociManifest}"}`,
          `{"schemaVersion":1,"mediaType":"${MediaType.ociManifest}","config":${JSON.stringify(descriptorOf(config))},"layers":[]}`,
          `{"schemaVersion":2,"mediaType":"${MediaType.ociManifest}","config":"not an object","layers":[]}`,
          `{"schemaVersion":2,"mediaType":"${MediaType.ociManifest}","config":${JSON.stringify(descriptorOf(config))},"layers":{}}`,
          `{"schemaVersion":2,"mediaType":"${MediaType.ociManifest}","config":${JSON.stringify({ ...descriptorOf(config), digest: 'sha256:zz' })},"layers":[]}`,
          `{"schemaVersion":2,"mediaType":"${MediaType.ociIndex}","manifests":"nope"}`,
        ];
        for (const [i, body] of bodies.entries()) {
          const isIndex = body.includes(MediaType.ociIndex);
          const r = await oci().request('PUT', `/v2/${repo}/manifests/invalid-${i}`, { headers: { 'Content-Type': isIndex ? MediaType.ociIndex : MediaType.ociManifest }, body });
          p.error(r, [400], ['MANIFEST_INVALID', 'DIGEST_INVALID']);
        }
        p.assertNone();
        for (let i = 0; i < bodies.length; i++) await expectNotTagged(`invalid-${i}`);
      });

      it('a mediaType field that contradicts Content-Type is 400 MANIFEST_INVALID', async () => {
        const m = valid();
        const p = new Problems();
        p.error(await oci().putManifest(repo, 'mismatch-1', m, MediaType.ociIndex), [400], ['MANIFEST_INVALID']);
        p.error(await oci().putManifest(repo, 'mismatch-2', m, MediaType.dockerManifest), [400], ['MANIFEST_INVALID']);
        const index = indexManifest({ manifests: [descriptorOf(m)] });
        p.error(await oci().putManifest(repo, 'mismatch-3', index, MediaType.ociManifest), [400], ['MANIFEST_INVALID']);
        p.assertNone();
        for (const t of ['mismatch-1', 'mismatch-2', 'mismatch-3']) await expectNotTagged(t);
      });

      it('an unknown or unsupported manifest media type is 400/415 MANIFEST_INVALID or UNSUPPORTED', async () => {
        const p = new Problems();
        for (const type of ['application/vnd.example.unknown+json', 'text/plain', 'application/octet-stream']) {
          const body = JSON.stringify({ schemaVersion: 2, mediaType: type, config: descriptorOf(config), layers: [] });
          const r = await oci().request('PUT', `/v2/${repo}/manifests/unknown-type`, { headers: { 'Content-Type': type }, body });
          p.error(r, [400, 415], ['MANIFEST_INVALID', 'UNSUPPORTED']);
        }
        p.assertNone();
        await expectNotTagged('unknown-type');
      });

      it('a manifest referencing a missing blob is 400 MANIFEST_BLOB_UNKNOWN and nothing is tagged', async () => {
        const missing = gzipLayer();
        const missingConfig = imageConfig();
        const p = new Problems();
        p.error(await oci().putManifest(repo, 'missing-layer', imageManifest({ config: descriptorOf(config), layers: [descriptorOf(missing)] })), [400], ['MANIFEST_BLOB_UNKNOWN']);
        p.error(await oci().putManifest(repo, 'missing-config', imageManifest({ config: descriptorOf(missingConfig), layers: [descriptorOf(layer)] })), [400], ['MANIFEST_BLOB_UNKNOWN']);
        const childless = indexManifest({ manifests: [descriptorOf(valid(), { platform: { architecture: 'amd64', os: 'linux' } })] });
        p.error(await oci().putManifest(repo, 'missing-child', childless), [400], ['MANIFEST_BLOB_UNKNOWN']);
        p.assertNone();
        for (const t of ['missing-layer', 'missing-config', 'missing-child']) await expectNotTagged(t);
      });

      it('a manifest referencing a blob that exists only in another repository is 400 MANIFEST_BLOB_UNKNOWN', async () => {
        const elsewhere = gzipLayer();
        await oci().pushBlob(`${ns}/elsewhere`, elsewhere);
        const m = imageManifest({ config: descriptorOf(config), layers: [descriptorOf(elsewhere)] });
        expectOciError(await oci().putManifest(repo, 'foreign-blob', m), 400, 'MANIFEST_BLOB_UNKNOWN');
        await expectNotTagged('foreign-blob');
      });

      it('a manifest of exactly 4 MiB is accepted; one byte more is 413 or 400 SIZE_INVALID/MANIFEST_INVALID', async function () {
        this.timeout(120_000);
        const sized = (size: number): Content => {
          const base = imageManifest({ config: descriptorOf(config), layers: [descriptorOf(layer)], annotations: { pad: '' }, indent: 0 });
          const m = imageManifest({ config: descriptorOf(config), layers: [descriptorOf(layer)], annotations: { pad: 'x'.repeat(size - base.size) }, indent: 0 });
          expect(m.size).to.equal(size);
          return m;
        };
        const limit = 4 * 1024 * 1024;
        const ok = await oci().putManifest(repo, 'four-mib', sized(limit));
        expectStatus(ok, 201);
        const big = sized(limit + 1);
        let r: Reply;
        try {
          r = await oci().putManifest(repo, 'too-big', big);
        } catch (err) {
          // The registry may answer early and close; then read what it said through a raw request.
          r = await raw('PUT', `/v2/${repo}/manifests/too-big`, { headers: { 'Content-Type': big.mediaType }, body: big.bytes }).catch(() => { throw err; });
        }
        expectStatus(r, 413, 400);
        expectOciError(r, [413, 400], ['SIZE_INVALID', 'MANIFEST_INVALID']);
        await expectNotTagged('too-big');
        expectStatus(await oci().headManifest(repo, big.digest), 404);
      });
    });

    describe('uploads: Content-Range, unknown sessions', function () {
      const repo = `${ns}/uploads`;
      let chunk = 100;
      before(async () => {
        const { reply } = await oci().openSession(repo);
        chunk = Math.max(chunk, Number(reply.headers.get('oci-chunk-min-length') ?? 0));
      });

      it('a gap, an overlap, a repeated chunk or a first chunk not at 0 is 416; the session stays intact', async () => {
        const data = randomBlob(chunk * 3);
        const fresh = await oci().openSession(repo);
        expectStatus(await oci().patchChunk(fresh.location, data.subarray(5, 5 + chunk), { start: 5 }), 416);

        const { location } = await oci().openSession(repo);
        const first = await oci().patchChunk(location, data.subarray(0, chunk), { start: 0 });
        expectStatus(first, 202);
        const loc = first.headers.get('location') ?? location;
        const p = new Problems();
        const gap = await oci().patchChunk(loc, data.subarray(chunk + 10, 2 * chunk + 10), { start: chunk + 10 });
        p.check(gap, gap.status === 416, '416 (gap)');
        const overlap = await oci().patchChunk(loc, data.subarray(chunk - 10, 2 * chunk - 10), { start: chunk - 10 });
        p.check(overlap, overlap.status === 416, '416 (overlap)');
        const repeat = await oci().patchChunk(loc, data.subarray(0, chunk), { start: 0 });
        p.check(repeat, repeat.status === 416, '416 (repeated chunk)');
        p.assertNone();
        expect(await sessionOffset(oci(), loc)).to.equal(chunk);
        const second = await oci().patchChunk(loc, data.subarray(chunk), { start: chunk });
        expectStatus(second, 202);
        expectStatus(await oci().closeUpload(second.headers.get('location') ?? loc, sha256(data)), 201);
        const got = await oci().getBlob(repo, sha256(data));
        expect(got.body.equals(data)).to.equal(true);
      });

      it('a monolithic POST whose Content-Range does not start at 0 or disagrees with its length is 416 and stores nothing', async () => {
        const data = randomBlob(chunk);
        const p = new Problems();
        for (const range of [`5-${chunk + 4}`, `0-${chunk + 9}`]) {
          const r = await oci().request('POST', `/v2/${repo}/blobs/uploads/?digest=${sha256(data)}`, {
            headers: { 'Content-Type': 'application/octet-stream', 'Content-Range': range },
            body: data,
          });
          p.check(r, r.status === 416, `416 for Content-Range: ${range}`);
        }
        p.assertNone();
        expectStatus(await oci().request('HEAD', `/v2/${repo}/blobs/${sha256(data)}`), 404);
      });

      it('a Content-Range that does not match the body, or is malformed, is 400 or 416 and changes nothing', async () => {
        const data = randomBlob(chunk * 2);
        const { location } = await oci().openSession(repo);
        const first = await oci().patchChunk(location, data.subarray(0, chunk), { start: 0 });
        expectStatus(first, 202);
        const loc = first.headers.get('location') ?? location;
        const p = new Problems();
        const body = data.subarray(chunk, chunk + 50);
        for (const range of [`${chunk}-${chunk + 99}`, `${chunk}-${chunk + 10}`, 'abc', `${chunk + 49}-${chunk}`, `-${chunk}`, `${chunk}-`]) {
          const r = await oci().request('PATCH', loc, { headers: { 'Content-Type': 'application/octet-stream', 'Content-Range': range }, body });
          p.check(r, r.status === 400 || r.status === 416, `400 or 416 for Content-Range: ${range}`);
        }
        p.assertNone();
        expect(await sessionOffset(oci(), loc)).to.equal(chunk);
      });

      it('PATCH, PUT, GET and DELETE of an unknown session are 404 BLOB_UPLOAD_UNKNOWN', async () => {
        const p = new Problems();
        const ids = ['3fa85f64-5717-4562-b3fc-2c963f66afa6', randomHex(16)];
        for (const id of ids) {
          const base = `/v2/${repo}/blobs/uploads/${id}`;
          for (const r of [
            await oci().patchChunk(base, randomBlob(10)),
            await oci().closeUpload(base, sha256('x'), Buffer.from('x')),
            await oci().get(base),
            await oci().delete(base),
          ]) {
            p.check(r, r.status === 404 && safeCode(r) === 'BLOB_UPLOAD_UNKNOWN', '404 BLOB_UPLOAD_UNKNOWN');
          }
        }
        p.assertNone();
      });

      it('a session is bound to its repository: using it under another name is 404 BLOB_UPLOAD_UNKNOWN', async () => {
        const { location } = await oci().openSession(repo);
        const u = oci().url(location);
        const foreign = u.pathname.replace(`/v2/${repo}/`, `/v2/${ns}/other-repo/`);
        expect(foreign).to.not.equal(u.pathname);
        const r = await oci().patchChunk(`${foreign}${u.search}`, randomBlob(10));
        expectOciError(r, 404, 'BLOB_UPLOAD_UNKNOWN');
        // The session itself is untouched.
        expect(await sessionOffset(oci(), location)).to.equal(0);
      });

      it('traversal in the session id is 400 or 404', async () => {
        const p = new Problems();
        for (const id of ['..', '..%2f..%2f..%2fetc', '%2e%2e', '../../../../etc/passwd']) {
          p.error(await raw('PATCH', `/v2/${repo}/blobs/uploads/${id}`, { body: 'x' }), [400, 404], ['BLOB_UPLOAD_INVALID', 'BLOB_UPLOAD_UNKNOWN', 'NAME_INVALID']);
          p.error(await raw('GET', `/v2/${repo}/blobs/uploads/${id}`), [400, 404], ['BLOB_UPLOAD_INVALID', 'BLOB_UPLOAD_UNKNOWN', 'NAME_INVALID']);
        }
        p.assertNone();
      });
    });

    describe('truncated bodies (client closes the connection early)', function () {
      const repo = `${ns}/truncated`;
      const settle = () => sleep(300);
      const pathWith = (location: string, query: Record<string, string> = {}) => {
        const u = oci().url(location, query);
        return `${u.pathname}${u.search}`;
      };

      it('a monolithic PUT cut short: no blob; the session is gone or resumable', async () => {
        const data = randomBlob(200_000);
        const { location } = await oci().openSession(repo);
        await truncatedRequest(ctx.target.url, 'PUT', pathWith(location, { digest: sha256(data) }), { declaredLength: data.length, sent: data.subarray(0, 100_000) });
        await settle();
        expectStatus(await oci().headBlob(repo, sha256(data)), 404);
        expectStatus(await oci().headBlob(repo, sha256(data.subarray(0, 100_000))), 404);
        await expectResumableOrGone(oci(), repo, location, data, 0, 100_000);
      });

      it('a PATCH with Content-Range cut short: no blob; the session is gone or resumable at a good offset', async () => {
        const data = randomBlob(300_000);
        const { location } = await oci().openSession(repo);
        const first = await oci().patchChunk(location, data.subarray(0, 100_000), { start: 0 });
        expectStatus(first, 202);
        const loc = first.headers.get('location') ?? location;
        await truncatedRequest(ctx.target.url, 'PATCH', pathWith(loc), {
          declaredLength: 200_000,
          sent: data.subarray(100_000, 170_000),
          headers: { 'Content-Range': '100000-299999' },
        });
        await settle();
        expectStatus(await oci().headBlob(repo, sha256(data)), 404);
        await expectResumableOrGone(oci(), repo, loc, data, 100_000, 170_000);
      });

      it('a streamed (chunked transfer-encoding) PATCH cut short: no blob; gone or resumable', async () => {
        const data = randomBlob(300_000);
        const { location } = await oci().openSession(repo);
        await truncatedRequest(ctx.target.url, 'PATCH', pathWith(location), { chunked: true, sent: data.subarray(0, 120_000) });
        await settle();
        expectStatus(await oci().headBlob(repo, sha256(data)), 404);
        expectStatus(await oci().headBlob(repo, sha256(data.subarray(0, 120_000))), 404);
        await expectResumableOrGone(oci(), repo, location, data, 0, 120_000);
      });

      it('a single-request POST ?digest= cut short: no blob', async () => {
        const data = randomBlob(200_000);
        await truncatedRequest(ctx.target.url, 'POST', `/v2/${repo}/blobs/uploads/?digest=${sha256(data)}`, { declaredLength: data.length, sent: data.subarray(0, 50_000) });
        await settle();
        expectStatus(await oci().headBlob(repo, sha256(data)), 404);
      });

      it('a manifest PUT cut short: nothing tagged', async () => {
        const image = await oci().pushImage(repo, undefined);
        await truncatedRequest(ctx.target.url, 'PUT', `/v2/${repo}/manifests/cut`, {
          declaredLength: image.manifest.size,
          sent: image.manifest.bytes.subarray(0, Math.floor(image.manifest.size / 2)),
          headers: { 'Content-Type': image.manifest.mediaType },
        });
        await settle();
        expectStatus(await oci().headManifest(repo, 'cut'), 404);
      });
    });

    describe('concurrency', function () {
      it('10 parallel pushes of the same blob (monolithic, streamed, chunked) all succeed; one blob', async () => {
        const repo = `${ns}/concurrent-blob`;
        const data = randomBlob(256 * 1024);
        const digest = sha256(data);
        const pushes = Array.from({ length: 10 }, (_, i) =>
          i % 3 === 0 ? oci().pushBlob(repo, data) : i % 3 === 1 ? oci().pushBlobStreamed(repo, data) : oci().pushBlobChunked(repo, data, 100 * 1024));
        const results = await Promise.allSettled(pushes);
        const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => String(r.reason));
        expect(failures, failures.join('\n')).to.deep.equal([]);
        const head = await oci().headBlob(repo, digest);
        expectStatus(head, 200);
        expect(head.headers.get('content-length')).to.equal(String(data.length));
        const got = await oci().getBlob(repo, digest);
        expect(sha256(got.body)).to.equal(digest);
        if (ctx.target.root) {
          const copies = await filesWithContent(ctx.target.root, data.length, digest);
          expect(copies, `files with the blob's content under ${ctx.target.root}`).to.have.length(1);
        }
      });

      it('10 concurrent PUTs of different manifests to one tag: the tag ends on one of them, fully readable', async () => {
        const repo = `${ns}/concurrent-tag`;
        const config = imageConfig();
        const layer = gzipLayer();
        await oci().pushBlob(repo, config);
        await oci().pushBlob(repo, layer);
        const manifests = Array.from({ length: 10 }, (_, i) => imageManifest({ config: descriptorOf(config), layers: [descriptorOf(layer)], annotations: { i: String(i), r: randomHex() } }));
        const replies = await Promise.all(manifests.map((m) => oci().putManifest(repo, 'race', m)));
        for (const r of replies) expectStatus(r, 201);
        const got = await oci().getManifest(repo, 'race');
        expectStatus(got, 200);
        const digest = got.headers.get('docker-content-digest');
        expect(sha256(got.body), 'the digest of the body').to.equal(digest);
        expect(manifests.map((m) => m.digest)).to.include(digest);
        const byDigest = await oci().getManifest(repo, digest as string);
        expectStatus(byDigest, 200);
        expect(byDigest.body.equals(got.body)).to.equal(true);
        for (const m of manifests) expectStatus(await oci().headManifest(repo, m.digest), 200);
        const tags = await oci().tags(repo);
        expect(tags.json<{ tags: string[] }>().tags).to.deep.equal(['race']);
      });
    });

    describe('a registry killed with SIGKILL in the middle of a streamed PATCH', function () {
      let own: RegistryTarget | undefined;
      after(async function () {
        this.timeout(60_000);
        await own?.stop();
      });

      it('shows no partial blob; the session is consistent (resumable) or cleanly unknown; completed content survives', async function () {
        this.timeout(120_000);
        own = await factory.start();
        if (!own.kill || !own.restart) this.skip();
        const repo = `${ns}/crash`;
        let client = new OciClient(own.url);
        const survivor = await client.pushImage(repo, 'before-crash');

        const data = randomBlob(16 * 1024 * 1024);
        const { location } = await client.openSession(repo);
        const target = client.url(location);
        let sent = 0;
        const req = http.request({ host: target.hostname, port: target.port, method: 'PATCH', path: `${target.pathname}${target.search}`, headers: { 'Content-Type': 'application/octet-stream' }, agent: false });
        req.on('error', () => { /* the server dies; expected */ });
        req.on('response', (res) => res.resume());
        // Send 6 MiB of 16 in 64 KiB pieces, respecting backpressure, then keep the request open.
        const piece = 64 * 1024;
        while (sent < 6 * 1024 * 1024) {
          const ok = req.write(data.subarray(sent, sent + piece));
          sent += piece;
          if (!ok) await new Promise<void>((r) => req.once('drain', () => r()));
        }
        await sleep(500);
        await own.kill();
        req.destroy();
        await own.restart();
        client = new OciClient(own.url);

        // No partial blob by either digest.
        expectStatus(await client.headBlob(repo, sha256(data)), 404);
        expectStatus(await client.headBlob(repo, sha256(data.subarray(0, sent))), 404);
        // The session: consistent and completable, or cleanly unknown.
        const outcome = await expectResumableOrGone(client, repo, pathOf(location), data, 0, sent);
        expect(['gone', 'resumed']).to.include(outcome);
        // Content completed before the crash is intact.
        const m = await client.getManifest(repo, 'before-crash');
        expectStatus(m, 200);
        expect(sha256(m.body)).to.equal(survivor.manifest.digest);
        for (const b of [survivor.config, ...survivor.layers]) {
          const got = await client.getBlob(repo, b.digest);
          expectStatus(got, 200);
          expect(sha256(got.body)).to.equal(b.digest);
        }
      });
    });

    describe('afterwards', function () {
      it('the registry is still healthy (GET /v2/ is 200)', async () => {
        expectStatus(await oci().get('/v2/'), 200);
      });
    });
  });
}

function codesFor(label: string): string[] {
  return label === 'unknown algorithm' || label === 'bad algorithm characters' ? ['DIGEST_INVALID', 'UNSUPPORTED'] : ['DIGEST_INVALID'];
}

function safeCode(r: Reply): string | undefined {
  try {
    return (JSON.parse(r.text()) as { errors?: Array<{ code?: string }> }).errors?.[0]?.code;
  } catch {
    return undefined;
  }
}

for (const factory of suiteTargets()) badInputSuite(factory);

describe('a request body that stalls (http.bodytimeout: 1s)', function () {
  this.timeout(60_000);
  const repo = `${uniqueNamespace('stall')}/dify-api`;
  let target: RegistryTarget;
  let oci: OciClient;
  before(async function () {
    this.timeout(120_000);
    target = await filesystemTarget({ config: { http: { bodytimeout: '1s' } } }).start();
    oci = new OciClient(target.url);
  });
  after(() => target?.stop());

  const pathWith = (location: string, query: Record<string, string> = {}) => {
    const u = oci.url(location, query);
    return `${u.pathname}${u.search}`;
  };
  /** 408 SIZE_INVALID in the spec's JSON, about a second after the body went silent, and the connection closed. */
  const expectStalled = (reply: Awaited<ReturnType<typeof stalledRequest>>) => {
    expect(reply.closed, 'the server closes the stalled connection').to.equal(true);
    expect(reply.status, reply.response).to.equal(408);
    expect(reply.response).to.match(/\r\nconnection: close\r\n/i);
    const body = reply.response.slice(reply.response.indexOf('\r\n\r\n') + 4);
    expect((JSON.parse(body) as { errors: Array<{ code: string }> }).errors[0]!.code).to.equal('SIZE_INVALID');
    expect(reply.elapsedMs).to.be.within(900, 10_000);
  };

  for (const chunked of [false, true]) {
    it(`a ${chunked ? 'streamed (chunked)' : 'Content-Length'} PATCH that goes silent ends with 408 and frees its session at once`, async () => {
      const data = randomBlob(300_000);
      const { location } = await oci.openSession(repo);
      const first = await oci.patchChunk(location, data.subarray(0, 100_000), { start: 0 });
      expectStatus(first, 202);
      const next = first.headers.get('location') ?? location;
      expectStalled(await stalledRequest(target.url, 'PATCH', pathWith(next), {
        ...(chunked ? { chunked: true } : { declaredLength: 200_000, headers: { 'Content-Range': '100000-299999' } }),
        sent: data.subarray(100_000, 150_000),
        maxWaitMs: 20_000,
      }));
      // Nothing of the stalled chunk was committed, and nobody holds the session: no 416 "busy".
      const status = await oci.get(next);
      expectStatus(status, 204);
      expect(status.headers.get('range')).to.equal('0-99999');
      const rest = await oci.patchChunk(next, data.subarray(100_000), { start: 100_000 });
      expectStatus(rest, 202);
      expectStatus(await oci.closeUpload(rest.headers.get('location') ?? next, sha256(data)), 201);
      expect((await oci.getBlob(repo, sha256(data))).body.equals(data)).to.equal(true);
    });
  }

  it('a manifest PUT that goes silent ends with 408 and tags nothing', async () => {
    const image = await oci.pushImage(repo, undefined);
    expectStalled(await stalledRequest(target.url, 'PUT', `/v2/${repo}/manifests/stalled`, {
      declaredLength: image.manifest.size,
      sent: image.manifest.bytes.subarray(0, 10),
      headers: { 'Content-Type': image.manifest.mediaType },
      maxWaitMs: 20_000,
    }));
    expectStatus(await oci.headManifest(repo, 'stalled'), 404);
  });

  it('a slow body that keeps sending is not cut, however long it takes in all', async () => {
    const data = randomBlob(10);
    const { location } = await oci.openSession(repo);
    const u = oci.url(location);
    const status = await new Promise<number | undefined>((resolve, reject) => {
      const request = http.request(u, { method: 'PATCH', headers: { 'Content-Length': String(data.length), 'Content-Range': `0-${data.length - 1}` } });
      request.on('response', (response) => {
        response.resume();
        resolve(response.statusCode);
      });
      request.on('error', reject);
      // 2.5 s in all, never more than 0.5 s of silence.
      let sent = 0;
      const tick = setInterval(() => {
        request.write(data.subarray(sent, sent + 2));
        sent += 2;
        if (sent >= data.length) {
          clearInterval(tick);
          request.end();
        }
      }, 500);
    });
    expect(status).to.equal(202);
  });
});
