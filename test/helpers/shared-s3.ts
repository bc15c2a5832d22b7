// One Ceph RGW for the whole test run, started on first use and stopped by the root hook
// (test/root-hooks.ts); every suite that wants S3 gets its own bucket in it.
import { startS3, type RunningS3 } from './s3.js';

let running: Promise<RunningS3> | undefined;

export function sharedS3(): Promise<RunningS3> {
  running ??= startS3();
  return running;
}

export async function stopSharedS3(): Promise<void> {
  if (!running) return;
  const s3 = await running.catch(() => undefined);
  running = undefined;
  await s3?.stop();
}

/** The registry's storage.s3 section for a fresh bucket in the shared gateway. */
export async function s3StorageConfig(extra: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
  const s3 = await sharedS3();
  return {
    bucket: await s3.createBucket(),
    region: s3.region,
    regionendpoint: s3.endpoint,
    forcepathstyle: true,
    accesskey: s3.accessKey,
    secretkey: s3.secretKey,
    rootdirectory: '/registry',
    chunksize: 5 * 1024 * 1024,
    ...extra,
  };
}
