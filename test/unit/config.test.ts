import { existsSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'chai';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { ConfigError, durationMs, loadConfig, parseListenAddress, workerCount, type Config } from '../../server/config.js';
import { tempDir } from './support.js';

/** Debian 12's docker-registry 2.8.2 /etc/docker/registry/config.yml, used when the file is not installed. */
const DEBIAN_CONFIG = `version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/docker-registry
  delete:
    enabled: true
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
auth:
  htpasswd:
    realm: basic-realm
    path: /etc/docker/registry
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
`;

function configError(fn: () => unknown): string {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  expect(caught, 'expected a ConfigError').to.be.instanceOf(ConfigError);
  return (caught as Error).message;
}

describe('config', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  before(async () => ({ path: dir, cleanup } = await tempDir('config')));
  after(() => cleanup());

  const file = async (name: string, text: string) => {
    const path = join(dir, name);
    await writeFile(path, text);
    return path;
  };

  it('has defaults without a file or environment', () => {
    const config = loadConfig(undefined, {});
    expect(config).to.deep.equal({
      log: { level: 'info', formatter: 'json', fields: {} },
      http: { addr: '0.0.0.0:5000', workers: 1, draintimeout: '30s', bodytimeout: '60s', headers: {} },
      storage: {
        filesystem: { rootdirectory: './data' },
        redirect: { disable: false },
        delete: { enabled: true },
        maintenance: { uploadpurging: { enabled: true, age: '168h', interval: '24h', dryrun: false } },
      },
      middleware: { storage: [] },
      auth: {
        issuer: { issuer: 'dify-registry', algorithm: 'ES256', expiration: '5m', refreshexpiration: '720h', keys: [] },
        users: [],
        groups: {},
        robots: [],
        access: [],
        admins: [],
      },
      mirror: { upstreams: [], sync: [], pullthrough: [], waitforfetch: '30s' },
      ratelimit: { enabled: false, perclient: { rate: 50, burst: 200 }, peruser: { rate: 100, burst: 400 }, trustedproxies: [] },
      gc: { enabled: false, interval: '24h', graceperiod: '1h', dryrun: false, untagged: 'keep', concurrency: 2 },
      retention: { rules: [] },
      builder: {
        enabled: false,
        platforms: ['linux/amd64', 'linux/arm64'],
        engine: 'buildah',
        cachedir: '/var/lib/dify-registry/builder',
        baseimages: {},
        buildargs: {},
        remotecache: false,
        concurrency: 1,
        timeout: '3h',
        attempts: 3,
        backoff: '10s',
        buildah: { path: 'buildah', storagedriver: 'auto', isolation: 'chroot', pull: 'newer', cachesize: 20 * 1024 ** 3 },
        git: { path: 'git' },
        maxcontextsize: 1024 * 1024 * 1024,
      },
      health: { storagedriver: { enabled: true, interval: '10s', threshold: 3 } },
    } satisfies Config);
  });

  it('reads a YAML file, keeping defaults for what it leaves out', async () => {
    const path = await file(
      'basic.yml',
      [
        'version: 0.1',
        'log:',
        '  level: debug',
        'http:',
        '  addr: 127.0.0.1:5001',
        '  host: https://registry.example.com',
        '  workers: 2',
        'storage:',
        '  filesystem:',
        '    rootdirectory: /srv/registry',
        '  delete:',
        '    enabled: false',
        '  maintenance:',
        '    uploadpurging:',
        '      age: 2h',
        '',
      ].join('\n'),
    );
    const config = loadConfig(path, {});
    expect(config.version).to.equal(0.1);
    expect(config.log.level).to.equal('debug');
    expect(config.log.formatter).to.equal('json');
    expect(config.http.addr).to.equal('127.0.0.1:5001');
    expect(config.http.host).to.equal('https://registry.example.com');
    expect(config.http.workers).to.equal(2);
    expect(config.storage.filesystem.rootdirectory).to.equal('/srv/registry');
    expect(config.storage.delete.enabled).to.equal(false);
    expect(config.storage.maintenance.uploadpurging).to.deep.equal({ enabled: true, age: '2h', interval: '24h', dryrun: false });
  });

  it('treats an empty file as all defaults', async () => {
    expect(loadConfig(await file('empty.yml', ''), {})).to.deep.equal(loadConfig(undefined, {}));
  });

  it('applies REGISTRY_* environment overrides with typed values, over the file', async () => {
    const path = await file('env.yml', 'http:\n  addr: 127.0.0.1:5001\n  workers: 2\nstorage:\n  delete:\n    enabled: true\n');
    const config = loadConfig(path, {
      REGISTRY_HTTP_ADDR: ':6000',
      REGISTRY_HTTP_WORKERS: '3',
      REGISTRY_STORAGE_REDIRECT_DISABLE: 'true',
      REGISTRY_STORAGE_DELETE_ENABLED: 'false',
      REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: '/var/lib/registry',
      REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_DRYRUN: 'true',
      REGISTRY_LOG_LEVEL: 'warn',
      REGISTRY_HEALTH_STORAGEDRIVER_THRESHOLD: '5',
      REGISTRY_CONFIGURATION_PATH: '/somewhere/else.yml',
      HTTP_ADDR: 'ignored',
      PATH: '/usr/bin',
    });
    expect(config.http.addr).to.equal(':6000');
    expect(config.http.workers).to.equal(3);
    expect(config.storage.redirect.disable).to.equal(true);
    expect(config.storage.delete.enabled).to.equal(false);
    expect(config.storage.filesystem.rootdirectory).to.equal('/var/lib/registry');
    expect(config.storage.maintenance.uploadpurging.dryrun).to.equal(true);
    expect(config.log.level).to.equal('warn');
    expect(config.health.storagedriver.threshold).to.equal(5);
  });

  it('refuses a wrongly typed environment value, naming the key', () => {
    expect(configError(() => loadConfig(undefined, { REGISTRY_HTTP_WORKERS: 'many' }))).to.contain('http.workers:');
    expect(configError(() => loadConfig(undefined, { REGISTRY_LOG_LEVEL: 'loud' }))).to.contain('log.level:');
  });

  it('names the full path of unknown keys, nested or at the root', async () => {
    const nested = await file('unknown.yml', 'storage:\n  filesystem:\n    rootdirectory: /x\n    rootdir: /y\n');
    expect(configError(() => loadConfig(nested, {}))).to.contain('storage.filesystem.rootdir: unknown key');
    const root = await file('unknown-root.yml', 'htpp:\n  addr: :5000\n');
    expect(configError(() => loadConfig(root, {}))).to.contain('  - htpp: unknown key');
  });

  it('warns about, and ignores, REGISTRY_* variables that name no key (Kubernetes sets REGISTRY_PORT for a Service)', () => {
    const warnings: string[] = [];
    const config = loadConfig(undefined, { REGISTRY_PORT: 'tcp://10.0.0.1:5000', REGISTRY_HTTP_BOGUS: '1', REGISTRY_HTTP_ADDR: '5000' }, (w) => warnings.push(w));
    expect(warnings).to.have.length(2);
    expect(warnings.join('\n')).to.contain('REGISTRY_PORT').and.to.contain('http.bogus');
    // A value that looks like a number stays a string where the key is one.
    expect(config.http.addr).to.equal('5000');
  });

  it('refuses a bad duration, naming the key', async () => {
    const path = await file('duration.yml', 'http:\n  draintimeout: 10 minutes\n');
    expect(configError(() => loadConfig(path, {}))).to.match(/http\.draintimeout: .*duration/);
    expect(configError(() => loadConfig(undefined, { REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_AGE: '1d' }))).to.contain(
      'storage.maintenance.uploadpurging.age:',
    );
    expect(configError(() => loadConfig(undefined, { REGISTRY_HTTP_DRAINTIMEOUT: '-5' }))).to.contain('http.draintimeout:');
  });

  it('refuses a file that is missing, not YAML, or not a mapping', async () => {
    expect(configError(() => loadConfig(join(dir, 'missing.yml'), {}))).to.contain('cannot read configuration file');
    const bad = await file('bad.yml', 'http:\n  addr: [unclosed\n');
    expect(configError(() => loadConfig(bad, {}))).to.contain('is not valid YAML');
    const list = await file('list.yml', '- a\n- b\n');
    expect(configError(() => loadConfig(list, {}))).to.equal('configuration must be a YAML mapping');
  });

  it("loads Debian's /etc/docker/registry/config.yml, auth section included", async () => {
    const installed = '/etc/docker/registry/config.yml';
    const text = existsSync(installed) ? readFileSync(installed, 'utf8') : DEBIAN_CONFIG;
    const document = parseYaml(text) as Record<string, unknown>;
    expect(document).to.have.property('auth');
    delete document.auth;
    const config = loadConfig(await file('debian.yml', stringifyYaml(document)), {});
    expect(config.http.addr).to.equal(':5000');
    expect(config.http.headers).to.deep.equal({ 'X-Content-Type-Options': ['nosniff'] });
    expect(config.storage.filesystem.rootdirectory).to.equal('/var/lib/docker-registry');
    expect(config.storage.delete.enabled).to.equal(true);
    expect(config.storage.cache).to.deep.equal({ blobdescriptor: 'inmemory' });
    expect(config.log.fields).to.deep.equal({ service: 'registry' });
    expect(config.health.storagedriver).to.deep.equal({ enabled: true, interval: '10s', threshold: 3 });
    // Its auth section is Distribution's htpasswd, which this registry reads too.
    const full = loadConfig(await file('debian-full.yml', text), {});
    expect(full.auth.htpasswd).to.deep.equal({ realm: 'basic-realm', path: '/etc/docker/registry' });
  });

  it('converts durations to milliseconds (bare numbers are nanoseconds, as in Distribution)', () => {
    expect(durationMs('500ms')).to.equal(500);
    expect(durationMs('10s')).to.equal(10_000);
    expect(durationMs('5m')).to.equal(300_000);
    expect(durationMs('168h')).to.equal(604_800_000);
    expect(durationMs(2_000_000_000)).to.equal(2000);
  });

  it('parses listen addresses', () => {
    expect(parseListenAddress(':5000')).to.deep.equal({ host: undefined, port: 5000 });
    expect(parseListenAddress('0.0.0.0:5000')).to.deep.equal({ host: '0.0.0.0', port: 5000 });
    expect(parseListenAddress('127.0.0.1:0')).to.deep.equal({ host: '127.0.0.1', port: 0 });
    expect(parseListenAddress('[::1]:5000')).to.deep.equal({ host: '::1', port: 5000 });
    expect(configError(() => parseListenAddress('5000'))).to.equal('http.addr: expected host:port, got 5000');
    configError(() => parseListenAddress('localhost'));
  });

  it('counts workers: the configured number, or one per core', () => {
    expect(workerCount(loadConfig(undefined, { REGISTRY_HTTP_WORKERS: '2' }))).to.equal(2);
    expect(workerCount(loadConfig(undefined, {}))).to.be.at.least(1);
    expect(configError(() => loadConfig(undefined, { REGISTRY_HTTP_WORKERS: '65' }))).to.contain('http.workers:');
  });
});
