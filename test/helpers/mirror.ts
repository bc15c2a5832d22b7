// The admin API of mirror jobs as a test sees it: submit a mirror (or a sync rule), read and wait for a
// job, read its logs. Independent of the server code, so the tests can fail; every failure quotes the
// reply, or the job and its logs.
import { expect } from 'chai';
import { describeReply, OciClient, sleep, type Reply } from './oci.js';

export const MIRROR_PATH = '/admin/v1/mirror';
export const JOBS_PATH = '/admin/v1/jobs';

export const JOB_STATES = ['queued', 'running', 'succeeded', 'failed', 'cancelled'] as const;
export type JobState = (typeof JOB_STATES)[number];
const FINISHED: ReadonlySet<string> = new Set(['succeeded', 'failed', 'cancelled']);

/** A job as GET /admin/v1/jobs/<id> shows it (DESIGN.md section 5). */
export interface JobView {
  id: string;
  kind: string;
  state: JobState;
  request: unknown;
  progress: Record<string, unknown>;
  result: unknown;
  error: { code: string; message: string } | null;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  attempts: number;
}

/** The `result` of a succeeded mirror job, as far as the tests read it. */
export interface MirrorResultView {
  source: string;
  upstreamRepository: string;
  tags: Array<{
    tag: string;
    state: string;
    digest?: string;
    writes?: Array<{ repository: string; tag: string; digest: string; platform?: string }>;
    error?: string;
  }>;
  blobs: { fetched: number; present: number };
  bytes: { fetched: number };
}

/** POST /admin/v1/mirror with `body` (a string is sent as is), Content-Type JSON unless given. */
export function postMirror(url: string, body: unknown, headers: Record<string, string> = {}): Promise<Reply> {
  return new OciClient(url).request('POST', MIRROR_PATH, {
    headers: { 'Content-Type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

function checkJob(value: unknown, context: string): JobView {
  expect(value, context).to.be.an('object');
  const job = value as JobView;
  expect(job.id, `job id in ${context}`).to.be.a('string').and.match(/^[0-9a-f-]{36}$/);
  expect(JOB_STATES as readonly string[], `job state in ${context}`).to.include(job.state);
  return job;
}

/** Submits a mirror job: asserts 202, `Location: /admin/v1/jobs/<id>` and a queued or running job of kind mirror. */
export async function submitMirror(url: string, body: unknown): Promise<{ job: JobView; location: string; reply: Reply }> {
  const reply = await postMirror(url, body);
  expect(reply.status, describeReply(reply)).to.equal(202);
  const job = checkJob(reply.json(), describeReply(reply));
  expect(job.kind, describeReply(reply)).to.equal('mirror');
  const location = reply.headers.get('location') ?? '';
  expect(new URL(location, url).pathname, `Location of ${describeReply(reply)}`).to.equal(`${JOBS_PATH}/${job.id}`);
  return { job, location, reply };
}

/** Runs a configured sync rule now: 202 and `{jobs: [...]}` (one mirror job per repository). */
export async function submitSync(url: string, rule: string): Promise<{ jobs: JobView[]; reply: Reply }> {
  const reply = await postMirror(url, { sync: rule });
  expect(reply.status, describeReply(reply)).to.equal(202);
  const body = reply.json<{ jobs?: unknown }>();
  expect(body.jobs, describeReply(reply)).to.be.an('array').that.is.not.empty;
  const jobs = (body.jobs as unknown[]).map((job) => checkJob(job, describeReply(reply)));
  for (const job of jobs) expect(job.kind, describeReply(reply)).to.equal('mirror');
  expect(new URL(reply.headers.get('location') ?? '', url).pathname, `Location of ${describeReply(reply)}`).to.equal(`${JOBS_PATH}/${jobs[0]!.id}`);
  return { jobs, reply };
}

/** `location` is a job's Location header, its path, or its id. */
function jobPath(location: string): string {
  if (/^[0-9a-f-]{36}$/.test(location)) return `${JOBS_PATH}/${location}`;
  return new URL(location, 'http://x').pathname;
}

export async function getJob(url: string, location: string): Promise<JobView> {
  const reply = await new OciClient(url).get(jobPath(location));
  expect(reply.status, describeReply(reply)).to.equal(200);
  return checkJob(reply.json(), describeReply(reply));
}

/** GET /admin/v1/jobs/<id>/logs: text/plain, one line per event. */
export async function jobLogs(url: string, location: string): Promise<string> {
  const reply = await new OciClient(url).get(`${jobPath(location)}/logs`);
  expect(reply.status, describeReply(reply)).to.equal(200);
  expect(reply.headers.get('content-type') ?? '', describeReply(reply)).to.match(/^text\/plain/);
  return reply.text();
}

/**
 * Polls the job until `until` holds (default: it finished) and returns it; fails with the last record
 * and the logs after `timeoutMs`.
 */
export async function waitForJob(
  url: string,
  location: string,
  options: { timeoutMs?: number; intervalMs?: number; until?: (job: JobView) => boolean } = {},
): Promise<JobView> {
  const until = options.until ?? ((job: JobView) => FINISHED.has(job.state));
  const deadline = Date.now() + (options.timeoutMs ?? 60_000);
  let job = await getJob(url, location);
  while (!until(job)) {
    if (Date.now() > deadline) {
      const logs = await jobLogs(url, location).catch((error: unknown) => `(no logs: ${String(error)})`);
      expect.fail(`job ${job.id} did not reach the expected state in time: ${JSON.stringify(job)}\n--- logs ---\n${logs}`);
    }
    // A finished job never changes again: waiting longer for something else cannot help.
    if (FINISHED.has(job.state)) {
      const logs = await jobLogs(url, location).catch(() => '');
      expect.fail(`job ${job.id} ended ${job.state} before the expected state: ${JSON.stringify(job)}\n--- logs ---\n${logs}`);
    }
    await sleep(options.intervalMs ?? 100);
    job = await getJob(url, location);
  }
  return job;
}

/** Waits for the job to finish and asserts it ended in `state`, quoting the job and its logs otherwise. */
export async function expectJobEnds(url: string, location: string, state: JobState, timeoutMs = 60_000): Promise<JobView> {
  const job = await waitForJob(url, location, { timeoutMs });
  if (job.state !== state) {
    const logs = await jobLogs(url, location).catch(() => '');
    expect.fail(`job ${job.id} ended ${job.state}, expected ${state}: ${JSON.stringify(job)}\n--- logs ---\n${logs}`);
  }
  return job;
}
