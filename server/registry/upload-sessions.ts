// Where upload session state lives between requests: in storage on a single node (any worker process or a
// restarted one continues a session), in Redis when replicas share it (one round trip per chunk instead
// of an S3 write). Either way the uploaded bytes themselves stay in storage.
import { exists, isNotFound, type StorageDriver, type WriterCheckpoint } from '../../storage-drivers/driver.js';
import { paths } from './paths.js';
import { tryLock, type HeldLock } from './upload-lock.js';

export interface UploadState {
  id: string;
  name: string;
  /** Bytes committed so far. */
  offset: number;
  /**
   * Hex SHA-256 of bytes [0, offset): lets a body-less final PUT on any process verify without a re-read.
   * Absent when a chunk was written without the running hash (it is then computed at the end).
   */
  sha256?: string;
  /** Where the storage driver continues the data (S3: multipart upload id and parts). */
  checkpoint?: WriterCheckpoint;
  startedAt: string;
}

export interface UploadSessions {
  create(state: UploadState): Promise<void>;
  /** The session, or undefined when it is unknown (never started, finished, cancelled or purged). */
  load(name: string, id: string): Promise<UploadState | undefined>;
  /** Records the state after a chunk. */
  save(state: UploadState): Promise<void>;
  /** Forgets the state (the caller removes the session's data). */
  remove(state: UploadState): Promise<void>;
  /** The session's single-writer lock, or undefined while another request holds it (or the session is unknown). */
  lock(name: string, id: string): Promise<HeldLock | undefined>;
  /** True when a lock is a file in the session's directory, deleted with the session's data. */
  readonly locksGoWithSession?: boolean;
}

export class StorageUploadSessions implements UploadSessions {
  readonly locksGoWithSession = true;

  constructor(private readonly driver: StorageDriver) {}

  create(state: UploadState): Promise<void> {
    return this.save(state);
  }

  async load(name: string, id: string): Promise<UploadState | undefined> {
    try {
      return JSON.parse((await this.driver.getContent(paths.uploadState(name, id))).toString()) as UploadState;
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  async save(state: UploadState): Promise<void> {
    await this.driver.putContent(paths.uploadState(state.name, state.id), JSON.stringify(state));
  }

  async remove(): Promise<void> {
    // The state file goes with the session directory.
  }

  async lock(name: string, id: string): Promise<HeldLock | undefined> {
    // Where directories are real, the lock file would create an unknown session's directory: not for those.
    if (!this.driver.directoriesArePrefixes && !(await exists(this.driver, paths.uploadState(name, id), { file: true }))) return undefined;
    return tryLock(this.driver, paths.uploadLock(name, id));
  }
}
