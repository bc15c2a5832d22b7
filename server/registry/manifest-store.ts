// Manifests: bytes stored exactly as received (as content-addressed blobs), a revision link per repository,
// tags, and referrer entries. Writes go content first, tag last, so a reader never sees a tag whose
// manifest is missing and a crash leaves at most unreferenced content for GC.
import { exists, isNotFound, type StorageDriver } from '../../storage-drivers/driver.js';
import type { BlobStore } from './blob-store.js';
import { detectMediaType, parseManifest, type ParsedManifest } from './manifest.js';
import { ManifestCache } from './manifest-cache.js';
import type { ReferrerStore } from './referrer-store.js';
import type { TagStore } from './tag-store.js';
import { digestInvalid, manifestUnknown, OciError } from './errors.js';
import { assertDigest, digestOf, parseDigest, type ParsedDigest } from './digest.js';
import { assertValidTag, isValidTag } from './names.js';
import { paths } from './paths.js';
import type { Descriptor } from './descriptor.js';
import { cacheKeys, DescriptorCache } from './descriptor-cache.js';
import { removeFile } from './remove-file.js';
import type { ReferenceFence } from '../gc/fence.js';

export interface StoredManifest {
  digest: string;
  mediaType: string;
  bytes: Buffer;
}

export interface ManifestGuards {
  /** Garbage collection's writer side: revisions written while a collection runs are pinned and checked. */
  fence?: ReferenceFence;
  /** The immutable-tag rule that covers `tag` in `name`, described for the error message, if any. */
  immutableTag?: (name: string, tag: string) => string | undefined;
}

export class ManifestStore {
  private readonly cache = new ManifestCache(32 * 1024 * 1024);

  constructor(
    private readonly driver: StorageDriver,
    private readonly blobs: BlobStore,
    private readonly tags: TagStore,
    private readonly referrers: ReferrerStore,
    private readonly descriptors = new DescriptorCache(),
    private readonly guards: ManifestGuards = {},
  ) {}

  async get(name: string, reference: string): Promise<StoredManifest> {
    const ref = parseReadReference(reference);
    const digest = ref.digest ?? (await this.tags.resolve(name, ref.tag));
    if (!(await this.hasRevision(name, digest))) throw manifestUnknown(reference);
    return this.load(digest, reference);
  }

  /**
   * Stores a manifest. `referencesArrive: 'later'` is for pull-through caches, where the upstream's blobs and
   * child manifests are fetched when first asked for rather than before their manifest.
   */
  async put(
    name: string,
    reference: string,
    bytes: Buffer,
    contentType: string | undefined,
    options: { referencesArrive?: 'before' | 'later' } = {},
  ): Promise<ParsedManifest> {
    const { digest: expected, tag } = parseReference(reference);
    const manifest = parseManifest(bytes, contentType);
    if (expected && expected.digest !== manifest.digest) {
      // A sha512 reference is checked over the same bytes.
      if (digestOf(bytes, expected.algorithm) !== expected.digest) {
        throw digestInvalid('manifest digest does not match the reference', { reference, digest: manifest.digest });
      }
    }
    if (options.referencesArrive !== 'later') await this.assertReferencesExist(name, manifest);

    const digest = expected ?? parseDigest(manifest.digest)!;
    const immutable = tag === undefined ? undefined : this.guards.immutableTag?.(name, tag);
    if (tag && immutable) await this.assertTagUnmoved(name, tag, digest, immutable);
    await this.blobs.putVerified(digest, bytes);
    await this.writeRevision(name, digest, manifest);
    const references = [digest.digest, ...manifest.blobs.map((d) => d.digest), ...manifest.manifests.map((d) => d.digest)];
    if (await this.guards.fence?.protect(name, references)) {
      // A collection is running: an earlier delete batch may have taken what we wrote or what we reference.
      await this.driver.putContent(paths.blobData(digest), bytes);
      await this.writeRevision(name, digest, manifest);
      if (options.referencesArrive !== 'later') await this.assertReferencesExist(name, manifest);
    }
    if (tag) await this.setTag(name, tag, digest, immutable);
    // A DELETE by digest of this manifest may have removed the revision (and the tag) since it was written
    // here: the tag answered 201 must pull, as if this PUT came after it. That delete looks again (below).
    if (tag && !(await this.hasRevision(name, digest))) {
      await this.writeRevision(name, digest, manifest);
      await this.setTag(name, tag, digest, immutable);
    }
    this.cache.set(digest.digest, { bytes, mediaType: manifest.mediaType });
    return { ...manifest, digest: digest.digest };
  }

  private async setTag(name: string, tag: string, digest: ParsedDigest, immutable: string | undefined): Promise<void> {
    if (!immutable) return this.tags.set(name, tag, digest);
    const current = await this.tags.create(name, tag, digest);
    if (current !== undefined && current !== digest.digest) throw immutableTagDenied(tag, immutable);
  }

  private async writeRevision(name: string, digest: ParsedDigest, manifest: ParsedManifest): Promise<void> {
    await this.descriptors.write(cacheKeys.revision(name, digest.digest), '1', () =>
      this.driver.putContent(paths.revisionLink(name, digest), digest.digest),
    );
    if (manifest.subject) {
      await this.referrers.add(name, parseDigest(manifest.subject.digest)!, this.referrerDescriptor(manifest, digest));
    }
  }

  /** An immutable tag may be created, or pushed again with the same manifest, but never moved. */
  private async assertTagUnmoved(name: string, tag: string, digest: ParsedDigest, rule: string): Promise<void> {
    const current = await this.tags.resolve(name, tag).catch((error: unknown) => {
      if (error instanceof OciError && error.code === 'MANIFEST_UNKNOWN') return undefined;
      throw error;
    });
    if (current !== undefined && current.digest !== digest.digest) throw immutableTagDenied(tag, rule);
  }

  /** DELETE by digest removes the manifest and every tag on it; DELETE by tag removes only the tag. */
  async delete(name: string, reference: string): Promise<void> {
    const ref = parseReadReference(reference);
    if (!ref.digest) {
      const rule = this.guards.immutableTag?.(name, ref.tag);
      if (rule) throw immutableTagDenied(ref.tag, rule);
      await this.tags.delete(name, ref.tag);
      return;
    }
    const digest = ref.digest;
    if (!(await this.hasRevision(name, digest))) throw manifestUnknown(reference);
    const stored = await this.load(digest, reference);
    const tags = await this.tags.pointingAt(name, digest.digest);
    for (const tag of tags) {
      const rule = this.guards.immutableTag?.(name, tag);
      if (rule) throw immutableTagDenied(tag, rule);
    }
    for (const tag of tags) await this.tags.delete(name, tag).catch(() => undefined);
    const subject = this.subjectOf(stored.bytes);
    if (subject) await this.referrers.remove(name, subject, digest);
    await this.descriptors.delete([cacheKeys.revision(name, digest.digest)], () => this.driver.delete(paths.revision(name, digest)));
    // A PUT of the same manifest by tag may have tagged it meanwhile: no tag is left naming a deleted manifest
    // (unless that PUT wrote the revision back, see put: then it stays with its tag, as if it came after).
    for (const tag of await this.tags.pointingAt(name, digest.digest)) {
      if (!(await this.hasRevision(name, digest))) await this.tags.delete(name, tag).catch(() => undefined);
    }
  }

  /**
   * Garbage collection: removes an unreferenced revision (its referrers entry first, so the referrers API never
   * lists a manifest that is gone). Tags are not touched: the collector deletes only revisions no tag names.
   */
  async deleteRevision(name: string, digest: ParsedDigest, subject?: ParsedDigest): Promise<void> {
    if (subject) await this.referrers.remove(name, subject, digest);
    await this.descriptors.delete([cacheKeys.revision(name, digest.digest)], () => removeFile(this.driver, paths.revisionLink(name, digest)));
  }

  private async hasRevision(name: string, digest: ParsedDigest): Promise<boolean> {
    const present = await this.descriptors.read(cacheKeys.revision(name, digest.digest), async () =>
      (await exists(this.driver, paths.revisionLink(name, digest), { file: true })) ? '1' : undefined,
    );
    return present !== undefined;
  }

  private async load(digest: ParsedDigest, reference: string): Promise<StoredManifest> {
    const cached = this.cache.get(digest.digest);
    if (cached) return { digest: digest.digest, ...cached };
    let bytes: Buffer;
    try {
      bytes = await this.driver.getContent(paths.blobData(digest));
    } catch (error) {
      if (isNotFound(error)) throw manifestUnknown(reference);
      throw error;
    }
    let mediaType: string | undefined;
    try {
      mediaType = detectMediaType(JSON.parse(bytes.toString('utf8')));
    } catch {
      mediaType = undefined;
    }
    if (!mediaType) throw new OciError(500, 'UNKNOWN', 'stored manifest is unreadable', { digest: digest.digest });
    this.cache.set(digest.digest, { bytes, mediaType });
    return { digest: digest.digest, bytes, mediaType };
  }

  private async assertReferencesExist(name: string, manifest: ParsedManifest): Promise<void> {
    const missing: Descriptor[] = [];
    await Promise.all([
      ...manifest.blobs.map(async (descriptor) => {
        const digest = parseDigest(descriptor.digest)!;
        const size = (await this.blobs.isLinked(name, digest)) ? await this.blobs.statGlobal(digest) : undefined;
        if (size === undefined) missing.push(descriptor);
        else if (size !== descriptor.size) {
          throw new OciError(400, 'MANIFEST_INVALID', 'descriptor size does not match the stored blob', {
            digest: descriptor.digest,
            declared: descriptor.size,
            stored: size,
          });
        }
      }),
      // Index entries are manifests, except in BuildKit's cache export, where they are layer and config blobs.
      ...manifest.manifests.map(async (descriptor) => {
        const digest = parseDigest(descriptor.digest)!;
        if (!(await this.hasRevision(name, digest)) && !(await this.blobs.isLinked(name, digest))) missing.push(descriptor);
      }),
    ]);
    if (missing.length > 0) {
      throw new OciError(400, 'MANIFEST_BLOB_UNKNOWN', 'manifest references content unknown to this repository', {
        digests: missing.map((d) => d.digest),
      });
    }
  }

  private referrerDescriptor(manifest: ParsedManifest, digest: ParsedDigest): Descriptor {
    const descriptor: Descriptor = { mediaType: manifest.mediaType, digest: digest.digest, size: manifest.size };
    if (manifest.artifactType) descriptor.artifactType = manifest.artifactType;
    if (manifest.annotations) descriptor.annotations = manifest.annotations;
    return descriptor;
  }

  private subjectOf(bytes: Buffer): ParsedDigest | undefined {
    try {
      const subject = (JSON.parse(bytes.toString('utf8')) as { subject?: { digest?: unknown } }).subject;
      return typeof subject?.digest === 'string' ? parseDigest(subject.digest) : undefined;
    } catch {
      return undefined;
    }
  }
}

function immutableTagDenied(tag: string, rule: string): OciError {
  return new OciError(403, 'DENIED', `tag "${tag}" is immutable (${rule}); push a new tag instead`, { tag, rule });
}

/** A manifest reference is a digest when it has a colon (tags cannot), else a tag; both validated. */
export function parseReference(reference: string): { digest: ParsedDigest; tag?: undefined } | { digest?: undefined; tag: string } {
  return reference.includes(':') ? { digest: assertDigest(reference) } : { tag: assertValidTag(reference) };
}

/** For reads and deletes a malformed tag names nothing: 404 MANIFEST_UNKNOWN, as the conformance suite expects. */
function parseReadReference(reference: string): ReturnType<typeof parseReference> {
  if (!reference.includes(':') && !isValidTag(reference)) throw manifestUnknown(reference.slice(0, 200));
  return parseReference(reference);
}
