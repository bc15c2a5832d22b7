// Who may do what: ordered glob rules over repository names (the first matching glob decides, as
// Verdaccio's package rules), admins, and the defaults that keep the embedded registry open.
import type { Config } from '../config.js';
import type { ResourceScope } from './scope.js';

export interface Principal {
  name: string;
  kind: 'user' | 'robot';
  groups: string[];
}

export type RepositoryAction = 'pull' | 'push' | 'delete';
const REPOSITORY_ACTIONS: RepositoryAction[] = ['pull', 'push', 'delete'];

interface CompiledRule {
  pattern: RegExp;
  grants: Record<RepositoryAction, string[]>;
}

export class AccessPolicy {
  private readonly rules: CompiledRule[];
  private readonly admins: string[];

  constructor(auth: Config['auth']) {
    this.rules = auth.access.map((rule) => ({
      pattern: globToRegExp(rule.repository),
      grants: { pull: rule.pull, push: rule.push, delete: rule.delete },
    }));
    this.admins = auth.admins;
  }

  /** Actions `principal` (undefined: anonymous) may take on `repository`. */
  repositoryActions(principal: Principal | undefined, repository: string): Set<RepositoryAction> {
    if (this.rules.length === 0) {
      // Users but no rules: every authenticated user may do everything, anonymous users nothing.
      return new Set(principal ? REPOSITORY_ACTIONS : []);
    }
    const rule = this.rules.find((r) => r.pattern.test(repository));
    if (!rule) return new Set();
    return new Set(REPOSITORY_ACTIONS.filter((action) => rule.grants[action].some((subject) => matches(subject, principal))));
  }

  isAdmin(principal: Principal | undefined): boolean {
    return principal !== undefined && this.admins.some((subject) => matches(subject, principal));
  }

  /** The part of `requested` that `principal` may have: what a token issued to it carries. */
  grant(principal: Principal | undefined, requested: ResourceScope[]): ResourceScope[] {
    const granted: ResourceScope[] = [];
    for (const scope of requested) {
      let allowed: string[] = [];
      if (scope.type === 'repository') {
        const actions = this.repositoryActions(principal, scope.name);
        allowed = scope.actions.includes('*') ? [...actions] : scope.actions.filter((a) => actions.has(a as RepositoryAction));
      } else if (scope.name === 'catalog' || scope.name === 'admin') {
        allowed = this.isAdmin(principal) ? scope.actions.filter((a) => a === '*') : [];
      }
      if (allowed.length > 0) granted.push({ ...scope, actions: allowed });
    }
    return granted;
  }
}

function matches(subject: string, principal: Principal | undefined): boolean {
  if (subject === '$all') return true;
  if (subject === '$anonymous') return principal === undefined;
  if (principal === undefined) return false;
  if (subject === '$authenticated') return true;
  if (subject.startsWith('group:')) return principal.groups.includes(subject.slice('group:'.length));
  return subject === principal.name;
}

// `*` matches within one path component, `**` any number of components, none included:
// `ddn-k8s/**` matches `ddn-k8s` and everything below it, `a/**/b` matches `a/b` and `a/x/y/b`.
export function globToRegExp(glob: string): RegExp {
  let source = '';
  for (let i = 0; i < glob.length; i++) {
    const char = glob[i]!;
    if (char === '*' && glob[i + 1] === '*') {
      const before = i === 0 || glob[i - 1] === '/';
      const after = glob[i + 2];
      if (before && after === '/') {
        source += '(?:.*/)?'; // "**/": zero or more leading components
        i += 2;
      } else if (before && after === undefined && source.endsWith('/')) {
        source = `${source.slice(0, -1)}(?:/.*)?`; // "/**" at the end: the prefix itself too
        i++;
      } else {
        source += '.*';
        i++;
      }
    } else if (char === '*') source += '[^/]*';
    else if (char === '?') source += '[^/]';
    else source += char.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${source}$`);
}
