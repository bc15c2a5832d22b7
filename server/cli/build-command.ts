// `dify-registry build`: turns its arguments into a POST /admin/v1/builds body (uploading a local context
// first when given one), then follows the job: a row per platform and the live build log, until it ends.
// Ctrl-C cancels the build. Talks to a running registry only: it never loads the server's configuration.
import { spawn } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { parseArgs } from 'node:util';
import { isFinished, isJobState, type JobRecord } from '../jobs/job.js';
import { parsePlatform } from '../mirror/platforms.js';
import { isValidName, isValidTag } from '../registry/names.js';
import { AdminApiError, ConnectionError } from './admin-client.js';
import { BuildClient } from './build-client.js';
import { BuildProgressLog, buildSummary, renderBuild } from './build-view.js';
import { adminTarget, DEFAULT_SERVER, parseOrExit, processIo, UsageError, type AdminTarget, type CommandIo } from './admin-command.js';
import { erase, failureLines, redraw } from './progress-view.js';

export const BUILD_USAGE = `usage: dify-registry build <recipe> --ref <ref> [options]
       dify-registry build --dockerfile <path> --repository <name> (--git <url> --ref <ref> | --context <dir|file.tar.gz>) [options]

Builds an image for several platforms in a running registry (POST /admin/v1/builds): each platform on
a worker that builds it, then one OCI index over them, tagged once every platform succeeded. Shows a
row per platform and the build log until the job ends, then the digests and tags written.

Source:
      --ref REF             git branch, tag or commit (dify-api: a Dify release such as 1.12.1)
      --git URL             the git repository (default: the recipe's, https://github.com/langgenius/dify.git)
      --path DIR            the context folder in the repository (default: the recipe's, api for dify-api)
      --context PATH        a local directory or .tar.gz to build instead of git (uploaded first)
      --dockerfile PATH     a Dockerfile in the context, instead of a recipe
Image:
  -r, --repository NAME     where to push (default: the recipe's, langgenius/dify-api)
  -t, --tag TAG             a tag (repeatable; default: the ref and the short commit)
  -p, --platform OS/ARCH    repeatable or comma-separated (default: linux/amd64,linux/arm64)
  -l, --layout LAYOUT       same-name | ddn-k8s (repeatable; default: same-name)
      --build-arg NAME=VALUE  repeatable, e.g. DEBIAN_MIRROR=http://mirror.example/debian
      --force               write tags that a mirror sync rule owns
Server:
  -s, --server URL          the registry (default: $REGISTRY_URL, else ${DEFAULT_SERVER})
  -u, --username USER       an admin user (default: $REGISTRY_USERNAME)
      --password PASSWORD   its password (default: $REGISTRY_PASSWORD)
Output:
      --no-wait             print the job id and its Location, then exit
      --no-log              follow the progress only, not the build log
      --json                print the final job as JSON instead of the summary
  -h, --help                this text

Progress and the build log go to stderr; the summary to stdout. Ctrl-C cancels the build and waits
until it has stopped; twice stops waiting.
Exit status: 0 the build succeeded; 1 it failed or was cancelled, or the server could not be used;
2 bad usage (including a request the server rejects); 130 interrupted by Ctrl-C.

Example: dify-registry build dify-api --ref 1.12.1 --layout same-name --layout ddn-k8s`;

const POLL_MS = 1_000;
const POLL_PATIENCE_MS = 60_000;
const LOG_TAIL = 30;

export interface BuildOptions extends AdminTarget {
  body: Record<string, unknown>;
  /** A local context to upload before submitting. */
  context?: string;
  wait: boolean;
  log: boolean;
  json: boolean;
}

export function parseBuildArgs(argv: string[], env: NodeJS.ProcessEnv = {}): BuildOptions | 'help' {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        ref: { type: 'string' },
        git: { type: 'string' },
        path: { type: 'string' },
        context: { type: 'string' },
        dockerfile: { type: 'string' },
        repository: { type: 'string', short: 'r' },
        tag: { type: 'string', short: 't', multiple: true },
        platform: { type: 'string', short: 'p', multiple: true },
        layout: { type: 'string', short: 'l', multiple: true },
        'build-arg': { type: 'string', multiple: true },
        force: { type: 'boolean' },
        server: { type: 'string', short: 's' },
        username: { type: 'string', short: 'u' },
        password: { type: 'string' },
        'no-wait': { type: 'boolean' },
        'no-log': { type: 'boolean' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) return 'help';
  if (positionals.length > 1) throw new UsageError(`one recipe per build, not ${positionals.join(' ')}`);
  const recipe = positionals[0];
  if ((recipe === undefined) === (values.dockerfile === undefined)) throw new UsageError('name a recipe (e.g. dify-api) or give --dockerfile, not both');
  if (values.dockerfile !== undefined && values.repository === undefined) throw new UsageError('--dockerfile needs --repository');
  if (values.context !== undefined && (values.git !== undefined || values.ref !== undefined || values.path !== undefined)) {
    throw new UsageError('--context builds a local folder or .tar.gz: leave out --git, --ref and --path');
  }
  if (values.context === undefined && values.ref === undefined) throw new UsageError('give --ref (a branch, tag or commit), or --context');
  if (values.context !== undefined && !values.tag?.length) throw new UsageError('a build of a local --context needs --tag');

  const body: Record<string, unknown> = recipe !== undefined ? { recipe } : { dockerfile: values.dockerfile };
  if (values.ref !== undefined) {
    body.context = { ref: values.ref, ...(values.git !== undefined ? { git: values.git } : {}), ...(values.path !== undefined ? { path: values.path } : {}) };
  }
  if (values.repository !== undefined) {
    if (!isValidName(values.repository)) throw new UsageError(`"${values.repository}" is not a repository name`);
    body.repository = values.repository;
  }
  const tags = values.tag ?? [];
  for (const tag of tags) if (!isValidTag(tag)) throw new UsageError(`"${tag}" is not a valid tag`);
  if (tags.length > 0) body.tags = [...new Set(tags)];
  const platforms = (values.platform ?? []).flatMap((p) => p.split(',')).map((p) => p.trim()).filter(Boolean);
  for (const platform of platforms) if (!parsePlatform(platform)) throw new UsageError(`--platform: "${platform}" is not os/arch, e.g. linux/arm64`);
  if (platforms.length > 0) body.platforms = [...new Set(platforms)];
  const layouts = values.layout ?? [];
  for (const layout of layouts) if (layout !== 'same-name' && layout !== 'ddn-k8s') throw new UsageError(`--layout: "${layout}" is not same-name or ddn-k8s`);
  if (layouts.length > 0) body.layouts = [...new Set(layouts)];
  const buildArgs: Record<string, string> = {};
  for (const arg of values['build-arg'] ?? []) {
    const eq = arg.indexOf('=');
    if (eq <= 0) throw new UsageError(`--build-arg: "${arg}" is not NAME=VALUE`);
    buildArgs[arg.slice(0, eq)] = arg.slice(eq + 1);
  }
  if (Object.keys(buildArgs).length > 0) body.buildArgs = buildArgs;
  if (values.force) body.force = true;

  return {
    body,
    ...(values.context !== undefined ? { context: values.context } : {}),
    ...adminTarget(values, env),
    wait: !values['no-wait'],
    log: !values['no-log'],
    json: values.json ?? false,
  };
}

export async function runBuildCommand(argv: string[], io: CommandIo = processIo()): Promise<number> {
  const out = (line: string) => io.stdout.write(`${line}\n`);
  const err = (line: string) => io.stderr.write(`${line}\n`);
  const options = parseOrExit(() => parseBuildArgs(argv, io.env), 'build', BUILD_USAGE, io);
  if (typeof options === 'number') return options;
  const client = new BuildClient({ server: options.server, ...(options.username !== undefined ? { username: options.username, password: options.password! } : {}) });
  let submitted: { job: JobRecord; location: string; warnings: string[] };
  try {
    if (options.context !== undefined) {
      const uploaded = await client.uploadContext(await tarGz(options.context));
      err(`uploaded context ${options.context} as ${uploaded.id} (${uploaded.size} bytes)`);
      options.body.context = { upload: uploaded.id };
    }
    submitted = await client.submitBuild(options.body);
  } catch (error) {
    err(errorLine(error));
    return error instanceof AdminApiError && error.status >= 400 && error.status < 500 && error.status !== 401 && error.status !== 403 ? 2 : 1;
  }
  for (const warning of submitted.warnings) err(`warning: ${warning}`);
  if (!options.wait) {
    out(options.json ? JSON.stringify(submitted.job, null, 2) : `job ${submitted.job.id}\nLocation: ${submitted.location}`);
    return 0;
  }
  return follow(client, submitted.job, options, io, out, err);
}

async function follow(
  client: BuildClient,
  submitted: JobRecord,
  options: BuildOptions,
  io: CommandIo,
  out: (line: string) => void,
  err: (line: string) => void,
): Promise<number> {
  const view = io.stderr.isTTY ? new TerminalView(io.stderr) : new LogView(err);
  view.message(`job ${submitted.id}: building ${String((submitted.request as { repository?: string }).repository ?? '')} (Ctrl-C cancels)`);
  const stopLog = new AbortController();
  const logging = options.log ? followLog(client, submitted.id, (line) => view.message(line), stopLog.signal) : Promise.resolve();
  let interrupted = false;
  let cancel: Promise<void> | undefined;
  const onSigint = () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    view.message(`cancelling job ${submitted.id} (Ctrl-C again stops waiting)`);
    cancel = client.cancel(submitted.id).then(
      () => undefined,
      (error) => (error instanceof AdminApiError && error.status === 409 ? undefined : view.message(errorLine(error))),
    );
  };
  process.on('SIGINT', onSigint);
  let job = submitted;
  try {
    let failingSince: number | undefined;
    while (!ended(job.state)) {
      view.update(job);
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      try {
        job = await client.job(submitted.id);
        failingSince = undefined;
      } catch (error) {
        if (!(error instanceof ConnectionError || (error instanceof AdminApiError && error.status >= 500))) throw error;
        failingSince ??= Date.now();
        if (Date.now() - failingSince > POLL_PATIENCE_MS) throw error;
      }
    }
    // The log stream ends with the job; give it a moment to deliver its last lines.
    await Promise.race([logging, new Promise((resolve) => setTimeout(resolve, 3_000))]);
    view.update(job);
    view.done();
    await cancel;
  } catch (error) {
    view.done();
    err(errorLine(error));
    return interrupted ? 130 : 1;
  } finally {
    stopLog.abort();
    process.off('SIGINT', onSigint);
  }
  if (options.json) out(JSON.stringify(job, null, 2));
  if (interrupted) {
    err(`job ${job.id} ${job.state}`);
    return 130;
  }
  if (job.state === 'succeeded') {
    if (!options.json) for (const line of buildSummary(job)) out(line);
    return 0;
  }
  const tail = options.log ? [] : (await client.logs(job.id).catch(() => [] as string[])).slice(-LOG_TAIL);
  for (const line of failureLines(job, tail)) err(line);
  return 1;
}

/** The live log, reconnecting (without repeating lines) if the stream breaks before the job ends. */
async function followLog(client: BuildClient, id: string, onLine: (line: string) => void, signal: AbortSignal): Promise<void> {
  let seen = 0;
  for (let attempt = 0; attempt < 20 && !signal.aborted; attempt++) {
    try {
      seen = await client.followLogs(id, onLine, signal, seen);
      return;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 1_000));
    }
  }
}

interface View {
  update(job: JobRecord): void;
  message(line: string): void;
  done(): void;
}

class TerminalView implements View {
  private drawn = 0;
  private last: JobRecord | undefined;

  constructor(private readonly stream: NodeJS.WriteStream) {}

  update(job: JobRecord): void {
    this.last = job;
    const lines = renderBuild(job, { width: this.stream.columns || 80, tty: true });
    this.stream.write(redraw(this.drawn, lines));
    this.drawn = lines.length;
  }

  message(line: string): void {
    this.stream.write(`${erase(this.drawn)}${line}\n`);
    this.drawn = 0;
    if (this.last) this.update(this.last);
  }

  done(): void {
    this.drawn = 0;
  }
}

class LogView implements View {
  private readonly progress = new BuildProgressLog();

  constructor(private readonly write: (line: string) => void) {}

  update(job: JobRecord): void {
    for (const line of this.progress.next(job)) this.write(line);
  }

  message(line: string): void {
    this.write(line);
  }

  done(): void {}
}

/** A .tar.gz of a directory (made with tar), or the file itself. */
async function tarGz(path: string): Promise<Readable> {
  const info = await stat(path).catch(() => undefined);
  if (!info) throw new UsageError(`--context: ${path} does not exist`);
  if (!info.isDirectory()) return createReadStream(path);
  const tar = spawn('tar', ['-C', path, '-czf', '-', '.'], { stdio: ['ignore', 'pipe', 'inherit'] });
  return tar.stdout;
}

function errorLine(error: unknown): string {
  if (error instanceof AdminApiError) return `error: ${error.code}: ${error.message}`;
  return `error: ${error instanceof Error ? error.message : String(error)}`;
}

function ended(state: string): boolean {
  return isJobState(state) && isFinished(state);
}
