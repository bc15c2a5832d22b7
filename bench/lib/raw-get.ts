// A minimal keep-alive HTTP/1.1 client for GET and HEAD on one connection, reading into one reused buffer
// (net's `onread`): the load generator allocates nothing per response, so on a 2-core machine it leaves as
// much CPU as possible to the server under test. Only responses with Content-Length (or no body) are read;
// bodies are counted and dropped.
import net from 'node:net';

export interface RawResponse {
  status: number;
  /** Body bytes received. */
  bytes: number;
  /** Response headers, lower-cased names. */
  headers: Map<string, string>;
}

interface Pending {
  method: string;
  resolve(response: RawResponse): void;
  reject(error: Error): void;
  head: string;
  status: number;
  headers: Map<string, string>;
  remaining: number;
  bytes: number;
  inBody: boolean;
}

export class RawConnection {
  private socket: net.Socket | undefined;
  private pending: Pending | undefined;
  private readonly buffer: Buffer;

  constructor(
    private readonly host: string,
    private readonly port: number,
    bufferSize = 256 * 1024,
  ) {
    this.buffer = Buffer.allocUnsafe(bufferSize);
  }

  private connect(): net.Socket {
    const socket = net.connect({
      host: this.host,
      port: this.port,
      onread: { buffer: this.buffer, callback: (length: number, buffer: Uint8Array) => {
        this.onData(buffer as Buffer, length);
        return true;
      } },
    });
    socket.setNoDelay(true);
    socket.on('error', (error) => this.fail(error));
    socket.on('close', () => {
      if (this.socket === socket) this.socket = undefined;
      this.fail(new Error('connection closed by the server'));
    });
    this.socket = socket;
    return socket;
  }

  private fail(error: Error): void {
    const pending = this.pending;
    this.pending = undefined;
    this.socket?.destroy();
    this.socket = undefined;
    pending?.reject(error);
  }

  request(method: 'GET' | 'HEAD', path: string, headers: Record<string, string> = {}): Promise<RawResponse> {
    if (this.pending) return Promise.reject(new Error('one request at a time per connection'));
    const socket = this.socket ?? this.connect();
    return new Promise<RawResponse>((resolve, reject) => {
      this.pending = { method, resolve, reject, head: '', status: 0, headers: new Map(), remaining: 0, bytes: 0, inBody: false };
      let text = `${method} ${path} HTTP/1.1\r\nHost: ${this.host}:${this.port}\r\nUser-Agent: dify-registry-bench\r\n`;
      for (const [name, value] of Object.entries(headers)) text += `${name}: ${value}\r\n`;
      socket.write(`${text}\r\n`, 'latin1');
    });
  }

  private onData(buffer: Buffer, length: number): void {
    let offset = 0;
    while (offset < length) {
      const p = this.pending;
      if (!p) {
        this.fail(new Error('unexpected bytes from the server'));
        return;
      }
      if (!p.inBody) {
        const view = buffer.subarray(offset, length);
        let end: number;
        let consumed: number;
        if (p.head === '') {
          end = view.indexOf('\r\n\r\n');
          if (end === -1) {
            p.head = view.toString('latin1');
            offset = length;
            continue;
          }
          this.parseHead(p, view.toString('latin1', 0, end));
          consumed = end + 4;
        } else {
          // Headers split across reads (rare): join them as text.
          const slice = view.toString('latin1', 0, Math.min(view.length, 16 * 1024));
          const joined = p.head + slice;
          end = joined.indexOf('\r\n\r\n');
          if (end === -1) {
            p.head = joined;
            offset += slice.length;
            if (p.head.length > 64 * 1024) this.fail(new Error('response headers too large'));
            continue;
          }
          this.parseHead(p, joined.slice(0, end));
          consumed = end + 4 - p.head.length;
        }
        offset += consumed;
        if (this.pending !== p) return; // parseHead failed the request
        p.inBody = true;
        if (p.remaining === 0) this.finish(p);
        continue;
      }
      const take = Math.min(p.remaining, length - offset);
      p.remaining -= take;
      p.bytes += take;
      offset += take;
      if (p.remaining === 0) this.finish(p);
    }
  }

  private parseHead(p: Pending, head: string): void {
    const lines = head.split('\r\n');
    p.status = Number(lines[0]!.split(' ')[1]);
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      if (colon > 0) p.headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
    }
    const noBody = p.method === 'HEAD' || p.status === 204 || p.status === 304 || (p.status >= 100 && p.status < 200);
    if (noBody) {
      p.remaining = 0;
      return;
    }
    const length = p.headers.get('content-length');
    if (length === undefined) {
      this.fail(new Error(`response without Content-Length (${p.headers.get('transfer-encoding') ?? 'no transfer-encoding'}) is not supported`));
      return;
    }
    p.remaining = Number(length);
  }

  private finish(p: Pending): void {
    this.pending = undefined;
    if (p.headers.get('connection')?.toLowerCase() === 'close') {
      this.socket?.destroy();
      this.socket = undefined;
    }
    p.resolve({ status: p.status, bytes: p.bytes, headers: p.headers });
  }

  close(): void {
    this.socket?.destroy();
    this.socket = undefined;
  }
}

/** Connections handed out to virtual users; each keeps its own for its whole loop, as a real client would. */
export class RawClient {
  private readonly connections: RawConnection[] = [];
  readonly host: string;
  readonly port: number;

  constructor(baseUrl: string) {
    const url = new URL(baseUrl);
    this.host = url.hostname;
    this.port = Number(url.port);
  }

  connection(): RawConnection {
    const connection = new RawConnection(this.host, this.port);
    this.connections.push(connection);
    return connection;
  }

  closeAll(): void {
    for (const connection of this.connections.splice(0)) connection.close();
  }
}
