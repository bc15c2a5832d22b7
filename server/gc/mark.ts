// The mark of one repository: which of its revisions (manifests) and layer links are live. Roots: tags,
// revisions younger than the grace period, untagged revisions the untagged policy keeps, leased digests;
// then everything they reach: index children, config and layers, and referrers of live manifests.
import type { StorageDriver } from '../../storage-drivers/driver.js';
import { parseDigest } from '../registry/digest.js';
import { paths } from '../registry/paths.js';
import { mapLimit } from './concurrency.js';
import { layerDigests, modTime, readTag, referrerEntries, revisionDigests, tagNames, type ReferrerEntry } from './layout.js';
import type { ManifestRefsReader } from './manifest-refs.js';

export interface MarkPolicy {
  /** Revisions with a link younger than this (ms since the epoch) are roots. */
  cutoff: number;
  /** Untagged revisions younger than this are roots; undefined: all are (`gc.untagged: keep`). */
  untaggedCutoff: number | undefined;
  leased: Set<string>;
  concurrency: number;
  signal?: AbortSignal;
}

export class RepositoryMark {
  /** Tag -> digest, as read (without tags retention removes in this run). */
  readonly tags = new Map<string, string>();
  readonly revisions = new Set<string>();
  readonly layers = new Set<string>();
  referrers: ReferrerEntry[] = [];
  /** Live revisions. */
  readonly live = new Set<string>();
  /** Blobs live manifests reference (whether or not this repository links them). */
  readonly liveBlobs = new Set<string>();
  private readonly pending: string[] = [];

  constructor(
    readonly repository: string,
    private readonly driver: StorageDriver,
    private readonly refs: ManifestRefsReader,
    private readonly policy: MarkPolicy,
  ) {}

  /** Reads the repository and marks it. `removedTags`: tags this run deletes (retention), not roots. */
  async mark(removedTags: ReadonlySet<string> = new Set()): Promise<void> {
    const { driver, repository, policy } = this;
    const [tags, revisions, layers, referrers] = await Promise.all([
      tagNames(driver, repository),
      revisionDigests(driver, repository),
      layerDigests(driver, repository),
      referrerEntries(driver, repository),
    ]);
    for (const digest of revisions) this.revisions.add(digest);
    for (const digest of layers) this.layers.add(digest);
    this.referrers = referrers;
    const targets = await mapLimit(tags, policy.concurrency, (tag) => readTag(driver, repository, tag), policy.signal);
    tags.forEach((tag, i) => targets[i] && this.tags.set(tag, targets[i]));

    for (const [tag, digest] of this.tags) if (!removedTags.has(tag)) this.addRoot(digest);
    for (const digest of this.revisions) if (policy.leased.has(digest)) this.addRoot(digest);
    await this.propagate();
    // Untagged revisions: their age decides (only these cost a stat each).
    const untagged = [...this.revisions].filter((digest) => !this.live.has(digest));
    const ages = await mapLimit(untagged, policy.concurrency, (digest) => modTime(driver, paths.revisionLink(repository, parseDigest(digest)!)), policy.signal);
    untagged.forEach((digest, i) => {
      const age = ages[i];
      if (age === undefined) return; // gone meanwhile
      if (age >= policy.cutoff || policy.untaggedCutoff === undefined || age >= policy.untaggedCutoff) this.addRoot(digest);
    });
    await this.propagate();
  }

  /** A revision found live after the mark (written since, or kept by the re-check): it and what it reaches. */
  async keep(digest: string): Promise<void> {
    this.revisions.add(digest);
    this.addRoot(digest);
    await this.propagate();
  }

  /** Revisions no root reaches; indexes first, so a crash never leaves an index whose children are gone. */
  async garbageRevisions(): Promise<string[]> {
    const garbage = [...this.revisions].filter((digest) => !this.live.has(digest));
    const hasChildren = await Promise.all(garbage.map(async (digest) => ((await this.refs.read(digest))?.children.length ?? 0) > 0));
    return [...garbage.filter((_, i) => hasChildren[i]), ...garbage.filter((_, i) => !hasChildren[i])];
  }

  /** Layer links that no live manifest needs. */
  garbageLayers(): string[] {
    return [...this.layers].filter((digest) => !this.liveBlobs.has(digest) && !this.live.has(digest) && !this.policy.leased.has(digest));
  }

  private addRoot(digest: string): void {
    if (!this.revisions.has(digest) || this.live.has(digest)) return;
    this.live.add(digest);
    this.pending.push(digest);
  }

  /** Follows references from newly live manifests, and referrers of live subjects, until nothing changes. */
  private async propagate(): Promise<void> {
    while (this.pending.length > 0) {
      while (this.pending.length > 0) {
        const batch = this.pending.splice(0, this.pending.length);
        const refs = await mapLimit(batch, this.policy.concurrency, (digest) => this.refs.read(digest), this.policy.signal);
        for (const ref of refs) {
          if (!ref) continue;
          for (const blob of ref.blobs) this.liveBlobs.add(blob);
          // Index entries are manifests, except in BuildKit's cache export, where they are blobs.
          for (const child of ref.children) {
            if (this.revisions.has(child)) this.addRoot(child);
            else this.liveBlobs.add(child);
          }
        }
      }
      for (const entry of this.referrers) if (this.live.has(entry.subject.digest)) this.addRoot(entry.referrer.digest);
    }
  }
}
