// Authentication and authorization as one service: users, access rules, tokens and the login limiter,
// built from the `auth` config. Absent (undefined) when auth is off: the embedded registry stays open.
import { pino, type Logger } from 'pino';
import type { StorageDriver } from '../../storage-drivers/driver.js';
import { durationMs, type Config } from '../config.js';
import { AccessPolicy, type Principal } from './access.js';
import { loadSigningKeys, type SigningKeys } from './keys.js';
import { MemoryLoginLimiter, type LoginLimiter } from './login-limiter.js';
import { RedisLoginLimiter } from './redis-login-limiter.js';
import type { SharedState } from '../state/redis.js';
import { TokenService } from './tokens.js';
import { UserDirectory } from './users.js';

export type BasicResult = { principal: Principal } | { invalid: true } | { retryAfterMs: number };

/** The audience when neither auth.issuer.service nor http.host names one. */
const DEFAULT_SERVICE = 'dify-registry';

export class AuthService {
  private constructor(
    readonly users: UserDirectory,
    readonly policy: AccessPolicy,
    readonly tokens: TokenService,
    readonly keys: SigningKeys,
    /** The token audience, see `service`. */
    private readonly configuredService: string | undefined,
    private readonly publicUrl: string | undefined,
    /** The external issuer's token URL, when clients must get their tokens there. */
    private readonly externalRealm: string | undefined,
    /** Failed logins per user and address: in Redis when shared, so all replicas count together. */
    readonly limiter: LoginLimiter,
  ) {}

  static isEnabled(config: Config): boolean {
    const auth = config.auth;
    return Boolean(auth.htpasswd || auth.token || auth.users.length > 0 || auth.robots.length > 0);
  }

  static async create(config: Config, driver: StorageDriver, shared?: SharedState, logger?: Logger): Promise<AuthService | undefined> {
    if (!AuthService.isEnabled(config)) return undefined;
    const auth = config.auth;
    const keys = await loadSigningKeys(auth.issuer, driver);
    const tokens = new TokenService(
      keys,
      {
        issuer: auth.issuer.issuer,
        expirationMs: durationMs(auth.issuer.expiration),
        refreshExpirationMs: durationMs(auth.issuer.refreshexpiration),
      },
      auth.token,
    );
    const users = new UserDirectory(auth);
    // With no users of its own, the registry is only a resource server: clients get tokens from the
    // external issuer, as with Distribution's auth.token.
    const externalOnly = auth.token && users.size === 0 ? auth.token : undefined;
    const service = externalOnly?.service ?? auth.issuer.service ?? (config.http.host ? new URL(config.http.host).host : undefined);
    const limiter = shared ? new RedisLoginLimiter(shared, logger ?? pino({ enabled: false })) : new MemoryLoginLimiter();
    return new AuthService(users, new AccessPolicy(auth), tokens, keys, service, config.http.host, externalOnly?.realm, limiter);
  }

  /**
   * The token audience: the configured service, else http.host's host, else a fixed name. Never the host
   * a request names: then anyone could have this issuer sign tokens for another registry's audience.
   */
  get service(): string {
    return this.configuredService ?? DEFAULT_SERVICE;
  }

  /** Where clients get tokens: the external issuer's realm, or `<http.host>/token`, else derived from the request. */
  realmFor(requestOrigin: string): string {
    return this.externalRealm ?? `${(this.publicUrl ?? requestOrigin).replace(/\/$/, '')}/token`;
  }

  /** Checks Basic credentials, with failed attempts limited per user and address. */
  async basic(name: string, password: string, address: string): Promise<BasicResult> {
    const retryAfterMs = await this.limiter.retryAfter(name, address);
    if (retryAfterMs > 0) return { retryAfterMs };
    const principal = await this.users.authenticate(name, password);
    if (!principal) {
      await this.limiter.recordFailure(name, address);
      return { invalid: true };
    }
    await this.limiter.recordSuccess(name, address);
    return { principal };
  }
}

/** `Authorization: Basic ...` -> name and password, or undefined. */
export function parseBasic(header: string | undefined): { name: string; password: string } | undefined {
  const match = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header ?? '');
  if (!match) return undefined;
  const decoded = Buffer.from(match[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  return { name: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

export function parseBearer(header: string | undefined): string | undefined {
  return /^Bearer\s+([A-Za-z0-9._~+/=-]+)\s*$/i.exec(header ?? '')?.[1];
}
