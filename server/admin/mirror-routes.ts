// POST /admin/v1/mirror: queue a mirror job for an upstream repository's tags, or run a sync rule now.
import type Router from '@koa/router';
import { OciError } from '../registry/errors.js';
import type { JobQueue } from '../jobs/queue.js';
import { targetRepository } from '../mirror/layouts.js';
import { parseMirrorRequest, type MirrorJobRequest } from '../mirror/mirror-request.js';
import type { SyncRules } from '../mirror/sync-rules.js';
import { splitSource, type Upstream } from '../mirror/upstreams.js';
import { readJson } from './json-body.js';
import { jobLocation, submitted } from './jobs-routes.js';

export const MIRROR_PATH = '/admin/v1/mirror';

export function mirrorRoutes(router: Router, queue: JobQueue, upstreams: Map<string, Upstream>, sync: SyncRules): void {
  router.post(MIRROR_PATH, async (ctx) => {
    const body = await readJson(ctx);
    if (isSyncRequest(body)) {
      const jobs = await sync.runNow(body.sync);
      if (!jobs) throw new OciError(404, 'NAME_UNKNOWN', `no sync rule named "${body.sync}"`, { known: sync.names() });
      ctx.status = 202;
      if (jobs[0]) ctx.set('Location', jobLocation(jobs[0].id));
      ctx.body = { jobs };
      return;
    }
    const request = parseMirrorRequest(body);
    checkTargets(request, upstreams);
    submitted(ctx, await queue.submit('mirror', request));
  });
}

function isSyncRequest(body: unknown): body is { sync: string } {
  return typeof body === 'object' && body !== null && 'sync' in body && typeof (body as { sync: unknown }).sync === 'string' && Object.keys(body).length === 1;
}

/** Refuses at once what the job would only find out later: an unknown upstream, an invalid target name. */
function checkTargets(request: MirrorJobRequest, upstreams: Map<string, Upstream>): void {
  const source = splitSource(request.source, upstreams);
  if (!source) {
    throw new OciError(400, 'INVALID_REQUEST', `source must be <upstream>/<repository> with a configured upstream`, {
      source: request.source,
      upstreams: [...upstreams.keys()],
    });
  }
  for (const layout of request.layouts) {
    try {
      targetRepository(layout, source.upstream.name, source.repository);
    } catch (error) {
      throw new OciError(400, 'INVALID_REQUEST', (error as Error).message, { layout });
    }
  }
}
