// What the admin CLI commands (mirror, build) share: usage errors, their I/O, and which server they talk to
// with which credentials (flags first, then REGISTRY_URL, REGISTRY_USERNAME, REGISTRY_PASSWORD).
export const DEFAULT_SERVER = 'http://127.0.0.1:5000';

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export interface CommandIo {
  stdout: NodeJS.WritableStream;
  /** Progress and errors. */
  stderr: NodeJS.WriteStream;
  env: NodeJS.ProcessEnv;
}

export const processIo = (): CommandIo => ({ stdout: process.stdout, stderr: process.stderr, env: process.env });

export interface AdminTarget {
  server: string;
  username?: string;
  password?: string;
}

/** The server URL (without trailing slashes) and the credentials, both or neither; UsageError otherwise. */
export function adminTarget(values: { server?: string; username?: string; password?: string }, env: NodeJS.ProcessEnv): AdminTarget {
  const server = values.server ?? env.REGISTRY_URL ?? DEFAULT_SERVER;
  if (!isHttpUrl(server)) throw new UsageError(`the server must be an http:// or https:// URL, not "${server}"`);
  const username = values.username ?? nonEmpty(env.REGISTRY_USERNAME);
  const password = values.password ?? nonEmpty(env.REGISTRY_PASSWORD);
  if ((username === undefined) !== (password === undefined)) {
    throw new UsageError('give both a username and a password (--username/--password or REGISTRY_USERNAME/REGISTRY_PASSWORD), or neither');
  }
  return { server: server.replace(/\/+$/, ''), ...(username !== undefined ? { username, password: password! } : {}) };
}

/**
 * Parses a command's arguments: its options, or the exit status after printing the usage (`--help`, 0)
 * or what is wrong with them (2).
 */
export function parseOrExit<T>(parse: () => T | 'help', command: string, usage: string, io: CommandIo): T | number {
  let options: T | 'help';
  try {
    options = parse();
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    io.stderr.write(`error: ${error.message}\n\nrun "dify-registry ${command} --help" for usage\n`);
    return 2;
  }
  if (options !== 'help') return options;
  io.stdout.write(`${usage}\n`);
  return 0;
}

function isHttpUrl(value: string): boolean {
  try {
    const url = new URL(value);
    return (url.protocol === 'http:' || url.protocol === 'https:') && url.username === '' && url.password === '';
  } catch {
    return false;
  }
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}
