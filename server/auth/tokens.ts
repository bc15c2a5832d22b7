// Token issue and verification (jose). Access tokens follow Docker's token spec: `access` claim, a single
// string `aud` (the service), `kid` and `x5c` in the header. Refresh tokens (docker login's "offline"
// tokens) name the subject and a fingerprint of its password (users.ts) and are never accepted as access tokens.
import { randomUUID, X509Certificate, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRemoteJWKSet, jwtVerify, SignJWT, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { algorithmOf, libtrustKeyId, type SigningKeys } from './keys.js';
import type { ResourceScope } from './scope.js';

export interface TokenSettings {
  issuer: string;
  expirationMs: number;
  refreshExpirationMs: number;
}

/** Another issuer whose tokens are accepted (Distribution's auth.token): its certificates or its JWKS. */
export interface ExternalIssuer {
  issuer: string;
  service: string;
  rootcertbundle?: string;
  jwks?: string;
}

export interface IssuedToken {
  token: string;
  expiresIn: number;
  issuedAt: string;
}

export interface VerifiedToken {
  subject: string;
  access: ResourceScope[];
}

export interface RefreshClaims {
  subject: string;
  /** Fingerprint of the password the token was issued under (UserDirectory.credentialOf). */
  credential: string | undefined;
}

export class TokenError extends Error {}

const ALGORITHMS = ['ES256', 'RS256'];

export class TokenService {
  private readonly external: { issuer: ExternalIssuer; key: JWTVerifyGetKey } | undefined;

  constructor(
    private readonly keys: SigningKeys,
    private readonly settings: TokenSettings,
    external?: ExternalIssuer,
  ) {
    this.external = external && { issuer: external, key: externalKeys(external) };
  }

  /** An access token for `subject` ('' for anonymous) to `audience`, carrying exactly `access`. */
  async issue(subject: string, audience: string, access: ResourceScope[], lifetimeMs = this.settings.expirationMs): Promise<IssuedToken> {
    const now = Math.floor(Date.now() / 1000);
    const lifetime = Math.max(1, Math.floor(lifetimeMs / 1000));
    const token = await this.sign({ access }, subject, audience, now, lifetime);
    return { token, expiresIn: lifetime, issuedAt: new Date(now * 1000).toISOString() };
  }

  /**
   * A credential for a build engine: exchanged at the token endpoint (OAuth2 refresh_token grant, which
   * containers/image uses for an auth file's `identitytoken`) for access tokens carrying at most `ceiling`.
   * Never an access token itself.
   */
  async issueDelegated(subject: string, audience: string, ceiling: ResourceScope[], lifetimeMs: number): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    return this.sign({ typ: 'delegated', ceiling }, subject, audience, now, Math.max(1, Math.floor(lifetimeMs / 1000)));
  }

  /** The subject and ceiling of a delegated credential of this registry; undefined for any other token. */
  async verifyDelegated(token: string, audience: string): Promise<{ subject: string; ceiling: ResourceScope[] } | undefined> {
    let payload: JWTPayload;
    try {
      payload = await this.verified(token, audience, false);
    } catch {
      return undefined;
    }
    if (payload.typ !== 'delegated' || !Array.isArray(payload.ceiling)) return undefined;
    return { subject: typeof payload.sub === 'string' ? payload.sub : '', ceiling: payload.ceiling.filter(isScope) };
  }

  async issueRefresh(subject: string, audience: string, credential: string): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    return this.sign({ typ: 'refresh', cred: credential }, subject, audience, now, Math.floor(this.settings.refreshExpirationMs / 1000));
  }

  /** Verifies an access token for `audience`, from this registry or the configured external issuer. */
  async verify(token: string, audience: string): Promise<VerifiedToken> {
    const payload = await this.verified(token, audience);
    if (payload.typ === 'refresh') throw new TokenError('a refresh token is not an access token');
    if (!Array.isArray(payload.access)) throw new TokenError('token has no access claim');
    if (payload.sub !== undefined && typeof payload.sub !== 'string') throw new TokenError('token subject is not a string');
    return { subject: payload.sub ?? '', access: payload.access.filter(isScope) };
  }

  /** Verifies a refresh token of this registry; returns what it names. */
  async verifyRefresh(token: string, audience: string): Promise<RefreshClaims> {
    const payload = await this.verified(token, audience, false);
    if (payload.typ !== 'refresh' || !payload.sub) throw new TokenError('not a refresh token');
    return { subject: payload.sub, credential: typeof payload.cred === 'string' ? payload.cred : undefined };
  }

  private async sign(claims: JWTPayload, subject: string, audience: string, now: number, lifetime: number): Promise<string> {
    const key = this.keys.current;
    return new SignJWT(claims)
      .setProtectedHeader({ alg: this.keys.algorithm, typ: 'JWT', kid: key.kid, x5c: [key.certificate.raw.toString('base64')] })
      .setIssuer(this.settings.issuer)
      .setSubject(subject)
      .setAudience(audience)
      .setIssuedAt(now)
      .setNotBefore(now - 1)
      .setExpirationTime(now + lifetime)
      .setJti(randomUUID())
      .sign(key.privateKey);
  }

  private async verified(token: string, audience: string, allowExternal = true): Promise<JWTPayload> {
    try {
      const { iss } = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString()) as { iss?: unknown };
      if (allowExternal && this.external && iss === this.external.issuer.issuer && iss !== this.settings.issuer) {
        const { payload } = await jwtVerify(token, this.external.key, {
          issuer: this.external.issuer.issuer,
          audience: this.external.issuer.service,
          algorithms: ALGORITHMS,
          requiredClaims: ['exp'],
        });
        return payload;
      }
      const { payload } = await jwtVerify(token, (header) => this.ownKey(header.kid), {
        issuer: this.settings.issuer,
        audience,
        algorithms: ALGORITHMS,
        requiredClaims: ['exp'],
      });
      return payload;
    } catch (error) {
      if (error instanceof TokenError) throw error;
      throw new TokenError(`invalid token: ${(error as Error).message}`);
    }
  }

  private ownKey(kid: string | undefined): KeyObject {
    const key = kid === undefined ? undefined : this.keys.verification.get(kid);
    if (!key) throw new TokenError('unknown key id');
    return key.publicKey;
  }
}

/** Keys of an external issuer: a remote JWKS, or a PEM bundle matched by libtrust kid or by x5c chain. */
function externalKeys(external: ExternalIssuer): JWTVerifyGetKey {
  if (external.jwks) return createRemoteJWKSet(new URL(external.jwks));
  const roots = splitPem(readFileSync(external.rootcertbundle!, 'utf8')).map((pem) => new X509Certificate(pem));
  const byKid = new Map(roots.map((root) => [libtrustKeyId(root.publicKey), root.publicKey]));
  return async (header) => {
    if (header.kid && byKid.has(header.kid)) return byKid.get(header.kid)!;
    const leafDer = header.x5c?.[0];
    if (leafDer) {
      const leaf = new X509Certificate(Buffer.from(leafDer, 'base64'));
      const trusted = roots.some((root) => root.raw.equals(leaf.raw) || (leaf.checkIssued(root) && leaf.verify(root.publicKey)));
      if (trusted && leaf.validTo && Date.parse(leaf.validTo) > Date.now()) {
        algorithmOf(leaf.publicKey);
        return leaf.publicKey;
      }
    }
    throw new TokenError('token signed by a key outside auth.token.rootcertbundle');
  };
}

function splitPem(bundle: string): string[] {
  return bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

function isScope(value: unknown): value is ResourceScope {
  const scope = value as ResourceScope;
  return (
    typeof scope === 'object' &&
    scope !== null &&
    (scope.type === 'repository' || scope.type === 'registry') &&
    typeof scope.name === 'string' &&
    Array.isArray(scope.actions) &&
    scope.actions.every((a) => typeof a === 'string')
  );
}
