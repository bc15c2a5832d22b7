// A build's source on the worker's disk: a shallow fetch of one git ref (Debian's git), or an uploaded
// .tar.gz context unpacked from storage. Network failures are retryable; an unknown ref is not.
import { mkdir, realpath, stat } from 'node:fs/promises';
import { join, relative, resolve, sep } from 'node:path';
import type { StorageDriver } from '../storage-drivers/driver.js';
import { JobError, RetryableJobError } from '../server/jobs/job.js';
import { execStreaming, type ExecResult } from './exec.js';
import { isGitSource, type BuildSource } from './request.js';
import { contextPath } from './uploads.js';
import { scrubText } from '../server/logging/redact.js';

export interface FetchedSource {
  /** The checkout or the unpacked upload, symlinks resolved: nothing the build reads may be outside it. */
  root: string;
  /** The build context: the repository's subfolder, or the unpacked upload (symlinks resolved). */
  contextDir: string;
  /** The commit built, for git sources. */
  commit?: string;
}

export interface SourceOptions {
  git: string;
  driver: StorageDriver;
  signal: AbortSignal;
  log(line: string): void;
  timeoutMs?: number;
}

const GIT_TIMEOUT_MS = 15 * 60_000;
/** git's words for a source that is there but does not have what we asked for: retrying will not help. */
const GIT_FINAL = [/couldn't find remote ref/i, /not our ref/i, /does not appear to be a git repository/i, /repository .* not found/i, /invalid refspec/i, /Authentication failed/i, /unknown revision/i, /did not match any/i];

/** Fetches `source` into `dir` (which must be empty or absent). */
export async function fetchSource(source: BuildSource, dir: string, options: SourceOptions): Promise<FetchedSource> {
  await mkdir(dir, { recursive: true });
  if (!isGitSource(source)) {
    await unpackUpload(source.upload, dir, options);
    const root = await realpath(dir);
    return { root, contextDir: root };
  }
  const git = (args: string[], cwd = dir) =>
    execStreaming(options.git, args, {
      cwd,
      env: gitEnv(),
      signal: options.signal,
      timeoutMs: options.timeoutMs ?? GIT_TIMEOUT_MS,
      onLine: (line) => options.log(`git: ${line}`),
    });
  options.log(`fetching ${source.ref} from ${scrubText(source.git)}`);
  checked(await git(['init', '-q', dir]), 'git init', options.signal);
  let fetched = await git(['fetch', '--depth', '1', '--no-tags', '--', source.git, source.ref]);
  if (fetched.code !== 0 && !fetched.stopped && /^[0-9a-f]{7,40}$/.test(source.ref)) {
    // A commit some servers will not serve by id: fetch everything, then check it out.
    fetched = await git(['fetch', '--no-tags', '--', source.git, '+refs/heads/*:refs/remotes/origin/*', '+refs/tags/*:refs/tags/*']);
    checked(fetched, `git fetch ${source.ref}`, options.signal);
    checked(await git(['checkout', '-q', '--detach', source.ref]), `git checkout ${source.ref}`, options.signal);
  } else {
    checked(fetched, `git fetch ${source.ref}`, options.signal);
    checked(await git(['checkout', '-q', '--detach', 'FETCH_HEAD']), 'git checkout', options.signal);
  }
  const head = await execStreaming(options.git, ['rev-parse', 'HEAD'], { cwd: dir, env: gitEnv(), signal: options.signal });
  const commit = head.tail.at(-1)?.trim();
  if (head.code !== 0 || !commit || !/^[0-9a-f]{40,64}$/.test(commit)) throw new JobError('GIT_FAILED', 'git rev-parse HEAD gave no commit');
  options.log(`source at commit ${commit}`);
  const root = await realpath(dir);
  const contextDir = source.path ? await realInside(root, source.path, 'CONTEXT_INVALID', 'the context path') : root;
  return { root, contextDir, commit };
}

const MAX_DOCKERFILE_BYTES = 1024 * 1024;

/**
 * The Dockerfile `path` (relative to the context) as a file inside the source. A repository's symlink
 * could otherwise hand the engine /etc/passwd, or /dev/zero to read forever.
 */
export async function dockerfileIn(source: FetchedSource, path: string): Promise<string> {
  const file = await realInside(source.root, join(relative(source.root, source.contextDir), path), 'DOCKERFILE_INVALID', 'the Dockerfile');
  const info = await stat(file);
  if (!info.isFile()) throw new JobError('DOCKERFILE_INVALID', `${path} is not a file`);
  if (info.size > MAX_DOCKERFILE_BYTES) throw new JobError('DOCKERFILE_INVALID', `${path} is larger than ${MAX_DOCKERFILE_BYTES} bytes`);
  return file;
}

/** `path` under `root` with symlinks resolved: a link in the repository must not lead out of it. */
async function realInside(root: string, path: string, code: string, what: string): Promise<string> {
  let real: string;
  try {
    real = await realpath(inside(root, path));
  } catch (error) {
    if (error instanceof JobError) throw error;
    throw new JobError(code, `${what} ${path} is not in the source`);
  }
  if (real !== root && !real.startsWith(root + sep)) throw new JobError(code, `${what} ${path} leads out of the source`);
  return real;
}

async function unpackUpload(id: string, dir: string, options: SourceOptions): Promise<void> {
  let stream;
  try {
    stream = await options.driver.reader(contextPath(id));
  } catch (error) {
    if ((error as { code?: string }).code === 'PATH_NOT_FOUND') throw new JobError('CONTEXT_UNKNOWN', `no uploaded context ${id}`);
    throw new RetryableJobError(`reading context ${id}: ${(error as Error).message}`, { code: 'STORAGE_UNAVAILABLE' });
  }
  options.log(`unpacking uploaded context ${id}`);
  // GNU tar refuses members with `..` and strips leading slashes; ownership stays ours.
  const result = await execStreaming('tar', ['-xz', '--no-same-owner', '--no-same-permissions', '-C', dir, '-f', '-'], {
    input: stream,
    signal: options.signal,
    onLine: (line) => options.log(`tar: ${line}`),
  });
  if (result.stopped === 'aborted') throw options.signal.reason;
  if (result.code !== 0) throw new JobError('CONTEXT_INVALID', `the uploaded context is not a readable .tar.gz: ${result.tail.at(-1) ?? ''}`);
}

function checked(result: ExecResult, what: string, signal: AbortSignal): void {
  if (result.stopped === 'aborted') throw signal.reason;
  if (result.stopped === 'timeout') throw new RetryableJobError(`${what}: timed out`, { code: 'GIT_UNREACHABLE' });
  if (result.code === 0) return;
  const text = result.tail.join('\n');
  const last = [...result.tail].reverse().find((line) => /fatal|error/i.test(line)) ?? result.tail.at(-1) ?? `exit ${result.code}`;
  if (GIT_FINAL.some((pattern) => pattern.test(text))) throw new JobError('GIT_FAILED', `${what}: ${last}`);
  throw new RetryableJobError(`${what}: ${last}`, { code: 'GIT_UNREACHABLE' });
}

/** No prompts, no system or user configuration, no credential helpers that could hang a worker. */
function gitEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, GIT_TERMINAL_PROMPT: '0', GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null', GIT_ASKPASS: '/bin/false' };
  delete env.GIT_DIR;
  delete env.GIT_WORK_TREE;
  return env;
}

/** `path` under `dir`, never outside it. */
function inside(dir: string, path: string): string {
  const full = resolve(dir, path);
  if (full !== resolve(dir) && !full.startsWith(resolve(dir) + sep)) throw new JobError('CONTEXT_INVALID', `${path} leaves the repository`);
  return full;
}


