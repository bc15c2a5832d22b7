// One typed configuration: a YAML file (Distribution's keys where they exist) plus REGISTRY_<PATH>
// environment overrides, validated at start with messages that name the bad key.
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';

const duration = z.union([z.number().nonnegative(), z.string().regex(/^\d+(ms|s|m|h)$/, 'a duration such as 500ms, 10s, 5m or 1h')]);
/** Ours, for ages counted in days (garbage collection, retention): also `30d`. */
const longDuration = z.union([z.number().nonnegative(), z.string().regex(/^\d+(ms|s|m|h|d)$/, 'a duration such as 30s, 1h or 30d')]);

const schema = z.strictObject({
  version: z.union([z.string(), z.number()]).optional(),
  log: z
    .strictObject({
      level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).default('info'),
      /** Distribution's: json (one object a line, for log pipelines) or text (key=value, for people). */
      formatter: z.enum(['json', 'text', 'logstash']).default('json'),
      /** Static fields added to every log line (Distribution's log.fields). */
      fields: z.record(z.string(), z.unknown()).default({}),
      /** Distribution's: `disabled: true` turns the access log (one line per request) off. */
      accesslog: z.strictObject({ disabled: z.boolean().default(false) }).optional(),
    })
    .prefault({}),
  http: z
    .strictObject({
      addr: z.string().default('0.0.0.0:5000'),
      /** Public base URL (Location headers, later the token realm). */
      host: z.url().optional(),
      /**
       * Worker processes; 0 means one per CPU core. One by default: in containers, scale with replicas;
       * every extra Node process costs about 70 MiB.
       */
      workers: z.number().int().min(0).max(64).default(1),
      draintimeout: duration.default('30s'),
      /**
       * Ours: a request body that sends nothing for this long ends its request (408) and connection; 0 never.
       * Frees the upload session a stalled client holds. Only while the body is read, so a long
       * finalize after it (hashing a large layer) does not count.
       */
      bodytimeout: duration.default('60s'),
      headers: z.record(z.string(), z.union([z.string(), z.array(z.string())])).default({}),
      tls: z.strictObject({ certificate: z.string(), key: z.string() }).optional(),
      /** Distribution's debug server: a second listener for operators; `prometheus` serves metrics there. */
      debug: z
        .strictObject({
          addr: z.string(),
          prometheus: z
            .strictObject({ enabled: z.boolean().default(false), path: z.string().regex(/^\//, 'a path such as /metrics').default('/metrics') })
            .prefault({}),
        })
        .optional(),
      /**
       * Ours: Prometheus metrics on the main port too (on by default; off leaves them to http.debug). With
       * both off, requests are not measured at all.
       */
      metrics: z
        .strictObject({ enabled: z.boolean().default(true), path: z.string().regex(/^\//, 'a path such as /metrics').default('/metrics') })
        .optional(),
    })
    .prefault({}),
  storage: z
    .strictObject({
      filesystem: z.strictObject({ rootdirectory: z.string().default('./data') }).prefault({}),
      /** Chooses the S3 driver when present (Distribution: the one storage section that is set). */
      s3: z
        .strictObject({
          bucket: z.string().min(3),
          region: z.string().default('us-east-1'),
          regionendpoint: z.url().optional(),
          forcepathstyle: z.boolean().default(false),
          rootdirectory: z.string().default(''),
          accesskey: z.string().optional(),
          secretkey: z.string().optional(),
          encrypt: z.boolean().default(false),
          storageclass: z.string().optional(),
          chunksize: z.number().int().min(5 * 1024 * 1024).max(5 * 1024 * 1024 * 1024).default(10 * 1024 * 1024),
          /** Ours: WHEN_REQUIRED for S3-compatible stores that reject the SDK's default streaming checksums. */
          checksummode: z.enum(['WHEN_SUPPORTED', 'WHEN_REQUIRED']).default('WHEN_REQUIRED'),
          /** Ours: parts of one upload in flight; memory per upload is uploadconcurrency x chunksize. */
          uploadconcurrency: z.number().int().min(1).max(16).default(1),
        })
        .refine((s3) => Boolean(s3.accesskey) === Boolean(s3.secretkey), 'accesskey and secretkey go together')
        .optional(),
      redirect: z.strictObject({ disable: z.boolean().default(false) }).prefault({}),
      delete: z.strictObject({ enabled: z.boolean().default(true) }).prefault({}),
      /**
       * Distribution's: `redis` (the default when redis.* is set) shares tag and blob descriptors between
       * replicas; `inmemory` keeps only the per-process manifest cache.
       */
      cache: z.strictObject({ blobdescriptor: z.enum(['inmemory', 'redis']).optional() }).optional(),
      maintenance: z
        .strictObject({
          uploadpurging: z
            .strictObject({
              enabled: z.boolean().default(true),
              age: duration.default('168h'),
              interval: duration.default('24h'),
              dryrun: z.boolean().default(false),
            })
            .prefault({}),
        })
        .prefault({}),
    })
    .prefault({}),
  auth: z
    .strictObject({
      /** Distribution's: users from an htpasswd file (bcrypt). Setting it turns auth on. */
      htpasswd: z.strictObject({ realm: z.string().optional(), path: z.string() }).optional(),
      /** Distribution's: accept tokens of an external issuer (its certificates, or a JWKS URL). */
      token: z
        .strictObject({
          realm: z.url(),
          service: z.string(),
          issuer: z.string(),
          rootcertbundle: z.string().optional(),
          jwks: z.url().optional(),
        })
        .refine((token) => token.rootcertbundle || token.jwks, 'rootcertbundle or jwks is needed to verify tokens')
        .optional(),
      /** Ours: the built-in token issuer. */
      issuer: z
        .strictObject({
          service: z.string().optional(),
          issuer: z.string().default('dify-registry'),
          algorithm: z.enum(['ES256', 'RS256']).default('ES256'),
          expiration: duration.default('5m'),
          refreshexpiration: duration.default('720h'),
          /** PEM private key and certificate files; the first signs, all verify (rotation). Generated when empty. */
          keys: z.array(z.strictObject({ key: z.string(), certificate: z.string() })).default([]),
        })
        .prefault({}),
      /** Users in the config: bcrypt hashes, as in htpasswd. */
      users: z.array(z.strictObject({ name: z.string().min(1), password: z.string().regex(/^\$2[aby]\$/, 'a bcrypt hash') })).default([]),
      groups: z.record(z.string(), z.array(z.string())).default({}),
      /** Robot accounts for CI: log in as robot$<name> with a long random secret (stored as a bcrypt hash). */
      robots: z.array(z.strictObject({ name: z.string().regex(/^[a-z0-9._-]+$/), secret: z.string().regex(/^\$2[aby]\$/, 'a bcrypt hash') })).default([]),
      /**
       * Ordered rules; the first whose glob matches the repository decides. Subjects: user names,
       * group:<name>, $anonymous, $authenticated, $all.
       */
      access: z
        .array(
          z.strictObject({
            repository: z.string().min(1),
            pull: z.array(z.string()).default([]),
            push: z.array(z.string()).default([]),
            delete: z.array(z.string()).default([]),
          }),
        )
        .default([]),
      /** User names or group:<name>: /admin and registry:catalog:*. */
      admins: z.array(z.string()).default([]),
    })
    .prefault({}),
  middleware: z
    .strictObject({
      /** Distribution's storage middleware; `redirect` with `baseurl` signs blob URLs for that public host. */
      storage: z
        .array(z.strictObject({ name: z.literal('redirect'), options: z.strictObject({ baseurl: z.url() }) }))
        .max(1)
        .default([]),
    })
    .prefault({}),
  /** Shared state for several replicas (upload sessions, caches, locks, rate limits, job queues). */
  redis: z
    .strictObject({
      /** Distribution's: host:port. */
      addr: z.string().regex(/^[^:\s]+:\d+$/, 'host:port').optional(),
      /** Ours: redis://[user:password@]host:port/db or rediss:// (TLS); overrides addr. */
      url: z.string().regex(/^rediss?:\/\//, 'a redis:// or rediss:// URL').optional(),
      username: z.string().optional(),
      password: z.string().optional(),
      db: z.number().int().min(0).default(0),
      /** Distribution's timeouts. */
      dialtimeout: duration.default('5s'),
      readtimeout: duration.optional(),
      writetimeout: duration.optional(),
      /** Accepted for Distribution compatibility; ioredis keeps one multiplexed connection. */
      pool: z.record(z.string(), z.unknown()).optional(),
      tls: z.strictObject({ enabled: z.boolean().default(false) }).optional(),
      /** Passed through to ioredis: Sentinel (`name` of the master set, sentinels as host:port). */
      sentinel: z.strictObject({ name: z.string(), addrs: z.array(z.string()).min(1), password: z.string().optional() }).optional(),
      /** Passed through to ioredis: Redis Cluster seed nodes as host:port. */
      cluster: z.strictObject({ addrs: z.array(z.string()).min(1) }).optional(),
      /** Prefix of every key, so several registries can share one Redis. */
      keyprefix: z.string().default('registry:'),
    })
    .refine((redis) => redis.addr || redis.url || redis.sentinel || redis.cluster, 'one of addr, url, sentinel or cluster is needed')
    .optional(),
  /** Ours: token buckets per client address and per user (in Redis when configured). Off by default. */
  ratelimit: z
    .strictObject({
      enabled: z.boolean().default(false),
      /** Requests per second refilled, and the bucket size (the burst allowed at once). */
      perclient: z.strictObject({ rate: z.number().positive().default(50), burst: z.number().int().min(1).default(200) }).prefault({}),
      peruser: z.strictObject({ rate: z.number().positive().default(100), burst: z.number().int().min(1).default(400) }).prefault({}),
      /** Addresses or CIDRs of proxies whose X-Forwarded-For names the client. */
      trustedproxies: z.array(z.string()).default([]),
    })
    .prefault({}),
  /** Ours: copies of upstream registries (admin mirror jobs, sync rules, pull-through). */
  mirror: z
    .strictObject({
      /** Named upstreams; `docker.io` (https://registry-1.docker.io) is built in and may be overridden. */
      upstreams: z
        .array(
          z.strictObject({
            name: z.string().regex(/^[a-z0-9]+([._-][a-z0-9]+)*$/, 'one name component such as docker.io or ghcr.io'),
            url: z.url().optional(),
            username: z.string().optional(),
            password: z.string().optional(),
            /** Blobs fetched at once from this upstream. */
            concurrency: z.number().int().min(1).max(64).default(4),
            /** Bytes per second over all transfers from this upstream; 0: unlimited. */
            bandwidth: z.number().int().min(0).default(0),
          }),
        )
        .default([]),
      /** Periodic mirror jobs (zot's sync): each run mirrors the listed repositories' matching tags. */
      sync: z
        .array(
          z.strictObject({
            name: z.string().regex(/^[a-z0-9][a-z0-9._-]*$/),
            upstream: z.string(),
            repositories: z.array(z.string()).min(1),
            tags: z.array(z.string()).optional(),
            tagregex: z.string().optional(),
            semver: z.string().optional(),
            platforms: z.array(z.string()).optional(),
            layouts: z.array(z.union([z.enum(['same-name', 'ddn-k8s']), z.strictObject({ prefix: z.string() })])).default(['same-name']),
            interval: duration.default('6h'),
          }),
        )
        .default([]),
      /**
       * Pull-through: pulls under `prefix` that miss here are fetched from `upstream` while streaming.
       * prefix "" serves dockerd's registry-mirrors (library/nginx asked without a prefix).
       */
      pullthrough: z
        .array(
          z.strictObject({
            upstream: z.string(),
            prefix: z.string().default(''),
            layout: z.enum(['same-name', 'ddn-k8s']).default('same-name'),
            /** Tags are checked against upstream again after this long; digests never are. */
            ttl: duration.default('10m'),
          }),
        )
        .default([]),
      /**
       * How long a pull waits for another request's fetch of the same blob to be stored before it streams
       * from the upstream itself (not storing): below the read timeouts of proxies in front (often 60 s).
       */
      waitforfetch: duration.default('30s'),
    })
    .prefault({}),
  /** Distribution's one-upstream pull-through cache: the same as one mirror.pullthrough entry with prefix "". */
  proxy: z
    .strictObject({ remoteurl: z.url(), username: z.string().optional(), password: z.string().optional(), ttl: duration.default('10m') })
    .optional(),
  /** Ours: online garbage collection (server/gc). */
  gc: z
    .strictObject({
      /** Scheduled runs in the registry (one at a time across replicas); admin and CLI runs work either way. */
      enabled: z.boolean().default(false),
      interval: longDuration.default('24h'),
      /** Content younger than this (by storage modification time) is kept, referenced or not. */
      graceperiod: longDuration.default('1h'),
      dryrun: z.boolean().default(false),
      /** `keep` manifests no tag reaches, or delete them once they are older than this duration. */
      untagged: z.union([z.literal('keep'), longDuration]).default('keep'),
      /**
       * Storage operations a run keeps in flight: more finish sooner, fewer leave more of the process (on the
       * filesystem its thread pool of 4) and the storage to pulls.
       */
      concurrency: z.number().int().min(1).max(64).default(2),
    })
    .prefault({}),
  /** Ours: tag retention and immutable tags per repository glob; the first rule whose glob matches applies. */
  retention: z
    .strictObject({
      rules: z
        .array(
          z.strictObject({
            repository: z.string().min(1),
            /** Keep the N most recently pushed tags (push time: the tag link's modification time). */
            keeplast: z.number().int().min(0).optional(),
            /** Tag globs (`*`, `?`) that are always kept. */
            keeptags: z.array(z.string().min(1)).default([]),
            /** Delete tags pushed longer ago than this (without it, keeplast alone deletes every older tag). */
            deleteolderthan: longDuration.optional(),
            /** Tag globs that a push may create but never move, and that neither DELETE nor retention removes. */
            immutable: z.array(z.string().min(1)).default([]),
          }),
        )
        .default([]),
    })
    .prefault({}),
  /** Ours: server-side image builds (POST /admin/v1/builds): buildah per platform, queued per platform. */
  builder: z
    .strictObject({
      /** This process accepts builds (admin API) and assembles them; a `worker` process needs only `platforms`. */
      enabled: z.boolean().default(false),
      /** What this process builds, natively or under qemu; [] for a server whose workers build. Also comma-separated. */
      platforms: z
        .preprocess(
          (value) => (typeof value === 'string' ? value.split(',').map((p) => p.trim()).filter(Boolean) : value),
          z.array(z.string().regex(/^[a-z0-9]+\/[a-z0-9]+(\/[a-z0-9]+)?$/, 'a platform such as linux/amd64 or linux/arm64')),
        )
        .default(['linux/amd64', 'linux/arm64']),
      engine: z.enum(['buildah']).default('buildah'),
      /** The engine's storage: the layer cache, kept between builds. Contexts are unpacked below it too. */
      cachedir: z.string().default('/var/lib/dify-registry/builder'),
      /** This registry as the engine reaches it (push, pull); default: http.host, else http.addr on loopback. */
      registry: z.url().optional(),
      /** Base images replaced by others, e.g. `python:3.12-slim-bookworm` -> `registry.local:5000/library/python:3.12-slim-bookworm`. */
      baseimages: z.record(z.string(), z.string()).default({}),
      /** Build args of every build (package mirrors such as DEBIAN_MIRROR or PIP_INDEX_URL), below a request's own. */
      buildargs: z.record(z.string(), z.string()).default({}),
      /**
       * Also keep the layer cache in this registry (`<repository>/buildcache`, buildah --cache-to/--cache-from),
       * so every worker of a platform shares it. Off by default: buildah 1.28 pushes every step, cached or not,
       * which about doubles a cold build; the local cache in cachedir already survives between builds.
       */
      remotecache: z.boolean().default(false),
      /** Builds of one platform this process runs at once. */
      concurrency: z.number().int().min(1).max(16).default(1),
      /** A platform build that takes longer is stopped and fails. */
      timeout: duration.default('3h'),
      /** Tries in all after infrastructure failures (git or registry unreachable, a lost worker); never after a failing RUN. */
      attempts: z.number().int().min(1).max(10).default(3),
      /** First retry delay; doubles with every attempt. */
      backoff: duration.default('10s'),
      buildah: z
        .strictObject({
          path: z.string().default('buildah'),
          /** auto: overlay where buildah's overlay driver works in the cache directory, else vfs (builder/storage-driver.ts). */
          storagedriver: z.string().default('auto'),
          isolation: z.enum(['chroot', 'oci', 'rootless']).default('chroot'),
          /** Base images: pull when the registry has a newer one (default), always, only when missing, never. */
          pull: z.enum(['newer', 'always', 'missing', 'never']).default('newer'),
          /**
           * Bytes a platform's layer cache may hold (20 GiB: dify-api's dependency layers of several releases);
           * over it, a build removes the cached images it did not use. 0: no limit.
           */
          cachesize: z.number().int().min(0).default(20 * 1024 ** 3),
        })
        .prefault({}),
      git: z.strictObject({ path: z.string().default('git') }).prefault({}),
      /** Largest uploaded build context (POST /admin/v1/contexts), in bytes. */
      maxcontextsize: z.number().int().min(1).default(1024 * 1024 * 1024),
      /** Recipes directory; the recipes shipped in builder/recipes by default. */
      recipes: z.string().optional(),
    })
    .prefault({}),
  /** Distribution's webhooks: push, pull and delete events to each endpoint, queued in memory, retried. */
  notifications: z
    .strictObject({
      /** Accepted for Distribution compatibility. */
      events: z.strictObject({ includereferences: z.boolean().default(false) }).optional(),
      endpoints: z
        .array(
          z.strictObject({
            name: z.string().min(1),
            disabled: z.boolean().default(false),
            url: z.url(),
            headers: z.record(z.string(), z.union([z.string(), z.array(z.string())])).default({}),
            /** One delivery attempt at most this long. */
            timeout: duration.default('1s'),
            /** Failures in a row after which the endpoint is reported down (and logged once). */
            threshold: z.number().int().min(1).default(10),
            /** The first wait after a failure; doubles per failure in a row, up to a minute. */
            backoff: duration.default('1s'),
            ignoredmediatypes: z.array(z.string()).default([]),
            ignore: z
              .strictObject({
                mediatypes: z.array(z.string()).default([]),
                actions: z.array(z.enum(['push', 'pull', 'delete', 'mount'])).default([]),
              })
              .prefault({}),
            /** Ours: events held for this endpoint at most; beyond it the oldest are dropped (and counted). */
            queuesize: z.number().int().min(1).default(1000),
          }),
        )
        .default([]),
    })
    .optional(),
  health: z
    .strictObject({
      storagedriver: z
        .strictObject({ enabled: z.boolean().default(true), interval: duration.default('10s'), threshold: z.number().int().min(1).default(3) })
        .prefault({}),
      /** Ours: Redis (when redis.* is set) as a readiness check; see server/health/redis-check.ts for `readiness`. */
      redis: z
        .strictObject({
          enabled: z.boolean().default(true),
          interval: duration.default('10s'),
          threshold: z.number().int().min(1).default(3),
          /**
           * partition (default): unready only when other replicas reach Redis and this one cannot; a Redis
           * outage of every replica leaves them ready (pulls work without Redis). always: unready whenever
           * Redis is unreachable. never: reported only.
           */
          readiness: z.enum(['partition', 'always', 'never']).default('partition'),
        })
        .optional(),
    })
    .prefault({}),
});

export type Config = z.infer<typeof schema>;

export class ConfigError extends Error {}

/**
 * Reads the file (if any), applies REGISTRY_* overrides from `env`, validates. Unknown keys in the file are
 * errors; unknown REGISTRY_* variables are only warned about, as in Distribution, because platforms set
 * some themselves (Kubernetes adds REGISTRY_PORT and REGISTRY_SERVICE_HOST for a Service named "registry").
 */
export function loadConfig(
  file: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
  warn: (message: string) => void = (message) => console.error(message),
): Config {
  let raw: unknown = {};
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (error) {
      throw new ConfigError(`cannot read configuration file ${file}: ${(error as Error).message}`);
    }
    try {
      raw = parseYaml(text) ?? {};
    } catch (error) {
      throw new ConfigError(`configuration file ${file} is not valid YAML: ${(error as Error).message}`);
    }
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ConfigError('configuration must be a YAML mapping');
  const fromFile = structuredClone(raw) as Record<string, unknown>;
  for (const [name, value] of environmentOverrides(env)) {
    const candidate = structuredClone(raw) as Record<string, unknown>;
    setPath(candidate, name.keys, value);
    const issues = issuesAt(candidate, name.keys);
    if (issues.some((issue) => issue.code === 'unrecognized_keys')) {
      warn(`ignoring environment variable ${name.variable}: no configuration key ${name.keys.join('.')}`);
      continue;
    }
    // A value that reads as a number or boolean, where the key wants a string (REGISTRY_HTTP_ADDR=5000).
    if (issues.length > 0 && typeof value !== 'string') setPath(candidate, name.keys, String(env[name.variable]));
    raw = candidate;
  }
  const result = schema.safeParse(raw);
  if (!result.success) {
    const overridden = JSON.stringify(raw) !== JSON.stringify(fromFile) ? ' (file and REGISTRY_* environment)' : '';
    throw new ConfigError(`invalid configuration${overridden}:\n${formatIssues(result.error)}`);
  }
  return result.data;
}

/** Environment variables that configure the process itself rather than a config key. */
// REGISTRY_URL, _USERNAME and _PASSWORD are the admin CLI's (dify-registry mirror), never the server's.
const NOT_CONFIG_KEYS = new Set(['REGISTRY_CONFIGURATION_PATH', 'REGISTRY_URL', 'REGISTRY_USERNAME', 'REGISTRY_PASSWORD']);

/**
 * REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY=/x sets storage.filesystem.rootdirectory, as in Distribution.
 * `true`, `false` and plain numbers keep their types; anything else is a string, taken as it is.
 */
function environmentOverrides(env: NodeJS.ProcessEnv): Array<[{ variable: string; keys: string[] }, unknown]> {
  return Object.entries(env)
    .filter((entry): entry is [string, string] => entry[0].startsWith('REGISTRY_') && !NOT_CONFIG_KEYS.has(entry[0]) && entry[1] !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([variable, value]) => [
      { variable, keys: variable.slice('REGISTRY_'.length).toLowerCase().split('_') },
      /^(true|false)$/.test(value) ? value === 'true' : /^-?\d+(\.\d+)?$/.test(value) ? Number(value) : value,
    ]);
}

function setPath(target: Record<string, unknown>, keys: string[], value: unknown): void {
  let node = target;
  for (const key of keys.slice(0, -1)) {
    const child = node[key];
    if (typeof child !== 'object' || child === null || Array.isArray(child)) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[keys.at(-1)!] = value;
}

/** Validation issues about `keys` or its parents' unknown keys, for deciding on one override. */
function issuesAt(candidate: unknown, keys: string[]): z.core.$ZodIssue[] {
  const result = schema.safeParse(candidate);
  if (result.success) return [];
  return result.error.issues.filter((issue) => {
    const at = issue.path.join('.');
    if (issue.code === 'unrecognized_keys') return issue.keys.some((key) => [...issue.path, key].join('.') === keys.slice(0, issue.path.length + 1).join('.'));
    return at === keys.join('.');
  });
}

function formatIssues(error: z.ZodError): string {
  return error.issues
    .map((issue) => {
      const at = issue.path.join('.');
      if (issue.code === 'unrecognized_keys') {
        return issue.keys.map((key) => `  - ${at ? `${at}.` : ''}${key}: unknown key`).join('\n');
      }
      return `  - ${at || '(root)'}: ${issue.message}`;
    })
    .join('\n');
}

export function durationMs(value: number | string): number {
  if (typeof value === 'number') return value / 1e6; // Distribution reads bare numbers as nanoseconds
  const match = /^(\d+)(ms|s|m|h|d)$/.exec(value)!;
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[match[2] as 'ms' | 's' | 'm' | 'h' | 'd'];
  return Number(match[1]) * unit;
}

export function workerCount(config: Config): number {
  return config.http.workers || Math.max(1, cpus().length);
}

/** `:5000` and `0.0.0.0:5000` and `[::1]:5000` -> host and port for net.listen. */
export function parseListenAddress(addr: string): { host: string | undefined; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(addr);
  if (!match) throw new ConfigError(`http.addr: expected host:port, got ${addr}`);
  return { host: match[1] ?? (match[2] || undefined), port: Number(match[3]) };
}
