// Answers an upstream's WWW-Authenticate challenges: Basic with the configured credentials, Bearer by
// asking the realm for a token per scope (anonymously without credentials, as Docker Hub allows) and
// caching it until shortly before it expires. Once a challenge is known, tokens for new scopes are
// fetched before the request, saving a 401 round trip per repository.
import type { Challenge } from './www-authenticate.js';
import { UpstreamError } from './upstream-error.js';

export interface Credentials {
  username: string;
  password: string;
}

export interface TokenRequest {
  realm: URL;
  service?: string;
  scopes: string[];
  /** `Basic ...` when credentials are configured. */
  authorization?: string;
  signal?: AbortSignal;
}

export interface IssuedToken {
  token: string;
  /** Seconds; the spec's default is 60. */
  expiresIn: number;
}

export type TokenFetcher = (request: TokenRequest) => Promise<IssuedToken>;

interface CachedToken {
  token: string;
  expiresAt: number;
}

export class UpstreamAuth {
  private readonly basic?: string;
  private scheme?: 'basic' | 'bearer';
  private bearer?: { realm: URL; service?: string };
  private readonly tokens = new Map<string, CachedToken>();
  private readonly pending = new Map<string, Promise<CachedToken>>();

  constructor(
    credentials: Credentials | undefined,
    private readonly fetchToken: TokenFetcher,
    private readonly now: () => number = Date.now,
  ) {
    if (credentials) this.basic = `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`;
  }

  /** The Authorization header for a request needing `scope`, when a challenge has been seen. */
  async authorization(scope: string, signal?: AbortSignal): Promise<string | undefined> {
    if (this.scheme === 'basic') return this.basic;
    if (this.scheme !== 'bearer' || !this.bearer) return undefined;
    const token = await this.token(this.bearer.realm, this.bearer.service, [scope], signal);
    return `Bearer ${token.token}`;
  }

  /**
   * Learns from a 401's challenge. Returns true when the request is worth sending again with
   * `authorization(scope)`: false when we cannot answer (no credentials for Basic, credentials already
   * refused, an unknown scheme).
   */
  async answer(challenge: Challenge | undefined, scope: string, sent: string | undefined, signal?: AbortSignal): Promise<boolean> {
    if (!challenge) return false;
    if (challenge.scheme === 'basic') {
      this.scheme = 'basic';
      return this.basic !== undefined && sent !== this.basic;
    }
    if (challenge.scheme !== 'bearer') return false;
    const realm = parseRealm(challenge.params.realm);
    if (!realm) return false;
    this.scheme = 'bearer';
    this.bearer = { realm, service: challenge.params.service };
    const scopes = challenge.params.scope ? challenge.params.scope.split(' ').filter(Boolean) : [scope];
    // The token we sent was refused (revoked, expired early, or short of the scope): ask for a new one.
    // The caller sends a request once more at most, so a token refused twice is an answer.
    if (sent !== undefined) {
      this.tokens.delete(cacheKey(realm, challenge.params.service, scopes));
      this.invalidate(scope);
    }
    const fresh = await this.token(realm, challenge.params.service, scopes, signal);
    // The challenge may name a scope other than ours (e.g. with `error="insufficient_scope"`); cache it under ours too.
    if (scopes.join(' ') !== scope) this.tokens.set(cacheKey(realm, challenge.params.service, [scope]), fresh);
    return true;
  }

  /** Forgets a refused token so the next request asks for a new one. */
  invalidate(scope: string): void {
    if (this.bearer) this.tokens.delete(cacheKey(this.bearer.realm, this.bearer.service, [scope]));
  }

  private async token(realm: URL, service: string | undefined, scopes: string[], signal?: AbortSignal): Promise<CachedToken> {
    const key = cacheKey(realm, service, scopes);
    const cached = this.tokens.get(key);
    if (cached && cached.expiresAt > this.now()) return cached;
    // Concurrent requests for one scope share one token request. It belongs to none of them: one caller's
    // cancel (a mirror job's) must not fail the others; each stops waiting on its own signal instead.
    let pending = this.pending.get(key);
    if (!pending) {
      pending = (async () => {
        const issued = await this.fetchToken({ realm, service, scopes, authorization: this.basic });
        // Renew a little early: a token must not expire between our check and the upstream's.
        const margin = Math.min(30, issued.expiresIn / 10);
        const entry = { token: issued.token, expiresAt: this.now() + Math.max(0, issued.expiresIn - margin) * 1000 };
        this.tokens.set(key, entry);
        return entry;
      })().finally(() => this.pending.delete(key));
      this.pending.set(key, pending);
    }
    return untilAborted(pending, signal);
  }
}

/** `promise`, or the signal's reason as soon as it aborts. */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  signal.throwIfAborted();
  return new Promise<T>((resolve, reject) => {
    const abort = () => reject(signal.reason);
    signal.addEventListener('abort', abort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', abort));
  });
}

function cacheKey(realm: URL, service: string | undefined, scopes: string[]): string {
  return `${realm.href} ${service ?? ''} ${[...scopes].sort().join(' ')}`;
}

function parseRealm(realm: string | undefined): URL | undefined {
  if (!realm) return undefined;
  try {
    const url = new URL(realm);
    return url.protocol === 'http:' || url.protocol === 'https:' ? url : undefined;
  } catch {
    return undefined;
  }
}

/** The token endpoint's answer: `token` or `access_token`, `expires_in` in seconds. */
export function parseTokenResponse(body: Buffer, request: string): IssuedToken {
  let parsed: { token?: unknown; access_token?: unknown; expires_in?: unknown };
  try {
    parsed = JSON.parse(body.toString('utf8')) as typeof parsed;
  } catch {
    throw new UpstreamError('token endpoint answered something other than JSON', { status: 200, code: 'INVALID_RESPONSE', retryable: false, request });
  }
  const token = typeof parsed.token === 'string' && parsed.token ? parsed.token : parsed.access_token;
  if (typeof token !== 'string' || !token) {
    throw new UpstreamError('token endpoint answered without a token', { status: 200, code: 'INVALID_RESPONSE', retryable: false, request });
  }
  const expiresIn = typeof parsed.expires_in === 'number' && parsed.expires_in > 0 ? parsed.expires_in : 60;
  return { token, expiresIn };
}
