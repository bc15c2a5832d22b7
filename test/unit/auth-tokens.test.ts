import { execFileSync } from 'node:child_process';
import { createHash, createPrivateKey, generateKeyPairSync, sign, X509Certificate, type KeyObject } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { expect } from 'chai';
import {
  decodeJwt,
  decodeProtectedHeader,
  exportJWK,
  exportSPKI,
  generateKeyPair,
  jwtVerify,
  SignJWT,
  UnsecuredJWT,
  type JWTHeaderParameters,
  type JWTPayload,
} from 'jose';
import { generateKeyAndCertificate, loadSigningKeys, type SigningKeys } from '../../server/auth/keys.js';
import type { ResourceScope } from '../../server/auth/scope.js';
import { selfSignedCertificate } from '../../server/auth/self-signed.js';
import { TokenError, TokenService, type ExternalIssuer, type TokenSettings } from '../../server/auth/tokens.js';
import { loadConfig, type Config } from '../../server/config.js';
import { FilesystemDriver } from '../../storage-drivers/filesystem.js';
import { tempDir } from './support.js';

const SERVICE = 'registry.test:5000';
const ISSUER = 'dify-registry';
const EXT_ISSUER = 'auth.example.com';
const SETTINGS: TokenSettings = { issuer: ISSUER, expirationMs: 300_000, refreshExpirationMs: 3_600_000 };
const ACCESS: ResourceScope[] = [
  { type: 'repository', name: 'ddn-k8s/docker.io/langgenius/dify-api', actions: ['pull', 'push'] },
  { type: 'registry', name: 'catalog', actions: ['*'] },
];
const baseIssuer = loadConfig(undefined, {}, () => undefined).auth.issuer;
const issuerConfig = (extra: Partial<Config['auth']['issuer']> = {}) => ({ ...baseIssuer, ...extra });

/** libtrust kid, computed here independently of the code under test. */
function kidOf(publicKey: KeyObject): string {
  const digest = createHash('sha256').update(publicKey.export({ type: 'spki', format: 'der' })).digest();
  const bits = [...digest.subarray(0, 30)].map((byte) => byte.toString(2).padStart(8, '0')).join('');
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let text = '';
  for (let i = 0; i < bits.length; i += 5) text += alphabet[parseInt(bits.slice(i, i + 5), 2)];
  return text.match(/.{4}/g)!.join(':');
}

let rsaPair: { privateKey: KeyObject; publicKey: KeyObject } | undefined;
const rsaKey = () => (rsaPair ??= generateKeyPairSync('rsa', { modulusLength: 2048 }));

const b64url = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
const now = () => Math.floor(Date.now() / 1000);
const spki = (key: KeyObject) => key.export({ type: 'spki', format: 'der' });

/** Claims as our issuer writes them, valid for five minutes; change one thing to make a bad token. */
function claims(payload: JWTPayload = { access: ACCESS }, issuer = ISSUER): SignJWT {
  const t = now();
  return new SignJWT(payload).setIssuer(issuer).setAudience(SERVICE).setSubject('alice').setIssuedAt(t).setNotBefore(t - 1).setExpirationTime(t + 300);
}

/** An ES256 JWS made by hand, so headers and claims jose would refuse to write can be tested. */
function signRaw(header: Record<string, unknown>, payload: Record<string, unknown>, key: KeyObject): string {
  const input = `${b64url(header)}.${b64url(payload)}`;
  return `${input}.${sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`;
}

/** Our claims as plain JSON, valid for five minutes. */
function rawClaims(extra: Record<string, unknown> = {}): Record<string, unknown> {
  const t = now();
  return { iss: ISSUER, aud: SERVICE, sub: 'alice', iat: t, nbf: t - 1, exp: t + 300, access: ACCESS, ...extra };
}

async function expectTokenError(promise: Promise<unknown>): Promise<void> {
  const outcome = await promise.then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
  );
  if ('value' in outcome) expect.fail(`expected a TokenError, but the token was accepted: ${JSON.stringify(outcome.value)}`);
  expect(outcome.error, String(outcome.error)).to.be.instanceOf(TokenError);
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: 'ignore' });
}

function hasOpenssl(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

describe('auth: TokenService', function () {
  this.timeout(10_000);
  let cleanup: () => Promise<void>;
  let dir: string;
  let keys: SigningKeys;
  let tokens: TokenService;
  let ownHeader: () => JWTHeaderParameters;

  before(async () => {
    const temp = await tempDir('auth-tokens');
    cleanup = temp.cleanup;
    dir = temp.path;
    keys = await loadSigningKeys(issuerConfig(), new FilesystemDriver({ rootdirectory: join(dir, 'store') }));
    tokens = new TokenService(keys, SETTINGS);
    ownHeader = () => ({ alg: 'ES256', typ: 'JWT', kid: keys.current.kid, x5c: [keys.current.certificate.raw.toString('base64')] });
  });
  after(() => cleanup());

  describe('issue and verify', () => {
    it('round-trips subject and the exact access claim', async () => {
      const issued = await tokens.issue('alice', SERVICE, ACCESS);
      expect(await tokens.verify(issued.token, SERVICE)).to.deep.equal({ subject: 'alice', access: ACCESS });
    });

    it('writes the claims Docker token auth needs: single-string aud, iss, sub, exp, nbf, iat, jti, access', async () => {
      const before = now();
      const issued = await tokens.issue('alice', SERVICE, ACCESS);
      const payload = decodeJwt(issued.token);
      expect(payload.aud).to.equal(SERVICE);
      expect(payload.iss).to.equal(ISSUER);
      expect(payload.sub).to.equal('alice');
      expect(payload.access).to.deep.equal(ACCESS);
      expect(payload.iat).to.be.within(before, now());
      expect(payload.exp! - payload.iat!).to.equal(300);
      expect(payload.nbf).to.be.at.most(payload.iat!);
      expect(payload.jti).to.be.a('string').with.length.above(0);
      expect(issued.expiresIn).to.equal(300);
      expect(Date.parse(issued.issuedAt) / 1000).to.equal(payload.iat);
      expect(issued.issuedAt).to.match(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
      const second = await tokens.issue('alice', SERVICE, ACCESS);
      expect(decodeJwt(second.token).jti).to.not.equal(payload.jti);
    });

    it('names the key in the header: libtrust kid and an x5c certificate holding the signing key', async () => {
      const { token } = await tokens.issue('alice', SERVICE, ACCESS);
      const header = decodeProtectedHeader(token);
      expect(header.alg).to.equal('ES256');
      expect(header.typ).to.equal('JWT');
      expect(header.kid).to.equal(keys.current.kid);
      expect(header.kid).to.equal(kidOf(keys.current.publicKey));
      expect(header.x5c).to.be.an('array').with.length(1);
      const cert = new X509Certificate(Buffer.from(header.x5c![0]!, 'base64'));
      expect(spki(cert.publicKey).equals(spki(keys.current.publicKey))).to.equal(true);
      expect(kidOf(cert.publicKey)).to.equal(header.kid);
      // A resource server holding only the certificate verifies the token.
      const { payload } = await jwtVerify(token, cert.publicKey, { audience: SERVICE, issuer: ISSUER });
      expect(payload.access).to.deep.equal(ACCESS);
    });

    it('issues anonymous tokens (empty subject) and tokens granting nothing', async () => {
      const { token } = await tokens.issue('', SERVICE, []);
      expect(await tokens.verify(token, SERVICE)).to.deep.equal({ subject: '', access: [] });
    });

    it('issues tokens with a given lifetime, at least one second', async () => {
      const long = await tokens.issue('robot$builder', SERVICE, ACCESS, 3_600_000);
      expect(long.expiresIn).to.equal(3600);
      const payload = decodeJwt(long.token);
      expect(payload.exp! - payload.iat!).to.equal(3600);
      expect((await tokens.issue('x', SERVICE, [], 10)).expiresIn).to.equal(1);
    });

    it('keeps only well-formed entries of the access claim', async () => {
      const token = await claims({ access: [ACCESS[0], { type: 'evil', name: 'x', actions: ['pull'] }, 5, null, 'repository:a:pull', { type: 'repository', name: 'b', actions: [1] }] })
        .setProtectedHeader(ownHeader())
        .sign(keys.current.privateKey);
      expect((await tokens.verify(token, SERVICE)).access).to.deep.equal([ACCESS[0]]);
    });

    it('accepts tokens crafted like ours, with jose and by hand (the controls for the bad tokens below)', async () => {
      const token = await claims().setProtectedHeader(ownHeader()).sign(keys.current.privateKey);
      expect(await tokens.verify(token, SERVICE)).to.deep.equal({ subject: 'alice', access: ACCESS });
      const raw = signRaw(ownHeader(), rawClaims(), keys.current.privateKey);
      expect(await tokens.verify(raw, SERVICE)).to.deep.equal({ subject: 'alice', access: ACCESS });
    });

    it('signs and verifies RS256 tokens with an RSA key', async () => {
      const rsa = await loadSigningKeys(issuerConfig({ algorithm: 'RS256' }), new FilesystemDriver({ rootdirectory: join(dir, 'rsa') }));
      const service = new TokenService(rsa, SETTINGS);
      const { token } = await service.issue('alice', SERVICE, ACCESS);
      expect(decodeProtectedHeader(token).alg).to.equal('RS256');
      expect(decodeProtectedHeader(token).kid).to.equal(kidOf(rsa.current.publicKey));
      expect(await service.verify(token, SERVICE)).to.deep.equal({ subject: 'alice', access: ACCESS });
      // Keys are not interchangeable.
      await expectTokenError(tokens.verify(token, SERVICE));
    });
  });

  describe('refresh tokens', () => {
    it('round-trip the subject and the credential fingerprint', async () => {
      const refresh = await tokens.issueRefresh('alice', SERVICE, 'fp-1');
      expect(await tokens.verifyRefresh(refresh, SERVICE)).to.deep.equal({ subject: 'alice', credential: 'fp-1' });
      const payload = decodeJwt(refresh);
      expect(payload.exp! - payload.iat!).to.equal(3600);
      expect(payload).to.not.have.property('access');
    });

    it('a refresh token is not an access token', async () => {
      await expectTokenError(tokens.verify(await tokens.issueRefresh('alice', SERVICE, 'fp-1'), SERVICE));
    });

    it('an access token is not a refresh token', async () => {
      await expectTokenError(tokens.verifyRefresh((await tokens.issue('alice', SERVICE, ACCESS)).token, SERVICE));
    });

    it('refuses refresh tokens for another audience, expired or without subject', async () => {
      await expectTokenError(tokens.verifyRefresh(await tokens.issueRefresh('alice', 'other', 'fp-1'), SERVICE));
      const t = now();
      const expired = await claims({ typ: 'refresh' }).setIssuedAt(t - 7200).setNotBefore(t - 7200).setExpirationTime(t - 3600).setProtectedHeader(ownHeader()).sign(keys.current.privateKey);
      await expectTokenError(tokens.verifyRefresh(expired, SERVICE));
      const anonymous = await claims({ typ: 'refresh' }).setSubject('').setProtectedHeader(ownHeader()).sign(keys.current.privateKey);
      await expectTokenError(tokens.verifyRefresh(anonymous, SERVICE));
    });
  });

  describe('bad tokens are a TokenError, never anything else', () => {
    /** Each case yields the token to present. */
    const cases: Array<[string, () => Promise<string>]> = [
      ['expired', async () => {
        const t = now();
        return claims().setIssuedAt(t - 600).setNotBefore(t - 600).setExpirationTime(t - 300).setProtectedHeader(ownHeader()).sign(keys.current.privateKey);
      }],
      ['expired a second ago', async () => claims().setExpirationTime(now() - 1).setNotBefore(now() - 10).setProtectedHeader(ownHeader()).sign(keys.current.privateKey)],
      ['not yet valid (nbf in the future)', async () => claims().setNotBefore(now() + 120).setProtectedHeader(ownHeader()).sign(keys.current.privateKey)],
      ['signed by another key with our kid and x5c', async () => {
        const other = await generateKeyPair('ES256');
        return claims().setProtectedHeader(ownHeader()).sign(other.privateKey);
      }],
      ['signed by another key with its own kid', async () => {
        const other = generateKeyPairSync('ec', { namedCurve: 'P-256' });
        return claims().setProtectedHeader({ alg: 'ES256', kid: kidOf(other.publicKey) }).sign(other.privateKey);
      }],
      ['alg: none, empty signature', async () => {
        const header = { alg: 'none', typ: 'JWT', kid: keys.current.kid };
        return `${b64url(header)}.${b64url(decodeJwt(await claims().setProtectedHeader(ownHeader()).sign(keys.current.privateKey)))}.`;
      }],
      ['alg: none, built by jose', async () => new UnsecuredJWT({ access: ACCESS }).setIssuer(ISSUER).setAudience(SERVICE).setSubject('alice').setIssuedAt().setExpirationTime('5m').encode()],
      ['alg: none, keeping the original signature', async () => {
        const [, payload, signature] = (await tokens.issue('alice', SERVICE, ACCESS)).token.split('.');
        return `${b64url({ alg: 'none', typ: 'JWT', kid: keys.current.kid })}.${payload}.${signature}`;
      }],
      ['alg: NONE', async () => {
        const [, payload] = (await tokens.issue('alice', SERVICE, ACCESS)).token.split('.');
        return `${b64url({ alg: 'NONE', kid: keys.current.kid })}.${payload}.`;
      }],
      ['HS256 with the PEM public key as HMAC secret', async () => {
        const secret = new TextEncoder().encode(await exportSPKI(keys.current.publicKey));
        return claims().setProtectedHeader({ alg: 'HS256', typ: 'JWT', kid: keys.current.kid }).sign(secret);
      }],
      ['HS256 with the DER public key as HMAC secret', async () =>
        claims().setProtectedHeader({ alg: 'HS256', typ: 'JWT', kid: keys.current.kid }).sign(new Uint8Array(spki(keys.current.publicKey)))],
      ['HS256 with the certificate as HMAC secret', async () =>
        claims().setProtectedHeader({ alg: 'HS256', kid: keys.current.kid }).sign(new Uint8Array(keys.current.certificate.raw))],
      ['ES384 header on our key', async () => {
        const [, payload, signature] = (await tokens.issue('alice', SERVICE, ACCESS)).token.split('.');
        return `${b64url({ alg: 'ES384', kid: keys.current.kid })}.${payload}.${signature}`;
      }],
      ['RS256 signed by an RSA key, naming our EC kid', async () => {
        const rsa = rsaKey();
        return claims().setProtectedHeader({ alg: 'RS256', kid: keys.current.kid }).sign(rsa.privateKey);
      }],
      ['wrong audience', async () => claims().setAudience('other.example.com').setProtectedHeader(ownHeader()).sign(keys.current.privateKey)],
      ['issued by us for another audience', async () => (await tokens.issue('alice', 'other.example.com', ACCESS)).token],
      ['audience missing', async () => {
        const t = now();
        return new SignJWT({ access: ACCESS }).setIssuer(ISSUER).setSubject('alice').setIssuedAt(t).setExpirationTime(t + 300).setProtectedHeader(ownHeader()).sign(keys.current.privateKey);
      }],
      ['wrong issuer', async () => claims().setIssuer('evil').setProtectedHeader(ownHeader()).sign(keys.current.privateKey)],
      ['issuer missing', async () => {
        const t = now();
        return new SignJWT({ access: ACCESS }).setAudience(SERVICE).setSubject('alice').setIssuedAt(t).setExpirationTime(t + 300).setProtectedHeader(ownHeader()).sign(keys.current.privateKey);
      }],
      ['unknown kid', async () => claims().setProtectedHeader({ alg: 'ES256', kid: 'AAAA:BBBB:CCCC:DDDD:EEEE:FFFF:GGGG:HHHH:IIII:JJJJ:KKKK:LLLL' }).sign(keys.current.privateKey)],
      ['no kid', async () => claims().setProtectedHeader({ alg: 'ES256', x5c: ownHeader().x5c }).sign(keys.current.privateKey)],
      ['kid that is an Object.prototype property', async () => claims().setProtectedHeader({ alg: 'ES256', kid: 'constructor' }).sign(keys.current.privateKey)],
      ['a refresh token', async () => tokens.issueRefresh('alice', SERVICE, 'fp-1')],
      ['no access claim', async () => claims({}).setProtectedHeader(ownHeader()).sign(keys.current.privateKey)],
      ['access claim not a list', async () => claims({ access: 'repository:a:pull' }).setProtectedHeader(ownHeader()).sign(keys.current.privateKey)],
      ['access claim an object', async () => claims({ access: { type: 'repository', name: 'a', actions: ['pull'] } }).setProtectedHeader(ownHeader()).sign(keys.current.privateKey)],
      ['payload tampered with (more access), signature kept', async () => {
        const [header, payload, signature] = (await tokens.issue('bob', SERVICE, [])).token.split('.');
        const forged = { ...JSON.parse(Buffer.from(payload!, 'base64url').toString()), access: ACCESS };
        return `${header}.${b64url(forged)}.${signature}`;
      }],
      ['header tampered with (kid changed), signature kept', async () => {
        const [, payload, signature] = (await tokens.issue('alice', SERVICE, ACCESS)).token.split('.');
        return `${b64url({ ...ownHeader(), kid: 'AAAA:BBBB:CCCC:DDDD:EEEE:FFFF:GGGG:HHHH:IIII:JJJJ:KKKK:LLLL' })}.${payload}.${signature}`;
      }],
      ['signature truncated', async () => (await tokens.issue('alice', SERVICE, ACCESS)).token.slice(0, -4)],
      ['signature of another token', async () => {
        const [header, payload] = (await tokens.issue('alice', SERVICE, ACCESS)).token.split('.');
        const [, , signature] = (await tokens.issue('bob', SERVICE, ACCESS)).token.split('.');
        return `${header}.${payload}.${signature}`;
      }],
      ['crit header with an unknown extension', async () => signRaw({ ...ownHeader(), crit: ['x-unknown'], 'x-unknown': 1 }, rawClaims(), keys.current.privateKey)],
      ['a JWK embedded in the header instead of a known kid', async () => {
        const other = await generateKeyPair('ES256', { extractable: true });
        return claims().setProtectedHeader({ alg: 'ES256', jwk: await exportJWK(other.publicKey) }).sign(other.privateKey);
      }],
      ['exp not a number', async () => signRaw(ownHeader(), rawClaims({ exp: 'never' }), keys.current.privateKey)],
      ['nbf not a number', async () => signRaw(ownHeader(), rawClaims({ nbf: 'now' }), keys.current.privateKey)],
      ['aud a number', async () => signRaw(ownHeader(), rawClaims({ aud: 5 }), keys.current.privateKey)],
      ['aud a list without the service', async () => signRaw(ownHeader(), rawClaims({ aud: ['other', 'another'] }), keys.current.privateKey)],
      ['sub not a string', async () => signRaw(ownHeader(), rawClaims({ sub: { name: 'admin' } }), keys.current.privateKey)],
      ['signature in DER instead of the JWS encoding', async () => {
        const input = `${b64url(ownHeader())}.${b64url(rawClaims())}`;
        return `${input}.${sign('sha256', Buffer.from(input), { key: keys.current.privateKey, dsaEncoding: 'der' }).toString('base64url')}`;
      }],
    ];

    const malformed = [
      '',
      ' ',
      'abc',
      'a.b',
      'a.b.c',
      '...',
      '..',
      'a.b.c.d',
      'a.b.c.d.e',
      'eyJ.eyJ.eyJ',
      `${b64url({ alg: 'ES256' })}.${b64url('null')}.AAAA`,
      `${b64url({ alg: 'ES256' })}.${b64url('[]')}.AAAA`,
      `${b64url({ alg: 'ES256' })}.${b64url('"text"')}.AAAA`,
      `${b64url({ alg: 'ES256' })}.${b64url('{"iss":')}.AAAA`,
      `${b64url('not json')}.${b64url({ iss: ISSUER })}.AAAA`,
      `${b64url({ alg: 'ES256' })}.${b64url({ iss: { toString: 1 } })}.AAAA`,
      `${b64url({ alg: 'ES256' })}.${b64url({ iss: ISSUER })}.!!!!`,
      '\u0000.\u0000.\u0000',
      'é.é.é',
      'x'.repeat(100_000),
      `${'a'.repeat(50_000)}.${'b'.repeat(50_000)}.c`,
    ];
    for (const [i, token] of malformed.entries()) {
      it(`malformed #${i}: ${JSON.stringify(token.slice(0, 40))}`, async () => {
        await expectTokenError(tokens.verify(token, SERVICE));
        await expectTokenError(tokens.verifyRefresh(token, SERVICE));
      });
    }

    it('malformed: a valid token with surrounding whitespace or an extra segment', async () => {
      const { token } = await tokens.issue('alice', SERVICE, ACCESS);
      for (const bad of [` ${token}`, `${token}.`, `${token}.x`, `.${token}`, token.replace('.', '..')]) {
        await expectTokenError(tokens.verify(bad, SERVICE));
      }
    });

    for (const [what, make] of cases) {
      it(what, async () => {
        const token = await make();
        await expectTokenError(tokens.verify(token, SERVICE));
      });
    }

    it('none of them passes as a refresh token either', async () => {
      for (const [what, make] of cases) {
        if (what === 'a refresh token') continue;
        const token = await make();
        const result = await tokens.verifyRefresh(token, SERVICE).then(
          (claims) => `accepted as refresh token for ${claims.subject}`,
          (error: unknown) => error,
        );
        expect(result, what).to.be.instanceOf(TokenError);
      }
    });
  });

  describe('key rotation', () => {
    let files: Array<{ key: string; certificate: string }>;

    before(async () => {
      files = [];
      for (const [i, algorithm] of (['ES256', 'ES256', 'RS256'] as const).entries()) {
        const pair = await generateKeyAndCertificate(algorithm);
        const entry = { key: join(dir, `rot-${i}.key`), certificate: join(dir, `rot-${i}.crt`) };
        await writeFile(entry.key, pair.key);
        await writeFile(entry.certificate, pair.certificate);
        files.push(entry);
      }
    });

    const service = async (...entries: Array<{ key: string; certificate: string }>) => {
      const loaded = await loadSigningKeys(issuerConfig({ keys: entries }), new FilesystemDriver({ rootdirectory: join(dir, 'unused') }));
      return { keys: loaded, tokens: new TokenService(loaded, SETTINGS) };
    };
    const kidOfFile = async (file: string) => kidOf(new X509Certificate(await readFile(file)).publicKey);

    it('tokens of the old (second) key still verify; new tokens are signed with the first', async () => {
      const old = await service(files[1]!);
      const both = await service(files[0]!, files[1]!);
      const oldToken = (await old.tokens.issue('alice', SERVICE, ACCESS)).token;
      expect(decodeProtectedHeader(oldToken).kid).to.equal(await kidOfFile(files[1]!.certificate));
      expect(await both.tokens.verify(oldToken, SERVICE)).to.deep.equal({ subject: 'alice', access: ACCESS });
      const newToken = (await both.tokens.issue('alice', SERVICE, ACCESS)).token;
      expect(decodeProtectedHeader(newToken).kid).to.equal(await kidOfFile(files[0]!.certificate));
      expect(await both.tokens.verify(newToken, SERVICE)).to.deep.equal({ subject: 'alice', access: ACCESS });
      // A refresh token of the old key is still good too.
      expect((await both.tokens.verifyRefresh(await old.tokens.issueRefresh('alice', SERVICE, 'fp-1'), SERVICE)).subject).to.equal('alice');
      // Once the old key is dropped, its tokens are refused.
      const onlyNew = await service(files[0]!);
      await expectTokenError(onlyNew.tokens.verify(oldToken, SERVICE));
      expect(await onlyNew.tokens.verify(newToken, SERVICE)).to.deep.equal({ subject: 'alice', access: ACCESS });
    });

    it('rotates between algorithms: RSA first signs RS256, EC tokens still verify', async () => {
      const ec = await service(files[1]!);
      const mixed = await service(files[2]!, files[1]!);
      expect(mixed.keys.algorithm).to.equal('RS256');
      const token = (await mixed.tokens.issue('alice', SERVICE, ACCESS)).token;
      expect(decodeProtectedHeader(token).alg).to.equal('RS256');
      expect(await mixed.tokens.verify(token, SERVICE)).to.deep.equal({ subject: 'alice', access: ACCESS });
      expect(await mixed.tokens.verify((await ec.tokens.issue('bob', SERVICE, [])).token, SERVICE)).to.deep.equal({ subject: 'bob', access: [] });
    });
  });

  describe('external issuer (auth.token)', () => {
    let ext: { privateKey: string; certificate: string; cert: X509Certificate };
    let bundle: string;
    let external: ExternalIssuer;
    let service: TokenService;

    const extClaims = (payload: JWTPayload = { access: ACCESS }) => claims(payload, EXT_ISSUER);
    const b64der = (pem: string | Buffer) => new X509Certificate(pem).raw.toString('base64');

    before(async () => {
      const unrelated = await generateKeyAndCertificate('ES256');
      const pair = await generateKeyAndCertificate('ES256');
      ext = { privateKey: pair.key, certificate: pair.certificate, cert: new X509Certificate(pair.certificate) };
      bundle = join(dir, 'bundle.pem');
      // Several certificates in one bundle; the issuer's is not the first.
      await writeFile(bundle, `# trusted issuers\n${unrelated.certificate}\n${pair.certificate}`);
      external = { issuer: EXT_ISSUER, service: SERVICE, rootcertbundle: bundle };
      service = new TokenService(keys, SETTINGS, external);
    });

    const extKey = async () => createPrivateKey(ext.privateKey);

    it('accepts a token signed by a bundle certificate key, found by kid', async () => {
      const token = await extClaims().setProtectedHeader({ alg: 'ES256', typ: 'JWT', kid: kidOf(ext.cert.publicKey) }).sign(await extKey());
      expect(await service.verify(token, SERVICE)).to.deep.equal({ subject: 'alice', access: ACCESS });
    });

    it('accepts a token naming a bundle certificate in x5c', async () => {
      const token = await extClaims().setProtectedHeader({ alg: 'ES256', x5c: [ext.cert.raw.toString('base64')] }).sign(await extKey());
      expect(await service.verify(token, SERVICE)).to.deep.equal({ subject: 'alice', access: ACCESS });
    });

    it('accepts a token whose x5c leaf was issued by a bundle certificate', async function () {
      if (!hasOpenssl()) this.skip();
      const work = join(dir, 'chain');
      await mkdir(work);
      openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', 'root.key'], work);
      openssl(['req', '-x509', '-new', '-key', 'root.key', '-subj', '/CN=external root', '-days', '30', '-out', 'root.crt'], work);
      openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', 'leaf.key'], work);
      openssl(['req', '-new', '-key', 'leaf.key', '-subj', '/CN=external signer', '-out', 'leaf.csr'], work);
      openssl(['x509', '-req', '-in', 'leaf.csr', '-CA', 'root.crt', '-CAkey', 'root.key', '-set_serial', '2', '-days', '30', '-out', 'leaf.crt'], work);
      // A forger's root with the same name, and a leaf it issued.
      openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', 'fake.key'], work);
      openssl(['req', '-x509', '-new', '-key', 'fake.key', '-subj', '/CN=external root', '-days', '30', '-out', 'fake.crt'], work);
      openssl(['x509', '-req', '-in', 'leaf.csr', '-CA', 'fake.crt', '-CAkey', 'fake.key', '-set_serial', '3', '-days', '30', '-out', 'forged.crt'], work);

      const chainBundle = join(work, 'bundle.pem');
      await writeFile(chainBundle, await readFile(join(work, 'root.crt')));
      const chained = new TokenService(keys, SETTINGS, { issuer: EXT_ISSUER, service: SERVICE, rootcertbundle: chainBundle });
      const leafKey = createPrivateKey(await readFile(join(work, 'leaf.key')));
      const leaf = await readFile(join(work, 'leaf.crt'));
      const token = await extClaims().setProtectedHeader({ alg: 'ES256', kid: kidOf(new X509Certificate(leaf).publicKey), x5c: [b64der(leaf)] }).sign(leafKey);
      expect(await chained.verify(token, SERVICE)).to.deep.equal({ subject: 'alice', access: ACCESS });

      const forged = await readFile(join(work, 'forged.crt'));
      const refused = await extClaims().setProtectedHeader({ alg: 'ES256', x5c: [b64der(forged)] }).sign(leafKey);
      await expectTokenError(chained.verify(refused, SERVICE));
      // Nor does the leaf's signing key become trusted for the other bundle.
      await expectTokenError(service.verify(token, SERVICE));
    });

    it('refuses a token whose x5c is not chained to the bundle', async () => {
      const stranger = await generateKeyAndCertificate('ES256');
      const key = createPrivateKey(stranger.key);
      const token = await extClaims().setProtectedHeader({ alg: 'ES256', kid: kidOf(new X509Certificate(stranger.certificate).publicKey), x5c: [b64der(stranger.certificate)] }).sign(key);
      await expectTokenError(service.verify(token, SERVICE));
    });

    it('refuses a token naming a bundle certificate but signed by another key', async () => {
      const other = await generateKeyPair('ES256');
      for (const header of [
        { alg: 'ES256', kid: kidOf(ext.cert.publicKey) },
        { alg: 'ES256', x5c: [ext.cert.raw.toString('base64')] },
      ]) {
        await expectTokenError(service.verify(await extClaims().setProtectedHeader(header).sign(other.privateKey), SERVICE));
      }
    });

    it('refuses an expired certificate in x5c, even one that is in the bundle', async () => {
      const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const expired = selfSignedCertificate(privateKey, publicKey, 'expired issuer', -1);
      const expiredBundle = join(dir, 'expired-bundle.pem');
      await writeFile(expiredBundle, expired);
      const withExpired = new TokenService(keys, SETTINGS, { issuer: EXT_ISSUER, service: SERVICE, rootcertbundle: expiredBundle });
      const token = await extClaims().setProtectedHeader({ alg: 'ES256', x5c: [b64der(expired)] }).sign(privateKey);
      await expectTokenError(withExpired.verify(token, SERVICE));
    });

    it('refuses malformed x5c values', async () => {
      for (const x5c of [['not base64 DER'], [''], ['AAAA']]) {
        const token = await extClaims().setProtectedHeader({ alg: 'ES256', x5c }).sign(await extKey());
        await expectTokenError(service.verify(token, SERVICE));
      }
    });

    it('refuses external tokens for another service, expired, or without access', async () => {
      const key = await extKey();
      const header = { alg: 'ES256', kid: kidOf(ext.cert.publicKey) };
      await expectTokenError(service.verify(await extClaims().setAudience('other').setProtectedHeader(header).sign(key), SERVICE));
      await expectTokenError(service.verify(await extClaims().setExpirationTime(now() - 5).setNotBefore(now() - 60).setProtectedHeader(header).sign(key), SERVICE));
      await expectTokenError(service.verify(await extClaims({}).setProtectedHeader(header).sign(key), SERVICE));
      await expectTokenError(service.verify(await extClaims({ typ: 'refresh' }).setProtectedHeader(header).sign(key), SERVICE));
    });

    it('keeps the issuers apart: neither key signs for the other issuer', async () => {
      // Our key, claiming to be the external issuer.
      await expectTokenError(service.verify(await extClaims().setProtectedHeader(ownHeader()).sign(keys.current.privateKey), SERVICE));
      // The external key, claiming to be us.
      const token = await claims().setProtectedHeader({ alg: 'ES256', kid: kidOf(ext.cert.publicKey), x5c: [ext.cert.raw.toString('base64')] }).sign(await extKey());
      await expectTokenError(service.verify(token, SERVICE));
      // External tokens are never refresh tokens here.
      const refresh = await extClaims({ typ: 'refresh' }).setProtectedHeader({ alg: 'ES256', kid: kidOf(ext.cert.publicKey) }).sign(await extKey());
      await expectTokenError(service.verifyRefresh(refresh, SERVICE));
    });

    it('still accepts our own tokens', async () => {
      const { token } = await service.issue('alice', SERVICE, ACCESS);
      expect(await service.verify(token, SERVICE)).to.deep.equal({ subject: 'alice', access: ACCESS });
    });

    it('without an external issuer, external tokens are refused', async () => {
      const token = await extClaims().setProtectedHeader({ alg: 'ES256', kid: kidOf(ext.cert.publicKey) }).sign(await extKey());
      await expectTokenError(tokens.verify(token, SERVICE));
    });

    describe('through a JWKS URL', () => {
      let server: Server;
      let jwksService: TokenService;
      let signer: CryptoKey;
      const kid = 'jwks-key-1';

      before(async () => {
        const pair = await generateKeyPair('ES256', { extractable: true });
        signer = pair.privateKey;
        const document = { keys: [{ ...(await exportJWK(pair.publicKey)), kid, alg: 'ES256', use: 'sig' }] };
        server = createServer((req, res) => {
          res.setHeader('Content-Type', 'application/json');
          res.end(JSON.stringify(document));
        }).listen(0, '127.0.0.1');
        await once(server, 'listening');
        const { port } = server.address() as AddressInfo;
        jwksService = new TokenService(keys, SETTINGS, { issuer: EXT_ISSUER, service: SERVICE, jwks: `http://127.0.0.1:${port}/jwks.json` });
      });
      after(() => new Promise<void>((resolve) => server.close(() => resolve())));

      it('accepts tokens signed by a published key', async () => {
        const token = await extClaims().setProtectedHeader({ alg: 'ES256', kid }).sign(signer);
        expect(await jwksService.verify(token, SERVICE)).to.deep.equal({ subject: 'alice', access: ACCESS });
      });

      it('refuses unknown kids and other signers', async () => {
        await expectTokenError(jwksService.verify(await extClaims().setProtectedHeader({ alg: 'ES256', kid: 'nope' }).sign(signer), SERVICE));
        const other = await generateKeyPair('ES256');
        await expectTokenError(jwksService.verify(await extClaims().setProtectedHeader({ alg: 'ES256', kid }).sign(other.privateKey), SERVICE));
      });
    });
  });
});
