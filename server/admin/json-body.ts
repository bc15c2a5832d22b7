// JSON request bodies of the admin API: bounded, and a clear 400 instead of a parser's stack trace.
import type { Context } from 'koa';
import { readBody } from '../distribution/request.js';
import { OciError } from '../registry/errors.js';

const LIMIT = 1024 * 1024;

export async function readJson(ctx: Context): Promise<unknown> {
  const type = ctx.get('Content-Type');
  if (type && !/^application\/(.+\+)?json\b/i.test(type)) {
    throw new OciError(415, 'INVALID_REQUEST', 'the body must be JSON (Content-Type: application/json)', { contentType: type.slice(0, 100) });
  }
  const bytes = await readBody(ctx, LIMIT);
  try {
    return JSON.parse(bytes.toString('utf8')) as unknown;
  } catch (error) {
    throw new OciError(400, 'INVALID_REQUEST', 'the body is not valid JSON', { reason: (error as Error).message.slice(0, 200) });
  }
}
