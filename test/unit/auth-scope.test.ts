import { expect } from 'chai';
import { requiredScopes } from '../../server/auth/required-scopes.js';
import { covers, formatScope, parseScope, parseScopes, type ResourceScope } from '../../server/auth/scope.js';

const repo = (name: string, ...actions: string[]): ResourceScope => ({ type: 'repository', name, actions });

describe('auth: resource scopes', () => {
  describe('parseScope', () => {
    it('reads repository and registry scopes', () => {
      expect(parseScope('repository:library/alpine:pull')).to.deep.equal(repo('library/alpine', 'pull'));
      expect(parseScope('repository:a/b:pull,push')).to.deep.equal(repo('a/b', 'pull', 'push'));
      expect(parseScope('registry:catalog:*')).to.deep.equal({ type: 'registry', name: 'catalog', actions: ['*'] });
      expect(parseScope('repository:ddn-k8s/docker.io/langgenius/dify-api:pull')).to.deep.equal(
        repo('ddn-k8s/docker.io/langgenius/dify-api', 'pull'),
      );
    });

    it('reads * as an action', () => {
      expect(parseScope('repository:a:*')).to.deep.equal(repo('a', '*'));
    });

    it('drops repeated and empty actions', () => {
      expect(parseScope('repository:a:pull,pull,push')).to.deep.equal(repo('a', 'pull', 'push'));
      expect(parseScope('repository:a:pull,,push,')).to.deep.equal(repo('a', 'pull', 'push'));
    });

    it('splits at the first and the last colon (a host:port stays in the name)', () => {
      expect(parseScope('repository:localhost:5000/a:pull')).to.deep.equal(repo('localhost:5000/a', 'pull'));
    });

    for (const malformed of [
      '',
      'repository',
      'repository:',
      'repository:a',
      'repository::pull',
      'repository:a:',
      'repository:a:,',
      ':a:pull',
      'image:a:pull',
      'Repository:a:pull',
      'registry:catalog',
      'repository(plugin):a:pull',
      `repository:${'a/'.repeat(200)}b:pull`, // longer than any repository name
    ]) {
      it(`refuses the malformed scope ${JSON.stringify(malformed)}`, () => {
        expect(parseScope(malformed)).to.equal(undefined);
      });
    }
  });

  describe('parseScopes', () => {
    it('reads several parameters and several space-separated scopes in one parameter', () => {
      expect(parseScopes(['repository:a:pull repository:b:pull,push', 'registry:catalog:*'])).to.deep.equal([
        repo('a', 'pull'),
        repo('b', 'pull', 'push'),
        { type: 'registry', name: 'catalog', actions: ['*'] },
      ]);
    });

    it('skips malformed scopes and extra spaces but keeps the good ones', () => {
      expect(parseScopes(['  repository:a:pull   nonsense repository:b ', '', 'repository:c:push'])).to.deep.equal([
        repo('a', 'pull'),
        repo('c', 'push'),
      ]);
    });

    it('returns nothing for no parameters', () => {
      expect(parseScopes([])).to.deep.equal([]);
    });
  });

  describe('formatScope', () => {
    it('is the inverse of parseScope', () => {
      for (const text of ['repository:a/b:pull,push', 'registry:catalog:*', 'repository:x.y/z-w:delete']) {
        expect(formatScope(parseScope(text)!)).to.equal(text);
      }
      expect(formatScope(repo('ddn-k8s/docker.io/langgenius/dify-api', 'pull', 'push'))).to.equal(
        'repository:ddn-k8s/docker.io/langgenius/dify-api:pull,push',
      );
    });
  });

  describe('covers', () => {
    it('needs every action, on the same type and name', () => {
      const granted = [repo('a', 'pull'), repo('b', 'pull', 'push')];
      expect(covers(granted, repo('a', 'pull'))).to.equal(true);
      expect(covers(granted, repo('a', 'pull', 'push'))).to.equal(false);
      expect(covers(granted, repo('b', 'pull', 'push'))).to.equal(true);
      expect(covers(granted, repo('b', 'delete'))).to.equal(false);
      expect(covers(granted, repo('c', 'pull'))).to.equal(false);
      expect(covers(granted, { type: 'registry', name: 'a', actions: ['pull'] })).to.equal(false);
      expect(covers([], repo('a', 'pull'))).to.equal(false);
    });

    it('adds up actions granted in several entries for the same repository', () => {
      expect(covers([repo('a', 'pull'), repo('a', 'push')], repo('a', 'pull', 'push'))).to.equal(true);
    });

    it('treats a granted * as every action', () => {
      expect(covers([repo('a', '*')], repo('a', 'pull', 'push', 'delete'))).to.equal(true);
      const catalog: ResourceScope = { type: 'registry', name: 'catalog', actions: ['*'] };
      expect(covers([catalog], catalog)).to.equal(true);
      expect(covers([{ type: 'registry', name: 'catalog', actions: ['pull'] }], catalog)).to.equal(false);
    });

    it('does not match names by prefix or glob', () => {
      expect(covers([repo('a', 'pull')], repo('a/b', 'pull'))).to.equal(false);
      expect(covers([repo('a/*', 'pull')], repo('a/b', 'pull'))).to.equal(false);
    });
  });
});

describe('auth: requiredScopes', () => {
  const q = (query = '') => new URLSearchParams(query);

  it('GET and HEAD need pull', () => {
    for (const method of ['GET', 'HEAD']) {
      for (const path of [
        '/v2/a/b/manifests/latest',
        '/v2/a/b/manifests/sha256:0123',
        '/v2/a/b/blobs/sha256:0123',
        '/v2/a/b/tags/list',
        '/v2/a/b/referrers/sha256:0123',
        '/v2/a/b/blobs/uploads/9b1f3c4e-0000-4000-8000-000000000000',
      ]) {
        expect(requiredScopes(method, path, q()), `${method} ${path}`).to.deep.equal({
          scopes: [repo('a/b', 'pull')],
          repository: 'a/b',
        });
      }
    }
  });

  it('PUT, POST and PATCH need pull and push', () => {
    const cases: Array<[string, string]> = [
      ['PUT', '/v2/a/b/manifests/v1'],
      ['POST', '/v2/a/b/blobs/uploads/'],
      ['POST', '/v2/a/b/blobs/uploads'],
      ['PATCH', '/v2/a/b/blobs/uploads/9b1f3c4e-0000-4000-8000-000000000000'],
      ['PUT', '/v2/a/b/blobs/uploads/9b1f3c4e-0000-4000-8000-000000000000'],
    ];
    for (const [method, path] of cases) {
      expect(requiredScopes(method, path, q('digest=sha256:00')), `${method} ${path}`).to.deep.equal({
        scopes: [repo('a/b', 'pull', 'push')],
        repository: 'a/b',
      });
    }
  });

  it('DELETE needs delete', () => {
    for (const path of ['/v2/a/b/manifests/sha256:0123', '/v2/a/b/blobs/sha256:0123', '/v2/a/b/blobs/uploads/some-id']) {
      expect(requiredScopes('DELETE', path, q()).scopes, path).to.deep.equal([repo('a/b', 'delete')]);
    }
  });

  it('parses the repository of upload paths, however deep the name', () => {
    const uuid = '3f1e2d5c-1a2b-4c3d-8e9f-0a1b2c3d4e5f';
    expect(requiredScopes('PATCH', `/v2/ddn-k8s/docker.io/langgenius/dify-api/blobs/uploads/${uuid}`, q()).repository).to.equal(
      'ddn-k8s/docker.io/langgenius/dify-api',
    );
    expect(requiredScopes('POST', '/v2/solo/blobs/uploads/', q()).repository).to.equal('solo');
    // Names whose components look like route words still parse to the whole name.
    expect(requiredScopes('GET', '/v2/x/blobs/blobs/uploads/id', q()).repository).to.equal('x/blobs');
    expect(requiredScopes('GET', '/v2/x/manifests/manifests/latest', q()).repository).to.equal('x/manifests');
    expect(requiredScopes('GET', '/v2/x/tags/tags/list', q()).repository).to.equal('x/tags');
  });

  it('a cross-repository mount also needs pull on `from`', () => {
    expect(requiredScopes('POST', '/v2/a/b/blobs/uploads/', q('mount=sha256:00&from=c/d')).scopes).to.deep.equal([
      repo('a/b', 'pull', 'push'),
      repo('c/d', 'pull'),
    ]);
    // `from` without `mount` is no mount; `from` on anything but POST is ignored.
    expect(requiredScopes('POST', '/v2/a/b/blobs/uploads/', q('from=c/d')).scopes).to.deep.equal([repo('a/b', 'pull', 'push')]);
    expect(requiredScopes('GET', '/v2/a/b/blobs/sha256:00', q('mount=sha256:00&from=c/d')).scopes).to.deep.equal([
      repo('a/b', 'pull'),
    ]);
  });

  it('a name no repository can have is invalid, before any access rule sees it', () => {
    const long = `${'a/'.repeat(4000)}b`;
    for (const [method, path, query] of [
      ['GET', `/v2/${long}/tags/list`, ''],
      ['GET', '/v2/UPPER/case/manifests/latest', ''],
      ['POST', '/v2/a/b/blobs/uploads/', `mount=sha256:00&from=${long}`],
    ] as const) {
      expect(requiredScopes(method, path, q(query)), path.slice(0, 40)).to.deep.equal({ scopes: [], invalidName: true });
    }
  });

  it('the catalog needs registry:catalog:*', () => {
    expect(requiredScopes('GET', '/v2/_catalog', q('n=10'))).to.deep.equal({
      scopes: [{ type: 'registry', name: 'catalog', actions: ['*'] }],
    });
  });

  it('/admin needs registry:admin:*', () => {
    for (const path of ['/admin', '/admin/gc', '/admin/repositories/a/b']) {
      expect(requiredScopes('POST', path, q()).scopes, path).to.deep.equal([{ type: 'registry', name: 'admin', actions: ['*'] }]);
    }
  });

  it('/v2/ needs no scope; other paths of no known shape are unknown (refused), not free', () => {
    expect(requiredScopes('GET', '/v2/', q())).to.deep.equal({ scopes: [] });
    expect(requiredScopes('GET', '/v2', q())).to.deep.equal({ scopes: [] });
    for (const path of ['/v2/a/b/nothing', '/v2/a/b/tags/list/', '/v2/a/b/manifests/1/', '/v2/a/b/TAGS/LIST', '/V2/a/b/tags/list', '/ADMIN/v1/jobs']) {
      expect(requiredScopes('GET', path, q()), path).to.deep.equal({ scopes: [], unknown: true });
    }
  });
});
