import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import Router from '@koa/router';
import bcrypt from 'bcryptjs';
import { expect } from 'chai';
import { decodeJwt, generateKeyPair, SignJWT } from 'jose';
import Koa from 'koa';
import { AuthService } from '../../server/auth/auth-service.js';
import { tokenRoutes } from '../../server/auth/token-routes.js';
import { loadConfig, type Config } from '../../server/config.js';
import { repositoryOf } from '../../server/distribution/request.js';
import { authorization } from '../../server/http/authorization.js';
import { ociErrors } from '../../server/http/errors.js';
import { FilesystemDriver } from '../../storage-drivers/filesystem.js';
import { tempDir } from './support.js';

const SERVICE = 'registry.test';
const hash = (password: string) => bcrypt.hashSync(password, 4);
const basic = (name: string, password: string) => `Basic ${Buffer.from(`${name}:${password}`).toString('base64')}`;

interface TestApp {
  base: string;
  auth: AuthService;
  close(): Promise<void>;
}

/** The auth middleware and token routes in front of stand-ins for the distribution routes. */
async function startApp(options: { publicHost: boolean }): Promise<TestApp> {
  const dir = await tempDir('auth-http');
  let handler: (req: IncomingMessage, res: ServerResponse) => void = (_req, res) => res.end();
  const server = createServer((req, res) => handler(req, res)).listen(0, '127.0.0.1');
  await once(server, 'listening');
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const defaults = loadConfig(undefined, {}, () => undefined);
  const config: Config = {
    ...defaults,
    http: { ...defaults.http, ...(options.publicHost ? { host: base } : {}) },
    auth: {
      ...defaults.auth,
      issuer: { ...defaults.auth.issuer, service: SERVICE },
      users: [
        { name: 'alice', password: hash('alice-pw') },
        { name: 'bob', password: hash('bob-pw') },
        { name: 'root', password: hash('root-pw') },
      ],
      access: [
        { repository: 'private/**', pull: ['alice'], push: ['alice'], delete: [] },
        { repository: '**', pull: ['$all'], push: ['$authenticated'], delete: [] },
      ],
      admins: ['root'],
    },
  };
  const auth = (await AuthService.create(config, new FilesystemDriver({ rootdirectory: dir.path })))!;

  const koa = new Koa();
  koa.silent = true;
  koa.use(ociErrors);
  const tokens = new Router();
  tokenRoutes(tokens, auth);
  koa.use(tokens.routes());
  koa.use(authorization(auth));
  // Same patterns and the same repository parsing as the distribution routes.
  const routes = new Router();
  routes.get('/v2/', (ctx) => {
    ctx.body = { user: ctx.state.user ?? null };
  });
  routes.get('/v2/_catalog', (ctx) => {
    ctx.body = { repositories: [] };
  });
  for (const method of ['get', 'put', 'delete'] as const) {
    routes[method]('/v2/*name/manifests/:reference', (ctx) => {
      ctx.body = { served: repositoryOf(ctx), user: ctx.state.user ?? null };
    });
  }
  routes.get('/admin/status', (ctx) => {
    ctx.body = { admin: true };
  });
  koa.use(routes.routes());
  handler = koa.callback();
  return {
    base,
    auth,
    close: async () => {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await dir.cleanup();
    },
  };
}

describe('auth: the authorization middleware and token endpoint', function () {
  this.timeout(10_000);
  let app: TestApp;
  let base: string;
  let auth: AuthService;

  before(async () => {
    app = await startApp({ publicHost: true });
    base = app.base;
    auth = app.auth;
  });
  after(() => app.close());

  const request = (path: string, init: { method?: string; authorization?: string } = {}) =>
    fetch(`${base}${path}`, {
      method: init.method ?? 'GET',
      headers: init.authorization ? { Authorization: init.authorization } : {},
    });

  async function tokenFor(scopes: string[], credentials?: [string, string]): Promise<string> {
    const query = new URLSearchParams([['service', SERVICE], ...scopes.map((scope): [string, string] => ['scope', scope])]);
    const res = await request(`/token?${query}`, credentials ? { authorization: basic(...credentials) } : {});
    expect(res.status).to.equal(200);
    return ((await res.json()) as { token: string }).token;
  }

  function challenge(res: Response): Record<string, string> {
    const header = res.headers.get('www-authenticate') ?? '';
    expect(header).to.match(/^Bearer /);
    return Object.fromEntries([...header.slice(7).matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1]!, m[2]!]));
  }

  describe('anonymous and Basic requests', () => {
    it('lets anonymous callers pull where the rules allow it', async () => {
      const res = await request('/v2/public/x/manifests/latest');
      expect(res.status).to.equal(200);
      expect(await res.json()).to.deep.equal({ served: 'public/x', user: null });
    });

    it('challenges anonymous callers elsewhere, naming the scope to ask for', async () => {
      const res = await request('/v2/private/x/manifests/latest');
      expect(res.status).to.equal(401);
      expect(challenge(res)).to.deep.equal({ realm: `${base}/token`, service: SERVICE, scope: 'repository:private/x:pull' });
      const put = await request('/v2/public/x/manifests/latest', { method: 'PUT' });
      expect(put.status).to.equal(401);
      expect(challenge(put).scope).to.equal('repository:public/x:pull,push');
      const catalog = await request('/v2/_catalog');
      expect(catalog.status).to.equal(401);
      expect(challenge(catalog).scope).to.equal('registry:catalog:*');
    });

    it('/v2/ needs an identity', async () => {
      const anonymous = await request('/v2/');
      expect(anonymous.status).to.equal(401);
      expect(challenge(anonymous)).to.deep.equal({ realm: `${base}/token`, service: SERVICE });
      expect((await request('/v2/', { authorization: basic('bob', 'bob-pw') })).status).to.equal(200);
      const wrong = await request('/v2/', { authorization: basic('bob', 'alice-pw') });
      expect(wrong.status).to.equal(401);
      expect(((await wrong.json()) as { errors: Array<{ code: string }> }).errors[0]!.code).to.equal('UNAUTHORIZED');
    });

    it('checks Basic credentials on /v2 directly: denied is 403, allowed passes', async () => {
      const denied = await request('/v2/private/x/manifests/latest', { method: 'PUT', authorization: basic('bob', 'bob-pw') });
      expect(denied.status).to.equal(403);
      expect(((await denied.json()) as { errors: Array<{ code: string }> }).errors[0]!.code).to.equal('DENIED');
      const allowed = await request('/v2/private/x/manifests/latest', { method: 'PUT', authorization: basic('alice', 'alice-pw') });
      expect(allowed.status).to.equal(200);
      expect(await allowed.json()).to.deep.equal({ served: 'private/x', user: 'alice' });
    });

    it('the catalog and /admin are for admins', async () => {
      expect((await request('/v2/_catalog', { authorization: basic('bob', 'bob-pw') })).status).to.equal(403);
      expect((await request('/v2/_catalog', { authorization: basic('root', 'root-pw') })).status).to.equal(200);
      expect((await request('/admin/status', { authorization: basic('alice', 'alice-pw') })).status).to.equal(403);
      expect((await request('/admin/status', { authorization: basic('root', 'root-pw') })).status).to.equal(200);
      expect((await request('/admin/status')).status).to.equal(401);
    });
  });

  describe('the token endpoint', () => {
    it('grants the intersection of the asked scopes and the rules', async () => {
      const query = new URLSearchParams([
        ['service', SERVICE],
        ['scope', 'repository:private/x:pull,push repository:public/y:pull,push,delete'],
        ['scope', 'registry:catalog:*'],
      ]);
      const bob = (await (await request(`/token?${query}`, { authorization: basic('bob', 'bob-pw') })).json()) as Record<string, unknown>;
      expect(bob.scope).to.equal('repository:public/y:pull,push');
      expect(decodeJwt(bob.token as string).access).to.deep.equal([{ type: 'repository', name: 'public/y', actions: ['pull', 'push'] }]);
      expect(bob.access_token).to.equal(bob.token);
      expect(bob.expires_in).to.equal(300);
      expect(bob.issued_at).to.be.a('string');
      const alice = (await (await request(`/token?${query}`, { authorization: basic('alice', 'alice-pw') })).json()) as Record<string, unknown>;
      expect(alice.scope).to.equal('repository:private/x:pull,push repository:public/y:pull,push');
      const anonymous = (await (await request(`/token?${query}`)).json()) as Record<string, unknown>;
      expect(anonymous.scope).to.equal('repository:public/y:pull');
      expect(decodeJwt(anonymous.token as string).sub).to.equal('');
    });

    it('adds a refresh token for offline_token=true, only to a logged-in user', async () => {
      const query = `service=${SERVICE}&scope=repository:public/y:pull&offline_token=true`;
      const alice = (await (await request(`/token?${query}`, { authorization: basic('alice', 'alice-pw') })).json()) as Record<string, unknown>;
      expect(alice.refresh_token).to.be.a('string');
      expect((await auth.tokens.verifyRefresh(alice.refresh_token as string, SERVICE)).subject).to.equal('alice');
      const anonymous = (await (await request(`/token?${query}`)).json()) as Record<string, unknown>;
      expect(anonymous).to.not.have.property('refresh_token');
      const plain = (await (await request(`/token?service=${SERVICE}`, { authorization: basic('alice', 'alice-pw') })).json()) as Record<string, unknown>;
      expect(plain).to.not.have.property('refresh_token');
    });

    it('refuses wrong credentials with 401', async () => {
      const res = await request(`/token?service=${SERVICE}&scope=repository:public/y:pull`, { authorization: basic('bob', 'nope') });
      expect(res.status).to.equal(401);
    });

    it('supports the OAuth2 password and refresh_token grants', async () => {
      const form = (fields: Record<string, string>) =>
        fetch(`${base}/token`, { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(fields) });
      const login = await form({ grant_type: 'password', username: 'alice', password: 'alice-pw', service: SERVICE, scope: 'repository:private/x:pull', access_type: 'offline', client_id: 'docker' });
      expect(login.status).to.equal(200);
      const body = (await login.json()) as { token: string; refresh_token: string };
      expect(body.refresh_token).to.be.a('string');
      const refreshed = await form({ grant_type: 'refresh_token', refresh_token: body.refresh_token, service: SERVICE, scope: 'repository:private/x:pull,push' });
      expect(refreshed.status).to.equal(200);
      const again = (await refreshed.json()) as { token: string };
      expect(decodeJwt(again.token).access).to.deep.equal([{ type: 'repository', name: 'private/x', actions: ['pull', 'push'] }]);
      // An access token is no refresh token.
      expect((await form({ grant_type: 'refresh_token', refresh_token: body.token, service: SERVICE })).status).to.equal(401);
      expect((await form({ grant_type: 'refresh_token', refresh_token: 'garbage', service: SERVICE })).status).to.equal(401);
      expect((await form({ grant_type: 'password', username: 'alice', password: 'wrong' })).status).to.equal(401);
      expect((await form({ grant_type: 'client_credentials' })).status).to.equal(400);
    });
  });

  describe('Bearer tokens', () => {
    it('a token covering the scope passes', async () => {
      const token = await tokenFor(['repository:private/x:pull'], ['alice', 'alice-pw']);
      const res = await request('/v2/private/x/manifests/latest', { authorization: `Bearer ${token}` });
      expect(res.status).to.equal(200);
      expect(await res.json()).to.deep.equal({ served: 'private/x', user: 'alice' });
    });

    it('a valid token without the scope gets 401 insufficient_scope', async () => {
      const token = await tokenFor(['repository:private/x:pull'], ['alice', 'alice-pw']);
      const res = await request('/v2/private/x/manifests/latest', { method: 'PUT', authorization: `Bearer ${token}` });
      expect(res.status).to.equal(401);
      expect(challenge(res)).to.deep.equal({ realm: `${base}/token`, service: SERVICE, scope: 'repository:private/x:pull,push', error: 'insufficient_scope' });
      // A token for one repository is nothing for another.
      expect((await request('/v2/private/y/manifests/latest', { authorization: `Bearer ${token}` })).status).to.equal(401);
    });

    it('every bad token is a 401 with a fresh challenge, never a 500', async () => {
      const now = Math.floor(Date.now() / 1000);
      const key = auth.keys.current;
      const header = { alg: 'ES256', kid: key.kid, x5c: [key.certificate.raw.toString('base64')] };
      const access = [{ type: 'repository', name: 'private/x', actions: ['pull'] }];
      const good = () => new SignJWT({ access }).setIssuer('dify-registry').setAudience(SERVICE).setSubject('alice').setIssuedAt(now).setExpirationTime(now + 300);
      const other = await generateKeyPair('ES256');
      const [, payload] = (await good().setProtectedHeader(header).sign(key.privateKey)).split('.');
      const bad: Record<string, string> = {
        malformed: 'abc.def.ghi',
        expired: await good().setExpirationTime(now - 60).setProtectedHeader(header).sign(key.privateKey),
        'not yet valid': await good().setNotBefore(now + 600).setProtectedHeader(header).sign(key.privateKey),
        'wrongly signed': await good().setProtectedHeader(header).sign(other.privateKey),
        'alg none': `${Buffer.from(JSON.stringify({ alg: 'none' })).toString('base64url')}.${payload}.`,
        'HS256 with the public key': await good()
          .setProtectedHeader({ alg: 'HS256', kid: key.kid })
          .sign(new Uint8Array(key.publicKey.export({ type: 'spki', format: 'der' }))),
        'wrong audience': await good().setAudience('elsewhere').setProtectedHeader(header).sign(key.privateKey),
        'wrong issuer': await good().setIssuer('elsewhere').setProtectedHeader(header).sign(key.privateKey),
        'unknown kid': await good().setProtectedHeader({ alg: 'ES256', kid: 'NOPE' }).sign(key.privateKey),
        'refresh token': await auth.tokens.issueRefresh('alice', SERVICE, auth.users.credentialOf('alice')!),
      };
      for (const [what, token] of Object.entries(bad)) {
        const res = await request('/v2/private/x/manifests/latest', { authorization: `Bearer ${token}` });
        expect(res.status, what).to.equal(401);
        expect(challenge(res), what).to.deep.equal({ realm: `${base}/token`, service: SERVICE, scope: 'repository:private/x:pull', error: 'invalid_token' });
        const body = (await res.json()) as { errors: Array<{ code: string }> };
        expect(body.errors[0]!.code, what).to.equal('UNAUTHORIZED');
      }
    });
  });

  // ctx.path (what authorization reads) is the raw path, but @koa/router percent-decodes `*name`, and the
  // route serves the decoded repository. Here the rules guard private/** but open ** to everyone, so
  // scoping the request by the raw name `priv%61te/x` checks the public rule and serves private/x.
  describe('percent-encoded repository names', () => {
    it('are authorized as the repository that is served', async () => {
      const res = await request('/v2/priv%61te/x/manifests/latest');
      const body = res.status === 200 ? JSON.stringify(await res.json()) : '';
      expect(res.status, `anonymous GET /v2/priv%61te/x/manifests/latest answered ${res.status} ${body}`).to.be.oneOf([400, 401, 404]);
    });

    it('are authorized as the repository that is served, for Basic pushes too', async () => {
      const res = await request('/v2/private%2Fx/manifests/latest', { method: 'PUT', authorization: basic('bob', 'bob-pw') });
      expect(res.status, 'bob PUT /v2/private%2Fx/manifests/latest (bob may not push to private/x)').to.be.oneOf([400, 403, 404]);
    });

    it('are authorized as the repository that is served, for tokens too', async () => {
      // bob may not pull private/x, but a token for the encoded name is granted through the ** rule.
      const token = await tokenFor(['repository:priv%61te/x:pull'], ['bob', 'bob-pw']);
      const res = await request('/v2/priv%61te/x/manifests/latest', { authorization: `Bearer ${token}` });
      const body = res.status === 200 ? JSON.stringify(await res.json()) : '';
      expect(res.status, `bob with a token for repository:priv%61te/x:pull answered ${res.status} ${body}`).to.be.oneOf([400, 401, 403, 404]);
    });
  });
});

// Without http.host the realm is to be derived from the request (AuthService.realmFor), but
// authorization.ts passes ctx.origin, which in Koa 3 is the request's Origin header or null.
describe('auth: challenges without http.host', function () {
  this.timeout(10_000);
  let app: TestApp;
  before(async () => {
    app = await startApp({ publicHost: false });
  });
  after(() => app.close());

  it('derive the realm from the request instead of failing with 500', async () => {
    const res = await fetch(`${app.base}/v2/private/x/manifests/latest`);
    expect(res.status).to.equal(401);
    expect(res.headers.get('www-authenticate')).to.equal(
      `Bearer realm="${app.base}/token",service="${SERVICE}",scope="repository:private/x:pull"`,
    );
  });

  it('never take the realm from an Origin header', async () => {
    const res = await fetch(`${app.base}/v2/`, { headers: { Origin: 'https://phish.example' } });
    expect(res.status).to.equal(401);
    expect(res.headers.get('www-authenticate') ?? '').to.not.contain('phish.example');
  });
});
