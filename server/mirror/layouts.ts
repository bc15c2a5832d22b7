// Where a mirrored upstream tag lands here (DESIGN.md section 4), as pure functions: the mirror job
// copies content and writes exactly these tags; pull-through reads the mapping backwards.
import type { Descriptor, Platform } from '../registry/descriptor.js';
import { isIndexMediaType } from '../registry/media-types.js';
import { isValidName, isValidTag } from '../registry/names.js';
import { formatPlatform, isUnknownPlatform, parsePlatform, platformTagSuffix } from './platforms.js';

export { platformTagSuffix, resolveDdnTag, type DdnTag } from './platforms.js';

/** `same-name`: as upstream; `ddn-k8s`: one platform manifest per tag; `{prefix}`: same-name under a prefix. */
export type Layout = 'same-name' | 'ddn-k8s' | { prefix: string };

export const DDN_K8S_ROOT = 'ddn-k8s';

/** The upstream tag's manifest: an index with its entries, or one image manifest with its config's platform. */
export interface SourceManifest {
  digest: string;
  mediaType: string;
  /** The entries of an index (ParsedManifest.manifests); ignored for an image manifest. */
  manifests?: Descriptor[];
  /** For an image manifest: os, architecture and variant of its config. */
  platform?: Pick<Platform, 'os' | 'architecture' | 'variant'>;
}

export interface MirrorRequest {
  /** The upstream's configured name (`docker.io`), never its API host. */
  upstream: string;
  /** The repository as the user wrote it (`nginx`, `langgenius/dify-api`). */
  repository: string;
  tag: string;
  manifest: SourceManifest;
  layouts: Layout[];
  /** `os/arch[/variant]` strings; absent or empty: every platform. */
  platforms?: string[];
}

export interface TagWrite {
  /** 'same-name', 'ddn-k8s' or 'prefix'. */
  layout: 'same-name' | 'ddn-k8s' | 'prefix';
  repository: string;
  tag: string;
  digest: string;
  mediaType: string;
  /** The normalised platform of a single-platform manifest, when known. */
  platform?: string;
  /**
   * When the tagged manifest is an index: every manifest it names, which must be stored in `repository`
   * before the tag is written (attestations included, so the index stays byte-identical).
   */
  children: Descriptor[];
}

export interface SkippedEntry {
  layout: TagWrite['layout'];
  digest: string;
  platform?: string;
  reason: 'attestation' | 'no platform' | 'not a platform manifest' | 'platform filtered out' | 'duplicate platform' | 'tag too long';
}

export interface MirrorPlan {
  /** The repository to ask the upstream for (`library/nginx` for docker.io's `nginx`). */
  upstreamRepository: string;
  writes: TagWrite[];
  /** What a layout deliberately leaves untagged, for job logs. */
  skipped: SkippedEntry[];
}

/** Docker Hub keeps official images under `library/`; only for the upstream named `docker.io`. */
export function upstreamRepository(upstreamName: string, repository: string): string {
  return upstreamName === 'docker.io' && !repository.includes('/') ? `library/${repository}` : repository;
}

/** The local repository of `repository` from `upstream` in `layout`. */
export function targetRepository(layout: Layout, upstream: string, repository: string): string {
  let name: string;
  if (layout === 'same-name') name = repository;
  else if (layout === 'ddn-k8s') name = `${DDN_K8S_ROOT}/${upstream}/${repository}`;
  else name = `${normalizePrefix(layout.prefix)}/${repository}`;
  if (!isValidName(name)) throw new Error(`mirror target "${name}" is not a valid repository name`);
  return name;
}

function normalizePrefix(prefix: string): string {
  const trimmed = prefix.replace(/^\/+|\/+$/g, '');
  if (!isValidName(trimmed)) throw new Error(`mirror prefix "${prefix}" is not a valid repository path`);
  return trimmed;
}

export function layoutName(layout: Layout): TagWrite['layout'] {
  return typeof layout === 'string' ? layout : 'prefix';
}

/**
 * Every tag write of one upstream tag in every requested layout.
 *
 * The platforms filter chooses which platform manifests are wanted. ddn-k8s tags only those. same-name
 * and prefix keep the upstream tag byte-identical, and a byte-identical index needs every manifest it
 * names: they write the whole index when at least one of its platforms is wanted, and nothing otherwise.
 * When an index names the same platform twice (e.g. Windows images per OS version), the first entry wins
 * and the others are reported as skipped.
 */
export function planMirror(request: MirrorRequest): MirrorPlan {
  const { upstream, repository, tag, manifest } = request;
  if (!isValidName(repository)) throw new Error(`"${repository}" is not a valid repository name`);
  if (!isValidTag(tag)) throw new Error(`"${tag}" is not a valid tag`);
  const wanted = platformFilter(request.platforms);
  const plan: MirrorPlan = { upstreamRepository: upstreamRepository(upstream, repository), writes: [], skipped: [] };
  const isIndex = isIndexMediaType(manifest.mediaType);
  const entries = isIndex ? (manifest.manifests ?? []) : [];
  const single = isIndex ? undefined : manifest.platform ? formatPlatform(manifest.platform) : undefined;

  const filtered = (request.platforms ?? []).length > 0;
  const anyWanted = !filtered ? true : isIndex
    ? entries.some((e) => e.platform !== undefined && !isUnknownPlatform(e.platform) && wanted(formatPlatform(e.platform)))
    : wanted(single);

  for (const layout of request.layouts) {
    const name = layoutName(layout);
    const target = targetRepository(layout, upstream, repository);
    if (name !== 'ddn-k8s') {
      if (!anyWanted) {
        plan.skipped.push({ layout: name, digest: manifest.digest, ...(single ? { platform: single } : {}), reason: 'platform filtered out' });
        continue;
      }
      plan.writes.push({
        layout: name,
        repository: target,
        tag,
        digest: manifest.digest,
        mediaType: manifest.mediaType,
        ...(single ? { platform: single } : {}),
        children: isIndex ? entries : [],
      });
      continue;
    }
    const candidates: Array<{ digest: string; mediaType: string; platform?: Pick<Platform, 'os' | 'architecture' | 'variant'> }> =
      isIndex ? entries : [{ digest: manifest.digest, mediaType: manifest.mediaType, platform: manifest.platform }];
    const taken = new Set<string>();
    for (const entry of candidates) {
      const skip = (reason: SkippedEntry['reason'], platform?: string) =>
        plan.skipped.push({ layout: name, digest: entry.digest, ...(platform ? { platform } : {}), reason });
      if (!entry.platform) { skip('no platform'); continue; }
      const platform = formatPlatform(entry.platform);
      if (isUnknownPlatform(entry.platform)) { skip('attestation', platform); continue; }
      // ddn-k8s tags name single-platform manifests; a nested index is not one.
      if (isIndexMediaType(entry.mediaType)) { skip('not a platform manifest', platform); continue; }
      const suffix = platformTagSuffix(entry.platform);
      if (suffix === undefined) { skip('no platform', platform); continue; }
      if (!wanted(platform)) { skip('platform filtered out', platform); continue; }
      if (taken.has(platform)) { skip('duplicate platform', platform); continue; }
      taken.add(platform);
      const platformTag = tag + suffix;
      if (!isValidTag(platformTag)) { skip('tag too long', platform); continue; }
      plan.writes.push({ layout: name, repository: target, tag: platformTag, digest: entry.digest, mediaType: entry.mediaType, platform, children: [] });
    }
  }
  return plan;
}

/** A predicate over normalised platform strings; no filter wants everything, even an unknown platform. */
function platformFilter(platforms: string[] | undefined): (platform: string | undefined) => boolean {
  if (!platforms || platforms.length === 0) return () => true;
  const set = new Set(platforms.map((p) => {
    const parsed = parsePlatform(p);
    if (!parsed) throw new Error(`"${p}" is not a platform (os/arch[/variant])`);
    return formatPlatform(parsed);
  }));
  return (platform) => platform !== undefined && set.has(platform);
}
