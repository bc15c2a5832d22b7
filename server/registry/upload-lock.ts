// One writer per upload session across processes and replicas: a lock file created only-if-absent,
// with an expiry that the holder renews. A holder that crashed blocks the session for one TTL at most,
// and not at all when it ran on this host: a lock whose process is gone (or was an earlier life of
// this very pid, as after a container restart) is taken over at once.
// Taking over is claiming a marker named after the stale owner, only-if-absent: of several processes
// that saw the same stale lock, exactly one wins, and none can remove a lock taken since.
import { createHash, randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { isNotFound, type PutIfAbsentOptions, type StorageDriver } from '../../storage-drivers/driver.js';

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
  /** Tells this acquisition apart from any other, so release removes only its own lock. */
  token: string;
}

export interface HeldLock {
  release(): Promise<void>;
  /** The lock file was deleted with its directory: stop renewing it, and make `release` a no-op. */
  abandon?(): void;
  /** False once the holder can no longer be sure nobody took the lock over (its renewals failed). */
  isHeld?(): boolean;
}

export interface LockOptions extends PutIfAbsentOptions {
  /** The clock (tests move it). */
  now?: () => number;
  /** The renewal period (tests shorten it). */
  renewMs?: number;
}

export async function tryLock(driver: StorageDriver, path: string, options: LockOptions = {}): Promise<HeldLock | undefined> {
  const { now = Date.now, renewMs = RENEW_MS } = options;
  const { token, content } = owner(now);
  // Twice at most: the lock may be released between a failed claim and reading it.
  for (let attempt = 0; attempt < 2; attempt++) {
    if (await driver.putContentIfAbsent(path, content(), options)) return held(driver, path, token, content, now, renewMs);
    const current = await driver.getContent(path).catch(() => undefined);
    if (current === undefined) continue;
    if (!isStale(parseOwner(current), now())) return undefined;
    const marker = `${path}.takeover-${createHash('sha256').update(current).digest('hex').slice(0, 16)}`;
    if (!(await driver.putContentIfAbsent(marker, content()))) return undefined;
    await driver.putContent(path, content());
    return held(driver, path, token, content, now, renewMs);
  }
  return undefined;
}

/** The lock if nobody holds it, else undefined; a stale holder is not looked at (one request only). */
export async function lockIfFree(driver: StorageDriver, path: string, options: PutIfAbsentOptions = {}): Promise<HeldLock | undefined> {
  const { token, content } = owner(Date.now);
  return (await driver.putContentIfAbsent(path, content(), options)) ? held(driver, path, token, content, Date.now, RENEW_MS) : undefined;
}

function owner(now: () => number): { token: string; content: () => string } {
  const token = randomUUID();
  const content = () => JSON.stringify({ expires: now() + TTL_MS, host: HOST, pid: process.pid, instance: INSTANCE, token } satisfies LockOwner);
  return { token, content };
}

function held(driver: StorageDriver, path: string, token: string, content: () => string, now: () => number, renewMs: number): HeldLock {
  let writtenAt = now();
  let abandoned = false;
  // Sure of the lock while well within the expiry it last wrote (nobody takes a live lock over before it;
  // the margin covers clocks of other replicas running ahead). Once unsure, it is lost for good: renewing
  // then could overwrite a new holder's lock.
  let lost = false;
  const sure = () => {
    if (!lost && now() - writtenAt >= TTL_MS / 2) lost = true;
    return !abandoned && !lost;
  };
  const renewal = setInterval(() => {
    if (!sure()) {
      clearInterval(renewal);
      return;
    }
    const at = now();
    void (async () => {
      // Gone (its directory was removed: the session ended) or someone else's: not ours to write again.
      const current = await driver.getContent(path).catch((error: unknown) => (isNotFound(error) ? Buffer.alloc(0) : undefined));
      if (current !== undefined && parseOwner(current).token !== token) {
        lost = true;
        clearInterval(renewal);
        return;
      }
      await driver.putContent(path, content());
      writtenAt = at;
    })().catch(() => undefined);
  }, renewMs);
  renewal.unref();
  return {
    isHeld: sure,
    abandon() {
      clearInterval(renewal);
      abandoned = true;
    },
    async release() {
      clearInterval(renewal);
      if (abandoned) return;
      // Only our own lock: while sure of it, no read is needed; after that someone else may hold it now.
      if (sure()) return driver.deleteFile(path);
      const current = await driver.getContent(path).catch(() => undefined);
      if (current && parseOwner(current).token === token) await driver.deleteFile(path);
    },
  };
}

function parseOwner(content: Buffer): Partial<LockOwner> {
  try {
    return JSON.parse(content.toString()) as Partial<LockOwner>;
  } catch {
    return {}; // garbage: stale
  }
}

function isStale(owner: Partial<LockOwner>, at: number): boolean {
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
