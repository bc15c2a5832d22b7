// A plain TCP load balancer in front of registry replicas, as a Kubernetes Service is: each new client
// connection goes to the next backend in turn and stays there, bytes pass untouched. The backend list
// can change at runtime (an endpoints update), and a backend that refuses the connection (a dead pod
// not yet removed) is skipped for the next one. Requests sent with `Connection: close` (or an agent
// without keep-alive) therefore alternate between replicas one request at a time.
import net from 'node:net';

export interface BackendStats {
  /** Connections handed to this backend since start (or the last resetCounts()). */
  connections: number;
  /** Connections to it open now. */
  active: number;
  /** Connection attempts it refused (ECONNREFUSED and the like), each then tried on the next backend. */
  refused: number;
  /** Bytes from clients to this backend, and back. */
  bytesIn: number;
  bytesOut: number;
}

export interface ProxiedConnection {
  backend: string;
  /** Bytes from the client so far (request bodies: a streamed layer shows up here). */
  bytesIn: number;
  bytesOut: number;
  openedAt: number;
}

export interface RoundRobinProxy {
  /** http://127.0.0.1:PORT */
  url: string;
  /** 127.0.0.1:PORT, for image references. */
  hostPort: string;
  port: number;
  /** The current backends, as host:port. */
  backends(): string[];
  /** Replaces the backend list; open connections stay where they are. */
  setBackends(backends: string[]): void;
  addBackend(backend: string): void;
  removeBackend(backend: string): void;
  /** Per-backend counters, including backends since removed. */
  stats(): Record<string, BackendStats>;
  resetCounts(): void;
  /** Connections open now, with their byte counts. */
  active(): ProxiedConnection[];
  /** Client connections that found no backend accepting and were closed. */
  readonly unrouted: number;
  stop(): Promise<void>;
}

export async function startRoundRobinProxy(initial: string[]): Promise<RoundRobinProxy> {
  let backends = [...initial];
  let next = 0;
  let unrouted = 0;
  const stats = new Map<string, BackendStats>();
  const open = new Set<{ client: net.Socket; upstream?: net.Socket; info?: ProxiedConnection }>();
  const statsOf = (backend: string): BackendStats => {
    let s = stats.get(backend);
    if (!s) {
      s = { connections: 0, active: 0, refused: 0, bytesIn: 0, bytesOut: 0 };
      stats.set(backend, s);
    }
    return s;
  };

  /** Connects to backends in turn from the next one, each at most once; undefined when none accepts. */
  const connectNext = async (): Promise<{ backend: string; socket: net.Socket } | undefined> => {
    const tried = new Set<string>();
    while (backends.length > 0) {
      const backend = backends[next % backends.length]!;
      next = (next + 1) % Math.max(1, backends.length);
      if (tried.has(backend)) return undefined;
      tried.add(backend);
      const socket = await connect(backend).catch(() => undefined);
      if (socket) return { backend, socket };
      statsOf(backend).refused++;
    }
    return undefined;
  };

  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (client) => {
    const entry: { client: net.Socket; upstream?: net.Socket; info?: ProxiedConnection } = { client };
    open.add(entry);
    client.on('error', () => undefined);
    client.once('close', (hadError) => {
      // An aborted client aborts its request; a clean close has already ended the upstream through pipe().
      if (hadError) entry.upstream?.destroy();
      open.delete(entry);
    });
    void connectNext().then((target) => {
      if (!target || client.destroyed) {
        if (!target) unrouted++;
        target?.socket.destroy();
        client.destroy();
        return;
      }
      const { backend, socket: upstream } = target;
      const s = statsOf(backend);
      s.connections++;
      s.active++;
      const info: ProxiedConnection = { backend, bytesIn: 0, bytesOut: 0, openedAt: Date.now() };
      entry.upstream = upstream;
      entry.info = info;
      // A backend that died (SIGKILL) resets its connections: the client sees the same.
      upstream.on('error', () => client.destroy());
      upstream.once('close', () => {
        s.active--;
      });
      client.on('data', (d: Buffer) => { info.bytesIn += d.length; s.bytesIn += d.length; });
      upstream.on('data', (d: Buffer) => { info.bytesOut += d.length; s.bytesOut += d.length; });
      // pipe() forwards a half-close (end) in either direction; a destroy on either side closes both.
      client.pipe(upstream);
      upstream.pipe(client);
      client.resume();
    });
  });
  server.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;

  return {
    url: `http://127.0.0.1:${port}`,
    hostPort: `127.0.0.1:${port}`,
    port,
    backends: () => [...backends],
    setBackends(list) {
      backends = [...list];
      next = backends.length === 0 ? 0 : next % backends.length;
    },
    addBackend(backend) {
      if (!backends.includes(backend)) backends.push(backend);
    },
    removeBackend(backend) {
      backends = backends.filter((b) => b !== backend);
      next = backends.length === 0 ? 0 : next % backends.length;
    },
    stats: () => Object.fromEntries([...stats].map(([k, v]) => [k, { ...v }])),
    resetCounts() {
      for (const s of stats.values()) Object.assign(s, { connections: 0, refused: 0, bytesIn: 0, bytesOut: 0 });
      unrouted = 0;
    },
    active: () => [...open].flatMap((e) => (e.info ? [{ ...e.info }] : [])),
    get unrouted() {
      return unrouted;
    },
    async stop() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const e of open) {
        e.client.destroy();
        e.upstream?.destroy();
      }
      await closed;
    },
  };
}

function connect(backend: string): Promise<net.Socket> {
  const [host, port] = splitHostPort(backend);
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port, allowHalfOpen: true });
    // Loopback either accepts or refuses at once; the timer only guards against a wedged listener.
    const timer = setTimeout(() => socket.destroy(new Error(`connect to ${backend} timed out`)), 5_000);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.setNoDelay(true);
      resolve(socket);
    });
    socket.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

function splitHostPort(backend: string): [string, number] {
  const i = backend.lastIndexOf(':');
  if (i <= 0) throw new Error(`backend must be host:port, not ${backend}`);
  return [backend.slice(0, i), Number(backend.slice(i + 1))];
}
