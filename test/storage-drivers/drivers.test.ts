// Runs the storage-driver contract against every driver: the filesystem in a temp dir, and S3 against a
// real Ceph RADOS Gateway on loopback (one gateway for the run, a fresh bucket per variant).
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { ListMultipartUploadsCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { expect } from 'chai';
import { FilesystemDriver } from '../../storage-drivers/filesystem.js';
import { S3Driver, type S3Options } from '../../storage-drivers/s3.js';
import { startS3 } from '../helpers/s3.js';
import { driverContract } from './contract.js';

const MiB = 1024 * 1024;

driverContract('filesystem', async () => {
  const root = await mkdtemp(join(tmpdir(), 'registry-contract-fs-'));
  const rootdirectory = join(root, 'storage');
  await writeFile(join(root, 'a-file'), 'not a directory');
  return {
    driver: new FilesystemDriver({ rootdirectory }),
    reopen: async () => new FilesystemDriver({ rootdirectory }),
    redirects: false,
    broken: async () => [
      { what: 'root below a regular file', driver: new FilesystemDriver({ rootdirectory: join(root, 'a-file', 'storage') }), message: /ENOTDIR|not a directory/ },
    ],
    cleanup: () => rm(root, { recursive: true, force: true }),
  };
});

describe('S3 driver against Ceph RGW', () => {
  let s3: Awaited<ReturnType<typeof startS3>> | undefined;

  before(async function () {
    this.timeout(300_000);
    s3 = await startS3();
  });
  after(async () => {
    await s3?.stop();
  });

  // The third variant uses the configuration's default rootdirectory (''): keys at the bucket's top level.
  const variants = [
    { uploadconcurrency: 1, rootdirectory: '/registry-root' },
    { uploadconcurrency: 2, rootdirectory: '/registry-root' },
    { uploadconcurrency: 2, rootdirectory: '' },
  ];
  for (const { uploadconcurrency, rootdirectory } of variants) {
    driverContract(`s3 (uploadconcurrency ${uploadconcurrency}, rootdirectory '${rootdirectory}')`, async () => {
      if (!s3) throw new Error('RGW did not start');
      const gateway = s3;
      const options: S3Options = {
        bucket: await gateway.createBucket(),
        region: gateway.region,
        regionendpoint: gateway.endpoint,
        forcepathstyle: true,
        rootdirectory,
        accesskey: gateway.accessKey,
        secretkey: gateway.secretKey,
        encrypt: false,
        chunksize: 5 * MiB,
        checksummode: 'WHEN_REQUIRED',
        uploadconcurrency,
        redirect: { enabled: true, expirySeconds: 600 },
      };
      const driver = new S3Driver(options);
      const inspector = gateway.client();
      // A "gateway" that accepts connections and never answers.
      const sockets = new Set<Socket>();
      let silent: Server | undefined;
      const silentEndpoint = async (): Promise<string> => {
        silent = createServer((socket) => void sockets.add(socket));
        await new Promise<void>((resolve) => silent!.listen(0, '127.0.0.1', resolve));
        const address = silent.address();
        return `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
      };
      return {
        driver,
        // Another process, configured with a larger part size (a tail it checkpoints can exceed our part size).
        reopen: async () => new S3Driver({ ...options, chunksize: 6 * MiB }),
        redirects: true,
        broken: async () => [
          { what: 'missing bucket', driver: new S3Driver({ ...options, bucket: `missing-${Date.now()}` }), message: /bucket/i },
          { what: 'wrong secret key', driver: new S3Driver({ ...options, secretkey: 'wrong-secret' }), message: /403|denied|signature|forbidden/i },
          { what: 'gateway that never answers', driver: new S3Driver({ ...options, regionendpoint: await silentEndpoint() }), message: /no answer|timeout|timed out/i },
        ],
        openUploads: async (path) => {
          const prefix = driver.key(path);
          const keys: string[] = [];
          let keyMarker: string | undefined;
          let uploadIdMarker: string | undefined;
          do {
            const page = await inspector.send(
              new ListMultipartUploadsCommand({ Bucket: options.bucket, Prefix: prefix, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker }),
            );
            for (const upload of page.Uploads ?? []) {
              if (upload.Key === prefix || upload.Key?.startsWith(`${prefix}/`)) keys.push(upload.Key);
            }
            keyMarker = page.IsTruncated ? page.NextKeyMarker : undefined;
            uploadIdMarker = page.IsTruncated ? page.NextUploadIdMarker : undefined;
          } while (keyMarker);
          return keys;
        },
        cleanup: async () => {
          for (const socket of sockets) socket.destroy();
          silent?.close();
          await driver.delete('/').catch(() => undefined);
        },
      };
    });
  }

  // The SDK resolves a command's middleware once (cacheMiddleware) unless a call passes options, which
  // empties the cache: the readiness probe, which passes its timeout, must not undo that every few seconds.
  it('keeps the resolved middleware of its requests across health probes', async () => {
    const gateway = s3!;
    const driver = new S3Driver({
      bucket: await gateway.createBucket(),
      region: gateway.region,
      regionendpoint: gateway.endpoint,
      forcepathstyle: true,
      rootdirectory: '',
      accesskey: gateway.accessKey,
      secretkey: gateway.secretKey,
      encrypt: false,
      chunksize: 5 * MiB,
      checksummode: 'WHEN_REQUIRED',
      uploadconcurrency: 1,
      redirect: { enabled: false, expirySeconds: 600 },
    });
    const resolved = () => (driver.client as unknown as { handlers?: WeakMap<object, unknown> }).handlers?.has(PutObjectCommand);
    await driver.putContent('/probe/a', 'x');
    expect(resolved()).to.equal(true);
    await driver.healthCheck();
    expect(resolved()).to.equal(true);
    await driver.putContent('/probe/b', 'y');
    expect((await driver.getContent('/probe/b')).toString()).to.equal('y');
  });
});
