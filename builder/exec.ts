// Runs a build tool (buildah, git, tar) as a child process: its output line by line to the job log, the
// last lines kept for the error message, and the whole process group stopped when the job is cancelled
// or times out (buildah's RUN steps are its own children).
import { spawn } from 'node:child_process';
import type { Readable } from 'node:stream';

export interface ExecOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  signal?: AbortSignal;
  /** Every output line (stdout and stderr), as it comes. */
  onLine?(line: string): void;
  /** Stopped (and reported as timed out) after this long. */
  timeoutMs?: number;
  /** Fed to stdin, then closed. */
  input?: Readable | Buffer;
  /** How many of the last lines to keep for the result. */
  tailLines?: number;
}

export interface ExecResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The last output lines. */
  tail: string[];
  /** Set when the abort signal or the timeout stopped it. */
  stopped?: 'aborted' | 'timeout';
}

const KILL_GRACE_MS = 10_000;

export function execStreaming(command: string, args: string[], options: ExecOptions = {}): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    if (options.signal?.aborted) {
      resolve({ code: null, signal: null, tail: [], stopped: 'aborted' });
      return;
    }
    // Its own process group, so a stop reaches everything it started.
    const child = spawn(command, args, { cwd: options.cwd, env: options.env ?? process.env, detached: true, stdio: ['pipe', 'pipe', 'pipe'] });
    const keep = options.tailLines ?? 40;
    const tail: string[] = [];
    let stopped: ExecResult['stopped'];
    let killTimer: NodeJS.Timeout | undefined;
    const line = (text: string) => {
      tail.push(text);
      if (tail.length > keep) tail.shift();
      options.onLine?.(text);
    };
    const stop = (why: 'aborted' | 'timeout') => {
      if (stopped || child.exitCode !== null || child.signalCode !== null) return;
      stopped = why;
      signalGroup(child.pid, 'SIGTERM');
      killTimer = setTimeout(() => signalGroup(child.pid, 'SIGKILL'), KILL_GRACE_MS);
      killTimer.unref();
    };
    const onAbort = () => stop('aborted');
    options.signal?.addEventListener('abort', onAbort, { once: true });
    const timeout = options.timeoutMs ? setTimeout(() => stop('timeout'), options.timeoutMs) : undefined;
    timeout?.unref();
    const pending = [splitLines(child.stdout, line), splitLines(child.stderr, line)];
    child.on('error', (error) => {
      options.signal?.removeEventListener('abort', onAbort);
      clearTimeout(timeout);
      reject(error);
    });
    child.on('close', (code, signal) => {
      options.signal?.removeEventListener('abort', onAbort);
      clearTimeout(timeout);
      clearTimeout(killTimer);
      // Whatever is left of the group after the leader exited (a RUN step that ignored SIGTERM).
      if (stopped) signalGroup(child.pid, 'SIGKILL');
      void Promise.all(pending).then(() => resolve({ code, signal, tail, ...(stopped ? { stopped } : {}) }));
    });
    if (options.input) {
      if (Buffer.isBuffer(options.input)) child.stdin.end(options.input);
      else options.input.pipe(child.stdin);
      child.stdin.on('error', () => undefined); // the tool may exit before reading everything
    } else child.stdin.end();
  });
}

function signalGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, signal);
  } catch {
    // already gone
  }
}

/** Longer lines are cut into pieces of this size: output without newlines must not grow without bound. */
const MAX_LINE = 16 * 1024;

function splitLines(stream: Readable, onLine: (line: string) => void): Promise<void> {
  return new Promise((resolve) => {
    let rest = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      const parts = (rest + chunk).split(/\r?\n|\r/);
      rest = parts.pop() ?? '';
      for (const part of parts) for (let at = 0; at < part.length || at === 0; at += MAX_LINE) onLine(part.slice(at, at + MAX_LINE));
      // Kept short, so each chunk costs its own size and not the whole line's so far.
      while (rest.length >= MAX_LINE) {
        onLine(rest.slice(0, MAX_LINE));
        rest = rest.slice(MAX_LINE);
      }
    });
    stream.on('end', () => {
      if (rest) onLine(rest);
      resolve();
    });
    stream.on('error', () => resolve());
  });
}
