// One writer per upload session across processes and replicas: a lock file created only-if-absent,
// with an expiry that the holder renews. A holder that crashed blocks the session for one TTL at most,
// and not at all when it ran on this host: a lock whose process is gone (or was an earlier life of
// this very pid, as after a container restart) is taken over at once.
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { StorageDriver } from '../../storage-drivers/driver.js';

const TTL_MS = 60_000;
const RENEW_MS = 20_000;
/** Tells this process apart from an earlier one that had the same pid. */
const INSTANCE = randomUUID();
const HOST = hostname();

interface LockOwner {
  expires: number;
  host: string;
  pid: number;
  instance: string;
}

export interface HeldLock {
  release(): Promise<void>;
}

export async function tryLock(driver: StorageDriver, path: string, now = Date.now): Promise<HeldLock | undefined> {
  const content = () => JSON.stringify({ expires: now() + TTL_MS, host: HOST, pid: process.pid, instance: INSTANCE } satisfies LockOwner);
  if (!(await driver.putContentIfAbsent(path, content()))) {
    if (!(await isStale(driver, path, now()))) return undefined;
    await driver.delete(path);
    if (!(await driver.putContentIfAbsent(path, content()))) return undefined;
  }
  const renewal = setInterval(() => void driver.putContent(path, content()).catch(() => undefined), RENEW_MS);
  renewal.unref();
  return {
    async release() {
      clearInterval(renewal);
      await driver.delete(path);
    },
  };
}

async function isStale(driver: StorageDriver, path: string, at: number): Promise<boolean> {
  let owner: Partial<LockOwner>;
  try {
    owner = JSON.parse((await driver.getContent(path)).toString()) as Partial<LockOwner>;
  } catch {
    // Gone or unreadable: nothing holds it.
    return true;
  }
  if (!(typeof owner.expires === 'number' && owner.expires > at)) return true;
  if (owner.host !== HOST || typeof owner.pid !== 'number') return false;
  if (owner.pid === process.pid) return owner.instance !== INSTANCE;
  return !processAlive(owner.pid);
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
