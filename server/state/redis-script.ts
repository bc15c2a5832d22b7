// A Lua script run by its SHA1 (EVALSHA), sent in full only when Redis does not know it yet (after a restart
// or on a new cluster node): one round trip per call, and the script text is not resent on every request.
import { createHash } from 'node:crypto';
import type { RedisClient } from './redis.js';

export class RedisScript {
  private readonly sha: string;

  constructor(private readonly lua: string) {
    this.sha = createHash('sha1').update(lua).digest('hex');
  }

  async run(client: RedisClient, keys: string[], args: Array<string | number>): Promise<unknown> {
    try {
      return await client.evalsha(this.sha, keys.length, ...keys, ...args);
    } catch (error) {
      if (!(error as Error).message?.startsWith('NOSCRIPT')) throw error;
      return client.eval(this.lua, keys.length, ...keys, ...args);
    }
  }
}
