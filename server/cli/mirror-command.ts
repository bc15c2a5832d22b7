// `dify-registry mirror`: turns its arguments into a POST /admin/v1/mirror body, submits it, follows the job
// until it ends (live bars on a terminal, change-only lines in logs), cancels it on Ctrl-C, and prints the
// digests it wrote. Talks to a running registry only: it never loads the server's configuration.
import { parseArgs } from 'node:util';
import semver from 'semver';
import { isFinished, isJobState, type JobRecord } from '../jobs/job.js';
import { parsePlatform } from '../mirror/platforms.js';
import { isValidName, isValidTag } from '../registry/names.js';
import { AdminApiError, AdminClient, ConnectionError } from './admin-client.js';
import { adminTarget, parseOrExit, processIo, UsageError, type AdminTarget, type CommandIo } from './admin-command.js';
import { erase, failureLines, ProgressLog, redraw, renderProgress, summaryLines } from './progress-view.js';

export const MIRROR_USAGE = `usage: dify-registry mirror <upstream>/<repository>[:<tag>] [:<tag> ...] [options]

Mirrors upstream tags into a running registry through its admin API (POST /admin/v1/mirror), shows the
job's progress until it ends, then every tag it wrote with its digest.

  <upstream>/<repository>   an upstream named in the server's mirror.upstreams (docker.io is built in);
                            docker.io/nginx means library/nginx. More tags: repeat :<tag> or the whole
                            reference, or use --tag.
Which tags (one kind):
  -t, --tag TAG             an upstream tag (repeatable)
      --tag-regex REGEX     every upstream tag matching REGEX (anchored at both ends)
      --semver RANGE        every upstream version tag in RANGE, e.g. '>=1.12.0 <2'
What and where:
  -p, --platform OS/ARCH[/VARIANT]
                            only these platforms (repeatable or comma-separated; default: all)
  -l, --layout LAYOUT       same-name | ddn-k8s | prefix=<path> (repeatable; default: same-name)
Server:
  -s, --server URL          the registry (default: $REGISTRY_URL, else http://127.0.0.1:5000)
  -u, --username USER       an admin user (default: $REGISTRY_USERNAME)
      --password PASSWORD   its password (default: $REGISTRY_PASSWORD; the variable keeps it out of ps)
Output:
      --no-wait             print the job id and its Location, then exit
      --json                print the final job as JSON instead of the summary
  -h, --help                this text

Environment: REGISTRY_URL, REGISTRY_USERNAME, REGISTRY_PASSWORD, read by this command only (it loads no
server configuration). Progress goes to stderr: bars on a terminal, a line per change otherwise.
Ctrl-C cancels the job (DELETE /admin/v1/jobs/<id>) and waits until it has stopped; twice stops waiting.

Exit status: 0 the job succeeded; 1 it failed or was cancelled, or the server could not be used;
2 bad usage (including a request the server rejects as invalid); 130 interrupted by Ctrl-C.

Example: dify-registry mirror docker.io/langgenius/dify-api:1.12.1 --layout ddn-k8s --layout same-name`;

const POLL_MS = 500;
/** How long polling rides out a restarting server or a 5xx before giving up. */
const POLL_PATIENCE_MS = 60_000;
const LOG_TAIL = 15;

export type Layout = 'same-name' | 'ddn-k8s' | { prefix: string };

/** The JSON body of POST /admin/v1/mirror. */
export interface MirrorRequestBody {
  source: string;
  tags?: string[];
  tagRegex?: string;
  semver?: string;
  platforms?: string[];
  layouts?: Layout[];
}

export interface MirrorOptions extends AdminTarget {
  body: MirrorRequestBody;
  wait: boolean;
  json: boolean;
}

/** Arguments (after `mirror`) and environment -> what to do; UsageError for anything that cannot work. */
export function parseMirrorArgs(argv: string[], env: NodeJS.ProcessEnv = {}): MirrorOptions | 'help' {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        tag: { type: 'string', short: 't', multiple: true },
        'tag-regex': { type: 'string' },
        semver: { type: 'string' },
        platform: { type: 'string', short: 'p', multiple: true },
        layout: { type: 'string', short: 'l', multiple: true },
        server: { type: 'string', short: 's' },
        username: { type: 'string', short: 'u' },
        password: { type: 'string' },
        'no-wait': { type: 'boolean' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) return 'help';
  if (positionals.length === 0) throw new UsageError('give the upstream repository, e.g. docker.io/langgenius/dify-api:1.12.1');

  const first = splitReference(positionals[0]!);
  const tags = first.tag !== undefined ? [first.tag] : [];
  for (const more of positionals.slice(1)) {
    // `:1.12.0` or the whole reference again; a bare word could be either a tag or a mistake.
    if (!more.startsWith(':') && !more.includes('/')) throw new UsageError(`"${more}": give more tags as :${more} or --tag ${more}`);
    const next = more.startsWith(':') ? { source: first.source, tag: more.slice(1) } : splitReference(more);
    if (next.source !== first.source) throw new UsageError(`one repository per command: ${more} is not ${first.source}`);
    if (next.tag === undefined) throw new UsageError(`${more} names no tag`);
    tags.push(next.tag);
  }
  tags.push(...(values.tag ?? []));
  for (const tag of tags) if (!isValidTag(tag)) throw new UsageError(`"${tag}" is not a valid tag`);

  const regex = values['tag-regex'];
  const range = values.semver;
  const kinds = [tags.length > 0, regex !== undefined, range !== undefined].filter(Boolean).length;
  if (kinds === 0) {
    throw new UsageError(
      `${first.source} names no tag: give one (${first.source}:<tag> or --tag <tag>) or a filter (--tag-regex or --semver)`,
    );
  }
  if (kinds > 1) throw new UsageError('give tags, --tag-regex or --semver, not more than one of them');
  if (regex !== undefined && !isRegExp(regex)) throw new UsageError(`--tag-regex: "${regex}" is not a valid regular expression`);
  if (range !== undefined && semver.validRange(range) === null) throw new UsageError(`--semver: "${range}" is not a valid semver range`);

  const body: MirrorRequestBody = { source: first.source };
  if (tags.length > 0) body.tags = [...new Set(tags)];
  if (regex !== undefined) body.tagRegex = regex;
  if (range !== undefined) body.semver = range;
  const platforms = (values.platform ?? []).flatMap((p) => p.split(',')).map((p) => p.trim()).filter(Boolean);
  for (const platform of platforms) {
    if (!parsePlatform(platform)) throw new UsageError(`--platform: "${platform}" is not os/arch[/variant], e.g. linux/arm64`);
  }
  if (platforms.length > 0) body.platforms = [...new Set(platforms)];
  const layouts = (values.layout ?? []).map(parseLayout);
  if (layouts.length > 0) body.layouts = uniqueLayouts(layouts);

  return {
    body,
    ...adminTarget(values, env),
    wait: !values['no-wait'],
    json: values.json ?? false,
  };
}

/** `docker.io/langgenius/dify-api:1.12.1` -> source and tag; the tag's colon is the one after the last slash. */
function splitReference(reference: string): { source: string; tag?: string } {
  if (reference.includes('@')) throw new UsageError(`${reference}: mirror tags, not digests`);
  const slash = reference.lastIndexOf('/');
  const colon = reference.lastIndexOf(':');
  const source = colon > slash ? reference.slice(0, colon) : reference;
  if (slash <= 0 || !isValidName(source)) {
    throw new UsageError(`"${reference}" is not <upstream>/<repository>[:<tag>], e.g. docker.io/nginx:1.27`);
  }
  return colon > slash ? { source, tag: reference.slice(colon + 1) } : { source };
}

function parseLayout(value: string): Layout {
  if (value === 'same-name' || value === 'ddn-k8s') return value;
  const prefix = /^prefix=(.+)$/.exec(value)?.[1];
  if (prefix !== undefined) return { prefix };
  throw new UsageError(`--layout: "${value}" is not same-name, ddn-k8s or prefix=<path>`);
}

function uniqueLayouts(layouts: Layout[]): Layout[] {
  const seen = new Set<string>();
  return layouts.filter((layout) => {
    const key = JSON.stringify(layout);
    return !seen.has(key) && (seen.add(key), true);
  });
}

// ---------------------------------------------------------------------------------------------
// Running

/** Runs the command; resolves to the exit status. */
export async function runMirrorCommand(argv: string[], io: CommandIo = processIo()): Promise<number> {
  const out = (line: string) => io.stdout.write(`${line}\n`);
  const err = (line: string) => io.stderr.write(`${line}\n`);
  const options = parseOrExit(() => parseMirrorArgs(argv, io.env), 'mirror', MIRROR_USAGE, io);
  if (typeof options === 'number') return options;

  const client = new AdminClient({ server: options.server, ...(options.username !== undefined ? { username: options.username, password: options.password! } : {}) });
  let submitted: { job: JobRecord; location: string };
  try {
    submitted = await client.submitMirror(options.body);
  } catch (error) {
    reportError(error, err);
    // The server found the request itself wrong (unknown upstream, invalid name): still bad usage.
    return error instanceof AdminApiError && error.status === 400 ? 2 : 1;
  }
  const { job, location } = submitted;
  if (!options.wait) {
    if (options.json) out(JSON.stringify(job, null, 2));
    else out(`job ${job.id}\nLocation: ${location}`);
    return 0;
  }
  return follow(client, job, options, io, out, err);
}

async function follow(
  client: AdminClient,
  submitted: JobRecord,
  options: MirrorOptions,
  io: CommandIo,
  out: (line: string) => void,
  err: (line: string) => void,
): Promise<number> {
  const view = io.stderr.isTTY ? new TerminalView(io.stderr) : new LogView(err);
  view.message(`job ${submitted.id}: mirroring ${options.body.source} (Ctrl-C cancels)`);
  let interrupted = false;
  let cancel: Promise<void> | undefined;
  const onSigint = () => {
    if (interrupted) {
      view.message(`stopped waiting; job ${submitted.id} may still be stopping`);
      process.exit(130);
    }
    interrupted = true;
    view.message(`cancelling job ${submitted.id} (Ctrl-C again stops waiting)`);
    cancel = client.cancel(submitted.id).then(
      () => undefined,
      // 409: it ended on its own meanwhile, which the next poll shows.
      (error) => (error instanceof AdminApiError && error.status === 409 ? undefined : view.message(errorLine(error))),
    );
  };
  process.on('SIGINT', onSigint);
  let job = submitted;
  try {
    let failingSince: number | undefined;
    while (!ended(job.state)) {
      view.update(job);
      await sleep(POLL_MS);
      try {
        job = await client.job(submitted.id);
        failingSince = undefined;
      } catch (error) {
        if (!isTransient(error)) throw error;
        // A restarting server or a Redis blip: keep asking for a while before giving up on the job.
        if (failingSince === undefined) view.message(`${errorLine(error)} (retrying)`);
        failingSince ??= Date.now();
        if (Date.now() - failingSince > POLL_PATIENCE_MS) throw error;
      }
    }
    view.update(job);
    view.done();
    await cancel;
  } catch (error) {
    view.done();
    reportError(error, err);
    return interrupted ? 130 : 1;
  } finally {
    process.off('SIGINT', onSigint);
  }

  if (options.json) out(JSON.stringify(job, null, 2));
  if (interrupted) {
    err(`interrupted: job ${job.id} ended ${job.state}`);
    return 130;
  }
  if (job.state === 'succeeded') {
    if (!options.json) for (const line of summaryLines(job)) out(line);
    return 0;
  }
  const logs = await client.logs(job.id).catch(() => [] as string[]);
  for (const line of failureLines(job, logs.slice(-LOG_TAIL))) err(line);
  return 1;
}

interface View {
  update(job: JobRecord): void;
  /** A line above the live area. */
  message(line: string): void;
  done(): void;
}

/** Redraws the same lines in place on a terminal. */
class TerminalView implements View {
  private drawn = 0;
  private shown = '';
  private last: JobRecord | undefined;

  constructor(private readonly stream: NodeJS.WriteStream) {}

  update(job: JobRecord): void {
    this.last = job;
    const lines = renderProgress(job, { width: this.stream.columns || 80, tty: true });
    const text = lines.join('\n');
    if (this.drawn > 0 && text === this.shown) return; // nothing moved: no flicker
    this.stream.write(redraw(this.drawn, lines));
    this.drawn = lines.length;
    this.shown = text;
  }

  message(line: string): void {
    this.stream.write(`${erase(this.drawn)}${line}\n`);
    this.drawn = 0;
    if (this.last) this.update(this.last);
  }

  done(): void {
    this.drawn = 0; // what is drawn stays as the final picture
  }
}

/** Plain lines, only when something changed: for CI logs and pipes. */
class LogView implements View {
  private readonly log = new ProgressLog();

  constructor(private readonly write: (line: string) => void) {}

  update(job: JobRecord): void {
    for (const line of this.log.next(job)) this.write(line);
  }

  message(line: string): void {
    this.write(line);
  }

  done(): void {}
}

function reportError(error: unknown, err: (line: string) => void): void {
  err(errorLine(error));
  if (error instanceof AdminApiError && error.status === 401) {
    err('hint: give an admin user with --username and --password (or REGISTRY_USERNAME and REGISTRY_PASSWORD)');
  }
}

function errorLine(error: unknown): string {
  if (error instanceof AdminApiError) return `error: ${error.code}: ${error.message}`;
  return `error: ${error instanceof Error ? error.message : String(error)}`;
}

function ended(state: string): boolean {
  return isJobState(state) && isFinished(state);
}

function isTransient(error: unknown): boolean {
  return error instanceof ConnectionError || (error instanceof AdminApiError && (error.status >= 500 || error.status === 429));
}

function isRegExp(pattern: string): boolean {
  try {
    new RegExp(pattern);
    return true;
  } catch {
    return false;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
