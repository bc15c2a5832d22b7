import { expect } from 'chai';
import pino from 'pino';
import { FilesystemDriver } from '../../storage-drivers/filesystem.js';
import type { JobRecord, JobState } from '../../server/jobs/job.js';
import type { JobQueue } from '../../server/jobs/queue.js';
import { SyncRules } from '../../server/mirror/sync-rules.js';
import { StorageLocks } from '../../server/state/locks.js';
import { tempDir } from './support.js';

/** A queue that records submissions; their states are set by the test. */
function recordingQueue() {
  const states = new Map<string, JobState>();
  const queue = {
    async submit(kind: string) {
      const id = `job-${states.size + 1}`;
      states.set(id, 'queued');
      return { id, kind, state: 'queued' } as unknown as JobRecord;
    },
    async get(id: string) {
      const state = states.get(id);
      return state && ({ id, state } as unknown as JobRecord);
    },
  } as unknown as JobQueue;
  return { queue, states };
}

describe('mirror sync rules', () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  before(async () => {
    dir = await tempDir('sync-rules');
  });
  after(() => dir.cleanup());

  it('submits when due, and not again while the last run is still going', async () => {
    const driver = new FilesystemDriver({ rootdirectory: dir.path });
    const { queue, states } = recordingQueue();
    const rule = { name: 'dify', upstream: 'docker.io', repositories: ['langgenius/dify-api'], tags: ['1.12.1'], interval: '1h', layouts: ['same-name'] };
    const rules = new SyncRules([rule] as never, queue, new StorageLocks(driver), driver, pino({ level: 'silent' }));
    const hour = 3_600_000;
    expect(await rules.runDue(Date.now())).to.deep.equal(['dify']);
    expect([...states.keys()]).to.deep.equal(['job-1']);
    expect(await rules.runDue(Date.now()), 'not due yet').to.deep.equal([]);
    states.set('job-1', 'running');
    expect(await rules.runDue(Date.now() + 2 * hour), 'due, but its last run is still running').to.deep.equal([]);
    expect(states.size).to.equal(1);
    states.set('job-1', 'failed');
    expect(await rules.runDue(Date.now() + 2 * hour)).to.deep.equal(['dify']);
    expect(states.size).to.equal(2);
  });
});
