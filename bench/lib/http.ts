// A lean keep-alive HTTP/1.1 client on node:http: bodies are streamed from generators (chunked transfer when
// no Content-Length is given, as docker's PATCH), responses are counted and dropped unless asked for.
import http from 'node:http';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

export interface Response {
  status: number;
  headers: http.IncomingHttpHeaders;
  /** Bytes of body received. */
  bytes: number;
  /** The body, only when `keepBody` was set. */
  body?: Buffer;
}

export interface RequestOptions {
  headers?: http.OutgoingHttpHeaders;
  body?: Buffer | Iterable<Buffer>;
  keepBody?: boolean;
  /** Abort when no progress for this long. */
  timeoutMs?: number;
}

export class HttpError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

export class Client {
  readonly agent: http.Agent;
  readonly host: string;
  readonly port: number;

  constructor(
    readonly baseUrl: string,
    maxSockets = 64,
    /** false: a new connection per request (through a round-robin proxy, each request to the next replica). */
    keepAlive = true,
  ) {
    const url = new URL(baseUrl);
    this.host = url.hostname;
    this.port = Number(url.port);
    this.agent = new http.Agent({ keepAlive, maxSockets, maxFreeSockets: maxSockets, scheduling: 'lifo' });
  }

  request(method: string, path: string, options: RequestOptions = {}): Promise<Response> {
    return new Promise<Response>((resolve, reject) => {
      let settled = false;
      const fail = (error: Error) => {
        if (settled) return;
        settled = true;
        req.destroy();
        reject(error);
      };
      const req = http.request({ agent: this.agent, host: this.host, port: this.port, method, path, headers: options.headers });
      req.setTimeout(options.timeoutMs ?? 300_000, () => fail(new Error(`${method} ${path}: timed out`)));
      req.on('error', fail);
      req.on('response', (res) => {
        let bytes = 0;
        const parts: Buffer[] | undefined = options.keepBody ? [] : undefined;
        res.on('data', (data: Buffer) => {
          bytes += data.length;
          parts?.push(data);
        });
        res.on('error', fail);
        res.on('end', () => {
          if (settled) return;
          settled = true;
          resolve({ status: res.statusCode ?? 0, headers: res.headers, bytes, body: parts ? Buffer.concat(parts) : undefined });
        });
      });
      const body = options.body;
      if (body === undefined) req.end();
      else if (Buffer.isBuffer(body)) req.end(body);
      else {
        // An early error answer (the server stops reading) ends the pipeline with an error: keep the response.
        pipeline(Readable.from(body, { objectMode: false, highWaterMark: 4 * 1024 * 1024 }), req).catch((error: Error) => {
          setTimeout(() => fail(error), 1000).unref();
        });
      }
    });
  }

  /** A request that must answer `expected`; otherwise fails with the status and body. */
  async expect(expected: number | number[], method: string, path: string, options: RequestOptions = {}): Promise<Response> {
    const response = await this.request(method, path, { ...options, keepBody: true });
    const ok = Array.isArray(expected) ? expected.includes(response.status) : response.status === expected;
    if (!ok) {
      const text = response.body?.toString('utf8').slice(0, 500) ?? '';
      throw new HttpError(`${method} ${path}: expected ${String(expected)}, got ${response.status} ${text}`, response.status);
    }
    return response;
  }

  close(): void {
    this.agent.destroy();
  }
}
