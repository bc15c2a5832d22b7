// One typed configuration: a YAML file (Distribution's keys where they exist) plus REGISTRY_<PATH>
// environment overrides, validated at start with messages that name the bad key.
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';

const duration = z.union([z.number().nonnegative(), z.string().regex(/^\d+(ms|s|m|h)$/, 'a duration such as 500ms, 10s, 5m or 1h')]);

const schema = z.strictObject({
  version: z.union([z.string(), z.number()]).optional(),
  log: z
    .strictObject({
      level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).default('info'),
      formatter: z.enum(['json']).default('json'),
      /** Static fields added to every log line (Distribution's log.fields). */
      fields: z.record(z.string(), z.unknown()).default({}),
    })
    .prefault({}),
  http: z
    .strictObject({
      addr: z.string().default('0.0.0.0:5000'),
      /** Public base URL (Location headers, later the token realm). */
      host: z.url().optional(),
      /** Worker processes; 0 means one per CPU core. Ours: Distribution is one process. */
      workers: z.number().int().min(0).max(64).default(0),
      draintimeout: duration.default('30s'),
      headers: z.record(z.string(), z.union([z.string(), z.array(z.string())])).default({}),
      tls: z.strictObject({ certificate: z.string(), key: z.string() }).optional(),
      relativeurls: z.boolean().default(false),
    })
    .prefault({}),
  storage: z
    .strictObject({
      filesystem: z.strictObject({ rootdirectory: z.string().default('./data') }).prefault({}),
      delete: z.strictObject({ enabled: z.boolean().default(true) }).prefault({}),
      /** Accepted for Distribution compatibility: manifests are always cached in memory by digest here. */
      cache: z.strictObject({ blobdescriptor: z.enum(['inmemory']).optional() }).optional(),
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
  health: z
    .strictObject({
      storagedriver: z
        .strictObject({ enabled: z.boolean().default(true), interval: duration.default('10s'), threshold: z.number().int().min(1).default(3) })
        .prefault({}),
    })
    .prefault({}),
});

export type Config = z.infer<typeof schema>;

export class ConfigError extends Error {}

/** Reads the file (if any), applies REGISTRY_* overrides from `env`, validates. */
export function loadConfig(file: string | undefined, env: NodeJS.ProcessEnv = process.env): Config {
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
  applyEnvironment(raw as Record<string, unknown>, env);
  const result = schema.safeParse(raw);
  if (!result.success) throw new ConfigError(`invalid configuration:\n${formatIssues(result.error)}`);
  return result.data;
}

/** Environment variables that configure the process itself rather than a config key. */
const NOT_CONFIG_KEYS = new Set(['REGISTRY_CONFIGURATION_PATH']);

/**
 * REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY=/x sets storage.filesystem.rootdirectory, as in Distribution.
 * Values are parsed as YAML scalars, so `true` and `5` keep their types.
 */
function applyEnvironment(target: Record<string, unknown>, env: NodeJS.ProcessEnv): void {
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith('REGISTRY_') || NOT_CONFIG_KEYS.has(name) || value === undefined) continue;
    const keys = name.slice('REGISTRY_'.length).toLowerCase().split('_');
    let node = target;
    for (const key of keys.slice(0, -1)) {
      const child = node[key];
      if (typeof child !== 'object' || child === null || Array.isArray(child)) node[key] = {};
      node = node[key] as Record<string, unknown>;
    }
    node[keys.at(-1)!] = parseYaml(value);
  }
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
  const match = /^(\d+)(ms|s|m|h)$/.exec(value)!;
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[match[2] as 'ms' | 's' | 'm' | 'h'];
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
