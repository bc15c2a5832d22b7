import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { AdminApiError, AdminClient, parseChallenge } from '../../server/cli/admin-client.js';
import { parseMirrorArgs, type MirrorOptions } from '../../server/cli/mirror-command.js';
import { UsageError } from '../../server/cli/admin-command.js';
import {
  failureLines,
  ProgressLog,
  readProgress,
  redraw,
  renderProgress,
  summaryLines,
} from '../../server/cli/progress-view.js';

const MIB = 1024 * 1024;
const ESC = '\x1b';

/** A mirror job's progress as server/mirror/mirror-job.ts reports it. */
function progress(amd64Done: number, arm64Done: number, states: [string, string] = ['copying', 'copying']) {
  return {
    tags: { done: 0, total: 1 },
    units: { done: (amd64Done === 4 * MIB ? 3 : 1) + (arm64Done === 2 * MIB ? 3 : 0), total: 6 },
    bytes: { done: amd64Done + arm64Done, total: 6 * MIB },
    items: {
      '1.12.1 linux/amd64': { state: states[0], units: { done: amd64Done === 4 * MIB ? 3 : 1, total: 3 }, bytes: { done: amd64Done, total: 4 * MIB } },
      '1.12.1 linux/arm64': { state: states[1], units: { done: arm64Done === 2 * MIB ? 3 : 0, total: 3 }, bytes: { done: arm64Done, total: 2 * MIB } },
    },
  };
}

describe('CLI mirror: progress view', () => {
  it('reads the job progress defensively (an empty progress of a queued job is all zeros)', () => {
    expect(readProgress({})).to.deep.equal({ tags: { done: 0, total: 0 }, units: { done: 0, total: 0 }, bytes: { done: 0, total: 0 }, items: [] });
    expect(readProgress(null).items).to.deep.equal([]);
    const read = readProgress(progress(MIB, 0));
    expect(read.items.map((i) => i.name)).to.deep.equal(['1.12.1 linux/amd64', '1.12.1 linux/arm64']);
    expect(read.items[0]).to.deep.include({ state: 'copying', bytes: { done: MIB, total: 4 * MIB } });
  });

  it('draws one line per tag and platform with a bar, percent, MiB and state, plus a total line', () => {
    const lines = renderProgress({ state: 'running', progress: progress(MIB, 2 * MIB, ['copying', 'done']) }, { width: 100, tty: true });
    expect(lines).to.have.length(3);
    expect(lines[0]).to.match(/^1\.12\.1 linux\/amd64 +\[=+> +\] +25% +1\.0\/4\.0 MiB +copying$/);
    expect(lines[1]).to.match(/^1\.12\.1 linux\/arm64 +\[=+\] +100% +2\.0\/2\.0 MiB +done$/);
    expect(lines[2]).to.match(/^total +\[=+> +\] +50% +3\.0\/6\.0 MiB +running, blobs 4\/6, tags 0\/1$/);
    // Columns line up: the bars start and end at the same place on every line.
    expect(new Set(lines.map((l) => l.indexOf('[')))).to.have.length(1);
    expect(new Set(lines.map((l) => l.indexOf(']')))).to.have.length(1);
    for (const line of lines) expect(line.length).to.be.below(100);
  });

  it('stays within narrow terminals (no wrapped lines to break the redraw), dropping the bar first', () => {
    for (const width of [30, 45, 60, 80]) {
      const lines = renderProgress({ state: 'running', progress: progress(MIB, 0) }, { width, tty: true });
      for (const line of lines) expect(line.length, `${width}: ${line}`).to.be.below(width);
    }
    const narrow = renderProgress({ state: 'running', progress: progress(MIB, 0) }, { width: 30, tty: true });
    expect(narrow.join('\n')).not.to.include('[');
  });

  it('shows a queued job as a total line only, and a succeeded one at 100%', () => {
    expect(renderProgress({ state: 'queued', progress: {} }, { width: 80, tty: true })).to.have.length(1);
    const [total] = renderProgress({ state: 'succeeded', progress: { units: { done: 0, total: 0 } } }, { width: 80, tty: true }).slice(-1);
    expect(total).to.match(/100% .*succeeded$/);
  });

  it('without a terminal, renders plain lines with no bars and no escape codes', () => {
    const lines = renderProgress({ state: 'running', progress: progress(MIB, 0) }, { width: 80, tty: false });
    expect(lines).to.deep.equal([
      '1.12.1 linux/amd64: 25% 1.0/4.0 MiB copying',
      '1.12.1 linux/arm64: 0% 0.0/2.0 MiB copying',
      'total: 16% 1.0/6.0 MiB running, blobs 1/6, tags 0/1',
    ]);
    for (const line of lines) expect(line).not.to.include(ESC);
  });

  it('redraws in place: up over the old lines, each line cleared, the rest below erased', () => {
    expect(redraw(0, ['a', 'b'])).to.equal(`\r${ESC}[2Ka\n\r${ESC}[2Kb\n${ESC}[J`);
    expect(redraw(3, ['a'])).to.equal(`${ESC}[3A\r${ESC}[2Ka\n${ESC}[J`);
  });

  it('in logs, prints a line only when a state changes or another 10% is done', () => {
    const log = new ProgressLog();
    expect(log.next({ state: 'queued', progress: {} })).to.deep.equal(['job queued']);
    expect(log.next({ state: 'queued', progress: {} })).to.deep.equal([]);
    const first = log.next({ state: 'running', progress: progress(MIB, 0) });
    expect(first).to.deep.equal([
      'job running',
      '1.12.1 linux/amd64: 25% 1.0/4.0 MiB copying',
      '1.12.1 linux/arm64: 0% 0.0/2.0 MiB copying',
      'total: 16% 1.0/6.0 MiB running, blobs 1/6, tags 0/1',
    ]);
    // A few more bytes, still within the same 10%: nothing.
    expect(log.next({ state: 'running', progress: progress(MIB + 100, 0) })).to.deep.equal([]);
    // amd64 crosses 30%; the total (about 20%) crosses too.
    expect(log.next({ state: 'running', progress: progress(1.3 * MIB, 0) })).to.deep.equal([
      '1.12.1 linux/amd64: 32% 1.3/4.0 MiB copying',
      'total: 21% 1.3/6.0 MiB running, blobs 1/6, tags 0/1',
    ]);
    // A state change alone is a line.
    const done = log.next({ state: 'succeeded', progress: progress(4 * MIB, 2 * MIB, ['done', 'done']) });
    expect(done).to.deep.equal([
      'job succeeded',
      '1.12.1 linux/amd64: 100% 4.0/4.0 MiB done',
      '1.12.1 linux/arm64: 100% 2.0/2.0 MiB done',
      'total: 100% 6.0/6.0 MiB succeeded, blobs 6/6, tags 0/1',
    ]);
    for (const line of [...first, ...done]) expect(line).not.to.include(ESC);
  });

  it('summarises every tag written, with digest and platform', () => {
    const lines = summaryLines({
      id: 'job-1',
      state: 'succeeded',
      result: {
        source: 'docker.io/langgenius/dify-api',
        upstreamRepository: 'langgenius/dify-api',
        tags: [
          {
            tag: '1.12.1',
            state: 'succeeded',
            digest: 'sha256:index',
            writes: [
              { repository: 'langgenius/dify-api', tag: '1.12.1', digest: 'sha256:index' },
              { repository: 'ddn-k8s/docker.io/langgenius/dify-api', tag: '1.12.1', digest: 'sha256:amd', platform: 'linux/amd64' },
              { repository: 'ddn-k8s/docker.io/langgenius/dify-api', tag: '1.12.1-linuxarm64', digest: 'sha256:arm', platform: 'linux/arm64' },
            ],
          },
        ],
        blobs: { fetched: 5, present: 1 },
        bytes: { fetched: 3 * MIB },
      },
    });
    expect(lines).to.deep.equal([
      'mirrored 1 tag(s) of docker.io/langgenius/dify-api (job job-1): 5 blob(s) fetched (3.0 MiB), 1 already here',
      '1.12.1 (upstream sha256:index)',
      '  langgenius/dify-api:1.12.1 -> sha256:index',
      '  ddn-k8s/docker.io/langgenius/dify-api:1.12.1 -> sha256:amd (linux/amd64)',
      '  ddn-k8s/docker.io/langgenius/dify-api:1.12.1-linuxarm64 -> sha256:arm (linux/arm64)',
    ]);
  });

  it('reports a failure with the error code, message and the end of the log', () => {
    const job = { id: 'j', state: 'failed', error: { code: 'MIRROR_INCOMPLETE', message: '1 of 1 tag(s) failed' } };
    expect(failureLines(job, ['nope: failed: manifest unknown'])).to.deep.equal([
      'error: MIRROR_INCOMPLETE: 1 of 1 tag(s) failed',
      'last log lines of job j:',
      '  nope: failed: manifest unknown',
    ]);
    expect(failureLines({ id: 'j', state: 'cancelled', error: null }, [])).to.deep.equal(['error: CANCELLED: the job ended cancelled']);
  });
});

describe('CLI mirror: arguments into the request body', () => {
  const parse = (args: string, env: NodeJS.ProcessEnv = {}) => parseMirrorArgs(args.split(' ').filter(Boolean), env) as MirrorOptions;
  const usage = (args: string[], env: NodeJS.ProcessEnv = {}) => {
    try {
      parseMirrorArgs(args, env);
    } catch (error) {
      expect(error).to.be.instanceOf(UsageError);
      return (error as Error).message;
    }
    throw new Error(`no usage error for ${args.join(' ')}`);
  };

  it('maps the issue example to one tag in both layouts, against the default server', () => {
    const options = parse('docker.io/langgenius/dify-api:1.12.1 --layout ddn-k8s --layout same-name');
    expect(options.body).to.deep.equal({ source: 'docker.io/langgenius/dify-api', tags: ['1.12.1'], layouts: ['ddn-k8s', 'same-name'] });
    expect(options).to.deep.include({ server: 'http://127.0.0.1:5000', wait: true, json: false });
    expect(options).not.to.have.property('username');
  });

  it('collects several tags: repeated :tags, whole references and --tag, without duplicates', () => {
    expect(parse('docker.io/nginx:1.27 :1.26 docker.io/nginx:1.25 --tag 1.24 -t 1.27').body).to.deep.equal({
      source: 'docker.io/nginx',
      tags: ['1.27', '1.26', '1.25', '1.24'],
    });
    expect(parse('local/a/b --tag x').body).to.deep.equal({ source: 'local/a/b', tags: ['x'] });
  });

  it('asks for a tag or a filter when none is given', () => {
    const message = usage(['docker.io/nginx']);
    expect(message).to.include('docker.io/nginx names no tag');
    expect(message).to.include('--tag');
    expect(message).to.include('--tag-regex');
    expect(message).to.include('--semver');
  });

  it('takes a filter instead of tags, platforms and prefix layouts', () => {
    expect(parse('docker.io/langgenius/dify-api --semver >=1.12.0 -p linux/amd64,linux/arm64 --platform linux/arm/v7 -l prefix=mirror/hub').body).to.deep.equal({
      source: 'docker.io/langgenius/dify-api',
      semver: '>=1.12.0',
      platforms: ['linux/amd64', 'linux/arm64', 'linux/arm/v7'],
      layouts: [{ prefix: 'mirror/hub' }],
    });
    expect(parse('docker.io/library/redis --tag-regex 7\\..*').body).to.deep.equal({ source: 'docker.io/library/redis', tagRegex: '7\\..*' });
  });

  it('refuses what cannot work, naming the problem', () => {
    expect(usage([])).to.include('upstream repository');
    expect(usage(['nginx:1.27'])).to.include('<upstream>/<repository>');
    expect(usage(['docker.io/nginx@sha256:abc'])).to.include('digests');
    expect(usage(['docker.io/nginx:1.27', '--semver', '1.x'])).to.include('not more than one');
    expect(usage(['docker.io/nginx', '--semver', '1.x', '--tag-regex', '1'])).to.include('not more than one');
    expect(usage(['docker.io/nginx:1.27', 'docker.io/redis:7'])).to.include('one repository');
    expect(usage(['docker.io/nginx:1.27', '1.26'])).to.include('as :1.26 or --tag 1.26');
    expect(usage(['docker.io/nginx:1.27', 'docker.io/nginx'])).to.include('names no tag');
    expect(usage(['docker.io/nginx:bad/tag'])).to.include('<upstream>/<repository>');
    expect(usage(['docker.io/nginx:-x'])).to.include('not a valid tag');
    expect(usage(['docker.io/nginx', '--tag-regex', '('])).to.include('regular expression');
    expect(usage(['docker.io/nginx', '--semver', 'latest'])).to.include('semver range');
    expect(usage(['docker.io/nginx:1', '--platform', 'amd64'])).to.include('os/arch');
    expect(usage(['docker.io/nginx:1', '--layout', 'flat'])).to.include('same-name, ddn-k8s or prefix=');
    expect(usage(['docker.io/nginx:1', '--server', '127.0.0.1:5000'])).to.include('http://');
    expect(usage(['docker.io/nginx:1', '--username', 'admin'])).to.include('both a username and a password');
    expect(usage(['docker.io/nginx:1', '--bogus'])).to.include('--bogus');
  });

  it('takes the server and credentials from the environment, flags winning', () => {
    const env = { REGISTRY_URL: 'https://registry.example.com/', REGISTRY_USERNAME: 'admin', REGISTRY_PASSWORD: 's3cret' };
    expect(parse('docker.io/nginx:1', env)).to.deep.include({ server: 'https://registry.example.com', username: 'admin', password: 's3cret' });
    expect(parse('docker.io/nginx:1 --server http://127.0.0.1:9 -u root --password pw --no-wait --json', env)).to.deep.include({
      server: 'http://127.0.0.1:9',
      username: 'root',
      password: 'pw',
      wait: false,
      json: true,
    });
    expect(parseMirrorArgs(['--help'])).to.equal('help');
  });
});

describe('CLI mirror: admin client auth', () => {
  let server: http.Server;
  let base: string;
  const seen: Array<{ method: string; url: string; authorization: string }> = [];
  const basic = `Basic ${Buffer.from('admin:pw').toString('base64')}`;
  let issued = 0;

  before(async () => {
    // Answers /admin only with a Bearer token from its /token, which it issues for Basic admin:pw.
    server = http.createServer((req, res) => {
      const authorization = req.headers.authorization ?? '';
      seen.push({ method: req.method!, url: req.url!, authorization });
      const json = (status: number, body: unknown, headers: Record<string, string> = {}) => {
        res.writeHead(status, { 'content-type': 'application/json', ...headers });
        res.end(JSON.stringify(body));
      };
      if (req.url!.startsWith('/token')) {
        if (authorization !== basic) return json(401, { errors: [{ code: 'UNAUTHORIZED', message: 'invalid username or password' }] });
        return json(200, { token: `t${++issued}` });
      }
      if (authorization !== `Bearer t${issued}` || issued === 0) {
        return json(401, { errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] }, {
          'www-authenticate': 'Bearer realm="/token",service="test",scope="registry:admin:*"',
        });
      }
      if (req.method === 'POST') return json(202, { id: 'j1', state: 'queued' }, { location: '/admin/v1/jobs/j1' });
      return json(200, { id: 'j1', state: 'running' });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('answers a Bearer challenge with a token from the realm, asked for with Basic credentials', async () => {
    const client = new AdminClient({ server: base, username: 'admin', password: 'pw' });
    const { job, location } = await client.submitMirror({ source: 'docker.io/nginx', tags: ['1'] });
    expect(job.id).to.equal('j1');
    expect(location).to.equal(`${base}/admin/v1/jobs/j1`);
    expect(seen.map((s) => `${s.method} ${s.url} ${s.authorization.split(' ')[0]}`)).to.deep.equal([
      'POST /admin/v1/mirror Basic',
      'GET /token?service=test&scope=registry%3Aadmin%3A* Basic',
      'POST /admin/v1/mirror Bearer',
    ]);
    // The token is kept; when it is no longer accepted, a new one is fetched.
    seen.length = 0;
    expect((await client.job('j1')).state).to.equal('running');
    issued++; // the server moved on: t1 expired
    expect((await client.job('j1')).state).to.equal('running');
    expect(seen.map((s) => `${s.method} ${s.url.split('?')[0]} ${s.authorization}`)).to.deep.equal([
      'GET /admin/v1/jobs/j1 Bearer t1',
      'GET /admin/v1/jobs/j1 Bearer t1',
      `GET /token ${basic}`,
      'GET /admin/v1/jobs/j1 Bearer t3',
    ]);
  });

  it('reports wrong credentials as the OCI error of the token endpoint', async () => {
    const client = new AdminClient({ server: base, username: 'admin', password: 'wrong' });
    let caught: unknown;
    await client.job('j1').catch((error) => (caught = error));
    expect(caught).to.be.instanceOf(AdminApiError);
    expect(caught).to.deep.include({ status: 401, code: 'UNAUTHORIZED', message: 'invalid username or password' });
  });

  it('parses challenges with quoted commas and spaces', () => {
    expect(parseChallenge('Bearer realm="https://a/token",service="a,b",scope="repository:x:pull registry:admin:*"')).to.deep.equal({
      scheme: 'bearer',
      params: { realm: 'https://a/token', service: 'a,b', scope: 'repository:x:pull registry:admin:*' },
    });
    expect(parseChallenge('Basic realm="Registry Realm"')).to.deep.equal({ scheme: 'basic', params: { realm: 'Registry Realm' } });
    expect(parseChallenge(null)).to.equal(undefined);
  });
});
