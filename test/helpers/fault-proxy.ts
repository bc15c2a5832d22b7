// A plain HTTP reverse proxy in front of an S3 endpoint (the RADOS Gateway of ./s3.ts) that can
// fail, drop, delay or corrupt chosen requests (registries sit behind it too: Distribution as a mirror
// upstream). Bodies stream both ways and the request goes upstream with
// its Host header and every signed header unchanged, so SigV4 signatures made for the proxy's
// address still verify (RGW without `rgw dns name` accepts any Host with path-style addressing).
import http from 'node:http';
import type { Socket } from 'node:net';

/** Which requests a fault applies to; every given field must match. No matcher: any request. */
export interface RequestMatcher {
  /** HTTP method, case-insensitive ('PUT', 'POST', ...). */
  method?: string;
  /** Tested against the path, without the query string (e.g. /bucket/key). */
  path?: RegExp;
  /**
   * A substring of the raw query string, or a pattern for it: 'partNumber' (UploadPart and
   * UploadPartCopy), 'uploads' (CreateMultipartUpload with POST, ListMultipartUploads with GET),
   * 'uploadId' (UploadPart, ListParts, Complete, Abort).
   */
  query?: string | RegExp;
  /** Request headers that must be present (true) or match (RegExp), e.g. { 'x-amz-copy-source': true }. */
  headers?: Record<string, true | RegExp>;
  /** Anything else. */
  test?: (request: { method: string; path: string; query: string; headers: http.IncomingHttpHeaders }) => boolean;
}

export interface FailOptions {
  /** Default 503; 429 as a rate-limited registry answers (with `headers` such as Retry-After). */
  status?: 401 | 403 | 429 | 500 | 503;
  /** The S3 error code in the XML body; default SlowDown for 503 and 429 and InternalError for 500. */
  code?: 'SlowDown' | 'InternalError';
  /** Extra response headers, e.g. { 'Retry-After': '1' }. */
  headers?: Record<string, string>;
  match?: RequestMatcher;
}

export interface DropOptions {
  /**
   * 'request' (default): the upstream never sees the request; the client socket is destroyed
   *   after `afterBytes` bytes of the request body (default 1; at once for a body-less request).
   * 'response': the upstream handles the request fully, then the client socket is destroyed
   *   before any byte of the answer (a PUT or Complete that happened but whose answer was lost).
   * 'response-body': the status line, headers and `afterBytes` bytes of the answer's body
   *   (default half of it) reach the client, then the socket is destroyed.
   */
  at?: 'request' | 'response' | 'response-body';
  afterBytes?: number;
  match?: RequestMatcher;
}

export interface DelayOptions {
  /** 'request' (default): before the request is forwarded; 'response': before the answer is sent back. */
  at?: 'request' | 'response';
  match?: RequestMatcher;
}

export interface CorruptOptions {
  /** Offset in the answer's body of the byte to flip (default: the middle, by Content-Length). */
  atByte?: number;
  match?: RequestMatcher;
}

export interface ProxiedRequest {
  method: string;
  path: string;
  /** Raw query string without the '?'. */
  query: string;
  /** The status the client got; null when the connection was dropped or the answer is not finished. */
  status: number | null;
  /** The fault applied, if any ('delay' may be combined with a forwarded answer). */
  fault?: 'fail' | 'drop' | 'delay' | 'corrupt';
}

export interface FaultProxy {
  /** http://127.0.0.1:PORT, to use as the S3 endpoint. */
  endpoint: string;
  port: number;
  target: string;
  /** Every request seen, in arrival order. */
  requests: ProxiedRequest[];
  /** The next `n` matching requests get an S3-style XML error instead of reaching the upstream. */
  failNext(n: number, options?: FailOptions): void;
  /** The next `n` matching requests lose their connection (see DropOptions.at). */
  dropNext(n: number, options?: DropOptions): void;
  /** The next `n` matching requests wait `ms` first. */
  delayNext(n: number, ms: number, options?: DelayOptions): void;
  /**
   * The next `n` matching requests are forwarded, and one byte of the answer's body is flipped on the
   * way back: same status, headers and length, wrong content (a registry blob whose digest no longer
   * matches).
   */
  corruptNext(n: number, options?: CorruptOptions): void;
  /** Forgets pending faults and the request log. */
  reset(): void;
  stop(): Promise<void>;
}

type Rule =
  | { kind: 'fail'; remaining: number; status: 401 | 403 | 429 | 500 | 503; code: string; headers?: Record<string, string>; match?: RequestMatcher }
  | { kind: 'drop'; remaining: number; at: 'request' | 'response' | 'response-body'; afterBytes?: number; match?: RequestMatcher }
  | { kind: 'delay'; remaining: number; ms: number; at: 'request' | 'response'; match?: RequestMatcher }
  | { kind: 'corrupt'; remaining: number; atByte?: number; match?: RequestMatcher };

// Hop-by-hop headers are not forwarded (none of them is part of a SigV4 signature). The proxy
// answers `Expect: 100-continue` itself, so the upstream does not see it either.
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'te', 'trailer', 'upgrade', 'expect']);
const RESPONSE_HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'trailer', 'upgrade']);

const MESSAGES: Record<string, string> = {
  SlowDown: 'Please reduce your request rate.',
  InternalError: 'We encountered an internal error. Please try again.',
};

function matches(match: RequestMatcher | undefined, req: http.IncomingMessage, path: string, query: string): boolean {
  if (!match) return true;
  if (match.method !== undefined && match.method.toUpperCase() !== req.method) return false;
  if (match.path !== undefined && !match.path.test(path)) return false;
  if (match.query !== undefined) {
    if (typeof match.query === 'string' ? !query.includes(match.query) : !match.query.test(query)) return false;
  }
  for (const [name, want] of Object.entries(match.headers ?? {})) {
    const value = req.headers[name.toLowerCase()];
    if (value === undefined) return false;
    if (want !== true && !want.test(Array.isArray(value) ? value.join(', ') : value)) return false;
  }
  if (match.test && !match.test({ method: req.method ?? '', path, query, headers: req.headers })) return false;
  return true;
}

/** Request headers for the upstream: everything but hop-by-hop, duplicates kept as separate lines. */
function forwardHeaders(req: http.IncomingMessage): http.OutgoingHttpHeaders {
  const headers: Record<string, string | string[]> = {};
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    if (HOP_BY_HOP.has(name.toLowerCase())) continue;
    const existing = Object.keys(headers).find((k) => k.toLowerCase() === name.toLowerCase());
    if (existing === undefined) headers[name] = value;
    else {
      const prior = headers[existing]!;
      headers[existing] = Array.isArray(prior) ? [...prior, value] : [prior, value];
    }
  }
  return headers;
}

function responseHeaders(res: http.IncomingMessage): string[] {
  const out: string[] = [];
  const raw = res.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if (RESPONSE_HOP_BY_HOP.has(raw[i]!.toLowerCase())) continue;
    out.push(raw[i]!, raw[i + 1]!);
  }
  return out;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export async function startFaultProxy(target: string): Promise<FaultProxy> {
  const upstream = new URL(target);
  if (upstream.protocol !== 'http:') throw new Error(`fault proxy: only http:// targets (${target})`);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  const rules: Rule[] = [];
  const requests: ProxiedRequest[] = [];
  const sockets = new Set<Socket>();
  let requestCount = 0;

  const take = (kinds: Rule['kind'][], req: http.IncomingMessage, path: string, query: string): Rule | undefined => {
    const rule = rules.find((r) => kinds.includes(r.kind) && r.remaining > 0 && matches(r.match, req, path, query));
    if (rule) {
      rule.remaining--;
      if (rule.remaining === 0) rules.splice(rules.indexOf(rule), 1);
    }
    return rule;
  };

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse, expectsContinue: boolean): Promise<void> => {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    const query = q === -1 ? '' : url.slice(q + 1);
    const record: ProxiedRequest = { method: req.method ?? '', path, query, status: null };
    requests.push(record);
    const id = `faultproxy${(++requestCount).toString().padStart(8, '0')}`;
    res.on('finish', () => { record.status = res.statusCode; });
    const hasBody = Number(req.headers['content-length'] ?? 0) > 0 || req.headers['transfer-encoding'] !== undefined;
    // The client waits for `100 Continue` (the SDK asks for bodies of 2 MiB and more) before sending.
    let continued = !expectsContinue;
    const sendContinue = () => {
      if (!continued) { continued = true; res.writeContinue(); }
    };

    const delay = take(['delay'], req, path, query);
    if (delay?.kind === 'delay') record.fault = 'delay';
    if (delay?.kind === 'delay' && delay.at === 'request') await sleep(delay.ms);

    const fault = take(['fail', 'drop'], req, path, query);
    if (fault?.kind === 'fail') {
      record.fault = 'fail';
      const xml = '<?xml version="1.0" encoding="UTF-8"?>\n' +
        `<Error><Code>${fault.code}</Code><Message>${MESSAGES[fault.code] ?? fault.code}</Message>` +
        `<Resource>${path.replace(/&/g, '&amp;').replace(/</g, '&lt;')}</Resource><RequestId>${id}</RequestId></Error>`;
      const headers: http.OutgoingHttpHeaders = {
        'Content-Type': 'application/xml',
        'Content-Length': Buffer.byteLength(xml),
        'x-amz-request-id': id,
        ...fault.headers,
      };
      if (!continued) {
        // Answer at once, as S3 does, without the body the client has not sent: the connection
        // cannot be reused after that.
        headers.Connection = 'close';
        res.writeHead(fault.status, headers);
        res.end(xml);
        return;
      }
      // Read (and discard) the body first so the connection stays usable for the retry.
      req.resume();
      await new Promise<void>((resolve) => { req.once('end', resolve); req.once('close', resolve); });
      res.writeHead(fault.status, headers);
      res.end(xml);
      return;
    }
    if (fault?.kind === 'drop' && fault.at === 'request') {
      record.fault = 'drop';
      if (!hasBody) { req.socket.destroy(); return; }
      sendContinue();
      const limit = fault.afterBytes ?? 1;
      let seen = 0;
      await new Promise<void>((resolve) => {
        const done = () => { req.socket.destroy(); resolve(); };
        req.on('data', (chunk: Buffer) => { seen += chunk.length; if (seen >= limit) done(); });
        req.once('end', done);
        req.once('close', resolve);
      });
      return;
    }

    const corrupt = take(['corrupt'], req, path, query);

    // Forward.
    sendContinue();
    const proxied = http.request({
      host: upstream.hostname,
      port: upstream.port,
      method: req.method,
      path: url,
      headers: forwardHeaders(req),
      agent,
    });
    req.pipe(proxied);
    // The client went away before the exchange finished: abandon the upstream request too.
    res.on('close', () => { if (!res.writableFinished) proxied.destroy(); });
    proxied.on('error', (error) => {
      if (res.headersSent) { res.destroy(); return; }
      const xml = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>BadGateway</Code><Message>${error.message.replace(/</g, '&lt;')}</Message><RequestId>${id}</RequestId></Error>`;
      res.writeHead(502, { 'Content-Type': 'application/xml', 'Content-Length': Buffer.byteLength(xml), Connection: 'close' });
      res.end(xml);
    });
    proxied.on('response', (answer) => {
      // The upstream went away in the middle of its answer: so does the client's connection.
      answer.on('error', () => res.destroy());
      answer.on('close', () => { if (!answer.complete) res.destroy(); });
      void (async () => {
        if (delay?.kind === 'delay' && delay.at === 'response') await sleep(delay.ms);
        if (fault?.kind === 'drop' && fault.at === 'response') {
          record.fault = 'drop';
          answer.resume();
          req.socket.destroy();
          return;
        }
        res.writeHead(answer.statusCode ?? 502, answer.statusMessage, responseHeaders(answer));
        if (fault?.kind === 'drop' && fault.at === 'response-body') {
          record.fault = 'drop';
          const length = Number(answer.headers['content-length'] ?? 0);
          const limit = fault.afterBytes ?? Math.floor(length / 2);
          let sent = 0;
          const cut = () => { answer.destroy(); req.socket.destroy(); };
          if (limit <= 0) { res.flushHeaders(); setImmediate(cut); return; }
          answer.on('data', (chunk: Buffer) => {
            if (sent >= limit) return;
            const part = chunk.subarray(0, limit - sent);
            sent += part.length;
            res.write(part);
            if (sent >= limit) setImmediate(cut);
          });
          answer.once('end', cut);
          return;
        }
        if (corrupt?.kind === 'corrupt') {
          record.fault = 'corrupt';
          const length = Number(answer.headers['content-length'] ?? 0);
          const at = corrupt.atByte ?? Math.floor(length / 2);
          let offset = 0;
          answer.on('data', (chunk: Buffer) => {
            if (at >= offset && at < offset + chunk.length) {
              chunk = Buffer.from(chunk);
              chunk[at - offset] = chunk[at - offset]! ^ 0xff;
            }
            offset += chunk.length;
            if (!res.write(chunk)) {
              answer.pause();
              res.once('drain', () => answer.resume());
            }
          });
          answer.once('end', () => res.end());
          return;
        }
        answer.pipe(res);
      })();
    });
  };

  const server = http.createServer((req, res) => { void handle(req, res, false); });
  server.on('checkContinue', (req: http.IncomingMessage, res: http.ServerResponse) => { void handle(req, res, true); });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  // Requests can be slow on purpose (delayNext): no server-side timeouts.
  server.requestTimeout = 0;
  server.headersTimeout = 0;
  server.keepAliveTimeout = 5_000;

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;

  return {
    endpoint: `http://127.0.0.1:${port}`,
    port,
    target,
    requests,
    failNext(n, options = {}) {
      const status = options.status ?? 503;
      rules.push({ kind: 'fail', remaining: n, status, code: options.code ?? (status === 500 ? 'InternalError' : 'SlowDown'), headers: options.headers, match: options.match });
    },
    dropNext(n, options = {}) {
      rules.push({ kind: 'drop', remaining: n, at: options.at ?? 'request', afterBytes: options.afterBytes, match: options.match });
    },
    delayNext(n, ms, options = {}) {
      rules.push({ kind: 'delay', remaining: n, ms, at: options.at ?? 'request', match: options.match });
    },
    corruptNext(n, options = {}) {
      rules.push({ kind: 'corrupt', remaining: n, atByte: options.atByte, match: options.match });
    },
    reset() {
      rules.length = 0;
      requests.length = 0;
    },
    async stop() {
      rules.length = 0;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      agent.destroy();
      await closed;
    },
  };
}
