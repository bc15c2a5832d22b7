// The S3 test helpers themselves: a throw-away Ceph RADOS Gateway (test/helpers/s3.ts) behaves as
// the S3 that the storage driver's tests expect, and the fault proxy (test/helpers/fault-proxy.ts)
// fails, drops and delays exactly the requests it is told to.
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListBucketsCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  PutObjectCommand,
  UploadPartCommand,
  UploadPartCopyCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { expect } from 'chai';
import { createHash, randomBytes } from 'node:crypto';
import { access } from 'node:fs/promises';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';
import { s3Available, s3UnavailableReason, startS3, type RunningS3 } from '../helpers/s3.js';

const MiB = 1024 * 1024;

interface SdkError extends Error {
  $metadata?: { httpStatusCode?: number; attempts?: number };
  Code?: string;
}

async function rejection(promise: Promise<unknown>): Promise<SdkError> {
  try {
    await promise;
  } catch (error) {
    return error as SdkError;
  }
  throw new Error('expected the request to fail, but it succeeded');
}

const md5 = (data: Buffer) => createHash('md5').update(data).digest('hex');
const unquote = (etag: string | undefined) => (etag ?? '').replace(/^"|"$/g, '');

async function bodyOf(client: S3Client, Bucket: string, Key: string, Range?: string): Promise<Buffer> {
  const got = await client.send(new GetObjectCommand({ Bucket, Key, Range }));
  return Buffer.from(await got.Body!.transformToByteArray());
}

function isAlive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch { return false; }
}

describe('S3 test helpers (Ceph RGW and the fault proxy)', function () {
  this.timeout(120_000);
  let s3: RunningS3;
  let client: S3Client;
  let bucket: string;

  before(async function () {
    if (!s3Available()) throw new Error(s3UnavailableReason());
    s3 = await startS3();
    console.log(`      RGW cluster started in ${s3.startupMs} ms ${JSON.stringify(s3.timings)}`);
    client = s3.client();
    bucket = await s3.createBucket();
  });

  after(async () => {
    if (!s3) return;
    const rss = await s3.rss();
    const mb = (n: number) => `${(n / MiB).toFixed(0)} MiB`;
    console.log(`      RSS at the end: mon ${mb(rss.mon)}, osd ${mb(rss.osd)}, rgw ${mb(rss.rgw)}`);
    const { pids, dir } = s3;
    await s3.stop();
    expect(Object.values(pids).filter(isAlive), 'daemons left running').to.deep.equal([]);
    expect(await access(dir).then(() => true, () => false), 'temp dir left behind').to.equal(false);
  });

  it('answers ListBuckets with the user keys, on a loopback endpoint', async () => {
    expect(s3.endpoint).to.match(/^http:\/\/127\.0\.0\.1:\d+$/);
    const listed = await client.send(new ListBucketsCommand({}));
    expect(listed.Buckets?.map((b) => b.Name)).to.include(bucket);
  });

  it('puts, gets (with ranges), lists and deletes objects', async () => {
    const data = randomBytes(1000);
    const put = await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'a/one', Body: data, ContentType: 'application/octet-stream' }));
    expect(unquote(put.ETag)).to.equal(md5(data));
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'a/two', Body: 'two' }));
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'b/three', Body: 'three' }));

    expect((await bodyOf(client, bucket, 'a/one')).equals(data)).to.equal(true);
    expect((await bodyOf(client, bucket, 'a/one', 'bytes=10-19')).equals(data.subarray(10, 20))).to.equal(true);
    expect((await bodyOf(client, bucket, 'a/one', 'bytes=-7')).equals(data.subarray(993))).to.equal(true);
    const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: 'a/one' }));
    expect(head.ContentLength).to.equal(1000);

    const listed = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'a/' }));
    expect(listed.Contents?.map((o) => o.Key)).to.deep.equal(['a/one', 'a/two']);
    const dirs = await client.send(new ListObjectsV2Command({ Bucket: bucket, Delimiter: '/' }));
    expect(dirs.CommonPrefixes?.map((p) => p.Prefix)).to.deep.equal(['a/', 'b/']);
    const paged = await client.send(new ListObjectsV2Command({ Bucket: bucket, MaxKeys: 2 }));
    expect(paged.IsTruncated).to.equal(true);
    const rest = await client.send(new ListObjectsV2Command({ Bucket: bucket, MaxKeys: 2, ContinuationToken: paged.NextContinuationToken }));
    expect(rest.Contents?.map((o) => o.Key)).to.deep.equal(['b/three']);

    await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: 'a/one' }));
    const missing = await rejection(client.send(new GetObjectCommand({ Bucket: bucket, Key: 'a/one' })));
    expect(missing.name).to.equal('NoSuchKey');
    const headMissing = await rejection(client.send(new HeadObjectCommand({ Bucket: bucket, Key: 'a/one' })));
    expect(headMissing.$metadata?.httpStatusCode).to.equal(404);
  });

  it('does multipart uploads with ListParts, UploadPartCopy and Abort', async () => {
    const source = randomBytes(MiB + 17);
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'mp/source', Body: source }));
    const part1 = randomBytes(5 * MiB);
    const Key = 'mp/target';
    const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key }));
    expect(UploadId).to.be.a('string');
    // 5 MiB goes with `Expect: 100-continue` (the SDK asks for it from 2 MiB).
    const up1 = await client.send(new UploadPartCommand({ Bucket: bucket, Key, UploadId, PartNumber: 1, Body: part1 }));
    expect(unquote(up1.ETag)).to.equal(md5(part1));
    const up2 = await client.send(new UploadPartCopyCommand({
      Bucket: bucket, Key, UploadId, PartNumber: 2,
      CopySource: `${bucket}/mp/source`, CopySourceRange: `bytes=0-${source.length - 1}`,
    }));
    // RGW quirk (DESIGN.md 8): the copied part's ETag comes without quotes.
    expect(unquote(up2.CopyPartResult?.ETag)).to.equal(md5(source));

    const parts = await client.send(new ListPartsCommand({ Bucket: bucket, Key, UploadId }));
    expect(parts.Parts?.map((p) => [p.PartNumber, p.Size])).to.deep.equal([[1, 5 * MiB], [2, source.length]]);

    await client.send(new CompleteMultipartUploadCommand({
      Bucket: bucket, Key, UploadId,
      MultipartUpload: { Parts: [{ PartNumber: 1, ETag: up1.ETag }, { PartNumber: 2, ETag: up2.CopyPartResult?.ETag }] },
    }));
    const whole = await bodyOf(client, bucket, Key);
    expect(whole.length).to.equal(part1.length + source.length);
    expect(md5(whole)).to.equal(md5(Buffer.concat([part1, source])));

    const aborted = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: 'mp/aborted' }));
    await client.send(new UploadPartCommand({ Bucket: bucket, Key: 'mp/aborted', UploadId: aborted.UploadId, PartNumber: 1, Body: 'x' }));
    await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: 'mp/aborted', UploadId: aborted.UploadId }));
    const gone = await rejection(client.send(new ListPartsCommand({ Bucket: bucket, Key: 'mp/aborted', UploadId: aborted.UploadId })));
    // RGW quirk (DESIGN.md 8): NoSuchKey here, where AWS says NoSuchUpload.
    expect(gone.name).to.be.oneOf(['NoSuchUpload', 'NoSuchKey']);
    expect(gone.$metadata?.httpStatusCode).to.equal(404);
  });

  it('serves a presigned GET to plain fetch', async () => {
    const data = randomBytes(300);
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'presigned', Body: data }));
    const url = await getSignedUrl(client, new GetObjectCommand({ Bucket: bucket, Key: 'presigned' }), { expiresIn: 60 });
    expect(url.startsWith(`${s3.endpoint}/${bucket}/presigned?`)).to.equal(true);
    const answer = await fetch(url);
    expect(answer.status).to.equal(200);
    expect(Buffer.from(await answer.arrayBuffer()).equals(data)).to.equal(true);
    const tampered = await fetch(url.replace('presigned?', 'presigned-other?'));
    expect(tampered.status).to.equal(403);
  });

  it('rejects wrong credentials', async () => {
    const badSecret = s3.client({ credentials: { accessKeyId: s3.accessKey, secretAccessKey: `${s3.secretKey}x` } });
    const e1 = await rejection(badSecret.send(new ListObjectsV2Command({ Bucket: bucket })));
    expect(e1.name).to.equal('SignatureDoesNotMatch');
    expect(e1.$metadata?.httpStatusCode).to.equal(403);
    const badKey = s3.client({ credentials: { accessKeyId: 'NOSUCHKEY00000000000', secretAccessKey: s3.secretKey } });
    const e2 = await rejection(badKey.send(new ListObjectsV2Command({ Bucket: bucket })));
    expect(e2.name).to.equal('InvalidAccessKeyId');
    expect(e2.$metadata?.httpStatusCode).to.equal(403);
  });

  describe('through the fault proxy', () => {
    let proxy: FaultProxy;
    let via: S3Client;

    before(async () => {
      proxy = await startFaultProxy(s3.endpoint);
    });
    beforeEach(() => {
      proxy.reset();
      // A fresh client each time: the standard retry mode's retry quota is per client.
      via = s3.client({ endpoint: proxy.endpoint });
    });
    after(async () => {
      await proxy?.stop();
    });

    it('forwards requests with their signatures intact, streaming both ways, and logs them', async () => {
      const data = randomBytes(3 * MiB);
      await via.send(new PutObjectCommand({ Bucket: bucket, Key: 'proxied', Body: data }));
      expect((await bodyOf(via, bucket, 'proxied')).equals(data)).to.equal(true);
      expect((await bodyOf(via, bucket, 'proxied', 'bytes=-5')).equals(data.subarray(data.length - 5))).to.equal(true);
      expect(proxy.requests.map((r) => [r.method, r.path, r.status])).to.deep.equal([
        ['PUT', `/${bucket}/proxied`, 200],
        ['GET', `/${bucket}/proxied`, 200],
        ['GET', `/${bucket}/proxied`, 206],
      ]);
      const denied = s3.client({ endpoint: proxy.endpoint, credentials: { accessKeyId: s3.accessKey, secretAccessKey: 'wrong' } });
      expect((await rejection(denied.send(new HeadObjectCommand({ Bucket: bucket, Key: 'proxied' })))).$metadata?.httpStatusCode).to.equal(403);
    });

    it('a 503 SlowDown is retried by the SDK and the request succeeds', async () => {
      proxy.failNext(2, { status: 503, code: 'SlowDown' });
      const put = await via.send(new PutObjectCommand({ Bucket: bucket, Key: 'slowdown', Body: 'after two 503s' }));
      expect(put.$metadata.attempts).to.equal(3);
      expect(proxy.requests.map((r) => [r.method, r.status, r.fault])).to.deep.equal([
        ['PUT', 503, 'fail'], ['PUT', 503, 'fail'], ['PUT', 200, undefined],
      ]);
      expect((await bodyOf(client, bucket, 'slowdown')).toString()).to.equal('after two 503s');
    });

    it('failNext(10) surfaces the error once the SDK gives up', async () => {
      proxy.failNext(10, { status: 503, code: 'SlowDown' });
      const error = await rejection(via.send(new GetObjectCommand({ Bucket: bucket, Key: 'slowdown' })));
      expect(error.name).to.equal('SlowDown');
      expect(error.$metadata?.httpStatusCode).to.equal(503);
      expect(error.$metadata?.attempts).to.equal(3);
      expect(proxy.requests.length).to.equal(3);
    });

    it('a 500 InternalError aimed at UploadPart only, with a 100-continue body, is retried', async () => {
      const Key = 'mp/faulty';
      proxy.failNext(1, { status: 500, code: 'InternalError', match: { method: 'PUT', query: 'partNumber' } });
      const { UploadId } = await via.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key }));
      const part = randomBytes(5 * MiB);
      const up = await via.send(new UploadPartCommand({ Bucket: bucket, Key, UploadId, PartNumber: 1, Body: part }));
      expect(up.$metadata.attempts).to.equal(2);
      await via.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key, UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: up.ETag }] } }));
      expect(proxy.requests.map((r) => [r.method, r.query.includes('partNumber'), r.status])).to.deep.equal([
        ['POST', false, 200], ['PUT', true, 500], ['PUT', true, 200], ['POST', false, 200],
      ]);
      expect(md5(await bodyOf(client, bucket, Key))).to.equal(md5(part));
    });

    it('a connection dropped before the upstream saw the request is retried', async () => {
      proxy.dropNext(1, { at: 'request', afterBytes: 1024 });
      const data = randomBytes(64 * 1024);
      const put = await via.send(new PutObjectCommand({ Bucket: bucket, Key: 'dropped', Body: data }));
      expect(put.$metadata.attempts).to.equal(2);
      expect(proxy.requests.map((r) => [r.status, r.fault])).to.deep.equal([[null, 'drop'], [200, undefined]]);
      expect((await bodyOf(client, bucket, 'dropped')).equals(data)).to.equal(true);
    });

    it('a connection dropped after the upstream handled the request: retried, or the error surfaces', async () => {
      // The PUT happened upstream but its answer was lost; the SDK retries it (PUT is idempotent).
      proxy.dropNext(1, { at: 'response', match: { method: 'PUT' } });
      const put = await via.send(new PutObjectCommand({ Bucket: bucket, Key: 'lost-answer', Body: 'v1' }));
      expect(put.$metadata.attempts).to.equal(2);
      // A dropped connection with no retries left surfaces as a network error.
      const once = s3.client({ endpoint: proxy.endpoint, maxAttempts: 1 });
      proxy.dropNext(1, { at: 'request' });
      const error = await rejection(once.send(new HeadObjectCommand({ Bucket: bucket, Key: 'lost-answer' })));
      expect(`${error.name} ${(error as { code?: string }).code ?? ''} ${error.message}`).to.match(/ECONNRESET|socket hang up/);
    });

    it('a body cut mid-stream surfaces while reading it', async () => {
      const data = randomBytes(256 * 1024);
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'cut', Body: data }));
      proxy.dropNext(1, { at: 'response-body', match: { method: 'GET' } });
      const got = await via.send(new GetObjectCommand({ Bucket: bucket, Key: 'cut' }));
      expect(got.ContentLength).to.equal(data.length);
      await rejection(got.Body!.transformToByteArray());
      expect(proxy.requests[0]?.fault).to.equal('drop');
    });

    it('delays requests: long enough to trip a request timeout, or just slower', async () => {
      // requestTimeout only logs a warning in this SDK unless throwOnRequestTimeout is set.
      const impatient = s3.client({ endpoint: proxy.endpoint, maxAttempts: 1, requestHandler: { requestTimeout: 300, throwOnRequestTimeout: true } });
      proxy.delayNext(1, 1_500);
      const error = await rejection(impatient.send(new HeadObjectCommand({ Bucket: bucket, Key: 'cut' })));
      expect(error.name).to.equal('TimeoutError');
      proxy.delayNext(1, 400, { at: 'response', match: { method: 'HEAD' } });
      const started = Date.now();
      await via.send(new HeadObjectCommand({ Bucket: bucket, Key: 'cut' }));
      expect(Date.now() - started).to.be.at.least(380);
      expect(proxy.requests.at(-1)?.fault).to.equal('delay');
    });
  });

  it('runs a second cluster side by side, and stop() leaves nothing behind', async () => {
    const second = await startS3();
    try {
      console.log(`      second cluster started in ${second.startupMs} ms (the first one running)`);
      expect(second.endpoint).to.not.equal(s3.endpoint);
      const other = await second.createBucket();
      await second.client().send(new PutObjectCommand({ Bucket: other, Key: 'k', Body: 'second' }));
      const names = (await client.send(new ListBucketsCommand({}))).Buckets?.map((b) => b.Name);
      expect(names).to.not.include(other);
      expect((await bodyOf(second.client(), other, 'k')).toString()).to.equal('second');
    } finally {
      await second.stop();
    }
    expect(Object.values(second.pids).filter(isAlive)).to.deep.equal([]);
    expect(await access(second.dir).then(() => true, () => false)).to.equal(false);
    // The first cluster is unaffected.
    await client.send(new ListBucketsCommand({}));
  });
});
