import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import { expect } from 'chai';
import { AuthService, parseBasic, parseBearer } from '../../server/auth/auth-service.js';
import { MemoryLoginLimiter } from '../../server/auth/login-limiter.js';
import { parseHtpasswd, UserDirectory } from '../../server/auth/users.js';
import { loadConfig, type Config } from '../../server/config.js';
import { FilesystemDriver } from '../../storage-drivers/filesystem.js';
import { tempDir } from './support.js';

const base = loadConfig(undefined, {}, () => undefined);
const hash = (password: string) => bcrypt.hashSync(password, 4);

function authConfig(auth: Partial<Config['auth']>): Config['auth'] {
  return { ...base.auth, ...auth };
}

describe('auth: htpasswd', () => {
  const alice = hash('alice-password');
  const bob = hash('bob-password');

  it('reads name:bcrypt lines, skipping comments and blank lines', () => {
    const text = `# users\n\nalice:${alice}\n   # indented comment\n  bob:${bob}  \r\n`;
    expect(parseHtpasswd(text, 'users.htpasswd')).to.deep.equal([
      ['alice', alice],
      ['bob', bob],
    ]);
  });

  it('accepts the $2y$ hashes htpasswd -B writes, and $2a$/$2b$', () => {
    for (const prefix of ['$2y$', '$2a$', '$2b$']) {
      const line = `u:${prefix}${alice.slice(4)}`;
      expect(parseHtpasswd(line, 'f')).to.deep.equal([['u', `${prefix}${alice.slice(4)}`]]);
    }
  });

  it('keeps colons after the first in the hash part', () => {
    // Not a valid bcrypt hash then: refused, with the line.
    expect(() => parseHtpasswd(`a:b:${alice}`, 'f')).to.throw('f:1:');
  });

  const refused: Array<[string, string]> = [
    ['an MD5 (apr1) entry', 'carol:$apr1$abcdefgh$0123456789abcdefghijkl'],
    ['a SHA1 entry', 'carol:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g='],
    ['a crypt entry', 'carol:abJnggxhB/yWI'],
    ['a plain-text entry', 'carol:secret'],
    ['a line without a colon', 'carol'],
    ['a line with an empty name', `:${alice}`],
    ['a line with an empty hash', 'carol:'],
  ];
  for (const [what, line] of refused) {
    it(`refuses ${what} with file:line in the message`, () => {
      const text = `# header\nalice:${alice}\n\n${line}\nbob:${bob}\n`;
      expect(() => parseHtpasswd(text, '/etc/registry/htpasswd')).to.throw(Error, /^\/etc\/registry\/htpasswd:4: .*bcrypt/);
    });
  }
});

describe('auth: UserDirectory', () => {
  let cleanup: () => Promise<void>;
  let directory: UserDirectory;
  const ciSecret = 'c1-' + 'x'.repeat(40);

  before(async () => {
    const dir = await tempDir('auth-users');
    cleanup = dir.cleanup;
    const file = join(dir.path, 'htpasswd');
    await writeFile(file, `# test users\nalice:${hash('alice-pw')}\nbob:${hash('bob-pw').replace(/^\$2b\$/, '$2y$')}\n`);
    directory = new UserDirectory(
      authConfig({
        htpasswd: { path: file },
        users: [{ name: 'carol', password: hash('carol-pw') }],
        robots: [{ name: 'ci', secret: hash(ciSecret) }],
        groups: { devs: ['alice', 'carol'], ops: ['alice'], bots: ['robot$ci'] },
      }),
    );
  });
  after(() => cleanup());

  it('counts users from the file, the config and the robots', () => {
    expect(directory.size).to.equal(4);
  });

  it('authenticates htpasswd users (also $2y$ hashes) and config users, with their groups', async () => {
    expect(await directory.authenticate('alice', 'alice-pw')).to.deep.equal({ name: 'alice', kind: 'user', groups: ['devs', 'ops'] });
    expect(await directory.authenticate('bob', 'bob-pw')).to.deep.equal({ name: 'bob', kind: 'user', groups: [] });
    expect(await directory.authenticate('carol', 'carol-pw')).to.deep.equal({ name: 'carol', kind: 'user', groups: ['devs'] });
  });

  it('refuses a wrong password', async () => {
    expect(await directory.authenticate('alice', 'bob-pw')).to.equal(undefined);
    expect(await directory.authenticate('alice', '')).to.equal(undefined);
    expect(await directory.authenticate('alice', 'alice-pw ')).to.equal(undefined);
  });

  it('refuses an unknown user, whatever the password', async () => {
    expect(await directory.authenticate('mallory', 'alice-pw')).to.equal(undefined);
    expect(await directory.authenticate('', '')).to.equal(undefined);
  });

  it('authenticates robots as robot$<name>, only with that prefix', async () => {
    expect(await directory.authenticate('robot$ci', ciSecret)).to.deep.equal({ name: 'robot$ci', kind: 'robot', groups: ['bots'] });
    expect(await directory.authenticate('ci', ciSecret)).to.equal(undefined);
    expect(await directory.authenticate('robot$ci', 'wrong')).to.equal(undefined);
  });

  // The dummy hash compared for unknown users has cost 10; `htpasswd -B` writes cost 5 (Distribution's
  // docs use `htpasswd -Bbn`). Then an unknown name costs 32 times a wrong password: names can be told apart.
  it('takes about as long for an unknown user as for a wrong password of an htpasswd -B (cost 5) user', async () => {
    const users = new UserDirectory(authConfig({ users: [{ name: 'dave', password: bcrypt.hashSync('dave-pw', 5) }] }));
    const timed = async (name: string) => {
      const start = performance.now();
      await users.authenticate(name, 'wrong');
      return performance.now() - start;
    };
    const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
    const known: number[] = [];
    const unknown: number[] = [];
    for (let i = 0; i < 5; i++) {
      known.push(await timed('dave'));
      unknown.push(await timed('nobody'));
    }
    const [k, u] = [median(known), median(unknown)];
    expect(u, `unknown user ${u.toFixed(1)} ms, wrong password ${k.toFixed(1)} ms`).to.be.below(3 * k + 5);
  });

  it('finds existing accounts by name and the fingerprint of their current password', () => {
    const alice = directory.credentialOf('alice');
    expect(alice).to.be.a('string').and.not.include('alice-pw');
    expect(directory.find('alice', alice)).to.deep.equal({ name: 'alice', kind: 'user', groups: ['devs', 'ops'] });
    expect(directory.find('robot$ci', directory.credentialOf('robot$ci'))?.kind).to.equal('robot');
    expect(directory.find('alice', directory.credentialOf('carol'))).to.equal(undefined);
    expect(directory.find('alice', undefined)).to.equal(undefined);
    expect(directory.credentialOf('mallory')).to.equal(undefined);
    expect(directory.find('mallory', alice)).to.equal(undefined);
  });

  it('gives a changed password a new fingerprint, also for the same password hashed again', async () => {
    const dir = await tempDir('auth-users-changed');
    try {
      const directoryWith = async (password: string) => {
        const file = join(dir.path, 'htpasswd');
        await writeFile(file, `alice:${hash(password)}\n`);
        return new UserDirectory(authConfig({ htpasswd: { path: file } }));
      };
      const before = (await directoryWith('alice-pw')).credentialOf('alice');
      const changed = await directoryWith('new-pw');
      expect(changed.find('alice', before)).to.equal(undefined);
      expect(changed.find('alice', changed.credentialOf('alice'))?.name).to.equal('alice');
      expect((await directoryWith('alice-pw')).find('alice', before), 'a new salt').to.equal(undefined);
    } finally {
      await dir.cleanup();
    }
  });

  it('fails to start on an htpasswd file with a non-bcrypt entry, naming file and line', async () => {
    const dir = await tempDir('auth-users-bad');
    try {
      const file = join(dir.path, 'htpasswd');
      await writeFile(file, `alice:${hash('a')}\ncarol:$apr1$abcdefgh$0123456789abcdefghijkl\n`);
      expect(() => new UserDirectory(authConfig({ htpasswd: { path: file } }))).to.throw(`${file}:2:`);
    } finally {
      await dir.cleanup();
    }
  });
});

describe('auth: LoginLimiter', () => {
  let time: number;
  const clock = () => time;
  beforeEach(() => {
    time = 1_000_000;
  });

  it('allows 4 failures, refuses after the 5th with a positive retryAfter', async () => {
    const limiter = new MemoryLoginLimiter(5, 60_000, clock);
    for (let i = 0; i < 4; i++) {
      expect(await limiter.retryAfter('alice', '10.0.0.1')).to.equal(0);
      await limiter.recordFailure('alice', '10.0.0.1');
      time += 1000;
    }
    expect(await limiter.retryAfter('alice', '10.0.0.1')).to.equal(0);
    await limiter.recordFailure('alice', '10.0.0.1');
    const wait = await limiter.retryAfter('alice', '10.0.0.1');
    expect(wait).to.be.greaterThan(0);
    expect(wait).to.be.at.most(60_000);
    // The first failure was 4 s before the last: it leaves the window 56 s from now.
    expect(wait).to.equal(56_000);
  });

  it('counts per user and address', async () => {
    const limiter = new MemoryLoginLimiter(5, 60_000, clock);
    for (let i = 0; i < 5; i++) await limiter.recordFailure('alice', '10.0.0.1');
    expect(await limiter.retryAfter('alice', '10.0.0.1')).to.be.greaterThan(0);
    expect(await limiter.retryAfter('alice', '10.0.0.2')).to.equal(0);
    expect(await limiter.retryAfter('bob', '10.0.0.1')).to.equal(0);
  });

  it('does not mix up users and addresses that concatenate alike', async () => {
    const limiter = new MemoryLoginLimiter(5, 60_000, clock);
    for (let i = 0; i < 5; i++) await limiter.recordFailure('ab', 'c');
    expect(await limiter.retryAfter('a', 'bc')).to.equal(0);
  });

  it('a success resets the count', async () => {
    const limiter = new MemoryLoginLimiter(5, 60_000, clock);
    for (let i = 0; i < 4; i++) await limiter.recordFailure('alice', '10.0.0.1');
    await limiter.recordSuccess('alice', '10.0.0.1');
    for (let i = 0; i < 4; i++) await limiter.recordFailure('alice', '10.0.0.1');
    expect(await limiter.retryAfter('alice', '10.0.0.1')).to.equal(0);
    await limiter.recordFailure('alice', '10.0.0.1');
    expect(await limiter.retryAfter('alice', '10.0.0.1')).to.be.greaterThan(0);
  });

  it('forgets failures once the window has passed', async () => {
    const limiter = new MemoryLoginLimiter(5, 60_000, clock);
    for (let i = 0; i < 5; i++) await limiter.recordFailure('alice', '10.0.0.1');
    expect(await limiter.retryAfter('alice', '10.0.0.1')).to.equal(60_000);
    time += 30_000;
    expect(await limiter.retryAfter('alice', '10.0.0.1')).to.equal(30_000);
    time += 29_999;
    expect(await limiter.retryAfter('alice', '10.0.0.1')).to.equal(1);
    time += 1;
    expect(await limiter.retryAfter('alice', '10.0.0.1')).to.equal(0);
  });

  it('slides: old failures leave the window one by one', async () => {
    const limiter = new MemoryLoginLimiter(5, 60_000, clock);
    for (let i = 0; i < 5; i++) {
      await limiter.recordFailure('alice', '10.0.0.1');
      time += 10_000;
    }
    // Failures at 0, 10, 20, 30, 40 s; now 50 s: the first leaves at 60 s.
    expect(await limiter.retryAfter('alice', '10.0.0.1')).to.equal(10_000);
    time += 10_000;
    expect(await limiter.retryAfter('alice', '10.0.0.1')).to.equal(0);
    await limiter.recordFailure('alice', '10.0.0.1');
    // Failures at 10, 20, 30, 40, 60 s; now 60 s: the one at 10 s leaves at 70 s.
    expect(await limiter.retryAfter('alice', '10.0.0.1')).to.equal(10_000);
  });

  it('has the documented defaults: 5 a minute', async () => {
    const limiter = new MemoryLoginLimiter(undefined, undefined, clock);
    for (let i = 0; i < 5; i++) await limiter.recordFailure('alice', '::1');
    expect(await limiter.retryAfter('alice', '::1')).to.equal(60_000);
  });
});

describe('auth: Basic and Bearer headers', () => {
  const basic = (text: string) => `Basic ${Buffer.from(text).toString('base64')}`;

  it('parses Basic credentials, splitting at the first colon', () => {
    expect(parseBasic(basic('alice:secret'))).to.deep.equal({ name: 'alice', password: 'secret' });
    expect(parseBasic(basic('alice:se:cr:et'))).to.deep.equal({ name: 'alice', password: 'se:cr:et' });
    expect(parseBasic(basic('robot$ci:'))).to.deep.equal({ name: 'robot$ci', password: '' });
    expect(parseBasic(`basic   ${Buffer.from('a:b').toString('base64')}`)).to.deep.equal({ name: 'a', password: 'b' });
    expect(parseBasic(basic('ünï:cödé'))).to.deep.equal({ name: 'ünï', password: 'cödé' });
  });

  it('refuses malformed Basic headers', () => {
    for (const header of [undefined, '', 'Basic', 'Basic ', basic('no-colon'), 'Basic !!!', 'Bearer abc', `Digest ${Buffer.from('a:b').toString('base64')}`]) {
      expect(parseBasic(header), String(header)).to.equal(undefined);
    }
  });

  it('parses Bearer tokens and refuses anything else', () => {
    expect(parseBearer('Bearer aaa.bbb.ccc')).to.equal('aaa.bbb.ccc');
    expect(parseBearer('bearer aaa.bb-b_.c')).to.equal('aaa.bb-b_.c');
    for (const header of [undefined, '', 'Bearer', 'Bearer ', 'Bearer a b', 'Basic YTpi', 'Bearer a"b']) {
      expect(parseBearer(header), String(header)).to.equal(undefined);
    }
  });
});

describe('auth: AuthService', () => {
  let cleanup: () => Promise<void>;
  let driver: FilesystemDriver;
  const config = (auth: Partial<Config['auth']>, host?: string): Config => ({
    ...base,
    http: { ...base.http, ...(host ? { host } : {}) },
    auth: authConfig(auth),
  });

  before(async () => {
    const dir = await tempDir('auth-service');
    cleanup = dir.cleanup;
    driver = new FilesystemDriver({ rootdirectory: dir.path });
  });
  after(() => cleanup());

  it('is off without users, htpasswd or external tokens', async () => {
    expect(AuthService.isEnabled(base)).to.equal(false);
    expect(await AuthService.create(base, driver)).to.equal(undefined);
    expect(AuthService.isEnabled(config({ users: [{ name: 'a', password: hash('a') }] }))).to.equal(true);
    expect(AuthService.isEnabled(config({ robots: [{ name: 'ci', secret: hash('a') }] }))).to.equal(true);
  });

  it('names the realm from http.host, else from the request; the service never from the request', async () => {
    const users = [{ name: 'alice', password: hash('alice-pw') }];
    const withHost = (await AuthService.create(config({ users }, 'https://registry.example.com:8443/'), driver))!;
    expect(withHost.realmFor('http://127.0.0.1:5000')).to.equal('https://registry.example.com:8443/token');
    expect(withHost.service).to.equal('registry.example.com:8443');
    const without = (await AuthService.create(config({ users }), driver))!;
    expect(without.realmFor('http://127.0.0.1:5000')).to.equal('http://127.0.0.1:5000/token');
    expect(without.service, 'a Host header names no audience').to.equal('dify-registry');
    const named = (await AuthService.create(config({ users, issuer: { ...base.auth.issuer, service: 'my-registry' } }), driver))!;
    expect(named.service).to.equal('my-registry');
  });

  it('checks Basic credentials and limits failed logins per user and address', async () => {
    const auth = (await AuthService.create(config({ users: [{ name: 'alice', password: hash('alice-pw') }] }), driver))!;
    expect(await auth.basic('alice', 'alice-pw', '10.0.0.1')).to.deep.equal({ principal: { name: 'alice', kind: 'user', groups: [] } });
    for (let i = 0; i < 5; i++) expect(await auth.basic('alice', 'wrong', '10.0.0.1')).to.deep.equal({ invalid: true });
    const limited = await auth.basic('alice', 'alice-pw', '10.0.0.1');
    expect(limited).to.have.property('retryAfterMs').that.is.greaterThan(0);
    // Another address is not limited, and its success does not lift the limit of the first.
    expect(await auth.basic('alice', 'alice-pw', '10.0.0.2')).to.have.property('principal');
    expect(await auth.basic('alice', 'alice-pw', '10.0.0.1')).to.have.property('retryAfterMs');
  });
});
