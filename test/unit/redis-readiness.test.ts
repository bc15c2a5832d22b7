import { expect } from 'chai';
import { pino } from 'pino';
import { RedisCheck } from '../../server/health/redis-check.js';
import type { SharedState } from '../../server/state/redis.js';
import { FilesystemDriver } from '../../storage-drivers/filesystem.js';
import { tempDir } from './support.js';

// Replicas' readiness in partition mode, from their heartbeats in a shared storage root. Redis is a stand-in
// whose reachability the test sets: the interleavings below (a heartbeat written late, one replica cut off
// while another is not) are what a real Redis cannot be made to produce on demand.
describe('readiness: Redis in partition mode', () => {
  const silent = pino({ level: 'silent' });
  const options = { intervalMs: 1_000, threshold: 2, readiness: 'partition' as const };
  const reachable = (up: () => boolean) => ({ isReady: up, client: { ping: async () => 'PONG' } }) as unknown as SharedState;

  class HeldBeats extends FilesystemDriver {
    hold?: Promise<void>;
    override async putContent(path: string, content: Buffer | string): Promise<void> {
      if (this.hold && path.startsWith('/_health')) await this.hold;
      return super.putContent(path, content);
    }
  }

  it('a heartbeat written just after a shared outage began does not make a replica unready', async () => {
    const { path: root, cleanup } = await tempDir('redis-readiness-late');
    try {
      let up = true;
      const late = new HeldBeats({ rootdirectory: root });
      const r1 = new RedisCheck(reachable(() => up), new FilesystemDriver({ rootdirectory: root }), options, silent);
      const r2 = new RedisCheck(reachable(() => up), late, options, silent);
      await r1.check();
      await r2.check();
      let land!: () => void;
      late.hold = new Promise((resolve) => (land = resolve));
      const r2Check = r2.check(); // its ping succeeded just before the outage; the beat is still being written
      await new Promise((resolve) => setTimeout(resolve, 20));
      up = false;
      await r1.check(); // r1's first failure: r2's beat has not landed yet
      land();
      await r2Check;
      late.hold = undefined;
      for (let i = 0; i < 10; i++) {
        await r1.check();
        await r2.check();
      }
      expect(r1.report()).to.include({ ok: false, critical: false });
      expect(r2.report()).to.include({ ok: false, critical: false });
    } finally {
      await cleanup();
    }
  });

  it('a replica cut off from Redis while another keeps beating goes unready; the other stays ready', async () => {
    const { path: root, cleanup } = await tempDir('redis-readiness-cut');
    try {
      let cutOff = false;
      const r1 = new RedisCheck(reachable(() => !cutOff), new FilesystemDriver({ rootdirectory: root }), options, silent);
      const r2 = new RedisCheck(reachable(() => true), new FilesystemDriver({ rootdirectory: root }), options, silent);
      await r1.check();
      await r2.check();
      cutOff = true;
      for (let i = 0; i < 4; i++) {
        await r1.check();
        await new Promise((resolve) => setTimeout(resolve, 2)); // heartbeats carry a millisecond time
        await r2.check();
      }
      expect(r1.report()).to.include({ ok: false, critical: true });
      expect(r2.report()).to.include({ ok: true });
    } finally {
      await cleanup();
    }
  });
});
