// The documents a finished build writes, as pure functions: the OCI index over the platform images, the
// tag writes of each layout (the mirror's layout rules, so ddn-k8s tags look like mirrored ones), and
// the provenance artifact that refers to the index.
import { createHash } from 'node:crypto';
import type { Descriptor, Platform } from '../server/registry/descriptor.js';
import { OCI_INDEX, OCI_MANIFEST } from '../server/registry/media-types.js';
import { planMirror, type TagWrite } from '../server/mirror/layouts.js';
import { parsePlatform } from '../server/mirror/platforms.js';
import type { BuildLayout } from './request.js';

/** The upstream name ddn-k8s paths carry for builds: `ddn-k8s/docker.io/<repository>`, as mirrors of Docker Hub. */
export const BUILD_UPSTREAM = 'docker.io';

export const PROVENANCE_TYPE = 'application/vnd.dify-registry.build.provenance.v1+json';
const EMPTY_CONFIG = { mediaType: 'application/vnd.oci.empty.v1+json', digest: digestOf('{}'), size: 2 } as const;

export interface PlatformImage {
  platform: string;
  digest: string;
  mediaType: string;
  size: number;
}

export interface Document {
  bytes: Buffer;
  digest: string;
  mediaType: string;
}

export function digestOf(bytes: Buffer | string): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

function document(value: unknown, mediaType: string): Document {
  const bytes = Buffer.from(JSON.stringify(value));
  return { bytes, digest: digestOf(bytes), mediaType };
}

/** `linux/arm64` -> the descriptor's platform object (variant only when there is one). */
export function platformObject(platform: string): Platform {
  const p = parsePlatform(platform);
  if (!p) throw new Error(`"${platform}" is not a platform`);
  return { architecture: p.architecture, os: p.os, ...(p.variant ? { variant: p.variant } : {}) };
}

/** An OCI index with one entry per platform image, in the order given, and the build's annotations. */
export function buildIndex(images: PlatformImage[], annotations: Record<string, string>): Document {
  const manifests: Descriptor[] = images.map((image) => ({
    mediaType: image.mediaType,
    digest: image.digest,
    size: image.size,
    platform: platformObject(image.platform),
  }));
  return document({ schemaVersion: 2, mediaType: OCI_INDEX, manifests, annotations: sortedRecord(annotations) }, OCI_INDEX);
}

/** Every tag write of a finished build: the index under each tag (same-name), one platform image per tag (ddn-k8s). */
export function tagWrites(options: {
  repository: string;
  tags: string[];
  layouts: BuildLayout[];
  index: { digest: string; size: number };
  images: PlatformImage[];
}): TagWrite[] {
  const writes: TagWrite[] = [];
  const entries: Descriptor[] = options.images.map((image) => ({
    mediaType: image.mediaType,
    digest: image.digest,
    size: image.size,
    platform: platformObject(image.platform),
  }));
  for (const tag of options.tags) {
    const plan = planMirror({
      upstream: BUILD_UPSTREAM,
      repository: options.repository,
      tag,
      manifest: { digest: options.index.digest, mediaType: OCI_INDEX, manifests: entries },
      layouts: options.layouts,
    });
    writes.push(...plan.writes);
  }
  return writes;
}

/** The `repository:tag` names a build will write, before anything is built (for the sync-rule check). */
export function plannedTagNames(options: { repository: string; tags: string[]; layouts: BuildLayout[]; platforms: string[] }): Array<{ repository: string; tag: string }> {
  const placeholder = (i: number) => `sha256:${String(i).padStart(64, '0')}`;
  const images = options.platforms.map((platform, i) => ({ platform, digest: placeholder(i + 1), mediaType: OCI_MANIFEST, size: 0 }));
  return tagWrites({ ...options, index: { digest: placeholder(0), size: 0 }, images }).map(({ repository, tag }) => ({ repository, tag }));
}

export interface ProvenanceDocument {
  _type: 'https://dify-registry/build-provenance/v1';
  builder: { id: string; version: string; engine: string };
  source: { git?: string; ref?: string; path?: string; upload?: string; commit?: string };
  recipe?: string;
  dockerfile?: string;
  repository: string;
  tags: string[];
  buildArgs: Record<string, string>;
  index: { digest: string; mediaType: string; size: number };
  platforms: Array<{
    platform: string;
    digest: string;
    config: string;
    layers: string[];
    startedAt: string | null;
    finishedAt: string | null;
  }>;
  startedAt: string;
  finishedAt: string;
}

/** The provenance document as a blob, and the artifact manifest whose subject is the index. */
export function provenanceArtifact(provenance: ProvenanceDocument, subject: { digest: string; size: number }): { blob: Document; manifest: Document } {
  const blob = document(provenance, PROVENANCE_TYPE);
  const manifest = document(
    {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      artifactType: PROVENANCE_TYPE,
      config: EMPTY_CONFIG,
      layers: [{ mediaType: PROVENANCE_TYPE, digest: blob.digest, size: blob.bytes.length }],
      subject: { mediaType: OCI_INDEX, digest: subject.digest, size: subject.size },
      annotations: { 'org.opencontainers.image.created': provenance.finishedAt },
    },
    OCI_MANIFEST,
  );
  return { blob, manifest };
}

export const EMPTY_CONFIG_BLOB = { bytes: Buffer.from('{}'), digest: EMPTY_CONFIG.digest };

function sortedRecord(record: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(record).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}
