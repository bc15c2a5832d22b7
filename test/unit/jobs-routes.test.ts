import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import Router from '@koa/router';
import { expect } from 'chai';
import Koa from 'koa';
import { jobRoutes, submitted } from '../../server/admin/jobs-routes.js';
import { ociErrors } from '../../server/http/errors.js';
import { newJobId } from '../../server/jobs/ids.js';
import type { JobRecord } from '../../server/jobs/job.js';
import { LocalJobQueue } from '../../server/jobs/local-queue.js';
import { FilesystemDriver } from '../../storage-drivers/filesystem.js';
import { aborted, deferred, finished, messages, until } from './job-queue-contract.js';
import { tempDir } from './support.js';

describe('admin job routes', () => {
  let cleanup: () => Promise<void>;
  let queue: LocalJobQueue;
  let server: Server;
  let base: string;
  const gate = deferred();

  before(async () => {
    const dir = await tempDir('job-routes');
    cleanup = dir.cleanup;
    queue = new LocalJobQueue(new FilesystemDriver({ rootdirectory: dir.path }), { pollIntervalMs: 20, flushIntervalMs: 20 });
    queue.register('mirror', async (ctx) => {
      ctx.log('first');
      await gate.promise;
      ctx.log('second');
      return { tags: 1 };
    });
    queue.register('build', async (ctx) => {
      await aborted(ctx);
      throw ctx.signal.reason;
    });
    await queue.start();

    const koa = new Koa();
    koa.silent = true;
    koa.use(ociErrors);
    const router = new Router();
    jobRoutes(router, queue);
    // A feature route as mirror, builds and gc will have.
    router.post('/admin/v1/gc', async (ctx) => submitted(ctx, await queue.submit('gc', { dryRun: true })));
    koa.use(router.routes());
    server = koa.listen(0, '127.0.0.1');
    await once(server, 'listening');
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(async () => {
    gate.resolve();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    await queue.close();
    await cleanup();
  });

  async function json<T>(response: Response): Promise<T> {
    expect(response.headers.get('content-type')).to.match(/^application\/json/);
    return (await response.json()) as T;
  }

  it('answers a submission with 202, the job and its Location; GET reads it there', async () => {
    const response = await fetch(`${base}/admin/v1/gc`, { method: 'POST' });
    expect(response.status).to.equal(202);
    const job = await json<JobRecord>(response);
    expect(job).to.include({ kind: 'gc', state: 'queued' });
    expect(response.headers.get('location')).to.equal(`/admin/v1/jobs/${job.id}`);

    const read = await fetch(`${base}${response.headers.get('location')}`);
    expect(read.status).to.equal(200);
    expect(await json<JobRecord>(read)).to.deep.include({ id: job.id, kind: 'gc', request: { dryRun: true } });
  });

  it('answers unknown jobs with 404 and the OCI error body', async () => {
    for (const id of [newJobId(), 'not-a-job']) {
      for (const [method, path] of [
        ['GET', `/admin/v1/jobs/${id}`],
        ['GET', `/admin/v1/jobs/${id}/logs`],
        ['GET', `/admin/v1/jobs/${id}/logs?follow=1`],
        ['DELETE', `/admin/v1/jobs/${id}`],
      ] as const) {
        const response = await fetch(`${base}${path}`, { method });
        expect(response.status, `${method} ${path}`).to.equal(404);
        const body = await json<{ errors: Array<{ code: string; message: string; detail: unknown }> }>(response);
        expect(body.errors).to.deep.equal([{ code: 'NAME_UNKNOWN', message: 'job unknown', detail: { id } }]);
      }
    }
  });

  it('lists jobs with filters and a Link to the next page that keeps them', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await queue.submit('gc', { i })).id);
    const all = await json<{ jobs: JobRecord[] }>(await fetch(`${base}/admin/v1/jobs?kind=gc`));
    const gcIds = all.jobs.map((job) => job.id);
    expect(gcIds.slice(-3)).to.deep.equal(ids);

    const first = await fetch(`${base}/admin/v1/jobs?kind=gc&n=2`);
    expect((await json<{ jobs: JobRecord[] }>(first)).jobs.map((job) => job.id)).to.deep.equal(gcIds.slice(0, 2));
    const link = first.headers.get('link');
    expect(link).to.equal(`</admin/v1/jobs?kind=gc&n=2&last=${gcIds[1]}>; rel="next"`);
    const next = await fetch(`${base}${/^<([^>]+)>/.exec(link!)![1]}`);
    expect((await json<{ jobs: JobRecord[] }>(next)).jobs.map((job) => job.id)).to.deep.equal(gcIds.slice(2, 4));

    const noMore = await fetch(`${base}/admin/v1/jobs?kind=gc&n=${gcIds.length}`);
    expect(noMore.headers.get('link')).to.equal(null);
    const running = await json<{ jobs: JobRecord[] }>(await fetch(`${base}/admin/v1/jobs?kind=gc&state=running`));
    expect(running.jobs).to.deep.equal([]);

    for (const query of ['kind=tarball', 'state=done', 'n=-1', 'n=x']) {
      const response = await fetch(`${base}/admin/v1/jobs?${query}`);
      expect(response.status, query).to.equal(400);
      expect((await json<{ errors: Array<{ code: string }> }>(response)).errors[0]!.code).to.be.oneOf(['UNSUPPORTED', 'PAGINATION_NUMBER_INVALID']);
    }
  });

  it('serves the log as text, and follows it until the job ends', async () => {
    const job = await queue.submit('mirror', {});
    await until('the first line', async () => ((await queue.logs(job.id))?.length ?? 0) > 0);
    const plain = await fetch(`${base}/admin/v1/jobs/${job.id}/logs`);
    expect(plain.status).to.equal(200);
    expect(plain.headers.get('content-type')).to.equal('text/plain; charset=utf-8');
    expect(messages((await plain.text()).split('\n').filter(Boolean))).to.deep.equal(['first']);

    const follow = await fetch(`${base}/admin/v1/jobs/${job.id}/logs?follow=1`);
    expect(follow.status).to.equal(200);
    expect(follow.headers.get('content-type')).to.equal('text/plain; charset=utf-8');
    const reader = follow.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = '';
    while (!text.includes('first\n')) text += (await reader.read()).value ?? '';
    gate.resolve();
    for (;;) {
      const { value, done } = await reader.read(); // the response ends with the job
      if (done) break;
      text += value;
    }
    expect(messages(text.split('\n').filter(Boolean))).to.deep.equal(['first', 'second']);
    expect((await queue.get(job.id))?.state).to.equal('succeeded');
  });

  it('cancels with DELETE: 202 with the job, which ends cancelled; a finished job answers 409', async () => {
    const queued = await queue.submit('gc', {});
    const first = await fetch(`${base}/admin/v1/jobs/${queued.id}`, { method: 'DELETE' });
    expect(first.status).to.equal(202);
    expect(first.headers.get('location')).to.equal(`/admin/v1/jobs/${queued.id}`);
    expect(await json<JobRecord>(first)).to.include({ id: queued.id, state: 'cancelled' });

    const running = await queue.submit('build', {});
    await until('the build to run', async () => (await queue.get(running.id))?.state === 'running');
    const cancel = await fetch(`${base}/admin/v1/jobs/${running.id}`, { method: 'DELETE' });
    expect(cancel.status).to.equal(202);
    expect((await finished(queue, running.id)).state).to.equal('cancelled');

    const again = await fetch(`${base}/admin/v1/jobs/${running.id}`, { method: 'DELETE' });
    expect(again.status).to.equal(409);
    const body = await json<{ errors: Array<{ code: string; detail: unknown }> }>(again);
    expect(body.errors[0]).to.deep.include({ detail: { id: running.id, state: 'cancelled' } });
  });
});
