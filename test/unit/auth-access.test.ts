import { expect } from 'chai';
import { AccessPolicy, globToRegExp, type Principal } from '../../server/auth/access.js';
import type { ResourceScope } from '../../server/auth/scope.js';
import { loadConfig, type Config } from '../../server/config.js';

type Rule = Config['auth']['access'][number];

const defaults = loadConfig(undefined, {}, () => undefined).auth;

function policy(access: Array<Partial<Rule> & { repository: string }>, admins: string[] = []): AccessPolicy {
  return new AccessPolicy({
    ...defaults,
    access: access.map((rule) => ({ pull: [], push: [], delete: [], ...rule })),
    admins,
  });
}

const user = (name: string, ...groups: string[]): Principal => ({ name, kind: 'user', groups });
const robot = (name: string): Principal => ({ name: `robot$${name}`, kind: 'robot', groups: [] });
const repo = (name: string, ...actions: string[]): ResourceScope => ({ type: 'repository', name, actions });
const actions = (p: AccessPolicy, who: Principal | undefined, repository: string) => [...p.repositoryActions(who, repository)].sort();

describe('auth: glob patterns', () => {
  const matches = (glob: string, name: string) => globToRegExp(glob).test(name);

  it('* matches within one component only', () => {
    expect(matches('library/*', 'library/alpine')).to.equal(true);
    expect(matches('library/*', 'library/a/b')).to.equal(false);
    expect(matches('library/*', 'library')).to.equal(false);
    expect(matches('*', 'alpine')).to.equal(true);
    expect(matches('*', 'a/b')).to.equal(false);
    expect(matches('team-*/app', 'team-blue/app')).to.equal(true);
    expect(matches('team-*/app', 'team-blue/x/app')).to.equal(false);
    expect(matches('*/dify-*', 'langgenius/dify-api')).to.equal(true);
  });

  it('** matches across components', () => {
    expect(matches('ddn-k8s/**', 'ddn-k8s/docker.io/langgenius/dify-api')).to.equal(true);
    expect(matches('ddn-k8s/**', 'ddn-k8s/a')).to.equal(true);
    expect(matches('ddn-k8s/**', 'other/docker.io/langgenius/dify-api')).to.equal(false);
    expect(matches('**', 'a/b/c')).to.equal(true);
    expect(matches('**/dify-api', 'ddn-k8s/docker.io/langgenius/dify-api')).to.equal(true);
    expect(matches('a/**/z', 'a/b/c/z')).to.equal(true);
  });

  it('? matches exactly one character, never a slash', () => {
    expect(matches('app?', 'app1')).to.equal(true);
    expect(matches('app?', 'app')).to.equal(false);
    expect(matches('app?', 'app12')).to.equal(false);
    expect(matches('a?b', 'a/b')).to.equal(false);
  });

  it('takes dots, dashes and other characters literally', () => {
    expect(matches('ddn-k8s/docker.io/**', 'ddn-k8s/docker.io/langgenius/dify-api')).to.equal(true);
    // An unescaped '.' would match any character.
    expect(matches('ddn-k8s/docker.io/**', 'ddn-k8s/dockerXio/langgenius/dify-api')).to.equal(false);
    expect(matches('a+b', 'aab')).to.equal(false);
    expect(matches('a+b', 'a+b')).to.equal(true);
    expect(matches('(a|b)', 'a')).to.equal(false);
    expect(matches('[ab]', 'a')).to.equal(false);
    expect(matches('a$', 'a$')).to.equal(true);
    expect(matches('a^b', 'a^b')).to.equal(true);
  });

  it('is anchored at both ends', () => {
    expect(matches('dify', 'langgenius/dify')).to.equal(false);
    expect(matches('dify', 'dify-api')).to.equal(false);
    expect(matches('langgenius/*', 'x/langgenius/dify')).to.equal(false);
  });
});

describe('auth: access rules', () => {
  it('lets the first matching rule decide, even when it grants this user nothing', () => {
    const p = policy([
      { repository: 'private/**', pull: ['alice'] },
      { repository: '**', pull: ['$all'], push: ['$authenticated'] },
    ]);
    expect(actions(p, user('bob'), 'private/x')).to.deep.equal([]);
    expect(actions(p, undefined, 'private/x')).to.deep.equal([]);
    expect(actions(p, user('alice'), 'private/x')).to.deep.equal(['pull']);
    expect(actions(p, user('bob'), 'public/x')).to.deep.equal(['pull', 'push']);
    expect(actions(p, undefined, 'public/x')).to.deep.equal(['pull']);
  });

  it('grants nothing where no rule matches', () => {
    const p = policy([{ repository: 'library/*', pull: ['$all'] }]);
    expect(actions(p, user('alice'), 'other/x')).to.deep.equal([]);
    expect(actions(p, user('alice'), 'library/a/b')).to.deep.equal([]);
    expect(actions(p, undefined, 'library/alpine')).to.deep.equal(['pull']);
  });

  it('matches user names exactly', () => {
    const p = policy([{ repository: '**', pull: ['alice'] }]);
    expect(actions(p, user('alice'), 'x')).to.deep.equal(['pull']);
    expect(actions(p, user('alice2'), 'x')).to.deep.equal([]);
    expect(actions(p, user('Alice'), 'x')).to.deep.equal([]);
  });

  it('matches group:<name> against the principal groups', () => {
    const p = policy([{ repository: 'team/**', pull: ['group:devs', 'group:ops'], push: ['group:devs'], delete: ['group:ops'] }]);
    expect(actions(p, user('a', 'devs'), 'team/x')).to.deep.equal(['pull', 'push']);
    expect(actions(p, user('b', 'ops'), 'team/x')).to.deep.equal(['delete', 'pull']);
    expect(actions(p, user('c', 'devs', 'ops'), 'team/x')).to.deep.equal(['delete', 'pull', 'push']);
    expect(actions(p, user('d', 'qa'), 'team/x')).to.deep.equal([]);
    expect(actions(p, user('devs'), 'team/x')).to.deep.equal([]);
    expect(actions(p, undefined, 'team/x')).to.deep.equal([]);
  });

  it('$anonymous is only the anonymous caller, $authenticated only a known one, $all both', () => {
    const p = policy([
      { repository: 'anon', pull: ['$anonymous'] },
      { repository: 'auth', pull: ['$authenticated'] },
      { repository: 'all', pull: ['$all'] },
    ]);
    expect(actions(p, undefined, 'anon')).to.deep.equal(['pull']);
    expect(actions(p, user('alice'), 'anon')).to.deep.equal([]);
    expect(actions(p, undefined, 'auth')).to.deep.equal([]);
    expect(actions(p, user('alice'), 'auth')).to.deep.equal(['pull']);
    expect(actions(p, robot('ci'), 'auth')).to.deep.equal(['pull']);
    expect(actions(p, undefined, 'all')).to.deep.equal(['pull']);
    expect(actions(p, user('alice'), 'all')).to.deep.equal(['pull']);
  });

  it('names robots as robot$<name>', () => {
    const p = policy([{ repository: '**', pull: ['robot$ci'], push: ['robot$ci'] }]);
    expect(actions(p, robot('ci'), 'a/b')).to.deep.equal(['pull', 'push']);
    expect(actions(p, user('ci'), 'a/b')).to.deep.equal([]);
  });

  it('without rules: every authenticated user may do everything, anonymous nothing', () => {
    const p = policy([]);
    expect(actions(p, user('alice'), 'any/thing')).to.deep.equal(['delete', 'pull', 'push']);
    expect(actions(p, robot('ci'), 'x')).to.deep.equal(['delete', 'pull', 'push']);
    expect(actions(p, undefined, 'any/thing')).to.deep.equal([]);
  });

  it('admins are named users or groups, never anonymous', () => {
    const p = policy([], ['root', 'group:admins']);
    expect(p.isAdmin(user('root'))).to.equal(true);
    expect(p.isAdmin(user('eve', 'admins'))).to.equal(true);
    expect(p.isAdmin(user('alice'))).to.equal(false);
    expect(p.isAdmin(undefined)).to.equal(false);
    expect(policy([], []).isAdmin(user('root'))).to.equal(false);
    expect(policy([], ['$anonymous']).isAdmin(undefined)).to.equal(false);
  });

  describe('grant', () => {
    const p = policy(
      [
        { repository: 'public/**', pull: ['$all'], push: ['alice'] },
        { repository: 'alice/**', pull: ['alice'], push: ['alice'], delete: ['alice'] },
      ],
      ['root'],
    );

    it('is the intersection of what was asked and what the rules allow', () => {
      expect(p.grant(user('alice'), [repo('public/x', 'pull', 'push')])).to.deep.equal([repo('public/x', 'pull', 'push')]);
      expect(p.grant(user('bob'), [repo('public/x', 'pull', 'push')])).to.deep.equal([repo('public/x', 'pull')]);
      expect(p.grant(undefined, [repo('public/x', 'pull', 'push', 'delete')])).to.deep.equal([repo('public/x', 'pull')]);
      expect(p.grant(user('alice'), [repo('public/x', 'pull')])).to.deep.equal([repo('public/x', 'pull')]);
    });

    it('asking for more returns less, never more', () => {
      const asked = [repo('public/x', 'pull', 'push', 'delete'), repo('alice/y', 'pull'), repo('other/z', 'pull')];
      expect(p.grant(user('bob'), asked)).to.deep.equal([repo('public/x', 'pull')]);
      expect(p.grant(user('alice'), asked)).to.deep.equal([repo('public/x', 'pull', 'push'), repo('alice/y', 'pull')]);
    });

    it('drops unknown actions', () => {
      expect(p.grant(user('alice'), [repo('alice/y', 'pull', 'launch')])).to.deep.equal([repo('alice/y', 'pull')]);
      expect(p.grant(user('alice'), [repo('alice/y', 'launch')])).to.deep.equal([]);
    });

    it('expands * to the actions allowed', () => {
      expect(p.grant(user('alice'), [repo('alice/y', '*')])[0]!.actions.sort()).to.deep.equal(['delete', 'pull', 'push']);
      expect(p.grant(user('bob'), [repo('public/x', '*')])).to.deep.equal([repo('public/x', 'pull')]);
      expect(p.grant(user('bob'), [repo('alice/y', '*')])).to.deep.equal([]);
    });

    it('gives registry:catalog:* and registry:admin:* to admins only', () => {
      const catalog: ResourceScope = { type: 'registry', name: 'catalog', actions: ['*'] };
      const admin: ResourceScope = { type: 'registry', name: 'admin', actions: ['*'] };
      expect(p.grant(user('root'), [catalog, admin])).to.deep.equal([catalog, admin]);
      expect(p.grant(user('alice'), [catalog, admin])).to.deep.equal([]);
      expect(p.grant(undefined, [catalog, admin])).to.deep.equal([]);
      // Only the * action exists on these resources; other registry resources grant nothing.
      expect(p.grant(user('root'), [{ type: 'registry', name: 'catalog', actions: ['pull', '*'] }])).to.deep.equal([catalog]);
      expect(p.grant(user('root'), [{ type: 'registry', name: 'catalog', actions: ['pull'] }])).to.deep.equal([]);
      expect(p.grant(user('root'), [{ type: 'registry', name: 'other', actions: ['*'] }])).to.deep.equal([]);
    });

    it('admins get repositories only through the rules', () => {
      expect(p.grant(user('root'), [repo('alice/y', 'pull')])).to.deep.equal([]);
    });

    it('without rules an authenticated user gets whatever is asked, but not the catalog unless admin', () => {
      const open = policy([], ['root']);
      expect(open.grant(user('alice'), [repo('a', 'pull', 'push', 'delete')])).to.deep.equal([repo('a', 'pull', 'push', 'delete')]);
      expect(open.grant(undefined, [repo('a', 'pull')])).to.deep.equal([]);
      expect(open.grant(user('alice'), [{ type: 'registry', name: 'catalog', actions: ['*'] }])).to.deep.equal([]);
      expect(open.grant(user('root'), [{ type: 'registry', name: 'catalog', actions: ['*'] }])).to.have.length(1);
    });
  });
});
