// Upload session state in Redis, so a PATCH on one replica continues what another started with one round
// trip per chunk. Storage still gets the session's first state (its start time), which is what upload
// purging reads to find abandoned sessions and abort their S3 multipart uploads, even if Redis lost them.
import type { StorageDriver } from '../../storage-drivers/driver.js';
import { uploadUnknown } from '../registry/errors.js';
import { paths } from '../registry/paths.js';
import type { SessionClaim, UploadSessions, UploadState } from '../registry/upload-sessions.js';
import { RedisLock } from './redis-lock.js';
import { shared, type SharedState } from './redis.js';

export class RedisUploadSessions implements UploadSessions {
  constructor(
    private readonly state: SharedState,
    private readonly driver: StorageDriver,
    /** How long an idle session is kept: the upload purging age. */
    private readonly ttlMs: number,
  ) {}

  async create(upload: UploadState): Promise<void> {
    await shared('create upload session', () => this.state.client.set(this.key(upload.id), JSON.stringify(upload), 'PX', this.ttlMs));
    await this.driver.putContent(paths.uploadState(upload.name, upload.id), JSON.stringify(upload));
  }

  async load(name: string, id: string): Promise<UploadState | undefined> {
    const value = await shared('read upload session', () => this.state.client.get(this.key(id)));
    if (value === null) return undefined;
    const upload = JSON.parse(value) as UploadState;
    return upload.name === name ? upload : undefined;
  }

  async save(upload: UploadState, _claim: SessionClaim): Promise<void> {
    // XX: a session cancelled or finished meanwhile is not brought back.
    const saved = await shared('save upload session', () =>
      this.state.client.set(this.key(upload.id), JSON.stringify(upload), 'PX', this.ttlMs, 'XX'),
    );
    if (saved !== 'OK') throw uploadUnknown(upload.id);
  }

  async remove(upload: UploadState): Promise<void> {
    await shared('remove upload session', () => this.state.client.del(this.key(upload.id)));
  }

  async endClaimed(_name: string, id: string): Promise<'holder' | 'nobody'> {
    // The holder's save (XX) then finds no session.
    const removed = await shared('end upload session', () => this.state.client.del(this.key(id)));
    if (!removed) throw uploadUnknown(id);
    // A holder whose chunk failed may have let go before the end: then nobody else removes the data.
    const lock = await RedisLock.acquire(this.state, `upload-lock:${id}`);
    if (!lock) return 'holder';
    await lock.release().catch(() => undefined);
    return 'nobody';
  }

  async claim(name: string, id: string): Promise<SessionClaim | undefined> {
    const lock = await RedisLock.acquire(this.state, `upload-lock:${id}`);
    if (!lock) return undefined;
    // Lock, then read: the state is read once, and current.
    const state = await this.load(name, id).catch(async (error: unknown) => {
      await lock.release().catch(() => undefined);
      throw error;
    });
    if (state) return { state, lock };
    await lock.release().catch(() => undefined);
    return undefined;
  }

  private key(id: string): string {
    return `${this.state.prefix}upload:${id}`;
  }
}
