// Where upload session state lives between requests: in storage on a single node (any worker process or a
// restarted one continues a session), in Redis when replicas share it (one round trip per chunk instead
// of an S3 write). Either way the uploaded bytes themselves stay in storage.
import { exists, isNotFound, type StorageDriver, type WriterCheckpoint } from '../../storage-drivers/driver.js';
import { uploadBusy, uploadUnknown } from './errors.js';
import { paths } from './paths.js';
import { lockIfFree, tryLock, type HeldLock } from './upload-lock.js';

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

/** One request's exclusive hold on a session: nobody else writes its data or state until it is released. */
export interface SessionClaim {
  /** The session's state when it was claimed: current, as nobody else changes it while the claim is held. */
  readonly state: UploadState;
  readonly lock: HeldLock;
}

export interface UploadSessions {
  create(state: UploadState): Promise<void>;
  /** The session, or undefined when it is unknown (never started, finished, cancelled or purged). */
  load(name: string, id: string): Promise<UploadState | undefined>;
  /** The session with its single-writer claim, or undefined while another request holds it or when it is unknown. */
  claim(name: string, id: string): Promise<SessionClaim | undefined>;
  /** Records the state after a chunk; the claim's lock is still released by the caller. */
  save(state: UploadState, claim: SessionClaim): Promise<void>;
  /** Forgets the state (the caller removes the session's data). */
  remove(state: UploadState): Promise<void>;
  /**
   * Ends a session while another request holds its claim (a DELETE during a PATCH): the holder's save then
   * fails as unknown. 'holder': the holder removes the data (as a failing holder does once it let go of an
   * ended session); 'nobody': nobody holds the claim any more, the caller removes the data; 'retry': the
   * holder saved meanwhile (claim again). uploadUnknown when there is no such session.
   */
  endClaimed(name: string, id: string): Promise<'holder' | 'nobody' | 'retry'>;
  /** True when a claim's lock is a file in the session's directory, deleted with the session's data. */
  readonly locksGoWithSession?: boolean;
}

const STATE_FILE = /\/state(?:-(\d+))?\.json$/;
/** The step after a claimed one, taken by a cancel: no state, so the session reads as unknown from then on. */
const ENDED = '{"ended":true}';
const MAX_REMEMBERED = 1024;
/** Claims and steps are written only into a session directory that still exists: never bring one back. */
const IN_SESSION = { inExistingDirectory: true } as const;

class StepClaim implements SessionClaim {
  constructor(
    readonly state: UploadState,
    readonly lock: HeldLock,
    /** The step the state is at; the claim is the create-only file `claim-<step>`. */
    readonly step: number,
  ) {}
}

/**
 * Sessions in storage as a journal: step n's state is written once (`state-<n>.json`, create-only), and the
 * one request allowed to write the chunk after it first creates `claim-<n>` (create-only too). A claim that
 * led to a new state is never removed: the newer state shows it is done. So a process that wrote or read
 * step n itself claims the next chunk without reading anything: if `claim-<n>` could be created, nobody
 * went past step n and the state it holds is current (it only checks, at the same time, that the session
 * was not ended elsewhere). Per chunk that is a claim, a look and a state write, where a lock file and one
 * rewritten state took four requests in a row (claim, read, write, delete): on S3 each small request costs
 * more than the registry's own work on a chunk. Anyone else lists the directory to find the latest step;
 * a claim whose holder died is taken over as any lock file is (upload-lock.ts).
 */
export class StorageUploadSessions implements UploadSessions {
  readonly locksGoWithSession = true;
  /** The latest step this process wrote or read, by session id (insertion order doubles as LRU order). */
  private readonly latest = new Map<string, { step: number; state: UploadState }>();

  constructor(private readonly driver: StorageDriver) {}

  async create(state: UploadState): Promise<void> {
    await this.driver.putContent(paths.uploadState(state.name, state.id), JSON.stringify(state));
    this.remember(0, state);
  }

  async load(name: string, id: string): Promise<UploadState | undefined> {
    return (await this.find(name, id))?.state;
  }

  async claim(name: string, id: string): Promise<SessionClaim | undefined> {
    const known = this.latest.get(id);
    if (known && known.state.name === name) {
      const lock = await this.claimKnownStep(known.step, known.state);
      if (lock) return new StepClaim(known.state, lock, known.step);
      // Someone claimed that step (and may have gone past it), or the session is gone: find out.
    }
    const found = await this.find(name, id);
    if (!found) return undefined;
    const lock = await tryLock(this.driver, paths.uploadClaim(name, id, found.step), IN_SESSION).catch(goneAsUndefined);
    return lock && new StepClaim(found.state, lock, found.step);
  }

  /**
   * The claim on a step this process wrote or read, if nobody took it and the session still exists: another
   * process may have finished, cancelled or purged it since, and writing on would bring it back. Where
   * directories are real, look first (the claim would make the directory again); elsewhere look while
   * claiming, and give the claim back if the state is gone. Either way the next step must not exist: a
   * free claim with a next step is a session a cancel ended while its holder wrote (the holder let go
   * since, and is removing the data).
   */
  private async claimKnownStep(step: number, state: UploadState): Promise<HeldLock | undefined> {
    const path = paths.uploadClaim(state.name, state.id, step);
    if (!this.driver.directoriesArePrefixes) {
      if (!(await this.stateExists(step, state))) return undefined;
      // The session may still be removed between the look and the claim: the claim then finds no directory.
      const lock = await lockIfFree(this.driver, path, IN_SESSION).catch(goneAsUndefined);
      if (lock && (await this.stateExists(step + 1, state))) {
        await lock.release().catch(() => undefined);
        return undefined;
      }
      return lock;
    }
    const [lock, present, next] = await Promise.allSettled([lockIfFree(this.driver, path), this.stateExists(step, state), this.stateExists(step + 1, state)]);
    const usable = present.status === 'fulfilled' && present.value && next.status === 'fulfilled' && !next.value;
    if (lock.status === 'fulfilled' && usable) return lock.value;
    if (lock.status === 'fulfilled') await lock.value?.release().catch(() => undefined);
    for (const result of [lock, present, next]) if (result.status === 'rejected') throw result.reason;
    return undefined;
  }

  async save(state: UploadState, claim: SessionClaim): Promise<void> {
    if (!(claim instanceof StepClaim)) throw new Error('upload sessions: a claim of other sessions');
    const step = claim.step + 1;
    const path = paths.uploadStep(state.name, state.id, step);
    const content = JSON.stringify(state);
    // Whatever happens now, the claim's file stays: freeing it while a newer state may exist would let a
    // process that remembers step n take that step again. A claim whose state never came expires instead.
    claim.lock.abandon?.();
    let created: boolean;
    try {
      // Create-only: a holder that lost its claim (it stalled past the expiry and was taken over) cannot
      // overwrite what its successor wrote.
      created = await this.driver.putContentIfAbsent(path, content, IN_SESSION);
    } catch (error) {
      this.latest.delete(state.id);
      throw isNotFound(error) ? uploadUnknown(state.id) : error; // removed meanwhile (cancelled, purged)
    }
    if (!created) {
      const existing = (await this.driver.getContent(path).catch(() => undefined))?.toString();
      // The same write, retried after its answer was lost, found itself: done.
      if (existing !== content) {
        this.latest.delete(state.id);
        if (existing === ENDED) throw uploadUnknown(state.id);
        throw uploadBusy((existing !== undefined && parseState(existing)) || claim.state);
      }
    }
    this.remember(step, state);
  }

  async remove(state: UploadState): Promise<void> {
    // The files go with the session directory.
    this.latest.delete(state.id);
  }

  async endClaimed(name: string, id: string): Promise<'holder' | 'nobody' | 'retry'> {
    const found = await this.find(name, id);
    if (!found) throw uploadUnknown(id);
    this.latest.delete(id);
    // Create-only, like any step: either the holder's next state or the end comes first, never both.
    const ended = await this.driver.putContentIfAbsent(paths.uploadStep(name, id, found.step + 1), ENDED, IN_SESSION).catch((error: unknown) => {
      throw isNotFound(error) ? uploadUnknown(id) : error;
    });
    if (!ended) return 'retry';
    // A holder whose chunk failed may have let go before the end was written: then nobody else removes the data.
    const lock = await tryLock(this.driver, paths.uploadClaim(name, id, found.step), IN_SESSION).catch(goneAsUndefined);
    if (!lock) return 'holder';
    lock.abandon?.(); // it goes with the data
    return 'nobody';
  }

  /** The latest step of a session and its state, from a listing of its directory. */
  private async find(name: string, id: string): Promise<{ step: number; state: UploadState } | undefined> {
    let files: string[];
    try {
      files = await this.driver.list(paths.upload(name, id));
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
    let step = -1;
    for (const file of files) {
      const match = STATE_FILE.exec(file);
      if (match) step = Math.max(step, Number(match[1] ?? 0));
    }
    if (step < 0) return undefined;
    let state: UploadState | undefined;
    try {
      state = parseState((await this.driver.getContent(paths.uploadStep(name, id, step))).toString());
    } catch (error) {
      if (isNotFound(error)) return undefined; // removed since the listing
      throw error;
    }
    if (!state) return undefined; // unreadable: the client starts the upload again
    this.remember(step, state);
    return { step, state };
  }

  private stateExists(step: number, state: UploadState): Promise<boolean> {
    return exists(this.driver, paths.uploadStep(state.name, state.id, step), { file: true });
  }

  private remember(step: number, state: UploadState): void {
    this.latest.delete(state.id);
    this.latest.set(state.id, { step, state });
    if (this.latest.size > MAX_REMEMBERED) this.latest.delete(this.latest.keys().next().value!);
  }
}

function goneAsUndefined(error: unknown): undefined {
  if (isNotFound(error)) return undefined;
  throw error;
}

function parseState(text: string): UploadState | undefined {
  try {
    const state = JSON.parse(text) as UploadState;
    return typeof state === 'object' && state !== null && typeof state.offset === 'number' ? state : undefined;
  } catch {
    return undefined;
  }
}
