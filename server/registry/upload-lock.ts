// One writer per upload session across processes and replicas: a lock file created only-if-absent,
// with an expiry that the holder renews, so a crashed holder blocks the session for one TTL at most.
import type { StorageDriver } from '../../storage-drivers/driver.js';

const TTL_MS = 60_000;
const RENEW_MS = 20_000;

export interface HeldLock {
  release(): Promise<void>;
}

export async function tryLock(driver: StorageDriver, path: string, now = Date.now): Promise<HeldLock | undefined> {
  const claim = () => driver.putContentIfAbsent(path, JSON.stringify({ expires: now() + TTL_MS, pid: process.pid }));
  if (!(await claim())) {
    if (!(await isExpired(driver, path, now()))) return undefined;
    await driver.delete(path);
    if (!(await claim())) return undefined;
  }
  const renewal = setInterval(() => {
    void driver.putContent(path, JSON.stringify({ expires: now() + TTL_MS, pid: process.pid })).catch(() => undefined);
  }, RENEW_MS);
  renewal.unref();
  return {
    async release() {
      clearInterval(renewal);
      await driver.delete(path);
    },
  };
}

async function isExpired(driver: StorageDriver, path: string, at: number): Promise<boolean> {
  try {
    const { expires } = JSON.parse((await driver.getContent(path)).toString()) as { expires: number };
    return !(expires > at);
  } catch {
    // Unreadable (half-deleted, or garbage): treat as stale rather than blocking the upload forever.
    return true;
  }
}
