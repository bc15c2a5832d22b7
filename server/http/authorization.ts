// Guards /v2 and /admin when auth is on. Anonymous requests pass where the rules allow anonymous access;
// Basic credentials are checked directly (some clients never fetch tokens); Bearer tokens must cover the
// request's scopes. Anything else gets 401 with a Bearer challenge naming the scope to ask for.
import type { Context, Next } from 'koa';
import { noSuchEndpoint, OciError } from '../registry/errors.js';
import type { Principal } from '../auth/access.js';
import { parseBasic, parseBearer, type AuthService } from '../auth/auth-service.js';
import { requiredScopes } from '../auth/required-scopes.js';
import { covers, formatScope, type ResourceScope } from '../auth/scope.js';
import { TokenError } from '../auth/tokens.js';
import { limitKeyOf } from './client-address.js';

export function authorization(auth: AuthService) {
  return async function authorize(ctx: Context, next: Next): Promise<void> {
    // Whatever the case: a router that matched /V2/... must not find it unguarded (the routers are
    // case-sensitive too).
    const lower = ctx.path.toLowerCase();
    const guarded = lower === '/v2' || lower.startsWith('/v2/') || lower === '/admin' || lower.startsWith('/admin/');
    if (!guarded) return next();
    // Checked on the decoded path, as the router decodes the name it serves: `priv%61te/x` is `private/x`.
    let path: string;
    try {
      path = decodeURIComponent(ctx.path);
    } catch {
      throw new OciError(400, 'NAME_INVALID', 'malformed percent-encoding in the path');
    }
    const needs = requiredScopes(ctx.method, path, new URLSearchParams(ctx.querystring));
    // Fail closed: a path whose scopes are unknown (a trailing slash, other case) is no endpoint to anyone.
    if (needs.unknown) throw noSuchEndpoint(ctx.method, ctx.path);
    if (needs.invalidName) throw new OciError(400, 'NAME_INVALID', 'invalid repository name');
    const challenge = (error?: string) => challengeHeader(auth, ctx, needs.scopes, error);
    const header = ctx.get('Authorization');

    const bearer = parseBearer(header);
    if (bearer) {
      let access: ResourceScope[];
      try {
        const token = await auth.tokens.verify(bearer, auth.service);
        access = token.access;
        ctx.state.user = token.subject || undefined;
      } catch (error) {
        if (!(error instanceof TokenError)) throw error;
        throw unauthorized('invalid or expired token', challenge('invalid_token'));
      }
      if (!needs.scopes.every((scope) => covers(access, scope))) {
        throw unauthorized('the token does not grant this access', challenge('insufficient_scope'), needs.scopes);
      }
      ctx.state.mayMountAnywhere = covers(access, { type: 'registry', name: 'catalog', actions: ['*'] });
      return next();
    }

    const credentials = parseBasic(header);
    let principal: Principal | undefined;
    if (credentials) {
      const result = await auth.basic(credentials.name, credentials.password, limitKeyOf(ctx));
      if ('retryAfterMs' in result) throw tooManyAttempts(result.retryAfterMs);
      if ('invalid' in result) throw unauthorized('invalid username or password', challenge());
      principal = result.principal;
      ctx.state.user = principal.name;
    }
    // /v2/ itself answers only a known identity: it is how docker login checks credentials.
    if (needs.scopes.length === 0 && !principal) throw unauthorized('authentication required', challenge());
    const granted = auth.policy.grant(principal, needs.scopes);
    if (!needs.scopes.every((scope) => covers(granted, scope))) {
      if (principal) throw new OciError(403, 'DENIED', 'requested access to the resource is denied', needs.scopes.map(formatScope));
      throw unauthorized('authentication required', challenge());
    }
    ctx.state.mayMountAnywhere = auth.policy.isAdmin(principal);
    return next();
  };
}

function challengeHeader(auth: AuthService, ctx: Context, scopes: ResourceScope[], error?: string): Record<string, string> {
  // From the Host header, never from Origin (which a page could set to send credentials elsewhere).
  const parts = [`realm="${auth.realmFor(`${ctx.protocol}://${ctx.host}`)}"`, `service="${auth.service}"`];
  if (scopes.length > 0) parts.push(`scope="${scopes.map(formatScope).join(' ')}"`);
  if (error) parts.push(`error="${error}"`);
  return { 'WWW-Authenticate': `Bearer ${parts.join(',')}` };
}

function unauthorized(message: string, headers: Record<string, string>, scopes?: ResourceScope[]): OciError {
  return new OciError(401, 'UNAUTHORIZED', message, scopes ? scopes.map(formatScope) : undefined, headers);
}

export function tooManyAttempts(retryAfterMs: number): OciError {
  return new OciError(429, 'TOOMANYREQUESTS', 'too many failed logins; try again later', undefined, {
    'Retry-After': String(Math.ceil(retryAfterMs / 1000)),
  });
}
