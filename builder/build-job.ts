// The `build` job's own handler: the parent of the per-platform flow, run once every platform has ended.
// When all succeeded it writes the OCI index, the ddn-k8s copies, the provenance artifact, and only then
// moves the tags; in every case it deletes the temporary tags and releases the leases of its platforms.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { flowFailure, JobError, type ChildOutcome, type JobContext, type JobHandler } from '../server/jobs/job.js';
import type { LeaseStore } from '../server/registry/leases.js';
import type { Registry } from '../server/registry/registry.js';
import { parseDigest } from '../server/registry/digest.js';
import { parseManifest } from '../server/registry/manifest.js';
import { OCI_INDEX } from '../server/registry/media-types.js';
import {
  buildIndex,
  EMPTY_CONFIG_BLOB,
  provenanceArtifact,
  tagWrites,
  type PlatformImage,
  type ProvenanceDocument,
} from './assembly.js';
import { leaseOwner, type PlatformBuildResult } from './platform-build.js';
import { buildTags, buildVersion, isGitSource, type BuildRequest } from './request.js';
import type { TagOwners } from './tag-owners.js';
import { scrubText, shownBuildArgs } from '../server/logging/redact.js';

export interface BuildResult {
  repository: string;
  commit?: string;
  index: { digest: string; mediaType: string; size: number };
  platforms: Record<string, { digest: string; size: number; layers: number; pushedBytes: number; timings: PlatformBuildResult['timings'] }>;
  tags: Array<{ repository: string; tag: string; digest: string; platform?: string }>;
  provenance: { digest: string };
  /** Bytes all platforms stored that the registry did not have. */
  pushedBytes: number;
}

export interface BuildJobDeps {
  registry: Registry;
  leases: LeaseStore;
  owners: TagOwners;
  /** The engine named in provenance. */
  engine: string;
}

export const BUILDER_VERSION = packageVersion();

export function buildHandler(deps: BuildJobDeps): JobHandler<BuildRequest, BuildResult> {
  return async (ctx) => {
    const outcomes = ctx.children ?? {};
    const results = succeeded(outcomes);
    try {
      const failure = flowFailure(outcomes);
      if (failure) throw failure;
      ctx.signal.throwIfAborted();
      return await assemble(deps, ctx, results);
    } finally {
      await cleanUp(deps, ctx, results);
    }
  };
}

async function assemble(deps: BuildJobDeps, ctx: JobContext<BuildRequest>, results: Map<string, PlatformBuildResult>): Promise<BuildResult> {
  const { request } = ctx;
  const { registry } = deps;
  ctx.progress({ phase: 'assembling' });
  const images = request.platforms.map((platform) => {
    const result = results.get(platform);
    if (!result) throw new JobError('PLATFORM_MISSING', `no image for ${platform}`);
    return result;
  });
  const commits = [...new Set(images.map((image) => image.commit).filter((commit): commit is string => commit !== undefined))];
  if (commits.length > 1) throw new JobError('COMMIT_MISMATCH', `the platforms built different commits (${commits.join(', ')}): the ref moved during the build`);
  const commit = commits[0];
  const tags = buildTags(request, commit);
  if (tags.length === 0) throw new JobError('NO_TAGS', 'nothing to tag: give tags, or a ref that is a valid tag');

  const platformImages: PlatformImage[] = images.map((image) => ({ platform: image.platform, digest: image.digest, mediaType: image.mediaType, size: image.size }));
  const index = buildIndex(platformImages, indexAnnotations(images[0]!, request, commit));
  const writes = tagWrites({ repository: request.repository, tags, layouts: request.layouts, index: { digest: index.digest, size: index.bytes.length }, images: platformImages });
  await checkTags(deps, request, writes);

  const owner = `build-${ctx.id}`;
  await deps.leases.hold(owner, [index.digest]);
  await registry.manifests.put(request.repository, index.digest, index.bytes, OCI_INDEX);
  ctx.log(`index ${request.repository}@${index.digest} (${images.map((i) => i.platform).join(', ')})`);

  // Other layouts' repositories get the platform images (their blobs linked, their manifests by digest).
  const copied = new Set<string>();
  for (const write of writes) {
    if (write.repository === request.repository) continue;
    const key = `${write.repository}@${write.digest}`;
    if (copied.has(key)) continue;
    copied.add(key);
    const stored = await registry.manifests.get(request.repository, write.digest);
    for (const blob of parseManifest(stored.bytes, stored.mediaType).blobs) await registry.blobs.link(write.repository, parseDigest(blob.digest)!);
    await registry.manifests.put(write.repository, write.digest, stored.bytes, stored.mediaType);
  }

  const finishedAt = new Date().toISOString();
  const provenance = provenanceArtifact(provenanceDocument(deps, ctx, images, index, tags, commit, finishedAt), { digest: index.digest, size: index.bytes.length });
  await deps.leases.hold(owner, [provenance.blob.digest, provenance.manifest.digest]);
  for (const blob of [provenance.blob, EMPTY_CONFIG_BLOB]) {
    const digest = parseDigest(blob.digest)!;
    await registry.blobs.putVerified(digest, blob.bytes);
    await registry.blobs.link(request.repository, digest);
  }
  await registry.manifests.put(request.repository, provenance.manifest.digest, provenance.manifest.bytes, provenance.manifest.mediaType);
  ctx.log(`provenance ${request.repository}@${provenance.manifest.digest} refers to the index`);

  // The last point where a cancel still leaves every tag as it was.
  ctx.signal.throwIfAborted();
  for (const write of writes) {
    const bytes = write.digest === index.digest ? index.bytes : (await registry.manifests.get(write.repository, write.digest)).bytes;
    await registry.manifests.put(write.repository, write.tag, bytes, write.mediaType);
    ctx.log(`tagged ${write.repository}:${write.tag} -> ${write.digest}${write.platform ? ` (${write.platform})` : ''}`);
  }
  ctx.progress({ phase: 'done' });
  return {
    repository: request.repository,
    ...(commit ? { commit } : {}),
    index: { digest: index.digest, mediaType: OCI_INDEX, size: index.bytes.length },
    platforms: Object.fromEntries(
      images.map((image) => [image.platform, { digest: image.digest, size: image.size, layers: image.layers.length, pushedBytes: image.pushedBytes, timings: image.timings }]),
    ),
    tags: writes.map((write) => ({ repository: write.repository, tag: write.tag, digest: write.digest, ...(write.platform ? { platform: write.platform } : {}) })),
    provenance: { digest: provenance.manifest.digest },
    pushedBytes: images.reduce((sum, image) => sum + image.pushedBytes, 0),
  };
}

/** Refuses, before anything moves, tags a sync rule owns (unless forced) and immutable tags that would move. */
async function checkTags(deps: BuildJobDeps, request: BuildRequest, writes: Array<{ repository: string; tag: string; digest: string }>): Promise<void> {
  if (!request.force) {
    const owned = await deps.owners.owned(writes);
    if (owned.length > 0) {
      throw new JobError('TAG_OWNED', `${owned.map((o) => `${o.repository}:${o.tag} (sync rule "${o.rule}")`).join(', ')}: owned by mirror sync rules; build with force to overwrite`);
    }
  }
  const immutable = deps.registry.options.immutableTag;
  if (!immutable) return;
  for (const write of writes) {
    const rule = immutable(write.repository, write.tag);
    if (!rule) continue;
    const current = await deps.registry.tags.resolve(write.repository, write.tag).catch(() => undefined);
    if (current && current.digest !== write.digest) throw new JobError('TAG_IMMUTABLE', `${write.repository}:${write.tag} is immutable (${rule})`);
  }
}

/** The recipe's fixed labels, and what this build adds: created, revision, version. */
function indexAnnotations(image: PlatformBuildResult, request: BuildRequest, commit: string | undefined): Record<string, string> {
  const version = buildVersion(request);
  return {
    ...image.labels,
    ...(commit ? { 'org.opencontainers.image.revision': commit } : {}),
    ...(version ? { 'org.opencontainers.image.version': version } : {}),
  };
}

function provenanceDocument(
  deps: BuildJobDeps,
  ctx: JobContext<BuildRequest>,
  images: PlatformBuildResult[],
  index: { digest: string; mediaType: string; bytes: Buffer },
  tags: string[],
  commit: string | undefined,
  finishedAt: string,
): ProvenanceDocument {
  const { request } = ctx;
  const source = request.context;
  return {
    _type: 'https://dify-registry/build-provenance/v1',
    builder: { id: 'dify-registry', version: BUILDER_VERSION, engine: deps.engine },
    source: isGitSource(source)
      ? { git: scrubText(source.git), ref: source.ref, ...(source.path ? { path: source.path } : {}), ...(commit ? { commit } : {}) }
      : { upload: source.upload },
    ...(request.recipe ? { recipe: request.recipe } : { dockerfile: request.dockerfile! }),
    repository: request.repository,
    tags,
    buildArgs: shownBuildArgs(images[0]?.buildArgs ?? {}),
    index: { digest: index.digest, mediaType: index.mediaType, size: index.bytes.length },
    platforms: images.map((image) => ({
      platform: image.platform,
      digest: image.digest,
      config: image.config,
      layers: image.layers.map((layer) => layer.digest),
      startedAt: image.startedAt,
      finishedAt: image.finishedAt,
    })),
    startedAt: images.map((image) => image.startedAt).sort()[0] ?? finishedAt,
    finishedAt,
  };
}

/** Whatever happened: temporary tags go, and the leases of the platforms and the assembly end. */
async function cleanUp(deps: BuildJobDeps, ctx: JobContext<BuildRequest>, results: Map<string, PlatformBuildResult>): Promise<void> {
  for (const result of results.values()) {
    await deps.registry.manifests.delete(ctx.request.repository, result.tempTag).then(
      () => ctx.log(`removed the temporary tag ${result.tempTag}`),
      () => undefined, // never written, or gone already
    );
  }
  for (const platform of ctx.request.platforms) await deps.leases.release(leaseOwner(ctx.id, platform)).catch(() => undefined);
  await deps.leases.release(`build-${ctx.id}`).catch(() => undefined);
}

function succeeded(outcomes: Readonly<Record<string, ChildOutcome>>): Map<string, PlatformBuildResult> {
  const results = new Map<string, PlatformBuildResult>();
  for (const [key, outcome] of Object.entries(outcomes)) {
    if (outcome.state === 'succeeded' && outcome.result) results.set(key, outcome.result as PlatformBuildResult);
  }
  return results;
}

/** This package's version, from the nearest package.json up from this module (source or dist). */
function packageVersion(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    const file = join(dir, 'package.json');
    if (existsSync(file)) {
      try {
        return String((JSON.parse(readFileSync(file, 'utf8')) as { version?: unknown }).version ?? 'unknown');
      } catch {
        return 'unknown';
      }
    }
    dir = dirname(dir);
  }
  return 'unknown';
}
