// A real S3 for tests: a throw-away single-node Ceph cluster (one monitor, one memstore OSD, no
// manager) with the RADOS Gateway in front, all of it under one temp dir, on random loopback ports.
// See DESIGN.md section 8 for why each ceph.conf setting is there. Nothing here reads or writes
// /etc/ceph, /var/lib/ceph or /var/log/ceph, and two clusters can run side by side (two suites).
import { ListBucketsCommand, CreateBucketCommand, S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import { randomBytes, randomUUID } from 'node:crypto';
import { accessSync, constants as fsConstants, rmSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { connect, createServer, type Server } from 'node:net';
import { delimiter, join } from 'node:path';
import { removeTree } from './cleanup.js';
import { run, startDaemon, tempDir, waitUntil, type Daemon } from './process.js';

export interface RunningS3 {
  /** http://127.0.0.1:PORT, the gateway (path-style addressing only). */
  endpoint: string;
  region: string;
  accessKey: string;
  secretKey: string;
  /** The cluster's temp dir (config, run dir, logs); removed by stop(). */
  dir: string;
  /** Where the daemons' logs are (ceph-mon.a.log, ceph-osd.0.log, ceph-client.rgw.log, *.out). */
  logDir: string;
  pids: { mon: number; osd: number; rgw: number };
  /** Wall-clock milliseconds that startS3() took, and when (ms since its start) each step ended. */
  startupMs: number;
  timings: { monReady: number; osdUpIn: number; userCreated: number; gatewayReady: number };
  /** Creates a bucket (a fresh unique name unless given) and returns its name. */
  createBucket(name?: string): Promise<string>;
  /**
   * A new S3Client for this gateway, configured explicitly (credentials, region, retry mode,
   * checksum modes, ...), so nothing comes from AWS_* variables or ~/.aws. Pass `endpoint` to
   * talk through a fault proxy. Clients made here are destroyed by stop().
   */
  client(overrides?: Partial<S3ClientConfig>): S3Client;
  /** Resident set sizes of the three daemons, in bytes. */
  rss(): Promise<{ mon: number; osd: number; rgw: number }>;
  /** Stops the gateway, the OSD and the monitor (by PID, in that order) and removes the temp dir. */
  stop(): Promise<void>;
}

const BINARIES = ['ceph-mon', 'ceph-osd', 'radosgw', 'radosgw-admin', 'monmaptool', 'ceph'] as const;
type Binary = (typeof BINARIES)[number];

function findBinary(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/bin', '/usr/sbin', '/bin', '/sbin'];
  for (const dir of dirs) {
    if (!dir) continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, fsConstants.X_OK);
      return candidate;
    } catch { /* next */ }
  }
  return undefined;
}

/** Why startS3() cannot work here, or undefined when the Ceph binaries are installed. */
export function s3UnavailableReason(): string | undefined {
  const missing = BINARIES.filter((b) => findBinary(b) === undefined);
  if (missing.length === 0) return undefined;
  return `Ceph RADOS Gateway not installed (missing: ${missing.join(', ')}); ` +
    'install with `apt-get install --no-install-recommends ceph-mon ceph-osd radosgw ceph-common` (scripts/install-deps.sh)';
}

/** True when the Ceph binaries that startS3() needs are installed. */
export function s3Available(): boolean {
  return s3UnavailableReason() === undefined;
}

const REGION = 'us-east-1';
// Fixed keys, the same shape as AWS's (20 and 40 characters).
const ACCESS_KEY = 'RGWTESTACCESSKEY0001';
const SECRET_KEY = 'rgwTestSecretKey0000000000000000000000001';

/** The environment for ceph processes: no AWS_*, CEPH_* or CA-bundle variables from this machine. */
function childEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (key.startsWith('AWS_') || key.startsWith('CEPH_')) continue;
    if (['SSL_CERT_FILE', 'SSL_CERT_DIR', 'CURL_CA_BUNDLE', 'REQUESTS_CA_BUNDLE'].includes(key)) continue;
    env[key] = value;
  }
  return env;
}

/** Explicit S3Client settings: every value the SDK would otherwise look up in AWS_* or ~/.aws. */
export function s3ClientConfig(options: {
  endpoint: string; accessKey: string; secretKey: string; region?: string;
}): S3ClientConfig {
  return {
    endpoint: options.endpoint,
    region: options.region ?? REGION,
    credentials: { accessKeyId: options.accessKey, secretAccessKey: options.secretKey },
    forcePathStyle: true,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    defaultsMode: 'standard',
    retryMode: 'standard',
    maxAttempts: 3,
    useDualstackEndpoint: false,
    useFipsEndpoint: false,
    useArnRegion: false,
    disableS3ExpressSessionAuth: true,
    disableMultiregionAccessPoints: true,
    userAgentAppId: 'registry-tests',
    authSchemePreference: ['sigv4'],
    sigv4aSigningRegionSet: [],
    // socketTimeout (idle) errors out; requestTimeout alone only logs a warning in this SDK
    // unless throwOnRequestTimeout is set.
    requestHandler: { connectionTimeout: 5_000, socketTimeout: 60_000 },
  };
}

async function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server: Server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/**
 * A block of `count` consecutive free loopback ports below Linux's ephemeral range (32768+), so
 * outgoing connections never take them. Ceph binds from `ms bind port min` upwards and skips a
 * port that someone took meanwhile; a monitor or gateway port lost to a race fails the start,
 * which startS3() retries with new ports.
 */
async function freePortBlock(count: number): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const base = 10_000 + Math.floor(Math.random() * (32_000 - 10_000 - count));
    let ok = true;
    for (let p = base; p < base + count && ok; p++) ok = await canListen(p);
    if (ok) return base;
  }
  throw new Error(`no block of ${count} free loopback ports found`);
}

/** One admin-socket command (`{"prefix": ...}`), answered as a 4-byte big-endian length and JSON. */
async function adminSocket(path: string, prefix: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const socket = connect(path);
    const chunks: Buffer[] = [];
    socket.setTimeout(3_000, () => socket.destroy(new Error(`admin socket ${path}: timeout`)));
    socket.on('connect', () => socket.write(`${JSON.stringify({ prefix, format: 'json' })}\0`));
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.on('error', reject);
    socket.on('end', () => {
      const all = Buffer.concat(chunks);
      if (all.length < 4) return reject(new Error(`admin socket ${path}: short answer`));
      const length = all.readUInt32BE(0);
      try { resolve(JSON.parse(all.subarray(4, 4 + length).toString('utf8'))); } catch (e) { reject(e); }
    });
  });
}

function cephConf(dir: string, runDir: string, fsid: string, ports: { mon: number; min: number; max: number; rgw: number }): string {
  const lines = [
    '[global]',
    `fsid = ${fsid}`,
    `mon host = [v2:127.0.0.1:${ports.mon}]`,
    'mon initial members = a',
    // msgr2 only, loopback only, and our own block of ports.
    'public addr = 127.0.0.1',
    'cluster addr = 127.0.0.1',
    'ms bind msgr1 = false',
    'ms bind msgr2 = true',
    'ms bind ipv4 = true',
    'ms bind ipv6 = false',
    `ms bind port min = ${ports.min}`,
    `ms bind port max = ${ports.max}`,
    // No cephx; without the crc modes radosgw loops on `get_initial_auth_request returned -13`.
    'auth cluster required = none',
    'auth service required = none',
    'auth client required = none',
    'ms mon client mode = crc secure',
    'ms mon cluster mode = crc secure',
    'ms mon service mode = crc secure',
    'ms cluster mode = crc secure',
    'ms service mode = crc secure',
    'ms client mode = crc secure',
    'mon warn on insecure global id reclaim = false',
    'mon warn on insecure global id reclaim allowed = false',
    // One OSD holds every copy; few PGs so that the gateway's pools are created fast.
    'osd pool default size = 1',
    'osd pool default min size = 1',
    'osd pool default pg num = 8',
    'osd pool default pgp num = 8',
    'osd pool default pg autoscale mode = off',
    'mon allow pool size one = true',
    'mon allow pool delete = true',
    'mon warn on pool no redundancy = false',
    'osd crush chooseleaf type = 0',
    'paxos propose interval = 0.1',
    // The monitor would shut itself down when the disk is nearly full (it has been, here).
    'mon data avail crit = 0',
    'mon data avail warn = 0',
    // Every path inside the temp dir (the defaults are under /var/lib/ceph, /var/log/ceph, /var/run/ceph).
    `run dir = ${runDir}`,
    `log file = ${dir}/log/$cluster-$name.log`,
    `mon cluster log file = ${dir}/log/$cluster.$channel.log`,
    `crash dir = ${dir}/crash`,
    `mon data = ${dir}/mon/$cluster-$id`,
    `osd data = ${dir}/osd/$cluster-$id`,
    `rgw data = ${dir}/rgw/$cluster-$id`,
    'keyring = /dev/null',
    // Data in RAM; the device size is only what the OSD reports as capacity (not allocated).
    'osd objectstore = memstore',
    'memstore device bytes = 17179869184',
    `rgw frontends = beast endpoint=127.0.0.1:${ports.rgw} tcp_nodelay=1`,
    // Deleted data is collected after 30 s instead of 2 hours (memstore keeps it in RAM until then).
    'rgw gc obj min wait = 30',
    'rgw gc processor period = 30',
    // No Swift: its /swift prefix would shadow a bucket named "swift".
    'rgw enable apis = s3, admin',
    '',
    // Admin sockets for the daemons only (the `ceph` and `radosgw-admin` tools need none).
    '[mon]',
    `admin socket = ${runDir}/$name.asok`,
    '[osd]',
    `admin socket = ${runDir}/$name.asok`,
    '[client.rgw]',
    `admin socket = ${runDir}/$name.asok`,
    '',
  ];
  return lines.join('\n');
}

async function logTails(logDir: string): Promise<string> {
  const names = (await readdir(logDir).catch(() => [] as string[])).sort();
  const parts: string[] = [];
  for (const name of names) {
    const text = await readFile(join(logDir, name), 'utf8').catch(() => '');
    if (text.trim() === '') continue;
    parts.push(`--- ${name} ---\n${text.slice(-2_000)}`);
  }
  return parts.join('\n');
}

interface Attempt {
  dir: string;
  runDir: string;
  ownRunDir: boolean;
  daemons: { mon?: Daemon; osd?: Daemon; rgw?: Daemon };
}

// Clusters not stopped when this process exits (a hook that timed out, process.exit before an
// after hook, an uncaught error): their daemons are killed and their dirs removed, synchronously.
const liveClusters = new Set<Attempt>();
let exitHookInstalled = false;
function track(attempt: Attempt): Attempt {
  liveClusters.add(attempt);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', () => {
      for (const cluster of liveClusters) {
        for (const d of [cluster.daemons.rgw, cluster.daemons.osd, cluster.daemons.mon]) {
          if (d && d.child.exitCode === null && d.child.signalCode === null) {
            try { process.kill(d.pid, 'SIGKILL'); } catch { /* gone */ }
          }
        }
        if (process.env.TEST_KEEP_S3 === '1') continue;
        // No mounts can be under these dirs (nothing here mounts), so a plain rm is safe.
        try { rmSync(cluster.dir, { recursive: true, force: true }); } catch { /* best effort */ }
        if (cluster.ownRunDir) { try { rmSync(cluster.runDir, { recursive: true, force: true }); } catch { /* best effort */ } }
      }
    });
  }
  return attempt;
}

async function stopDaemon(daemon: Daemon | undefined): Promise<void> {
  if (!daemon) return;
  // All three exit within a fraction of a second on SIGTERM (the OSD uses osd_fast_shutdown);
  // nothing needs to survive, so do not wait long before SIGKILL.
  await daemon.stop(3_000);
}

async function teardown(attempt: Attempt): Promise<void> {
  await stopDaemon(attempt.daemons.rgw);
  await stopDaemon(attempt.daemons.osd);
  await stopDaemon(attempt.daemons.mon);
  liveClusters.delete(attempt);
  if (process.env.TEST_KEEP_S3 === '1') return;
  if (attempt.ownRunDir) await removeTree(attempt.runDir);
  await removeTree(attempt.dir);
}

export async function startS3(): Promise<RunningS3> {
  const reason = s3UnavailableReason();
  if (reason) throw new Error(reason);
  const started = Date.now();
  let lastError: unknown;
  // A port taken between our check and a daemon's bind fails that start: try again with new ports.
  for (let attempt = 1; attempt <= 2; attempt++) {
    try {
      return await startOnce(started);
    } catch (error) {
      lastError = error;
    }
  }
  throw lastError;
}

async function startOnce(started: number): Promise<RunningS3> {
  const bin = Object.fromEntries(BINARIES.map((b) => [b, findBinary(b)!])) as Record<Binary, string>;
  const env = childEnv();
  const dir = await tempDir('s3');
  // Unix socket paths are limited to 107 bytes: use a short run dir when TEST_TMPDIR is deep.
  let runDir = join(dir, 'run');
  let ownRunDir = false;
  if (`${runDir}/client.rgw.asok`.length > 100) {
    runDir = await mkdtemp('/tmp/s3run-');
    ownRunDir = true;
  }
  const attempt = track({ dir, runDir, ownRunDir, daemons: {} });
  const logDir = join(dir, 'log');
  try {
    for (const sub of ['log', 'mon', 'osd', 'rgw', 'crash']) await mkdir(join(dir, sub), { recursive: true });
    await mkdir(runDir, { recursive: true });

    // Monitor on the block's first port; OSD binds 4 of the next 10; the gateway takes the last.
    const base = await freePortBlock(12);
    const ports = { mon: base, min: base + 1, max: base + 10, rgw: base + 11 };
    const fsid = randomUUID();
    const conf = join(dir, 'ceph.conf');
    await writeFile(conf, cephConf(dir, runDir, fsid, ports));
    const c = ['--conf', conf];

    // 1. The monitor.
    const monmap = join(dir, 'monmap');
    await run(bin.monmaptool, ['--create', '--fsid', fsid, '--addv', 'a', `[v2:127.0.0.1:${ports.mon}]`, monmap], { env });
    await run(bin['ceph-mon'], [...c, '--mkfs', '-i', 'a', '--monmap', monmap], { env });
    const mon = attempt.daemons.mon = await startDaemon(bin['ceph-mon'], [...c, '-i', 'a', '-f'], { logFile: join(logDir, 'mon.out'), env, cwd: dir });
    await waitUntil('the Ceph monitor to lead its quorum', async () => {
      const status = await adminSocket(join(runDir, 'mon.a.asok'), 'mon_status') as { state?: string };
      return status.state === 'leader';
    }, { daemon: mon, timeoutMs: 30_000, intervalMs: 25 });
    const monReady = Date.now() - started;

    // 2. The OSD: register it, make its (in-memory) store, start it, wait until it has booted.
    const osdUuid = randomUUID();
    const created = await run('timeout', ['-k', '5', '60', bin.ceph, ...c, '--connect-timeout', '30', 'osd', 'new', osdUuid], { env });
    const osdId = created.stdout.trim();
    if (!/^\d+$/.test(osdId)) throw new Error(`ceph osd new answered ${JSON.stringify(created.stdout)}`);
    await mkdir(join(dir, 'osd', `ceph-${osdId}`), { recursive: true });
    await run(bin['ceph-osd'], [...c, '-i', osdId, '--mkfs', '--osd-uuid', osdUuid], { env });
    const osd = attempt.daemons.osd = await startDaemon(bin['ceph-osd'], [...c, '-i', osdId, '-f'], { logFile: join(logDir, `osd.${osdId}.out`), env, cwd: dir });
    await waitUntil(`osd.${osdId} to boot`, async () => {
      const status = await adminSocket(join(runDir, `osd.${osdId}.asok`), 'status') as { state?: string };
      return status.state === 'active';
    }, { daemon: osd, timeoutMs: 30_000, intervalMs: 25 });
    // 3. Check with the monitor that the OSD is up and in, while radosgw-admin creates the user.
    //    The user comes before the gateway starts: radosgw-admin then creates the zone and the
    //    pools alone (started together, the gateway and radosgw-admin race on them and startup
    //    takes 5 s instead of 1). radosgw-admin cannot finish unless the OSD is in, so a failed
    //    check explains a hang.
    let osdUpIn = 0;
    await Promise.all([
      waitUntil(`osd.${osdId} to be up and in`, async () => {
        const dump = await run('timeout', ['-k', '5', '30', bin.ceph, ...c, '--connect-timeout', '20', 'osd', 'dump', '--format', 'json'], { env });
        const osds = (JSON.parse(dump.stdout) as { osds?: { osd: number; up: number; in: number }[] }).osds ?? [];
        return osds.some((o) => String(o.osd) === osdId && o.up === 1 && o.in === 1);
      }, { daemon: osd, timeoutMs: 30_000, intervalMs: 100 }).then(() => { osdUpIn = Date.now() - started; }),
      run('timeout', ['-k', '5', '90', bin['radosgw-admin'], ...c, 'user', 'create',
        '--uid', 'registry-tests', '--display-name', 'registry tests',
        '--access-key', ACCESS_KEY, '--secret-key', SECRET_KEY], { env }),
    ]);
    const userCreated = Date.now() - started;

    // 4. The gateway; ready when it answers ListBuckets signed with the user's keys.
    const rgw = attempt.daemons.rgw = await startDaemon(bin.radosgw, [...c, '-n', 'client.rgw', '-f'], { logFile: join(logDir, 'rgw.out'), env, cwd: dir });
    const endpoint = `http://127.0.0.1:${ports.rgw}`;
    const clients = new Set<S3Client>();
    const makeClient = (overrides: Partial<S3ClientConfig> = {}): S3Client => {
      const client = new S3Client({ ...s3ClientConfig({ endpoint, accessKey: ACCESS_KEY, secretKey: SECRET_KEY }), ...overrides });
      clients.add(client);
      return client;
    };
    const probe = makeClient({ maxAttempts: 1, requestHandler: { connectionTimeout: 1_000, requestTimeout: 5_000, throwOnRequestTimeout: true } });
    await waitUntil('the RADOS Gateway to answer ListBuckets', async () => {
      await probe.send(new ListBucketsCommand({}));
      return true;
    }, { daemon: rgw, timeoutMs: 60_000, intervalMs: 25 });
    const gatewayReady = Date.now() - started;

    const admin = makeClient();
    let stopped = false;
    return {
      endpoint,
      region: REGION,
      accessKey: ACCESS_KEY,
      secretKey: SECRET_KEY,
      dir,
      logDir,
      pids: { mon: mon.pid, osd: osd.pid, rgw: rgw.pid },
      startupMs: gatewayReady,
      timings: { monReady, osdUpIn, userCreated, gatewayReady },
      async createBucket(name) {
        const bucket = name ?? `test-${randomBytes(6).toString('hex')}`;
        await admin.send(new CreateBucketCommand({ Bucket: bucket }));
        return bucket;
      },
      client: makeClient,
      async rss() {
        const of = async (pid: number): Promise<number> => {
          const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
          const kb = /^VmRSS:\s+(\d+) kB/m.exec(status)?.[1];
          return kb === undefined ? 0 : Number(kb) * 1024;
        };
        return { mon: await of(mon.pid), osd: await of(osd.pid), rgw: await of(rgw.pid) };
      },
      async stop() {
        if (stopped) return;
        stopped = true;
        for (const client of clients) client.destroy();
        await teardown(attempt);
      },
    };
  } catch (error) {
    const tails = await logTails(logDir);
    await teardown(attempt).catch(() => { /* best effort */ });
    const message = error instanceof Error ? error.message : String(error);
    throw new Error(`could not start the S3 test cluster: ${message}${tails ? `\n${tails}` : ''}`);
  }
}
