// WWW-Authenticate challenges (RFC 7235): `Bearer realm="https://auth.docker.io/token",service="registry.docker.io"`
// or `Basic realm="Registry Realm"`; a header may hold several challenges separated by commas.

export interface Challenge {
  /** Lowercased: 'basic', 'bearer', ... */
  scheme: string;
  /** Parameter names lowercased, values unquoted. */
  params: Record<string, string>;
}

const TOKEN = /[!#$%&'*+.^_`|~0-9A-Za-z-]+/y;
const SPACE = /[ \t]*/y;
// Unquoted values: tokens, token68 (base64 with '=' padding), and leniently URLs, up to a comma or space.
const BARE = /[^,\s"]*/y;

/** Every challenge in the header, in order; malformed trailing text is ignored rather than fatal. */
export function parseChallenges(header: string | string[] | undefined | null): Challenge[] {
  if (header === undefined || header === null) return [];
  if (Array.isArray(header)) return header.flatMap((h) => parseChallenges(h));
  const challenges: Challenge[] = [];
  let pos = 0;
  const skip = (re: RegExp) => { re.lastIndex = pos; if (re.exec(header)) pos = re.lastIndex; };
  const token = (): string | undefined => {
    TOKEN.lastIndex = pos;
    const m = TOKEN.exec(header);
    if (!m) return undefined;
    pos = TOKEN.lastIndex;
    return m[0];
  };
  const bare = (): string => {
    BARE.lastIndex = pos;
    const m = BARE.exec(header);
    pos = BARE.lastIndex;
    return m ? m[0] : '';
  };
  const quoted = (): string | undefined => {
    if (header[pos] !== '"') return undefined;
    let out = '';
    for (pos++; pos < header.length; pos++) {
      const c = header[pos]!;
      if (c === '\\' && pos + 1 < header.length) out += header[++pos];
      else if (c === '"') { pos++; return out; }
      else out += c;
    }
    return out; // unterminated: take what there is
  };

  while (pos < header.length) {
    skip(SPACE);
    if (header[pos] === ',') { pos++; continue; }
    const scheme = token();
    if (!scheme) break;
    const challenge: Challenge = { scheme: scheme.toLowerCase(), params: {} };
    challenges.push(challenge);
    // auth-params: name=value pairs separated by commas, until the next scheme (a token not followed by '=').
    for (;;) {
      skip(SPACE);
      while (header[pos] === ',') { pos++; skip(SPACE); }
      const save = pos;
      const name = token();
      if (!name) break;
      skip(SPACE);
      if (header[pos] !== '=') { pos = save; break; }
      pos++;
      skip(SPACE);
      const value = quoted() ?? bare();
      challenge.params[name.toLowerCase()] = value;
    }
  }
  return challenges;
}

/** The challenge we answer: Bearer before Basic, other schemes not at all. */
export function pickChallenge(challenges: Challenge[]): Challenge | undefined {
  return challenges.find((c) => c.scheme === 'bearer') ?? challenges.find((c) => c.scheme === 'basic');
}
