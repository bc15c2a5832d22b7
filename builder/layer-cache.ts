// Keeping buildah's layer cache (one storage root per platform) within builder.buildah.cachesize. Every
// build leaves intermediate images, one per instruction: rebuilds of unchanged sources add almost nothing,
// but each new set of dependencies adds its layers (about 4 GB per platform for dify-api) and nothing ever
// removed the old ones, until the disk or the pod's volume limit was full. Over the limit, after a build
// (a failed one too: it leaves the steps it finished), cached images that build did not use go, oldest
// first, until the cache fits; its own stay (those it made, those it took from the cache), so its rebuild
// is still warm. Named images (bases, the builds' results) stay too: they are few.

export interface CachedImage {
  /** Without the `sha256:` prefix. */
  id: string;
  names: string[];
  /** Seconds since the epoch. */
  created: number;
}

/** `buildah images --all --json --no-trunc` output. */
export function parseImageList(json: string): CachedImage[] {
  const list = JSON.parse(json) as Array<{ id?: unknown; names?: unknown; created?: unknown }> | null;
  return (list ?? [])
    .filter((image): image is { id: string; names?: unknown; created?: unknown } => typeof image.id === 'string')
    .map((image) => ({
      id: image.id.replace(/^sha256:/, ''),
      names: Array.isArray(image.names) ? image.names.filter((name): name is string => typeof name === 'string') : [],
      created: typeof image.created === 'number' ? image.created : 0,
    }));
}

/** The cached images `buildah bud` reused, from its `--> Using cache <id>` lines. */
export function reusedImage(line: string): string | undefined {
  return /^--> Using cache ([0-9a-f]{64})\s*$/.exec(line)?.[1];
}

/**
 * What may go when the cache is over its limit, oldest first: unnamed images that were there before the
 * build (`before`) and that it did not reuse.
 */
export function evictable(images: CachedImage[], before: ReadonlySet<string>, reused: ReadonlySet<string>): string[] {
  return images
    .filter((image) => image.names.length === 0 && before.has(image.id) && !reused.has(image.id))
    .sort((a, b) => a.created - b.created)
    .map((image) => image.id);
}
