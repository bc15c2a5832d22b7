// Who someone is: users from an htpasswd file (bcrypt, as Distribution reads it) and from the config,
// robot accounts for CI (robot$<name>), and the groups they belong to.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import bcrypt from 'bcryptjs';
import type { Config } from '../config.js';
import type { Principal } from './access.js';

export const ROBOT_PREFIX = 'robot$';

interface Account {
  hash: string;
  kind: Principal['kind'];
}


export class UserDirectory {
  private readonly accounts = new Map<string, Account>();
  private readonly groupsOf = new Map<string, string[]>();
  /** Compared against for unknown names, at the accounts' own cost, so timing does not tell names apart. */
  private readonly dummyHash: string;

  constructor(auth: Config['auth']) {
    if (auth.htpasswd) {
      for (const [name, hash] of parseHtpasswd(readFileSync(auth.htpasswd.path, 'utf8'), auth.htpasswd.path)) {
        this.accounts.set(name, { hash, kind: 'user' });
      }
    }
    for (const user of auth.users) this.accounts.set(user.name, { hash: user.password, kind: 'user' });
    for (const robot of auth.robots) this.accounts.set(`${ROBOT_PREFIX}${robot.name}`, { hash: robot.secret, kind: 'robot' });
    for (const [group, members] of Object.entries(auth.groups)) {
      for (const member of members) this.groupsOf.set(member, [...(this.groupsOf.get(member) ?? []), group]);
    }
    const cost = Number(/^\$2[aby]\$(\d\d)\$/.exec(this.accounts.values().next().value?.hash ?? '')?.[1] ?? 10);
    this.dummyHash = bcrypt.hashSync('not a password', cost);
  }

  get size(): number {
    return this.accounts.size;
  }

  /** The principal for these credentials, or undefined. */
  async authenticate(name: string, password: string): Promise<Principal | undefined> {
    const account = this.accounts.get(name);
    const ok = await bcrypt.compare(password, account?.hash ?? this.dummyHash);
    return ok && account ? this.principalOf(name, account) : undefined;
  }

  /**
   * The principal a refresh token names, if that account still exists with the password (or robot secret)
   * the token was issued under: a changed password ends the refresh tokens of the old one.
   */
  find(name: string, credential: string | undefined): Principal | undefined {
    const account = this.accounts.get(name);
    return account && credentialTag(account.hash) === credential ? this.principalOf(name, account) : undefined;
  }

  /** What a refresh token of `name` carries to tie it to the account's current password. */
  credentialOf(name: string): string | undefined {
    const account = this.accounts.get(name);
    return account && credentialTag(account.hash);
  }

  private principalOf(name: string, account: Account): Principal {
    return { name, kind: account.kind, groups: this.groupsOf.get(name) ?? [] };
  }
}

/** A fingerprint of the bcrypt hash (salted, so it tells nothing about the password). */
function credentialTag(hash: string): string {
  return createHash('sha256').update(hash).digest('base64url').slice(0, 22);
}

/** `name:hash` lines; only bcrypt hashes (Distribution accepts nothing else either). */
export function parseHtpasswd(text: string, file: string): Array<[string, string]> {
  const entries: Array<[string, string]> = [];
  text.split(/\r?\n/).forEach((line, index) => {
    const trimmed = line.trim();
    if (!trimmed || trimmed.startsWith('#')) return;
    const colon = trimmed.indexOf(':');
    const name = trimmed.slice(0, colon);
    const hash = trimmed.slice(colon + 1);
    if (colon <= 0 || !/^\$2[aby]\$\d\d\$/.test(hash)) {
      throw new Error(`${file}:${index + 1}: expected user:<bcrypt hash> (htpasswd -B)`);
    }
    entries.push([name, hash]);
  });
  return entries;
}
