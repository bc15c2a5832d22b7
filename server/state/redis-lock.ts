// A lock in Redis: SET NX PX with a random token, renewed while held and released only by its owner
// (compare-and-delete in one script). A holder that dies frees the lock after one TTL. Each acquisition
// also takes a fencing number (INCR), so work guarded by the lock can refuse a holder that lost it.
import { randomUUID } from 'node:crypto';
import type { HeldLock } from '../registry/upload-lock.js';
import { shared as command, type SharedState } from './redis.js';

const TTL_MS = 15_000;
const RENEW_MS = 5_000;

const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`;
const RENEW = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end`;

export interface RedisHeldLock extends HeldLock {
  /** Increases with every acquisition of this lock name. */
  fence: number;
  /** False once the lock expired or was lost (renewal failed). */
  isHeld(): boolean;
}

export const RedisLock = {
  async acquire(state: SharedState, name: string, ttlMs = TTL_MS): Promise<RedisHeldLock | undefined> {
    const key = `${state.prefix}${name}`;
    const token = randomUUID();
    const taken = await command(`lock ${name}`, () => state.client.set(key, token, 'PX', ttlMs, 'NX'));
    if (taken !== 'OK') return undefined;
    const fence = await command(`lock ${name}`, () => state.client.incr(`${key}:fence`));
    let held = true;
    let expiresAt = Date.now() + ttlMs;
    const renewal = setInterval(() => {
      void (state.client.eval(RENEW, 1, key, token, String(ttlMs)) as Promise<number>).then(
        (renewed) => {
          if (renewed === 1) expiresAt = Date.now() + ttlMs;
          else held = false;
        },
        () => undefined, // Redis unreachable: the lock still counts until its known expiry
      );
    }, Math.min(RENEW_MS, ttlMs / 3));
    renewal.unref();
    return {
      fence,
      isHeld: () => held && Date.now() < expiresAt,
      async release() {
        clearInterval(renewal);
        held = false;
        await state.client.eval(RELEASE, 1, key, token).catch(() => undefined); // expires by itself otherwise
      },
    };
  },
};
