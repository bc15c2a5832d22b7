// Credentials never reach the log. Known fields are censored by path at the logger (pino's redact); free
// text (messages, error messages and stacks, which may quote a URL or a header) is scrubbed of tokens,
// credentials in URLs and signed-URL query parameters.

/**
 * Fields censored wherever they appear (two levels deep). Checked by key in the same pass that scrubs
 * free text, rather than with pino's path-based redact, which cost 5 times a whole access-log line.
 */
const REDACTED_KEYS = new Set([
  'authorization',
  'cookie',
  'password',
  'token',
  'access_token',
  'refresh_token',
  'identitytoken',
  'secret',
  'secretkey',
  'sessiontoken',
]);

export const CENSOR = '[redacted]';

const SCRUBBERS: Array<[RegExp, string]> = [
  // Authorization header values quoted in text.
  [/\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{8,}/gi, '$1 [redacted]'],
  // JWTs anywhere (access and refresh tokens).
  [/\beyJ[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]*/g, '[redacted-jwt]'],
  // Query parameters that carry credentials or signatures (token endpoints, presigned S3 URLs).
  [/([?&](?:access_token|refresh_token|token|password|client_secret|x-amz-signature|x-amz-credential|x-amz-security-token|signature|sig)=)[^&\s"'#]*/gi, '$1[redacted]'],
  // user:password@ and token@ in URLs (redis://, https://ghp_...@github.com).
  [/\b([a-z][a-z0-9+.-]*:\/\/)[^/\s@]+@/gi, '$1[redacted]@'],
];

/** Cheap test first: most strings (routes, ids, digests) cannot hold any of the above. */
function mayHoldSecret(text: string): boolean {
  return text.includes('=') || text.includes('@') || text.includes('eyJ') || /bearer|basic/i.test(text);
}

export function scrubText(text: string): string {
  if (text.length < 8 || !mayHoldSecret(text)) return text;
  let out = text;
  for (const [pattern, replacement] of SCRUBBERS) out = out.replace(pattern, replacement);
  return out;
}

/** An Error as pino would serialize it, with its message and stack scrubbed. */
function scrubError(error: Error): Record<string, unknown> {
  const out: Record<string, unknown> = { type: error.name, message: scrubText(error.message) };
  if (error.stack) out.stack = scrubText(error.stack);
  const code = (error as NodeJS.ErrnoException).code;
  if (code !== undefined) out.code = code;
  if (error.cause instanceof Error) out.cause = scrubError(error.cause);
  return out;
}

function scrubValue(value: unknown, depth: number): unknown {
  if (typeof value === 'string') return scrubText(value);
  if (value === null || typeof value !== 'object') return value;
  if (value instanceof Error) return scrubError(value);
  if (depth > 0 && !Array.isArray(value) && !Buffer.isBuffer(value)) return scrubObject(value as Record<string, unknown>, depth - 1);
  return value;
}

function scrubObject(object: Record<string, unknown>, depth: number): Record<string, unknown> {
  let out: Record<string, unknown> | undefined;
  for (const key in object) {
    const value = object[key];
    if (value === undefined) continue;
    const scrubbed = REDACTED_KEYS.has(key.toLowerCase()) ? CENSOR : scrubValue(value, depth);
    if (scrubbed !== value) (out ??= { ...object })[key] = scrubbed;
  }
  return out ?? object;
}

/** pino `formatters.log`: the fields of one line, scrubbed two levels deep (copied only when changed). */
export function scrubLogObject(object: Record<string, unknown>): Record<string, unknown> {
  return scrubObject(object, 2);
}

/** Names that say their value is a credential (build arguments such as NPM_TOKEN, a registry's password). */
const SECRET_NAME = /token|secret|passw|pwd|key|credential|auth|cookie|session/i;

/** Build arguments as they may be shown: secret-named values hidden, credentials in URLs and text scrubbed. */
export function shownBuildArgs(args: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(args).map(([name, value]) => [name, SECRET_NAME.test(name) ? CENSOR : scrubText(String(value))]));
}

/**
 * A job's request or result as the admin API shows it: the queue keeps what the worker needs (a build's
 * arguments), readers see it scrubbed, with the values of build arguments that name a secret hidden.
 */
export function shownRecord(value: unknown, depth = 8): unknown {
  if (typeof value === 'string') return scrubText(value);
  if (value === null || typeof value !== 'object' || depth === 0) return value;
  if (Array.isArray(value)) return value.map((item) => shownRecord(item, depth - 1));
  return Object.fromEntries(
    Object.entries(value as Record<string, unknown>).map(([key, item]) => [
      key,
      REDACTED_KEYS.has(key.toLowerCase())
        ? CENSOR
        : key === 'buildArgs' && item !== null && typeof item === 'object'
          ? shownBuildArgs(item as Record<string, string>)
          : shownRecord(item, depth - 1),
    ]),
  );
}
