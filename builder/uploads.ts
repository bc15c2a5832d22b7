// Uploaded build contexts (POST /admin/v1/contexts): a .tar.gz streamed into storage, where every worker
// can read it, under a random id a build then names as `context: {upload: id}`.
import { createHash, randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { StorageDriver } from '../storage-drivers/driver.js';

export interface UploadedContext {
  id: string;
  size: number;
  digest: string;
}

export class ContextTooLargeError extends Error {}
export class NotGzipError extends Error {}

/** What is read and thrown away after a refusal, so that a small body still gets its answer. */
const DRAIN_LIMIT = 8 * 1024 * 1024;

async function drain(chunks: AsyncIterator<unknown>, limit: number): Promise<void> {
  let drained = 0;
  for (let next = await chunks.next(); !next.done && drained < limit; next = await chunks.next()) drained += (next.value as Buffer).length;
}

export function contextPath(id: string): string {
  if (!/^[0-9a-f-]{36}$/.test(id)) throw new Error(`invalid context id ${id}`);
  return `/_builder/contexts/${id}.tar.gz`;
}

export async function storeContext(driver: StorageDriver, body: Readable | AsyncIterable<Buffer>, limit: number): Promise<UploadedContext> {
  const id = randomUUID();
  const writer = await driver.writer(contextPath(id));
  const hash = createHash('sha256');
  let size = 0;
  // Read by hand rather than with for-await: leaving that loop early destroys the request, and the client
  // would see a reset instead of the answer that says what was wrong.
  const chunks = body[Symbol.asyncIterator]();
  let refused: Error | undefined;
  try {
    for (let next = await chunks.next(); !next.done; next = await chunks.next()) {
      const chunk = next.value as Buffer;
      // gzip's magic number: refuse anything else before storing megabytes of it.
      if (size === 0 && (chunk[0] !== 0x1f || (chunk.length > 1 && chunk[1] !== 0x8b))) refused = new NotGzipError('the context must be a .tar.gz');
      size += chunk.length;
      if (size > limit) refused ??= new ContextTooLargeError(`the context is larger than ${limit} bytes (builder.maxcontextsize)`);
      if (refused) break;
      hash.update(chunk);
      await writer.write(chunk);
    }
    if (refused) {
      await drain(chunks, DRAIN_LIMIT);
      throw refused;
    }
    if (size < 2) throw new NotGzipError('the context must be a .tar.gz');
    await writer.commit();
  } catch (error) {
    await writer.cancel().catch(() => undefined);
    throw error;
  }
  return { id, size, digest: `sha256:${hash.digest('hex')}` };
}
