// Docker token authentication end to end: the challenge and token protocol over HTTP, real clients
// (docker, skopeo, podman) logging in, pushing and pulling, CNCF Distribution 2.8.2 as a resource
// server that trusts tokens issued by us, and the issuer's keys (key files, rotation, generated keys
// shared by workers, expiry, bad tokens signed with the real key) and external issuers (auth.token).
// One registry (and where needed one dockerd) per suite; the keys suite restarts registries on purpose.
import { expect } from 'chai';
import http from 'node:http';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createHash, createPrivateKey, X509Certificate } from 'node:crypto';
import {
  createLocalJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  generateKeyPair,
  importX509,
  jwtVerify,
  SignJWT,
  UnsecuredJWT,
  type JWTPayload,
} from 'jose';
import {
  basicAuth,
  DOCKER_MANIFEST,
  bcryptHash,
  bearer,
  certificatePublicKeyId,
  getToken,
  htpasswdLine,
  libtrustKeyId,
  makeEcCertificate,
  makeTinyImage,
  manifestDigest,
  parseChallenge,
  postToken,
  pushTinyImage,
  startAuthRegistry,
  startTokenDistribution,
  tokenFor,
  x5cToPem,
  type AuthRegistry,
  type KeyPairFiles,
  type TokenDistribution,
  type TinyImage,
} from '../helpers/auth.js';
import { startPodman, startSkopeo, type ContainerClient } from '../helpers/clients.js';
import { startDockerd, type RunningDockerd } from '../helpers/dockerd.js';
import { removeTree } from '../helpers/cleanup.js';
import { tempDir } from '../helpers/process.js';
import { randomHex } from '../helpers/oci.js';

interface AccessEntry { type: string; name: string; actions: string[] }
type TokenClaims = JWTPayload & { access?: AccessEntry[] };

/** The `access` claim, sorted, with sorted actions: comparable with deep.equal. */
function accessOf(token: string): AccessEntry[] {
  const claims = decodeJwt(token) as TokenClaims;
  expect(claims.access, `access claim of ${JSON.stringify(claims)}`).to.be.an('array');
  return claims.access!
    .map((a) => ({ type: a.type, name: a.name, actions: [...a.actions].sort() }))
    .sort((a, b) => `${a.type}:${a.name}`.localeCompare(`${b.type}:${b.name}`));
}

const MANIFEST_ACCEPT = 'application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json';

async function status(url: string, init: RequestInit = {}): Promise<{ status: number; headers: Headers; text: string }> {
  const res = await fetch(url, init);
  return { status: res.status, headers: res.headers, text: await res.text() };
}

const describeReply = (r: { status: number; headers: Headers; text: string }): string =>
  `${r.status} www-authenticate=${r.headers.get('www-authenticate')} ${r.text.slice(0, 500)}`;

/** docker's answer to a refused push or pull, in any of the forms 20.10 prints. */
const REFUSED = /denied|unauthorized|authentication required/i;

// -------------------------------------------------------------------------------------------------
describe('token auth: the protocol over HTTP', function () {
  this.timeout(60_000);
  const SERVICE = 'auth-test';
  const pw = {
    alice: 'alice-Secret-1',
    bob: 'bob-Secret-2',
    carol: 'carol:with:colons', // a password may hold ':' (only the first one separates in Basic)
    dave: 'dave-from-htpasswd',
    erin: 'erin-Secret-5',
    frank: 'frank-Secret-6',
    robot: 'robot-secret-0123456789abcdef0123456789abcdef',
  };
  const issuedTokens: string[] = [];
  let reg: AuthRegistry;
  let image: TinyImage;
  let work: string;

  before(async function () {
    work = await tempDir('auth-protocol');
    const htpasswd = join(work, 'htpasswd');
    await writeFile(htpasswd, `# users from a file\n${htpasswdLine('dave', pw.dave)}\n`);
    reg = await startAuthRegistry({
      config: {
        auth: {
          htpasswd: { path: htpasswd },
          issuer: { service: SERVICE },
          users: (['alice', 'bob', 'carol', 'erin', 'frank'] as const).map((name) => ({ name, password: bcryptHash(pw[name]) })),
          groups: { devs: ['carol'] },
          robots: [{ name: 'ci', secret: bcryptHash(pw.robot) }],
          access: [
            { repository: 'public/*', pull: ['$anonymous', '$authenticated'], push: ['alice'] },
            { repository: 'private/*', pull: ['alice', 'bob', 'group:devs', 'dave'], push: ['alice', 'group:devs'], delete: ['alice'] },
            { repository: 'ci/**', pull: ['robot$ci'], push: ['robot$ci'] },
          ],
          admins: ['alice'],
        },
      },
    });
    image = await makeTinyImage(work, 'protocol');
  });

  after(async function () {
    await Promise.allSettled([reg?.stop(), work ? removeTree(work) : undefined]);
  });

  async function token(user: string | undefined, password: string | undefined, scopes: string[]): Promise<string> {
    const t = await tokenFor(reg.url, user, password, scopes, SERVICE);
    issuedTokens.push(t);
    return t;
  }

  const realm = () => `${reg.url}/token`;

  it('GET /v2/ without credentials: 401 with exactly Bearer realm="<http.host>/token",service="<service>"', async function () {
    const r = await status(`${reg.url}/v2/`);
    expect(r.status, describeReply(r)).to.equal(401);
    expect(r.headers.get('www-authenticate')).to.equal(`Bearer realm="${realm()}",service="${SERVICE}"`);
    expect(r.headers.get('docker-distribution-api-version')).to.equal('registry/2.0');
  });

  it('challenges carry the scope of the request: pull, pull+push, delete, catalog', async function () {
    const cases: Array<[string, string, string]> = [
      ['GET', '/v2/private/app/manifests/latest', 'repository:private/app:pull'],
      ['HEAD', '/v2/private/app/manifests/latest', 'repository:private/app:pull'],
      ['GET', `/v2/private/app/blobs/${image.layerDigest}`, 'repository:private/app:pull'],
      ['GET', '/v2/private/app/tags/list', 'repository:private/app:pull'],
      ['GET', '/v2/a/b/c/manifests/1', 'repository:a/b/c:pull'],
      ['POST', '/v2/private/app/blobs/uploads/', 'repository:private/app:pull,push'],
      ['PUT', '/v2/private/app/manifests/1', 'repository:private/app:pull,push'],
      ['DELETE', '/v2/private/app/manifests/1', 'repository:private/app:delete'],
      ['GET', '/v2/_catalog', 'registry:catalog:*'],
    ];
    for (const [method, path, scope] of cases) {
      const r = await status(`${reg.url}${path}`, { method });
      expect(r.status, `${method} ${path}: ${describeReply(r)}`).to.equal(401);
      expect(r.headers.get('www-authenticate'), `${method} ${path}`)
        .to.equal(`Bearer realm="${realm()}",service="${SERVICE}",scope="${scope}"`);
      if (method !== 'HEAD') {
        const body = JSON.parse(r.text) as { errors: Array<{ code: string }> };
        expect(body.errors[0]?.code, `${method} ${path}`).to.equal('UNAUTHORIZED');
      }
    }
  });

  it('GET /token anonymously: a token with only what anonymous users may have', async function () {
    const before = Math.floor(Date.now() / 1000);
    const r = await getToken(reg.url, {
      service: SERVICE,
      scopes: ['repository:public/hello:pull,push', 'repository:private/app:pull', 'registry:catalog:*'],
    });
    expect(r.status, r.text).to.equal(200);
    expect(r.body.token).to.be.a('string');
    expect(r.body.access_token).to.equal(r.body.token);
    expect(r.body.expires_in).to.equal(300);
    expect(r.body).to.not.have.property('refresh_token');
    const issuedAt = Date.parse(String(r.body.issued_at));
    expect(issuedAt / 1000).to.be.within(before - 2, Date.now() / 1000 + 2);
    issuedTokens.push(String(r.body.token));
    expect(accessOf(String(r.body.token))).to.deep.equal([{ type: 'repository', name: 'public/hello', actions: ['pull'] }]);
  });

  it('GET /token with Basic: ES256 JWT with libtrust kid, x5c, single-string aud, and the granted access', async function () {
    const before = Math.floor(Date.now() / 1000);
    const r = await getToken(reg.url, {
      user: 'alice', password: pw.alice, service: SERVICE,
      scopes: ['repository:private/app:pull,push', 'registry:catalog:*'],
    });
    expect(r.status, r.text).to.equal(200);
    const t = String(r.body.token);
    issuedTokens.push(t);
    expect(r.body.access_token).to.equal(t);
    expect(r.body.expires_in).to.equal(300);

    const header = decodeProtectedHeader(t);
    expect(header.alg).to.equal('ES256');
    expect(header.kid).to.match(/^([A-Z2-7]{4}:){11}[A-Z2-7]{4}$/);
    expect(header.x5c).to.be.an('array').with.length.greaterThan(0);
    const certPem = x5cToPem(header.x5c![0]!);
    // The kid names the key of the x5c certificate, in libtrust's format, computed here independently.
    expect(header.kid).to.equal(libtrustKeyId(new X509Certificate(certPem).publicKey));

    const { payload } = await jwtVerify(t, await importX509(certPem, 'ES256'), { issuer: 'dify-registry', audience: SERVICE });
    expect(payload.aud).to.equal(SERVICE); // a string, not ['auth-test']
    expect(payload.sub).to.equal('alice');
    expect(payload.iat).to.be.within(before - 2, before + 5);
    expect(payload.exp! - payload.iat!).to.equal(300);
    if (payload.nbf !== undefined) expect(payload.nbf).to.be.at.most(Math.floor(Date.now() / 1000));
    expect(accessOf(t)).to.deep.equal([
      { type: 'registry', name: 'catalog', actions: ['*'] },
      { type: 'repository', name: 'private/app', actions: ['pull', 'push'] },
    ]);
  });

  it('grants the intersection of what was asked and what the rules allow (several scope parameters)', async function () {
    const cases: Array<[string, string, string[], AccessEntry[]]> = [
      ['bob', pw.bob, ['repository:private/app:pull,push,delete'], [{ type: 'repository', name: 'private/app', actions: ['pull'] }]],
      ['bob', pw.bob, ['repository:private/app:push', 'repository:public/x:pull,push', 'repository:other/y:pull', 'registry:catalog:*'],
        [{ type: 'repository', name: 'public/x', actions: ['pull'] }]],
      // Groups: carol is in devs.
      ['carol', pw.carol, ['repository:private/app:pull,push,delete'], [{ type: 'repository', name: 'private/app', actions: ['pull', 'push'] }]],
      // The htpasswd user.
      ['dave', pw.dave, ['repository:private/app:pull,push'], [{ type: 'repository', name: 'private/app', actions: ['pull'] }]],
      ['alice', pw.alice, ['repository:private/app:pull,push,delete'], [{ type: 'repository', name: 'private/app', actions: ['delete', 'pull', 'push'] }]],
      // `private/*` is one path component: private/a/b matches no rule, so nothing.
      ['alice', pw.alice, ['repository:private/a/b:pull'], []],
      // A robot account, by its login name.
      ['robot$ci', pw.robot, ['repository:ci/team/app:pull,push', 'repository:private/app:pull'],
        [{ type: 'repository', name: 'ci/team/app', actions: ['pull', 'push'] }]],
    ];
    for (const [user, password, scopes, expected] of cases) {
      const t = await token(user, password, scopes);
      expect(accessOf(t), `${user} asking ${scopes.join(' ')}`).to.deep.equal(expected);
      expect(decodeJwt(t).sub).to.equal(user);
    }
  });

  it('a token works as Bearer; a token without push gets 401 insufficient_scope; a token for one repository does not open another', async function () {
    const alice = await token('alice', pw.alice, ['repository:private/app:pull,push']);
    await pushTinyImage(reg.url, 'private/app', '1', image, bearer(alice));
    expect(await manifestDigest(reg.url, 'private/app', '1', bearer(alice))).to.equal(image.manifestDigest);

    const bob = await token('bob', pw.bob, ['repository:private/app:pull,push']);
    expect(accessOf(bob)).to.deep.equal([{ type: 'repository', name: 'private/app', actions: ['pull'] }]);
    expect(await manifestDigest(reg.url, 'private/app', '1', bearer(bob))).to.equal(image.manifestDigest);
    const blob = await fetch(`${reg.url}/v2/private/app/blobs/${image.layerDigest}`, { headers: { authorization: bearer(bob) } });
    expect(blob.status).to.equal(200);
    expect(createHash('sha256').update(Buffer.from(await blob.arrayBuffer())).digest('hex')).to.equal(image.layerDigest.slice(7));

    const upload = await status(`${reg.url}/v2/private/app/blobs/uploads/`, { method: 'POST', headers: { authorization: bearer(bob) } });
    expect(upload.status, describeReply(upload)).to.equal(401);
    const challenge = parseChallenge(upload.headers.get('www-authenticate'));
    expect(challenge.scheme).to.equal('Bearer');
    expect(challenge.params).to.deep.include({ realm: realm(), service: SERVICE, scope: 'repository:private/app:pull,push', error: 'insufficient_scope' });

    const del = await status(`${reg.url}/v2/private/app/manifests/${image.manifestDigest}`, { method: 'DELETE', headers: { authorization: bearer(alice) } });
    expect(del.status, `alice's token has no delete: ${describeReply(del)}`).to.equal(401);
    expect(await manifestDigest(reg.url, 'private/app', '1', bearer(bob))).to.equal(image.manifestDigest);

    // alice's token names private/app only.
    const other = await status(`${reg.url}/v2/private/other/tags/list`, { headers: { authorization: bearer(alice) } });
    expect(other.status, describeReply(other)).to.equal(401);
    expect(parseChallenge(other.headers.get('www-authenticate')).params.scope).to.equal('repository:private/other:pull');
    // A token is not a catalog token.
    expect((await status(`${reg.url}/v2/_catalog`, { headers: { authorization: bearer(alice) } })).status).to.equal(401);
    // A valid token on /v2/ itself.
    expect((await status(`${reg.url}/v2/`, { headers: { authorization: bearer(bob) } })).status).to.equal(200);
  });

  it('anonymous pull of a public repository through the token flow, without any credentials', async function () {
    const alice = await token('alice', pw.alice, ['repository:public/hello:pull,push']);
    await pushTinyImage(reg.url, 'public/hello', '1', image, bearer(alice));

    // Without any credentials the registry may serve public content at once (the rules allow it) or
    // challenge; clients follow a challenge to the realm, as this test does either way.
    const first = await status(`${reg.url}/v2/public/hello/manifests/1`, { headers: { accept: MANIFEST_ACCEPT } });
    expect(first.status, describeReply(first)).to.be.oneOf([200, 401]);
    const params = first.status === 401
      ? parseChallenge(first.headers.get('www-authenticate')).params
      : { realm: realm(), service: SERVICE, scope: 'repository:public/hello:pull' };
    expect(params).to.deep.include({ realm: realm(), service: SERVICE, scope: 'repository:public/hello:pull' });
    const q = new URLSearchParams({ service: params.service!, scope: params.scope! });
    const tokenReply = await fetch(`${params.realm}?${q}`);
    expect(tokenReply.status).to.equal(200);
    const anon = ((await tokenReply.json()) as { token: string }).token;
    issuedTokens.push(anon);
    expect(await manifestDigest(reg.url, 'public/hello', '1', bearer(anon))).to.equal(image.manifestDigest);
    const layer = await fetch(`${reg.url}/v2/public/hello/blobs/${image.layerDigest}`, { headers: { authorization: bearer(anon) } });
    expect(layer.status).to.equal(200);
    expect(Buffer.from(await layer.arrayBuffer()).equals(image.layer)).to.equal(true);

    // Anonymous users may not push there, nor read a private repository.
    const anonPush = await token(undefined, undefined, ['repository:public/hello:pull,push']);
    expect(accessOf(anonPush)).to.deep.equal([{ type: 'repository', name: 'public/hello', actions: ['pull'] }]);
    const push = await status(`${reg.url}/v2/public/hello/blobs/uploads/`, { method: 'POST', headers: { authorization: bearer(anonPush) } });
    expect(push.status, describeReply(push)).to.equal(401);
    expect(parseChallenge(push.headers.get('www-authenticate')).params.error).to.equal('insufficient_scope');
    const anonPrivate = await token(undefined, undefined, ['repository:private/app:pull']);
    expect(accessOf(anonPrivate)).to.deep.equal([]);
    expect(await manifestDigest(reg.url, 'private/app', '1', bearer(anonPrivate))).to.equal(401);
    expect(await manifestDigest(reg.url, 'private/app', '1')).to.equal(401);
  });

  it('POST /token: password grant (docker login) and refresh_token grant, still intersected with the rules', async function () {
    const password = await postToken(reg.url, {
      grant_type: 'password', username: 'bob', password: pw.bob, service: SERVICE,
      scope: 'repository:private/app:pull,push', client_id: 'auth-test', access_type: 'offline',
    });
    expect(password.status, password.text).to.equal(200);
    const access = String(password.body.access_token);
    issuedTokens.push(access);
    expect(password.body.expires_in).to.equal(300);
    expect(accessOf(access)).to.deep.equal([{ type: 'repository', name: 'private/app', actions: ['pull'] }]);
    expect(decodeJwt(access).sub).to.equal('bob');
    const refresh = password.body.refresh_token;
    expect(refresh, 'access_type=offline gives a refresh token').to.be.a('string');
    issuedTokens.push(String(refresh));

    const refreshed = await postToken(reg.url, {
      grant_type: 'refresh_token', refresh_token: String(refresh), service: SERVICE,
      scope: 'repository:private/app:pull,push', client_id: 'auth-test',
    });
    expect(refreshed.status, refreshed.text).to.equal(200);
    const again = String(refreshed.body.access_token);
    issuedTokens.push(again);
    expect(decodeJwt(again).sub).to.equal('bob');
    expect(accessOf(again)).to.deep.equal([{ type: 'repository', name: 'private/app', actions: ['pull'] }]);
    expect(await manifestDigest(reg.url, 'private/app', '1', bearer(again))).to.equal(image.manifestDigest);

    // A refresh token is not an access token.
    const asAccess = await status(`${reg.url}/v2/private/app/tags/list`, { headers: { authorization: bearer(String(refresh)) } });
    expect(asAccess.status, describeReply(asAccess)).to.equal(401);
    // Nor is an access token a refresh token, and junk is refused.
    for (const bad of [again, 'not.a.token', '']) {
      const r = await postToken(reg.url, { grant_type: 'refresh_token', refresh_token: bad, service: SERVICE, client_id: 'auth-test' });
      expect(r.status, `refresh_token=${bad.slice(0, 20)}: ${r.text}`).to.be.oneOf([400, 401]);
    }
    const wrong = await postToken(reg.url, { grant_type: 'password', username: 'bob', password: 'wrong', service: SERVICE, client_id: 'auth-test' });
    expect(wrong.status, wrong.text).to.be.oneOf([400, 401]);
    expect(wrong.body).to.not.have.property('access_token');
    const unsupported = await postToken(reg.url, { grant_type: 'client_credentials', service: SERVICE, client_id: 'auth-test' });
    expect(unsupported.status, unsupported.text).to.be.oneOf([400, 401]);

    // GET with offline_token=true also hands out a refresh token (docker login's GET flow).
    const offline = await getToken(reg.url, { user: 'bob', password: pw.bob, service: SERVICE, offline: true });
    expect(offline.status, offline.text).to.equal(200);
    expect(offline.body.refresh_token).to.be.a('string');
    issuedTokens.push(String(offline.body.refresh_token), String(offline.body.token));
  });

  it('accepts Basic credentials directly on /v2/', async function () {
    const alice = basicAuth('alice', pw.alice);
    const bob = basicAuth('bob', pw.bob);
    expect((await status(`${reg.url}/v2/`, { headers: { authorization: alice } })).status).to.equal(200);
    expect((await status(`${reg.url}/v2/`, { headers: { authorization: basicAuth('carol', pw.carol) } })).status).to.equal(200);
    expect(await manifestDigest(reg.url, 'private/app', '1', bob)).to.equal(image.manifestDigest);

    // Pushing with Basic works for a user who may push.
    await pushTinyImage(reg.url, 'private/basic', '1', image, basicAuth('carol', pw.carol));
    expect(await manifestDigest(reg.url, 'private/basic', '1', bob)).to.equal(image.manifestDigest);

    const bobPush = await status(`${reg.url}/v2/private/app/blobs/uploads/`, { method: 'POST', headers: { authorization: bob } });
    expect(bobPush.status, describeReply(bobPush)).to.be.oneOf([401, 403]);
    const bobPut = await status(`${reg.url}/v2/private/app/manifests/bob`, {
      method: 'PUT', headers: { authorization: bob, 'content-type': 'application/vnd.docker.distribution.manifest.v2+json' }, body: new Uint8Array(image.manifest),
    });
    expect(bobPut.status, describeReply(bobPut)).to.be.oneOf([401, 403]);
    expect(await manifestDigest(reg.url, 'private/app', 'bob', alice)).to.equal(404);

    const catalog = await status(`${reg.url}/v2/_catalog`, { headers: { authorization: alice } });
    expect(catalog.status, describeReply(catalog)).to.equal(200);
    expect((JSON.parse(catalog.text) as { repositories: string[] }).repositories).to.include.members(['private/app', 'public/hello']);
    const bobCatalog = await status(`${reg.url}/v2/_catalog`, { headers: { authorization: bob } });
    expect(bobCatalog.status, describeReply(bobCatalog)).to.be.oneOf([401, 403]);
  });

  it('never mounts a blob from a repository the caller may not read', async function () {
    // carol may push private/* but not read ci/**: a mount from ci/app into private/mount would hand
    // her a blob she may not read (and confirm that it exists there).
    const robot = await token('robot$ci', pw.robot, ['repository:ci/app:pull,push']);
    await pushTinyImage(reg.url, 'ci/app', '1', image, bearer(robot));
    const mount = `mount=${image.layerDigest}&from=ci/app`;
    const carol = await token('carol', pw.carol, ['repository:private/mount:pull,push', 'repository:ci/app:pull']);
    expect(accessOf(carol)).to.deep.equal([{ type: 'repository', name: 'private/mount', actions: ['pull', 'push'] }]);
    for (const [what, authorization] of [['token', bearer(carol)], ['Basic', basicAuth('carol', pw.carol)]] as const) {
      const r = await status(`${reg.url}/v2/private/mount/blobs/uploads/?${mount}`, { method: 'POST', headers: { authorization } });
      expect(r.status, `${what}: ${describeReply(r)}`).to.not.equal(201);
      expect(r.status, `${what}: ${describeReply(r)}`).to.be.oneOf([202, 401, 403]);
      const head = await status(`${reg.url}/v2/private/mount/blobs/${image.layerDigest}`, { method: 'HEAD', headers: { authorization: bearer(carol) } });
      expect(head.status, `${what}: the blob must not have appeared in private/mount`).to.equal(404);
    }
    // Where the caller may read the source, the mount works.
    const alice = await token('alice', pw.alice, ['repository:private/mounted:pull,push', 'repository:private/source:pull,push']);
    await pushTinyImage(reg.url, 'private/source', '1', image, bearer(alice));
    const ok = await status(`${reg.url}/v2/private/mounted/blobs/uploads/?mount=${image.layerDigest}&from=private/source`, { method: 'POST', headers: { authorization: bearer(alice) } });
    expect(ok.status, describeReply(ok)).to.equal(201);
  });

  it('wrong passwords and unknown users get 401 at /token and at /v2/', async function () {
    for (const [user, password] of [['frank', 'wrong'], ['nobody', 'whatever'], ['robot$ci', 'wrong'], ['robot$nobody', pw.robot]] as const) {
      const t = await getToken(reg.url, { user, password, service: SERVICE, scopes: ['repository:public/hello:pull'] });
      expect(t.status, `/token as ${user}: ${t.text}`).to.equal(401);
      expect(t.body).to.not.have.property('token');
      const v2 = await status(`${reg.url}/v2/public/hello/tags/list`, { headers: { authorization: basicAuth(user, password) } });
      expect(v2.status, `/v2/ as ${user}: ${describeReply(v2)}`).to.equal(401);
      expect(v2.headers.get('www-authenticate')).to.match(/^Bearer realm="/);
    }
    // Only the first ':' separates; carol's password holds more of them. The prefix alone is wrong.
    expect((await getToken(reg.url, { user: 'carol', password: 'carol', service: SERVICE })).status).to.equal(401);
    expect((await getToken(reg.url, { user: 'carol', password: pw.carol, service: SERVICE })).status).to.equal(200);
  });

  it('refuses forged, tampered, unsigned and foreign tokens with 401 and a fresh challenge, never 500', async function () {
    const bob = await token('bob', pw.bob, ['repository:private/app:pull']);
    const header = decodeProtectedHeader(bob);
    const claims = decodeJwt(bob) as TokenClaims;
    const pushClaims = { ...claims, access: [{ type: 'repository', name: 'private/app', actions: ['pull', 'push'] }] };

    // The payload widened to push, the signature kept.
    const [h, , s] = bob.split('.');
    const tampered = `${h}.${Buffer.from(JSON.stringify(pushClaims)).toString('base64url')}.${s}`;
    // Signed by a key of our own, under the registry's kid and x5c.
    const { privateKey } = await generateKeyPair('ES256');
    const forged = await new SignJWT(pushClaims).setProtectedHeader({ alg: 'ES256', kid: header.kid, x5c: header.x5c }).sign(privateKey);
    // alg: none.
    const unsigned = new UnsecuredJWT(pushClaims).encode();
    // Properly signed with the right key would need the key; a token for another audience is the next best.
    const otherAudience = await tokenFor(reg.url, 'bob', pw.bob, ['repository:private/app:pull'], 'some-other-service');
    issuedTokens.push(otherAudience);

    const cases: Array<[string, string]> = [
      ['tampered payload', tampered], ['forged signature', forged], ['alg none', unsigned],
      ['garbage', 'abc.def.ghi'], ['not a JWT', 'hello'],
    ];
    // When the service is configured, a token asked for another one either is not issued for it or is refused here.
    if (decodeJwt(otherAudience).aud !== SERVICE) cases.push(['other audience', otherAudience]);
    for (const [what, t] of cases) {
      for (const [method, path] of [['GET', '/v2/private/app/manifests/1'], ['POST', '/v2/private/app/blobs/uploads/'], ['GET', '/v2/']]) {
        const r = await status(`${reg.url}${path}`, { method, headers: { authorization: bearer(t), accept: MANIFEST_ACCEPT } });
        expect(r.status, `${what}: ${method} ${path}: ${describeReply(r)}`).to.equal(401);
        expect(r.headers.get('www-authenticate'), `${what}: ${method} ${path}`).to.match(new RegExp(`^Bearer realm="${realm()}",service="${SERVICE}"`));
      }
    }
    expect(await manifestDigest(reg.url, 'private/app', '1', bearer(bob))).to.equal(image.manifestDigest);
  });

  it('/admin is closed to anonymous users and non-admins, open to admins with Basic or a registry:admin:* token', async function () {
    const path = `${reg.url}/admin/v1/jobs`;
    const anonymous = await status(path);
    expect(anonymous.status, describeReply(anonymous)).to.equal(401);
    for (const [user, password] of [['bob', pw.bob], ['carol', pw.carol], ['robot$ci', pw.robot]] as const) {
      const r = await status(path, { headers: { authorization: basicAuth(user, password) } });
      expect(r.status, `${user}: ${describeReply(r)}`).to.be.oneOf([401, 403]);
    }
    const asAdmin = await status(path, { headers: { authorization: basicAuth('alice', pw.alice) } });
    expect(asAdmin.status, `alice with Basic: ${describeReply(asAdmin)}`).to.not.be.oneOf([401, 403]);
    expect(asAdmin.status, describeReply(asAdmin)).to.be.below(500);

    const adminToken = await token('alice', pw.alice, ['registry:admin:*']);
    expect(accessOf(adminToken)).to.deep.equal([{ type: 'registry', name: 'admin', actions: ['*'] }]);
    const withToken = await status(path, { headers: { authorization: bearer(adminToken) } });
    expect(withToken.status, `alice with token: ${describeReply(withToken)}`).to.not.be.oneOf([401, 403]);
    expect(withToken.status).to.be.below(500);

    const bobToken = await token('bob', pw.bob, ['registry:admin:*']);
    expect(accessOf(bobToken)).to.deep.equal([]);
    expect((await status(path, { headers: { authorization: bearer(bobToken) } })).status).to.be.oneOf([401, 403]);
    // alice's repository token is not an admin token.
    const repoToken = await token('alice', pw.alice, ['repository:private/app:pull']);
    expect((await status(path, { headers: { authorization: bearer(repoToken) } })).status).to.be.oneOf([401, 403]);
    // The admin's catalog works with a token too.
    const catalogToken = await token('alice', pw.alice, ['registry:catalog:*']);
    const catalog = await status(`${reg.url}/v2/_catalog`, { headers: { authorization: bearer(catalogToken) } });
    expect(catalog.status, describeReply(catalog)).to.equal(200);
  });

  it('another case or a trailing slash is no way around the rules: nothing is read, written or deleted', async function () {
    await pushTinyImage(reg.url, 'private/locked', '1', image, basicAuth('alice', pw.alice));
    const put = { method: 'PUT', headers: { 'content-type': DOCKER_MANIFEST }, body: new Uint8Array(image.manifest) };
    const tricks: Array<[string, RequestInit]> = [
      ['/v2/private/locked/tags/list/', {}],
      ['/v2/private/locked/TAGS/LIST', {}],
      ['/V2/private/locked/tags/list', {}],
      ['/v2/private/locked/manifests/1/', {}],
      ['/v2/private/locked/Manifests/1', {}],
      [`/v2/private/locked/blobs/${image.layerDigest}/`, {}],
      ['/v2/private/locked/manifests/evil/', put],
      ['/V2/private/locked/manifests/evil', put],
      ['/v2/private/locked/manifests/1/', { method: 'DELETE' }],
      ['/v2/private/locked/blobs/uploads//', { method: 'POST' }],
      ['/V2/_catalog', {}],
      ['/ADMIN/v1/jobs', {}],
      ['/Admin/v1/jobs', {}],
      ['/ADMIN/v1/gc', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' }],
    ];
    // erin may read nothing under private/; her token holds no scope at all.
    const erinToken = await token('erin', pw.erin, []);
    for (const [who, authorization] of [['anonymous', undefined], ['erin', basicAuth('erin', pw.erin)], ['erin\'s token', bearer(erinToken)]] as const) {
      for (const [path, init] of tricks) {
        const headers = { ...(init.headers as Record<string, string> | undefined), ...(authorization ? { authorization } : {}) };
        const r = await status(`${reg.url}${path}`, { ...init, headers });
        expect(r.status, `${who}: ${init.method ?? 'GET'} ${path}: ${describeReply(r)}`).to.be.oneOf([401, 403, 404]);
        expect(r.text, `${who}: ${path}`).to.not.include('"tags"');
      }
    }
    const tags = await fetch(`${reg.url}/v2/private/locked/tags/list`, { headers: { authorization: basicAuth('alice', pw.alice) } });
    expect(await tags.json()).to.deep.equal({ name: 'private/locked', tags: ['1'] });
  });

  it('publishes the signing keys as a JWKS that verifies issued tokens', async function () {
    const r = await fetch(`${reg.url}${JWKS_PATH}`);
    expect(r.status).to.equal(200);
    expect(r.headers.get('content-type')).to.match(/json/);
    const jwks = (await r.json()) as { keys: Array<{ kid?: string; kty: string; d?: string }> };
    expect(jwks.keys).to.be.an('array').with.length.greaterThan(0);
    for (const key of jwks.keys) expect(key, 'no private parts').to.not.have.property('d');
    const t = await token('bob', pw.bob, ['repository:private/app:pull']);
    const { kid } = decodeProtectedHeader(t);
    expect(jwks.keys.map((k) => k.kid)).to.include(kid);
    const { payload } = await jwtVerify(t, createLocalJWKSet(jwks as Parameters<typeof createLocalJWKSet>[0]), { audience: SERVICE, issuer: 'dify-registry' });
    expect(payload.sub).to.equal('bob');
  });

  it('limits failed logins per user and address: 429 after repeated failures, others unaffected', async function () {
    let limited: Awaited<ReturnType<typeof getToken>> | undefined;
    const statuses: number[] = [];
    for (let i = 0; i < 12 && !limited; i++) {
      const r = await getToken(reg.url, { user: 'erin', password: `wrong-${i}`, service: SERVICE });
      statuses.push(r.status);
      if (r.status === 429) limited = r;
      else expect(r.status, r.text).to.equal(401);
    }
    expect(limited, `statuses: ${statuses.join(',')}`).to.not.equal(undefined);
    expect(statuses.length, 'a few attempts are allowed before the limit').to.be.at.least(3);
    // The right password does not get through while limited, on /token nor on /v2/.
    expect((await getToken(reg.url, { user: 'erin', password: pw.erin, service: SERVICE })).status).to.equal(429);
    const v2 = await status(`${reg.url}/v2/`, { headers: { authorization: basicAuth('erin', pw.erin) } });
    expect(v2.status, describeReply(v2)).to.equal(429);
    // Another user from the same address is not affected.
    expect((await getToken(reg.url, { user: 'frank', password: pw.frank, service: SERVICE })).status).to.equal(200);
    expect((await status(`${reg.url}/v2/`, { headers: { authorization: basicAuth('frank', pw.frank) } })).status).to.equal(200);
  });

  it('writes no password, Basic header or token into its log', async function () {
    // Every request above went through the access log.
    const log = await readFile(reg.logFile, 'utf8');
    expect(log.length).to.be.greaterThan(0);
    const secrets = [
      ...Object.values(pw),
      ...Object.entries(pw).map(([user, password]) => Buffer.from(`${user}:${password}`).toString('base64')),
      ...issuedTokens,
      ...issuedTokens.map((t) => t.split('.')[2]!).filter((sig) => sig && sig.length > 20),
    ];
    for (const secret of secrets) expect(log.includes(secret), `log holds ${secret.slice(0, 24)}…`).to.equal(false);
  });
});

/** Where the registry publishes its JWKS. */
const JWKS_PATH = '/.well-known/jwks.json';

// -------------------------------------------------------------------------------------------------
describe('token auth: docker, skopeo and podman', function () {
  this.timeout(120_000);
  const pw = {
    alice: 'alice-docker-pw',
    bob: 'bob-docker-pw',
    carol: 'carol-podman-pw',
    robot: 'ci-robot-secret-6f1c2a9e4b7d8c3f0a5e1b2d9c8f7a6e',
  };
  let reg: AuthRegistry;
  let dockerd: RunningDockerd;
  let work: string;
  let image: TinyImage;
  let hp: string;
  let configJson: string;

  async function docker(args: string[], input?: string) {
    return dockerd.docker(args, { input, allowFailure: true });
  }

  async function login(user: string, password: string): Promise<void> {
    const r = await docker(['login', '--username', user, '--password-stdin', hp], password);
    expect(r.code, `docker login ${user}: ${r.stdout}${r.stderr}`).to.equal(0);
    expect(r.stdout).to.match(/Login Succeeded/);
  }

  async function logout(): Promise<void> {
    await docker(['logout', hp]);
  }

  async function removeAllImages(): Promise<void> {
    const ids = (await dockerd.docker(['images', '-aq', '--no-trunc'])).stdout.split('\n').filter(Boolean);
    if (ids.length > 0) await dockerd.docker(['rmi', '--force', ...new Set(ids)]);
  }

  /** The digest the registry serves for repo:tag, read with alice's token (she may pull private/*, public/*). */
  async function served(repo: string, tag: string, user = 'alice', password = pw.alice): Promise<string | number> {
    const t = await tokenFor(reg.url, user, password, [`repository:${repo}:pull`]);
    return manifestDigest(reg.url, repo, tag, bearer(t));
  }

  before(async function () {
    this.timeout(180_000);
    work = await tempDir('auth-clients');
    reg = await startAuthRegistry({
      config: {
        auth: {
          // No issuer.service: the service is the host of http.host.
          users: (['alice', 'bob', 'carol'] as const).map((name) => ({ name, password: bcryptHash(pw[name]) })),
          robots: [{ name: 'ci', secret: bcryptHash(pw.robot) }],
          access: [
            { repository: 'public/*', pull: ['$anonymous', '$authenticated'], push: ['alice'] },
            { repository: 'private/*', pull: ['alice', 'bob', 'carol'], push: ['alice', 'carol'] },
            { repository: 'ci/*', pull: ['robot$ci', 'alice'], push: ['robot$ci'] },
          ],
          admins: ['alice'],
        },
      },
    });
    hp = reg.hostPort;
    dockerd = await startDockerd();
    configJson = join(dockerd.dir, 'client', 'config.json');
    image = await makeTinyImage(work, 'clients');
    const seed = await tokenFor(reg.url, 'alice', pw.alice, ['repository:private/base:pull,push', 'repository:public/hello:pull,push']);
    await pushTinyImage(reg.url, 'private/base', '1', image, bearer(seed));
    await pushTinyImage(reg.url, 'public/hello', '1', image, bearer(seed));
  });

  after(async function () {
    this.timeout(120_000);
    await Promise.allSettled([dockerd?.stop(), work ? removeTree(work) : undefined]);
    await reg?.stop();
  });

  it('names the host of http.host as the service when none is configured', async function () {
    const r = await status(`${reg.url}/v2/`);
    expect(r.headers.get('www-authenticate')).to.equal(`Bearer realm="${reg.url}/token",service="${hp}"`);
  });

  it('docker login, then push and pull a private repository', async function () {
    await logout();
    await removeAllImages();
    // Without login, docker is refused.
    const denied = await docker(['pull', `${hp}/private/base:1`]);
    expect(denied.code).to.not.equal(0);
    expect(denied.stderr).to.match(REFUSED);

    await login('alice', pw.alice);
    const stored = JSON.parse(await readFile(configJson, 'utf8')) as { auths?: Record<string, { auth?: string; identitytoken?: string }> };
    expect(stored.auths?.[hp], JSON.stringify(stored)).to.not.equal(undefined);
    // docker login asks for an offline token: the refresh token is kept instead of the password, and
    // every later token comes from the refresh_token grant.
    expect(stored.auths?.[hp]?.identitytoken, JSON.stringify(stored)).to.be.a('string');

    const pull = await docker(['pull', `${hp}/private/base:1`]);
    expect(pull.code, pull.stderr).to.equal(0);
    expect(pull.stdout).to.include(`Digest: ${image.manifestDigest}`);
    expect((await dockerd.runImage(`${hp}/private/base:1`, ['cat', '/marker'])).trim()).to.equal('clients');

    await dockerd.docker(['tag', `${hp}/private/base:1`, `${hp}/private/app:1`]);
    const push = await docker(['push', `${hp}/private/app:1`]);
    expect(push.code, `${push.stdout}${push.stderr}`).to.equal(0);
    const digest = /digest: (sha256:[0-9a-f]{64})/.exec(push.stdout)?.[1];
    expect(digest, push.stdout).to.be.a('string');
    // The layer came from private/base, which alice may read: docker mounts it instead of uploading.
    expect(push.stdout).to.match(/Mounted from private\/base/);
    expect(await served('private/app', '1')).to.equal(digest);

    await removeAllImages();
    const again = await docker(['pull', `${hp}/private/app:1`]);
    expect(again.code, again.stderr).to.equal(0);
    expect(again.stdout).to.match(/Pull complete/);
    expect((await dockerd.runImage(`${hp}/private/app:1`, ['cat', '/marker'])).trim()).to.equal('clients');
    await removeAllImages();
  });

  it('a user who may pull but not push: docker push is denied and nothing is tagged', async function () {
    await logout();
    await removeAllImages();
    await login('bob', pw.bob);
    const pull = await docker(['pull', `${hp}/private/base:1`]);
    expect(pull.code, pull.stderr).to.equal(0);
    await dockerd.docker(['tag', `${hp}/private/base:1`, `${hp}/private/bob:1`]);
    const push = await docker(['push', `${hp}/private/bob:1`]);
    expect(push.code, push.stdout).to.not.equal(0);
    expect(push.stderr).to.match(REFUSED);
    expect(await served('private/bob', '1')).to.equal(404);
    const tags = await status(`${reg.url}/v2/private/bob/tags/list`, {
      headers: { authorization: bearer(await tokenFor(reg.url, 'alice', pw.alice, ['repository:private/bob:pull'])) },
    });
    expect(tags.status, describeReply(tags)).to.equal(404);
    // Pushing an existing repository is refused too.
    await dockerd.docker(['tag', `${hp}/private/base:1`, `${hp}/private/base:bob`]);
    const overwrite = await docker(['push', `${hp}/private/base:bob`]);
    expect(overwrite.code).to.not.equal(0);
    expect(overwrite.stderr).to.match(REFUSED);
    expect(await served('private/base', 'bob')).to.equal(404);
    await logout();
    await removeAllImages();
  });

  it('anonymous docker pull of a public repository works without login; private stays closed', async function () {
    await logout();
    await removeAllImages();
    const stored = JSON.parse(await readFile(configJson, 'utf8')) as { auths?: Record<string, unknown> };
    expect(stored.auths?.[hp], 'logged out').to.equal(undefined);

    const pull = await docker(['pull', `${hp}/public/hello:1`]);
    expect(pull.code, pull.stderr).to.equal(0);
    expect(pull.stdout).to.include(`Digest: ${image.manifestDigest}`);
    expect((await dockerd.runImage(`${hp}/public/hello:1`, ['cat', '/marker'])).trim()).to.equal('clients');

    const push = await docker(['push', `${hp}/public/hello:1`]);
    expect(push.code).to.not.equal(0);
    expect(push.stderr).to.match(REFUSED);
    await dockerd.docker(['tag', `${hp}/public/hello:1`, `${hp}/public/hello:anon`]);
    expect((await docker(['push', `${hp}/public/hello:anon`])).code).to.not.equal(0);
    expect(await served('public/hello', 'anon')).to.equal(404);

    const priv = await docker(['pull', `${hp}/private/base:1`]);
    expect(priv.code).to.not.equal(0);
    expect(priv.stderr).to.match(REFUSED);
    await removeAllImages();
  });

  it('a robot account logs in with its secret and pushes', async function () {
    await logout();
    await removeAllImages();
    await login('robot$ci', pw.robot);
    const loaded = await docker(['import', '--change', 'ENV PATH=/bin', '--change', 'CMD ["sh"]', image.tarFile, `${hp}/ci/app:1`]);
    expect(loaded.code, loaded.stderr).to.equal(0);
    const push = await docker(['push', `${hp}/ci/app:1`]);
    expect(push.code, `${push.stdout}${push.stderr}`).to.equal(0);
    const digest = /digest: (sha256:[0-9a-f]{64})/.exec(push.stdout)?.[1];
    expect(await served('ci/app', '1')).to.equal(digest);
    // The robot has no rights on private/*.
    const priv = await docker(['pull', `${hp}/private/base:1`]);
    expect(priv.code).to.not.equal(0);
    expect(priv.stderr).to.match(REFUSED);
    const wrong = await docker(['login', '--username', 'robot$ci', '--password-stdin', hp], 'not-the-secret');
    expect(wrong.code).to.not.equal(0);
    await logout();
    await removeAllImages();
  });

  it('skopeo copy with --src-creds and --dest-creds', async function () {
    const skopeo: ContainerClient = await startSkopeo({ insecureRegistries: [hp] });
    try {
      await skopeo.run(['copy', '--preserve-digests', '--src-tls-verify=false', '--dest-tls-verify=false', '--src-creds', `bob:${pw.bob}`, '--dest-creds', `carol:${pw.carol}`,
        `docker://${hp}/private/base:1`, `docker://${hp}/private/skopeo:1`]);
      expect(await served('private/skopeo', '1')).to.equal(image.manifestDigest);

      const inspect = await skopeo.run(['inspect', '--tls-verify=false', '--raw', '--creds', `bob:${pw.bob}`, `docker://${hp}/private/skopeo:1`]);
      expect(createHash('sha256').update(inspect.stdout).digest('hex')).to.equal(image.manifestDigest.slice(7));
      // Anonymous skopeo reads a public repository.
      const anon = await skopeo.run(['inspect', '--tls-verify=false', '--raw', `docker://${hp}/public/hello:1`]);
      expect(JSON.parse(anon.stdout)).to.have.property('schemaVersion', 2);

      const denied = await skopeo.run(['copy', '--src-tls-verify=false', '--dest-tls-verify=false', '--src-creds', `bob:${pw.bob}`, '--dest-creds', `bob:${pw.bob}`,
        `docker://${hp}/private/base:1`, `docker://${hp}/private/skopeo-bob:1`], { allowFailure: true });
      expect(denied.code).to.not.equal(0);
      expect(denied.stderr).to.match(REFUSED);
      expect(await served('private/skopeo-bob', '1')).to.equal(404);

      const wrong = await skopeo.run(['inspect', '--tls-verify=false', '--raw', '--creds', 'bob:wrong', `docker://${hp}/private/base:1`], { allowFailure: true });
      expect(wrong.code).to.not.equal(0);
      expect(wrong.stderr).to.match(/unauthorized|authentication required|invalid username\/password/i);
    } finally {
      await skopeo.stop();
    }
  });

  it('podman login, push and pull', async function () {
    const podman = await startPodman({ insecureRegistries: [hp] });
    try {
      const loggedIn = await podman.run(['login', '--username', 'carol', '--password-stdin', hp], { input: pw.carol });
      expect(loggedIn.stdout).to.match(/Login Succeeded/);
      await podman.run(['pull', `${hp}/private/base:1`]);
      expect((await podman.run(['image', 'inspect', '--format', '{{.Digest}}', `${hp}/private/base:1`])).stdout.trim())
        .to.equal(image.manifestDigest);
      await podman.run(['tag', `${hp}/private/base:1`, `${hp}/private/podman:1`]);
      const digestFile = join(podman.dir, 'digest');
      await podman.run(['push', '--digestfile', digestFile, `${hp}/private/podman:1`]);
      const digest = (await readFile(digestFile, 'utf8')).trim();
      expect(await served('private/podman', '1')).to.equal(digest);

      await podman.run(['rmi', '--all', '--force']);
      await podman.run(['pull', `${hp}/private/podman:1`]);
      expect((await podman.run(['image', 'inspect', '--format', '{{.Digest}}', `${hp}/private/podman:1`])).stdout.trim()).to.equal(digest);

      await podman.run(['logout', hp]);
      const anon = await podman.run(['pull', `${hp}/private/podman:1`], { allowFailure: true });
      // Already present locally: pull checks the registry anyway and is refused.
      expect(anon.code).to.not.equal(0);
      expect(anon.stderr).to.match(REFUSED);
      const wrong = await podman.run(['login', '--username', 'carol', '--password-stdin', hp], { input: 'wrong', allowFailure: true });
      expect(wrong.code).to.not.equal(0);
    } finally {
      await podman.stop();
    }
  });
});

// -------------------------------------------------------------------------------------------------
describe('token auth: CNCF Distribution 2.8.2 trusts our tokens', function () {
  this.timeout(120_000);
  const SERVICE = 'distribution-interop';
  const ISSUER = 'dify-registry-interop';
  const pw = { alice: 'alice-interop-pw', bob: 'bob-interop-pw' };
  let reg: AuthRegistry;
  let dist: TokenDistribution;
  let dockerd: RunningDockerd;
  let work: string;
  let image: TinyImage;
  let certificate: string;
  let dhp: string;

  async function docker(args: string[], input?: string) {
    return dockerd.docker(args, { input, allowFailure: true });
  }

  async function distToken(user: string, password: string, scopes: string[]): Promise<string> {
    return tokenFor(reg.url, user, password, scopes, SERVICE);
  }

  before(async function () {
    this.timeout(180_000);
    work = await tempDir('auth-interop');
    const keys = await makeEcCertificate(join(work, 'keys'), 'interop-issuer');
    certificate = keys.certificatePem;
    reg = await startAuthRegistry({
      config: {
        auth: {
          issuer: { service: SERVICE, issuer: ISSUER, keys: [{ key: keys.key, certificate: keys.certificate }] },
          users: (['alice', 'bob'] as const).map((name) => ({ name, password: bcryptHash(pw[name]) })),
          access: [
            { repository: 'allowed/*', pull: ['alice', 'bob'], push: ['alice'] },
            { repository: 'readonly/*', pull: ['alice'] },
          ],
        },
      },
    });
    dist = await startTokenDistribution({ realm: `${reg.url}/token`, service: SERVICE, issuer: ISSUER, rootcertbundle: keys.certificate });
    dhp = dist.hostPort;
    dockerd = await startDockerd();
    image = await makeTinyImage(work, 'interop');
    const imported = await docker(['import', '--change', 'ENV PATH=/bin', '--change', 'CMD ["sh"]', image.tarFile, `${dhp}/allowed/app:1`]);
    expect(imported.code, imported.stderr).to.equal(0);
  });

  after(async function () {
    this.timeout(120_000);
    await Promise.allSettled([dockerd?.stop(), dist?.stop(), work ? removeTree(work) : undefined]);
    await reg?.stop();
  });

  it('Distribution challenges with our realm and accepts a token we issued (kid of our certificate, x5c)', async function () {
    const r = await status(`${dist.url}/v2/`);
    expect(r.status).to.equal(401);
    const challenge = parseChallenge(r.headers.get('www-authenticate'));
    expect(challenge.params).to.deep.include({ realm: `${reg.url}/token`, service: SERVICE });

    const t = await distToken('alice', pw.alice, ['repository:allowed/app:pull,push']);
    const header = decodeProtectedHeader(t);
    expect(header.kid).to.equal(libtrustKeyId(new X509Certificate(certificate).publicKey));
    expect(header.x5c?.[0]).to.equal(new X509Certificate(certificate).raw.toString('base64'));
    expect(decodeJwt(t)).to.deep.include({ iss: ISSUER, aud: SERVICE, sub: 'alice' });
    const ok = await status(`${dist.url}/v2/`, { headers: { authorization: bearer(t) } });
    expect(ok.status, `Distribution refused our token: ${describeReply(ok)}\n${await readFile(dist.logFile, 'utf8').then((l) => l.slice(-1500))}`).to.equal(200);
    const tags = await status(`${dist.url}/v2/allowed/app/tags/list`, { headers: { authorization: bearer(t) } });
    // The repository does not exist yet: NAME_UNKNOWN, i.e. the token got past authorization.
    expect(tags.status, describeReply(tags)).to.equal(404);
  });

  it('docker login to Distribution (credentials checked by us), then push and pull', async function () {
    const loggedIn = await docker(['login', '--username', 'alice', '--password-stdin', dhp], pw.alice);
    expect(loggedIn.code, `${loggedIn.stdout}${loggedIn.stderr}`).to.equal(0);
    const wrong = await docker(['login', '--username', 'alice', '--password-stdin', dhp], 'wrong');
    expect(wrong.code).to.not.equal(0);
    await docker(['login', '--username', 'alice', '--password-stdin', dhp], pw.alice);

    const push = await docker(['push', `${dhp}/allowed/app:1`]);
    expect(push.code, `${push.stdout}${push.stderr}`).to.equal(0);
    const digest = /digest: (sha256:[0-9a-f]{64})/.exec(push.stdout)?.[1];
    expect(digest, push.stdout).to.be.a('string');
    const t = await distToken('alice', pw.alice, ['repository:allowed/app:pull']);
    expect(await manifestDigest(dist.url, 'allowed/app', '1', bearer(t))).to.equal(digest);
    // And Distribution still refuses the same request without our token.
    expect(await manifestDigest(dist.url, 'allowed/app', '1')).to.equal(401);

    await dockerd.rmi(`${dhp}/allowed/app:1`);
    const pull = await docker(['pull', `${dhp}/allowed/app:1`]);
    expect(pull.code, pull.stderr).to.equal(0);
    expect(pull.stdout).to.include(`Digest: ${digest}`);
    expect((await dockerd.runImage(`${dhp}/allowed/app:1`, ['cat', '/marker'])).trim()).to.equal('interop');
  });

  it('a push outside the granted scope is refused by Distribution', async function () {
    await docker(['login', '--username', 'alice', '--password-stdin', dhp], pw.alice);
    await dockerd.docker(['tag', `${dhp}/allowed/app:1`, `${dhp}/readonly/app:1`]);
    const push = await docker(['push', `${dhp}/readonly/app:1`]);
    expect(push.code, push.stdout).to.not.equal(0);
    expect(push.stderr).to.match(REFUSED);
    const t = await distToken('alice', pw.alice, ['repository:readonly/app:pull']);
    expect(accessOf(t)).to.deep.equal([{ type: 'repository', name: 'readonly/app', actions: ['pull'] }]);
    expect(await manifestDigest(dist.url, 'readonly/app', '1', bearer(t))).to.equal(404);

    // bob may pull allowed/* but push nothing.
    await docker(['logout', dhp]);
    const bob = await docker(['login', '--username', 'bob', '--password-stdin', dhp], pw.bob);
    expect(bob.code, bob.stderr).to.equal(0);
    await dockerd.rmi(`${dhp}/allowed/app:1`);
    const pull = await docker(['pull', `${dhp}/allowed/app:1`]);
    expect(pull.code, pull.stderr).to.equal(0);
    await dockerd.docker(['tag', `${dhp}/allowed/app:1`, `${dhp}/allowed/bob:1`]);
    const bobPush = await docker(['push', `${dhp}/allowed/bob:1`]);
    expect(bobPush.code).to.not.equal(0);
    expect(bobPush.stderr).to.match(REFUSED);
    expect(await manifestDigest(dist.url, 'allowed/bob', '1', bearer(await distToken('alice', pw.alice, ['repository:allowed/bob:pull'])))).to.equal(404);
  });
});

// -------------------------------------------------------------------------------------------------
describe('token auth: signing keys, rotation, lifetimes, external issuers', function () {
  this.timeout(60_000);
  const SERVICE = 'keys-test';
  const ISSUER = 'keys-issuer';
  const pw = { alice: 'alice-keys-pw' };
  let work: string;
  let k1: KeyPairFiles;
  let k2: KeyPairFiles;
  const running: AuthRegistry[] = [];

  async function start(auth: Record<string, unknown>, rootDir?: string): Promise<AuthRegistry> {
    const reg = await startAuthRegistry({ config: { auth }, rootDir });
    running.push(reg);
    return reg;
  }

  async function stop(reg: AuthRegistry): Promise<void> {
    await reg.stop();
    running.splice(running.indexOf(reg), 1);
  }

  const users = () => [{ name: 'alice', password: bcryptHash(pw.alice) }];

  /** Signs claims with one of our key files, as the registry would: ES256, libtrust kid, x5c. */
  async function forge(keys: KeyPairFiles, claims: Record<string, unknown>, header: Record<string, unknown> = {}): Promise<string> {
    const cert = new X509Certificate(keys.certificatePem);
    return new SignJWT(claims)
      .setProtectedHeader({ alg: 'ES256', typ: 'JWT', kid: libtrustKeyId(cert.publicKey), x5c: [cert.raw.toString('base64')], ...header })
      .sign(createPrivateKey(await readFile(keys.key, 'utf8')));
  }

  function claims(overrides: Record<string, unknown> = {}): Record<string, unknown> {
    const now = Math.floor(Date.now() / 1000);
    return {
      iss: ISSUER, aud: SERVICE, sub: 'alice', iat: now, nbf: now - 1, exp: now + 60, jti: randomHex(),
      access: [{ type: 'repository', name: 'forge/app', actions: ['pull', 'push'] }],
      ...overrides,
    };
  }

  /** 401 (token refused) or not, on a request that needs pull and push on forge/app. */
  async function pushStatus(reg: AuthRegistry, token: string, repo = 'forge/app'): Promise<{ status: number; headers: Headers; text: string }> {
    return status(`${reg.url}/v2/${repo}/blobs/uploads/`, { method: 'POST', headers: { authorization: bearer(token) } });
  }

  before(async function () {
    work = await tempDir('auth-keys');
    k1 = await makeEcCertificate(join(work, 'k1'), 'key-one');
    k2 = await makeEcCertificate(join(work, 'k2'), 'key-two');
  });

  after(async function () {
    await Promise.allSettled(running.map((r) => r.stop()));
    if (work) await removeTree(work);
  });

  it('accepts tokens signed with its key file; refuses bad claims, algorithms and keys with 401', async function () {
    const reg = await start({ issuer: { service: SERVICE, issuer: ISSUER, keys: [{ key: k1.key, certificate: k1.certificate }] }, users: users() });
    // The forging method is right: a well-made token is accepted (202: an upload session).
    const good = await pushStatus(reg, await forge(k1, claims()));
    expect(good.status, describeReply(good)).to.equal(202);
    const issued = await tokenFor(reg.url, 'alice', pw.alice, ['repository:forge/app:pull,push']);
    expect(decodeProtectedHeader(issued).kid).to.equal(certificatePublicKeyId(k1.certificatePem));
    expect((await pushStatus(reg, issued)).status).to.equal(202);

    const now = Math.floor(Date.now() / 1000);
    const publicPem = new X509Certificate(k1.certificatePem).publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const bad: Array<[string, string]> = [
      ['expired', await forge(k1, claims({ iat: now - 120, nbf: now - 120, exp: now - 60 }))],
      ['not yet valid', await forge(k1, claims({ nbf: now + 120, exp: now + 300 }))],
      ['wrong audience', await forge(k1, claims({ aud: 'another-service' }))],
      ['wrong issuer', await forge(k1, claims({ iss: 'someone-else' }))],
      ['signed by a key it does not have, with its kid', await forge(k2, claims(), { kid: libtrustKeyId(new X509Certificate(k1.certificatePem).publicKey) })],
      ['signed by a key it does not have', await forge(k2, claims())],
      ['HS256 with the public key as secret', await new SignJWT(claims())
        .setProtectedHeader({ alg: 'HS256', kid: libtrustKeyId(new X509Certificate(k1.certificatePem).publicKey) })
        .sign(new TextEncoder().encode(publicPem))],
      ['alg none', new UnsecuredJWT(claims()).encode()],
      ['a refresh token', await forge(k1, claims({ typ: 'refresh', access: undefined }))],
    ];
    for (const [what, token] of bad) {
      const r = await pushStatus(reg, token);
      expect(r.status, `${what}: ${describeReply(r)}`).to.equal(401);
      expect(r.headers.get('www-authenticate'), what).to.match(/^Bearer realm="[^"]+",service="keys-test"/);
    }
    // Without rules, every authenticated user may do everything; anonymous users nothing; no admins.
    const all = await tokenFor(reg.url, 'alice', pw.alice, ['repository:any/thing:pull,push,delete', 'registry:catalog:*']);
    expect(accessOf(all)).to.deep.equal([{ type: 'repository', name: 'any/thing', actions: ['delete', 'pull', 'push'] }]);
    expect(accessOf(await tokenFor(reg.url, undefined, undefined, ['repository:any/thing:pull']))).to.deep.equal([]);
    await stop(reg);
  });

  it('rotates keys: the first signs, all listed verify; a dropped key is no longer accepted', async function () {
    const root = join(work, 'rotation-root');
    const one = await start({ issuer: { service: SERVICE, issuer: ISSUER, keys: [{ key: k1.key, certificate: k1.certificate }] }, users: users() }, root);
    const old = await tokenFor(one.url, 'alice', pw.alice, ['repository:forge/app:pull,push']);
    await stop(one);

    const both = await start({ issuer: { service: SERVICE, issuer: ISSUER, keys: [
      { key: k2.key, certificate: k2.certificate }, { key: k1.key, certificate: k1.certificate },
    ] }, users: users() }, root);
    expect((await pushStatus(both, old)).status, 'a token of the previous key').to.equal(202);
    const fresh = await tokenFor(both.url, 'alice', pw.alice, ['repository:forge/app:pull,push']);
    expect(decodeProtectedHeader(fresh).kid).to.equal(certificatePublicKeyId(k2.certificatePem));
    expect((await pushStatus(both, fresh)).status).to.equal(202);
    const jwks = (await (await fetch(`${both.url}${JWKS_PATH}`)).json()) as { keys: Array<{ kid: string }> };
    expect(jwks.keys.map((k) => k.kid).sort()).to.deep.equal([certificatePublicKeyId(k1.certificatePem), certificatePublicKeyId(k2.certificatePem)].sort());
    await stop(both);

    const two = await start({ issuer: { service: SERVICE, issuer: ISSUER, keys: [{ key: k2.key, certificate: k2.certificate }] }, users: users() }, root);
    expect((await pushStatus(two, old)).status, 'a token of the dropped key').to.equal(401);
    expect((await pushStatus(two, fresh)).status).to.equal(202);
    await stop(two);
  });

  it('generates a key at first start and keeps it in storage: tokens survive a restart (RS256 too)', async function () {
    for (const algorithm of ['ES256', 'RS256'] as const) {
      const root = join(work, `generated-${algorithm}`);
      const auth = { issuer: { service: SERVICE, issuer: ISSUER, algorithm }, users: users() };
      const first = await start(auth, root);
      const token = await tokenFor(first.url, 'alice', pw.alice, ['repository:forge/app:pull,push']);
      const header = decodeProtectedHeader(token);
      expect(header.alg).to.equal(algorithm);
      expect(header.kid).to.equal(certificatePublicKeyId(x5cToPem(header.x5c![0]!)));
      await jwtVerify(token, await importX509(x5cToPem(header.x5c![0]!), algorithm), { audience: SERVICE, issuer: ISSUER });
      await stop(first);

      const second = await start(auth, root);
      expect((await pushStatus(second, token)).status, `${algorithm}: a token from before the restart`).to.equal(202);
      const again = await tokenFor(second.url, 'alice', pw.alice, ['repository:forge/app:pull']);
      expect(decodeProtectedHeader(again).kid, algorithm).to.equal(header.kid);
      await stop(second);
    }
  });

  it('a refresh token survives a restart, but not a change of its user\'s password', async function () {
    const root = join(work, 'password-change');
    const refreshOf = async (reg: AuthRegistry, password: string) => {
      const r = await postToken(reg.url, { grant_type: 'password', username: 'alice', password, service: SERVICE, client_id: 'auth-test', access_type: 'offline' });
      expect(r.status, r.text).to.equal(200);
      return String(r.body.refresh_token);
    };
    const refreshed = (reg: AuthRegistry, token: string) =>
      postToken(reg.url, { grant_type: 'refresh_token', refresh_token: token, service: SERVICE, client_id: 'auth-test', scope: 'repository:forge/app:pull,push' });
    const withHash = (hash: string) => ({ issuer: { service: SERVICE, issuer: ISSUER }, users: [{ name: 'alice', password: hash }] });
    const hash = bcryptHash(pw.alice);

    const first = await start(withHash(hash), root);
    const old = await refreshOf(first, pw.alice);
    await stop(first);
    const restarted = await start(withHash(hash), root);
    const kept = await refreshed(restarted, old);
    expect(kept.status, `after a restart: ${kept.text}`).to.equal(200);
    await stop(restarted);

    const changed = await start(withHash(bcryptHash('a-new-password')), root);
    const refused = await refreshed(changed, old);
    expect(refused.status, refused.text).to.equal(401);
    expect(JSON.parse(refused.text).errors[0].code).to.equal('UNAUTHORIZED');
    const ok = await refreshed(changed, await refreshOf(changed, 'a-new-password'));
    expect(ok.status, ok.text).to.equal(200);
    expect((await pushStatus(changed, String(ok.body.access_token))).status).to.equal(202);
    await stop(changed);
  });

  it('several worker processes sign with one generated key (created once, whoever starts first)', async function () {
    const reg = await startAuthRegistry({ config: { http: { workers: 3 }, auth: { issuer: { service: SERVICE, issuer: ISSUER }, users: users() } } });
    running.push(reg);
    const q = new URLSearchParams({ service: SERVICE, scope: 'repository:forge/app:pull,push' });
    const kids = new Set<string>();
    const tokens: string[] = [];
    for (let i = 0; i < 30; i++) {
      // A new connection each time, so the cluster spreads them over the workers.
      const body = await new Promise<string>((resolve, reject) => {
        http.get(`${reg.url}/token?${q}`, { agent: false, headers: { authorization: basicAuth('alice', pw.alice) } }, (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => { text += d; });
          res.on('end', () => (res.statusCode === 200 ? resolve(text) : reject(new Error(`${res.statusCode} ${text}`))));
        }).on('error', reject);
      });
      const token = (JSON.parse(body) as { token: string }).token;
      tokens.push(token);
      kids.add(String(decodeProtectedHeader(token).kid));
    }
    const pids = new Set((await readFile(reg.logFile, 'utf8')).split('\n')
      .filter((line) => line.includes('"route":"/token"')).map((line) => (JSON.parse(line) as { pid?: number }).pid));
    expect(pids.size, 'the requests reached more than one worker').to.be.greaterThan(1);
    expect([...kids], 'every worker signs with the same key').to.have.length(1);
    for (const token of tokens.slice(0, 10)) expect((await pushStatus(reg, token)).status).to.equal(202);
    await stop(reg);
  });

  it('REGISTRY_AUTH_HTPASSWD_PATH alone turns auth on, as in Distribution', async function () {
    const file = join(work, 'env-htpasswd');
    await writeFile(file, `${htpasswdLine('alice', pw.alice)}\n`);
    const reg = await startAuthRegistry({ config: {}, env: { REGISTRY_AUTH_HTPASSWD_PATH: file } });
    running.push(reg);
    const anonymous = await status(`${reg.url}/v2/`);
    expect(anonymous.status, describeReply(anonymous)).to.equal(401);
    expect(anonymous.headers.get('www-authenticate')).to.equal(`Bearer realm="${reg.url}/token",service="${reg.hostPort}"`);
    expect((await status(`${reg.url}/v2/`, { headers: { authorization: basicAuth('alice', pw.alice) } })).status).to.equal(200);
    expect((await status(`${reg.url}/v2/`, { headers: { authorization: basicAuth('alice', 'wrong') } })).status).to.equal(401);
    // Users but no rules: alice may push anything, anonymous users read nothing.
    const t = await tokenFor(reg.url, 'alice', pw.alice, ['repository:env/app:pull,push']);
    expect((await pushStatus(reg, t, 'env/app')).status).to.equal(202);
    expect((await status(`${reg.url}/v2/env/app/tags/list`)).status).to.equal(401);
    await stop(reg);
  });

  it('tokens expire after auth.issuer.expiration', async function () {
    const reg = await start({ issuer: { service: SERVICE, issuer: ISSUER, expiration: '2s' }, users: users() });
    const r = await getToken(reg.url, { user: 'alice', password: pw.alice, scopes: ['repository:forge/app:pull,push'] });
    expect(r.body.expires_in).to.equal(2);
    const token = String(r.body.token);
    expect((await pushStatus(reg, token)).status).to.equal(202);
    await new Promise((resolve) => setTimeout(resolve, 3_200));
    const expired = await pushStatus(reg, token);
    expect(expired.status, describeReply(expired)).to.equal(401);
    expect(expired.headers.get('www-authenticate')).to.match(/error="invalid_token"/);
    await stop(reg);
  });

  it('accepts tokens of an external issuer (auth.token with rootcertbundle or jwks) and sends clients to its realm', async function () {
    // The issuer: one of our registries with a key file.
    const issuer = await start({
      issuer: { service: SERVICE, issuer: ISSUER, keys: [{ key: k1.key, certificate: k1.certificate }] },
      users: users(),
      access: [{ repository: 'shared/*', pull: ['alice'], push: ['alice'] }, { repository: 'readonly/*', pull: ['alice'] }],
    });
    const external = { realm: `${issuer.url}/token`, service: SERVICE, issuer: ISSUER };
    for (const [what, token] of [
      ['rootcertbundle', { ...external, rootcertbundle: k1.certificate }],
      ['jwks', { ...external, jwks: `${issuer.url}${JWKS_PATH}` }],
    ] as const) {
      const resource = await start({ token });

      const t = await tokenFor(issuer.url, 'alice', pw.alice, ['repository:shared/app:pull,push', 'repository:readonly/app:pull,push'], SERVICE);
      await pushTinyImage(resource.url, 'shared/app', '1', await makeTinyImage(join(work, `ext-${what}`), what), bearer(t));
      expect(typeof (await manifestDigest(resource.url, 'shared/app', '1', bearer(t))), what).to.equal('string');
      const denied = await pushStatus(resource, t, 'readonly/app');
      expect(denied.status, `${what}: ${describeReply(denied)}`).to.equal(401);
      expect(denied.headers.get('www-authenticate')).to.match(/error="insufficient_scope"/);
      // Tokens signed by another key are refused.
      expect((await pushStatus(resource, await forge(k2, claims({ access: [{ type: 'repository', name: 'shared/app', actions: ['pull', 'push'] }] })), 'shared/app')).status, what).to.equal(401);
      // Clients follow the challenge: it must name the issuer's realm and service (as Distribution's does).
      const challenge = await status(`${resource.url}/v2/shared/app/blobs/uploads/`, { method: 'POST' });
      expect(challenge.status).to.equal(401);
      expect(challenge.headers.get('www-authenticate'), `${what}: clients must be sent to the issuer`)
        .to.equal(`Bearer realm="${issuer.url}/token",service="${SERVICE}",scope="repository:shared/app:pull,push"`);
      await stop(resource);
    }
    await stop(issuer);
  });
});
