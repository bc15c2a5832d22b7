// Which mirror sync rule owns a tag: the next run of the rule would overwrite it, so a build refuses to
// write such a tag unless told to (`force`). A rule owns `<target>:<tag>` when one of its layouts maps one
// of its repositories to that target and its tag filter selects the tag (for ddn-k8s, the tag without
// its platform suffix).
import type { Config } from '../server/config.js';
import { resolveDdnTag, targetRepository, type Layout } from '../server/mirror/layouts.js';
import { parseMirrorRequest, selectTags, type MirrorJobRequest } from '../server/mirror/mirror-request.js';

interface Owner {
  rule: string;
  target: string;
  layout: Layout;
  request: MirrorJobRequest;
}

export class TagOwners {
  private readonly owners: Owner[] = [];

  constructor(rules: Config['mirror']['sync']) {
    for (const rule of rules) {
      for (const repository of rule.repositories) {
        // Rules are validated when the config is read (sync-rules.ts); one this fails on owns nothing.
        let request: MirrorJobRequest;
        try {
          request = parseMirrorRequest({
            source: `${rule.upstream}/${repository}`,
            ...(rule.tags ? { tags: rule.tags } : rule.semver ? { semver: rule.semver } : { tagRegex: rule.tagregex ?? '.*' }),
            layouts: rule.layouts,
          });
        } catch {
          continue;
        }
        for (const layout of request.layouts) {
          try {
            this.owners.push({ rule: rule.name, target: targetRepository(layout, rule.upstream, repository), layout, request });
          } catch {
            // an invalid target: the rule cannot write it either
          }
        }
      }
    }
  }

  /** The name of the rule that owns `repository:tag`, if any. */
  async ownerOf(repository: string, tag: string): Promise<string | undefined> {
    for (const owner of this.owners) {
      if (owner.target !== repository) continue;
      const base = owner.layout === 'ddn-k8s' ? resolveDdnTag(tag).upstreamTag : tag;
      const selected = await selectTags(owner.request, async () => [base]);
      if (selected.includes(base)) return owner.rule;
    }
    return undefined;
  }

  /** Every `repository:tag` of `writes` a rule owns, with the rule. */
  async owned(writes: Array<{ repository: string; tag: string }>): Promise<Array<{ repository: string; tag: string; rule: string }>> {
    const found: Array<{ repository: string; tag: string; rule: string }> = [];
    for (const write of writes) {
      const rule = await this.ownerOf(write.repository, write.tag);
      if (rule) found.push({ ...write, rule });
    }
    return found;
  }
}
