// The storage-driver contract, after CNCF Distribution's: path-based, knows nothing of OCI.
// Paths are absolute within the driver ("/docker/registry/v2/..."), '/'-separated, without '..'.
import type { Readable, Writable } from 'node:stream';

export interface FileInfo {
  path: string;
  size: number;
  modTime: Date;
  isDir: boolean;
}

/**
 * Where a later writer continues a file that is not finished yet. The caller stores it with its own
 * state (an upload session) in the same atomic write, so the two never disagree after a crash.
 */
export interface WriterCheckpoint {
  size: number;
  /** Driver-specific resume data (for S3: the multipart upload id, its parts, the tail object). */
  token?: string;
}

/** A streaming writer: `checkpoint` pauses a file that will be continued, `commit` finishes it. */
export interface FileWriter {
  /** Bytes in the file, including those before the resume point. */
  readonly size: number;
  write(chunk: Buffer): Promise<void>;
  /** Makes the bytes so far durable and releases the writer; the file is not readable as a whole yet. */
  checkpoint(): Promise<WriterCheckpoint>;
  /** Finishes the file: durable and readable at its path. Releases the writer. */
  commit(): Promise<void>;
  /** Releases the writer and discards what it wrote since its resume point. */
  cancel(): Promise<void>;
}

export interface PutIfAbsentOptions {
  inExistingDirectory?: boolean;
}

export interface WriterOptions {
  /**
   * Continue a file from a checkpoint. Bytes beyond it (written by a writer that crashed before its
   * caller recorded a newer checkpoint) are dropped. Where directories are real, its directory must exist
   * (PathNotFoundError): a resumed file belongs to something that was started, and a removed one must not
   * come back.
   */
  resume?: WriterCheckpoint;
  /**
   * Exactly this many bytes will be written (the caller checks that it writes that many): for a new file
   * all of it, for a resumed one what comes after the resume point. A driver may stream them in one
   * request (S3: one PutObject, or one UploadPart at a part boundary). A new file's writer may then
   * refuse to checkpoint.
   */
  size?: number;
}

export interface StorageDriver {
  readonly name: string;
  /** True where directories are only key prefixes (S3): a directory goes with its last file, none is left behind. */
  readonly directoriesArePrefixes?: boolean;
  /**
   * True where a new writer's file stays invisible at its path until `commit`, and `cancel` leaves nothing
   * (S3: a multipart upload, or one PUT at commit). Content verified while it streams can then be written
   * straight to its final path; elsewhere it goes through a temporary file and a `move`.
   */
  readonly writersCommitAtomically?: boolean;
  /**
   * Optional: aborts unfinished writers under the directory `path` that started before `startedBefore` and
   * were never committed or cancelled (S3: multipart uploads a crashed process left, which cost storage
   * but are invisible to `list`). Returns how many. Drivers whose writers leave visible files omit it.
   */
  abortStaleWriters?(path: string, startedBefore: Date): Promise<number>;
  /** Whole small files (links, state). Throws PathNotFoundError. */
  getContent(path: string): Promise<Buffer>;
  /** Atomic replace: readers see the old or the new content, never a mix or an empty file. */
  putContent(path: string, content: Buffer | string): Promise<void>;
  /**
   * Creates the file only if it does not exist; returns false when it did. With `inExistingDirectory`,
   * drivers with real directories throw PathNotFoundError instead of making a missing parent (a claim in
   * a directory that was just removed must not bring it back); elsewhere there is nothing to check.
   */
  putContentIfAbsent(path: string, content: Buffer | string, options?: PutIfAbsentOptions): Promise<boolean>;
  reader(path: string, offset?: number, length?: number): Promise<Readable>;
  /**
   * Optional fast path for serving: writes [offset, offset + length) to `out` (without ending it) through
   * reused buffers, so a download allocates nothing per chunk. Drivers without it are read with `reader`.
   */
  copyTo?(path: string, offset: number, length: number, out: Writable): Promise<void>;
  writer(path: string, options?: WriterOptions): Promise<FileWriter>;
  /** A file or directory. With `{ file: true }` only a file: a missing one is not looked for as a directory (S3: one request less). */
  stat(path: string, options?: { file?: boolean }): Promise<FileInfo>;
  /** Direct children of a directory, as full paths. Throws PathNotFoundError. */
  list(path: string): Promise<string[]>;
  /** Atomic rename; replaces an existing destination. */
  move(source: string, destination: string): Promise<void>;
  /**
   * Optional: a copy made by the backend itself, as cheap as `move` without removing the source (S3:
   * CopyObject). A caller about to delete the source's whole directory anyway saves the delete of `move`.
   * Drivers that would copy the bytes omit it. Replaces an existing destination; throws PathNotFoundError.
   */
  copy?(source: string, destination: string): Promise<void>;
  /**
   * Removes a file or a whole directory tree; missing paths are not an error. `finished`: the caller knows
   * every writer under the path was committed or cancelled, so none needs looking for (S3: no listing of
   * multipart uploads and checkpoint tails).
   */
  delete(path: string, options?: { finished?: boolean }): Promise<void>;
  /** Removes one file only (cheaper than `delete` where directories are key prefixes); missing is not an error. */
  deleteFile(path: string): Promise<void>;
  /** Optional: removes many files in few requests (S3 DeleteObjects); missing files are not an error. */
  deleteFiles?(paths: string[]): Promise<void>;
  /** A URL a client may fetch the content from directly, or undefined to stream through the registry. */
  redirectURL(path: string, method: 'GET' | 'HEAD'): Promise<string | undefined>;
  /** Checks that the backend answers (readiness). */
  healthCheck(): Promise<void>;
}

export class PathNotFoundError extends Error {
  readonly code = 'PATH_NOT_FOUND';
  constructor(readonly path: string) {
    super(`path not found: ${path}`);
  }
}

export class InvalidPathError extends Error {
  constructor(readonly path: string) {
    super(`invalid storage path: ${path}`);
  }
}

/** The backend failed in a way a retry later may fix (throttling, 5xx, timeouts): 503 to the client. */
export class StorageUnavailableError extends Error {
  constructor(message: string, override readonly cause?: unknown) {
    super(message);
  }
}

export function isNotFound(error: unknown): error is PathNotFoundError {
  return error instanceof PathNotFoundError;
}

/** True when `path` exists (file or directory, or only a file with `{ file: true }`); other failures propagate. */
export async function exists(driver: StorageDriver, path: string, options?: { file?: boolean }): Promise<boolean> {
  try {
    await driver.stat(path, options);
    return true;
  } catch (error) {
    if (isNotFound(error)) return false;
    throw error;
  }
}

/** Rejects anything that could escape the driver's root: the domain builds paths, but a bug must not become traversal. */
export function assertSafePath(path: string): string {
  if (!path.startsWith('/') || path.includes('\0') || path.split('/').some((part) => part === '..' || part === '.')) {
    throw new InvalidPathError(path);
  }
  return path;
}
