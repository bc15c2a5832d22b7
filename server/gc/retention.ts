// Retention rules and immutable tags (retention.rules): ordered repository globs, the first match applies,
// as in auth.access. Within a rule, `keeplast` and `keeptags` protect, `deleteolderthan` narrows what goes:
//   {keeplast: 5}                          every tag but the 5 most recently pushed
//   {deleteolderthan: 30d}                 tags pushed more than 30 days ago
//   {keeplast: 5, deleteolderthan: 30d}    tags older than 30 days, but never the 5 newest
// Immutable tags are never deleted by retention (nor by DELETE; see ManifestStore), as in Harbor.
import { globToRegExp } from '../auth/access.js';
import { durationMs, type Config } from '../config.js';

type RuleConfig = Config['retention']['rules'][number];

interface CompiledRule {
  index: number;
  repository: string;
  pattern: RegExp;
  keepLast?: number;
  keepTags: RegExp[];
  deleteOlderThanMs?: number;
  immutable: Array<{ glob: string; pattern: RegExp }>;
}

export interface TagAge {
  tag: string;
  digest: string;
  /** The tag link's modification time: when it was last pushed. */
  pushedAt: number;
}

export class RetentionRules {
  private readonly rules: CompiledRule[];

  constructor(rules: RuleConfig[]) {
    this.rules = rules.map((rule, index) => ({
      index,
      repository: rule.repository,
      pattern: globToRegExp(rule.repository),
      keepLast: rule.keeplast,
      keepTags: rule.keeptags.map(globToRegExp),
      deleteOlderThanMs: rule.deleteolderthan === undefined ? undefined : durationMs(rule.deleteolderthan),
      immutable: rule.immutable.map((glob) => ({ glob, pattern: globToRegExp(glob) })),
    }));
  }

  get empty(): boolean {
    return this.rules.length === 0;
  }

  /** True when a rule may delete tags in `repository` (only then are tag ages worth reading). */
  deletesIn(repository: string): boolean {
    const rule = this.ruleFor(repository);
    return rule !== undefined && (rule.keepLast !== undefined || rule.deleteOlderThanMs !== undefined);
  }

  /** The immutable pattern covering `tag`, described for messages, or undefined. */
  immutableRule(repository: string, tag: string): string | undefined {
    const rule = this.ruleFor(repository);
    const match = rule?.immutable.find((entry) => entry.pattern.test(tag));
    return match && rule ? `retention rule ${rule.index + 1} for "${rule.repository}": immutable "${match.glob}"` : undefined;
  }

  /** The tags retention deletes from `repository` now. */
  expired(repository: string, tags: TagAge[], now: number): TagAge[] {
    const rule = this.ruleFor(repository);
    if (!rule || (rule.keepLast === undefined && rule.deleteOlderThanMs === undefined)) return [];
    const newestFirst = [...tags].sort((a, b) => b.pushedAt - a.pushedAt || (a.tag < b.tag ? -1 : 1));
    const newest = new Set(rule.keepLast === undefined ? [] : newestFirst.slice(0, rule.keepLast).map((t) => t.tag));
    return newestFirst.filter((t) => {
      if (newest.has(t.tag)) return false;
      if (rule.keepTags.some((pattern) => pattern.test(t.tag))) return false;
      if (rule.immutable.some((entry) => entry.pattern.test(t.tag))) return false;
      if (rule.deleteOlderThanMs !== undefined && now - t.pushedAt <= rule.deleteOlderThanMs) return false;
      return true;
    });
  }

  private ruleFor(repository: string): CompiledRule | undefined {
    return this.rules.find((rule) => rule.pattern.test(repository));
  }
}

/** The registry's immutable-tag check (Registry options), or undefined when no rule has immutable patterns. */
export function immutableTagCheck(rules: Config['retention']['rules']): ((name: string, tag: string) => string | undefined) | undefined {
  if (!rules.some((rule) => rule.immutable.length > 0)) return undefined;
  const compiled = new RetentionRules(rules);
  return (name, tag) => compiled.immutableRule(name, tag);
}
