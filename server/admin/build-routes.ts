// POST /admin/v1/builds: queue a multi-platform build (builder/service.ts); POST /admin/v1/contexts: upload
// a .tar.gz build context first, for builds that do not come from git.
import type Router from '@koa/router';
import type { BuildService } from '../../builder/service.js';
import { ContextTooLargeError, NotGzipError, storeContext } from '../../builder/uploads.js';
import type { StorageDriver } from '../../storage-drivers/driver.js';
import { contentLength } from '../distribution/request.js';
import { OciError } from '../registry/errors.js';
import { readJson } from './json-body.js';
import { submitted } from './jobs-routes.js';

export const BUILDS_PATH = '/admin/v1/builds';
export const CONTEXTS_PATH = '/admin/v1/contexts';

export function buildRoutes(router: Router, builds: BuildService, driver: StorageDriver, maxContextSize: number): void {
  router.post(BUILDS_PATH, async (ctx) => {
    const { job, warnings } = await builds.submit(await readJson(ctx));
    submitted(ctx, job);
    // Beside the job's own fields (not stored with it): true when submitted, not later.
    if (warnings.length > 0) ctx.body = { ...job, warnings };
  });

  router.post(CONTEXTS_PATH, async (ctx) => {
    const type = ctx.get('Content-Type');
    if (type && !/^application\/(gzip|x-gzip|x-tar\+gzip|octet-stream)\b/i.test(type)) {
      throw new OciError(415, 'INVALID_REQUEST', 'the body must be a .tar.gz (Content-Type: application/gzip)', { contentType: type.slice(0, 100) });
    }
    const declared = contentLength(ctx.req);
    if (declared !== undefined && declared > maxContextSize) {
      throw new OciError(413, 'SIZE_INVALID', `the context is larger than ${maxContextSize} bytes (builder.maxcontextsize)`);
    }
    try {
      const stored = await storeContext(driver, ctx.req, maxContextSize);
      ctx.status = 201;
      ctx.body = stored;
    } catch (error) {
      if (error instanceof ContextTooLargeError) throw new OciError(413, 'SIZE_INVALID', error.message);
      if (error instanceof NotGzipError) throw new OciError(400, 'INVALID_REQUEST', error.message);
      throw error;
    }
  });
}
