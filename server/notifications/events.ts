// Distribution's notification events, built from a request that succeeded: pushes and pulls of manifests
// and blobs, blob mounts, deletes. The envelope is Distribution's, so receivers written for it work here.
import { randomUUID } from 'node:crypto';
import type { Context } from 'koa';
import { routeTemplate } from '../metrics/route-template.js';

export const ENVELOPE_MEDIA_TYPE = 'application/vnd.docker.distribution.events.v2+json';
const BLOB_MEDIA_TYPE = 'application/octet-stream';

export type EventAction = 'push' | 'pull' | 'delete' | 'mount';

export interface EventTarget {
  mediaType?: string;
  size?: number;
  digest?: string;
  length?: number;
  repository: string;
  fromRepository?: string;
  url?: string;
  tag?: string;
}

export interface RegistryEvent {
  id: string;
  timestamp: string;
  action: EventAction;
  target: EventTarget;
  request: { id: string; addr: string; host: string; method: string; useragent: string };
  actor: { name?: string };
  source: { addr: string; instanceID: string };
}

export interface Envelope {
  events: RegistryEvent[];
}

/** Where this process is, for `source` (Distribution: the host name and listening port, and a per-process id). */
export interface EventSource {
  addr: string;
  instanceID: string;
}

/** An event still missing its size: a blob upload's answer does not say it; looked up off the request path. */
export interface PendingEvent {
  event: RegistryEvent;
  kind: 'manifest' | 'blob';
}

const DIGEST = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

/** The event a finished request stands for, if any; never throws. */
export function eventOf(ctx: Context, source: EventSource, publicUrl: string | undefined): PendingEvent | undefined {
  const method = ctx.method;
  if (method === 'HEAD' || ctx.status >= 400 || !ctx.path.startsWith('/v2/')) return undefined;
  const template = routeTemplate(ctx);
  const status = ctx.status;
  const build = (action: EventAction, kind: 'manifest' | 'blob', reference: string, target: Partial<EventTarget>): PendingEvent | undefined => {
    const repository = repositoryOf(ctx);
    if (!repository) return undefined;
    const digest = target.digest ?? (DIGEST.test(reference) ? reference : undefined);
    const tag = kind === 'manifest' && !DIGEST.test(reference) ? reference : undefined;
    const base = (publicUrl ?? `${ctx.protocol}://${ctx.host}`).replace(/\/$/, '');
    const url = digest ? `${base}/v2/${repository}/${kind === 'manifest' ? 'manifests' : 'blobs'}/${digest}` : undefined;
    const size = target.size;
    return {
      kind,
      event: {
        id: randomUUID(),
        timestamp: new Date().toISOString(),
        action,
        target: {
          ...target,
          ...(size !== undefined ? { size, length: size } : {}),
          ...(digest ? { digest } : {}),
          repository,
          ...(url ? { url } : {}),
          ...(tag ? { tag } : {}),
        },
        request: {
          id: (ctx.state.requestId as string | undefined) ?? '',
          addr: (ctx.state.clientAddress as string | undefined) ?? ctx.ip,
          host: ctx.host,
          method,
          useragent: ctx.get('User-Agent'),
        },
        actor: ctx.state.user ? { name: ctx.state.user as string } : {},
        source,
      },
    };
  };
  const reference = lastSegment(ctx.path);
  const digestHeader = ctx.response.get('Docker-Content-Digest') || undefined;
  switch (template) {
    case '/v2/*name/manifests/:reference':
      if (method === 'GET' && status === 200) {
        return build('pull', 'manifest', reference, { mediaType: baseType(ctx.response.get('Content-Type')), size: ctx.response.length, digest: digestHeader });
      }
      if (method === 'PUT' && status === 201) {
        const length = Number(ctx.get('Content-Length'));
        return build('push', 'manifest', reference, {
          mediaType: baseType(ctx.get('Content-Type')),
          ...(Number.isSafeInteger(length) && length > 0 ? { size: length } : {}),
          digest: digestHeader,
        });
      }
      if (method === 'DELETE' && status === 202) return build('delete', 'manifest', reference, {});
      return undefined;
    case '/v2/*name/blobs/:digest':
      if (method === 'GET' && (status === 200 || status === 307)) {
        return build('pull', 'blob', reference, { mediaType: BLOB_MEDIA_TYPE, ...(status === 200 ? { size: ctx.response.length } : {}), digest: digestHeader });
      }
      if (method === 'DELETE' && status === 202) return build('delete', 'blob', reference, { digest: digestHeader });
      return undefined;
    case '/v2/*name/blobs/uploads/':
    case '/v2/*name/blobs/uploads/:id':
      if (status !== 201 || !digestHeader || (method !== 'PUT' && method !== 'POST')) return undefined;
      if (method === 'POST' && typeof ctx.query.mount === 'string') {
        const from = typeof ctx.query.from === 'string' ? ctx.query.from : undefined;
        return build('mount', 'blob', digestHeader, { mediaType: BLOB_MEDIA_TYPE, digest: digestHeader, ...(from ? { fromRepository: from } : {}) });
      }
      return build('push', 'blob', digestHeader, { mediaType: BLOB_MEDIA_TYPE, digest: digestHeader });
    default:
      return undefined;
  }
}

const NAME_IN_PATH = /^\/v2\/(.+)\/(?:manifests|blobs|tags|referrers)\//;

function repositoryOf(ctx: Context): string | undefined {
  const known = ctx.state.repository as string | undefined;
  if (known) return known;
  const match = NAME_IN_PATH.exec(ctx.path);
  if (!match) return undefined;
  try {
    return decodeURIComponent(match[1]!.replace(/\/blobs\/uploads$/, ''));
  } catch {
    return undefined;
  }
}

function lastSegment(path: string): string {
  const segment = path.slice(path.lastIndexOf('/') + 1);
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

function baseType(contentType: string | undefined): string | undefined {
  const type = contentType?.split(';')[0]?.trim();
  return type || undefined;
}
