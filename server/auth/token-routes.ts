// The token endpoint (Docker's token spec: GET with Basic credentials; OAuth2 POST with the password and
// refresh_token grants that docker login uses) and the issuer's public keys as JWKS.
import type Router from '@koa/router';
import type { Context } from 'koa';
import { OciError } from '../registry/errors.js';
import { readBody } from '../distribution/request.js';
import { tooManyAttempts } from '../http/authorization.js';
import { limitKeyOf } from '../http/client-address.js';
import type { Principal } from './access.js';
import { parseBasic, type AuthService } from './auth-service.js';
import { jwks } from './keys.js';
import { covers, formatScope, parseScopes, type ResourceScope } from './scope.js';
import { TokenError } from './tokens.js';

const MAX_FORM_BYTES = 64 * 1024;

export function tokenRoutes(router: Router, auth: AuthService): void {
  router.get('/token', async (ctx) => {
    const credentials = parseBasic(ctx.get('Authorization'));
    const principal = credentials ? await login(auth, ctx, credentials.name, credentials.password) : undefined;
    const offline = ctx.query.offline_token === 'true' && principal !== undefined;
    await answer(ctx, auth, principal, queryValues(ctx, 'scope'), offline);
  });

  router.post('/token', async (ctx) => {
    const form = new URLSearchParams((await readBody(ctx, MAX_FORM_BYTES)).toString('utf8'));
    const scopes = form.getAll('scope');
    const grant = form.get('grant_type');
    if (grant === 'password') {
      const principal = await login(auth, ctx, form.get('username') ?? '', form.get('password') ?? '');
      await answer(ctx, auth, principal, scopes, form.get('access_type') === 'offline');
    } else if (grant === 'refresh_token') {
      const refresh = form.get('refresh_token') ?? '';
      // A build engine's credential (tokens.ts issueDelegated): access within its ceiling, nothing else.
      const delegated = await auth.tokens.verifyDelegated(refresh, auth.service);
      if (delegated) {
        ctx.state.user = delegated.subject;
        await answerWithin(ctx, auth, delegated.subject, delegated.ceiling, scopes);
        return;
      }
      let principal: Principal | undefined;
      try {
        const claims = await auth.tokens.verifyRefresh(refresh, auth.service);
        principal = auth.users.find(claims.subject, claims.credential);
      } catch (error) {
        if (!(error instanceof TokenError)) throw error;
      }
      if (!principal) throw new OciError(401, 'UNAUTHORIZED', 'invalid or expired refresh token');
      ctx.state.user = principal.name;
      await answer(ctx, auth, principal, scopes, false, refresh);
    } else {
      throw new OciError(400, 'UNSUPPORTED', 'grant_type must be password or refresh_token', { grant_type: grant });
    }
  });

  router.get('/.well-known/jwks.json', async (ctx) => {
    ctx.body = await jwks(auth.keys);
  });
}

async function login(auth: AuthService, ctx: Context, name: string, password: string): Promise<Principal> {
  const result = await auth.basic(name, password, limitKeyOf(ctx));
  if ('retryAfterMs' in result) throw tooManyAttempts(result.retryAfterMs);
  if ('invalid' in result) throw new OciError(401, 'UNAUTHORIZED', 'invalid username or password');
  ctx.state.user = result.principal.name;
  return result.principal;
}

/** Issues a token for the part of the requested scopes the principal may have (never more, maybe less). */
async function answer(
  ctx: Context,
  auth: AuthService,
  principal: Principal | undefined,
  requested: string[],
  offline: boolean,
  refreshToken?: string,
): Promise<void> {
  const granted = auth.policy.grant(principal, parseScopes(requested));
  const service = auth.service;
  const issued = await auth.tokens.issue(principal?.name ?? '', service, granted);
  const refresh = refreshToken ?? (offline && principal ? await refreshTokenFor(auth, principal) : undefined);
  ctx.set('Cache-Control', 'no-store');
  ctx.body = {
    token: issued.token,
    access_token: issued.token,
    expires_in: issued.expiresIn,
    issued_at: issued.issuedAt,
    scope: granted.map(formatScope).join(' '),
    ...(refresh ? { refresh_token: refresh } : {}),
  };
}

async function refreshTokenFor(auth: AuthService, principal: Principal): Promise<string | undefined> {
  const credential = auth.users.credentialOf(principal.name);
  return credential && auth.tokens.issueRefresh(principal.name, auth.service, credential);
}

/** Issues a token for the requested scopes as far as `ceiling` covers them. */
async function answerWithin(ctx: Context, auth: AuthService, subject: string, ceiling: ResourceScope[], requested: string[]): Promise<void> {
  const granted: ResourceScope[] = [];
  for (const scope of parseScopes(requested)) {
    const actions = scope.actions.filter((action) => covers(ceiling, { ...scope, actions: [action] }));
    if (actions.length > 0) granted.push({ ...scope, actions });
  }
  const issued = await auth.tokens.issue(subject, auth.service, granted);
  ctx.set('Cache-Control', 'no-store');
  ctx.body = { token: issued.token, access_token: issued.token, expires_in: issued.expiresIn, issued_at: issued.issuedAt, scope: granted.map(formatScope).join(' ') };
}

function queryValues(ctx: Context, key: string): string[] {
  const value = ctx.query[key];
  return value === undefined ? [] : Array.isArray(value) ? value : [value];
}
