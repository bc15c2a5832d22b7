// One platform of a build (a flow child on the `build-<os>-<arch>` work queue): fetch the source, build
// with the engine, push under a temporary tag (buildah cannot push by digest), and lease what was pushed
// against garbage collection until the parent has tagged it.
import { rm } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { StorageDriver } from '../storage-drivers/driver.js';
import type { AuthService } from '../server/auth/auth-service.js';
import { JobError, RetryableJobError, type JobContext, type JobHandler } from '../server/jobs/job.js';
import { isJobId } from '../server/jobs/ids.js';
import { childJobId } from '../server/jobs/queue.js';
import type { LeaseStore } from '../server/registry/leases.js';
import type { Registry } from '../server/registry/registry.js';
import { parseDigest } from '../server/registry/digest.js';
import { parseManifest } from '../server/registry/manifest.js';
import { paths } from '../server/registry/paths.js';
import { platformSlug } from '../server/mirror/platforms.js';
import type { BuildEngine } from './engine.js';
import { buildScopes, repositoryOnRegistry, writeAuthFile, type RegistryEndpoint } from './registry-access.js';
import { loadRecipe } from './recipes.js';
import type { BuildSource } from './request.js';
import { dockerfileIn, fetchSource } from './source.js';

/** What the parent hands each platform (the child job's request; never shown by the API). */
export interface PlatformBuildRequest {
  platform: string;
  recipe?: string;
  /** A Dockerfile in the context, when there is no recipe. */
  dockerfile?: string;
  context: BuildSource;
  /** Effective build args (recipe, builder.buildargs, the request; bases mapped); COMMIT_SHA is added here. */
  buildArgs: Record<string, string>;
  /** OCI labels; `org.opencontainers.image.revision` is added here. */
  labels: Record<string, string>;
  repository: string;
}

export interface PlatformBuildResult {
  platform: string;
  /** The pushed image manifest. */
  digest: string;
  mediaType: string;
  size: number;
  config: string;
  layers: Array<{ digest: string; size: number }>;
  commit?: string;
  tempTag: string;
  /** The labels and build args it was built with (the parent annotates the index and writes provenance from them). */
  labels: Record<string, string>;
  buildArgs: Record<string, string>;
  /** Bytes of the image's blobs this build stored that the registry did not have before (cache pushes included). */
  pushedBytes: number;
  timings: { sourceMs: number; buildMs: number; pushMs: number; totalMs: number };
  startedAt: string;
  finishedAt: string;
}

export interface PlatformBuildDeps {
  engine: BuildEngine;
  driver: StorageDriver;
  registry: Registry;
  leases: LeaseStore;
  endpoint: RegistryEndpoint;
  /** The registry's auth, when on (loaded on first use): the build gets a credential for exactly its repositories. */
  authService(): Promise<AuthService | undefined>;
  workDir: string;
  git: string;
  timeoutMs: number;
  recipesDir?: string;
  /** builder.remotecache of the process that builds: share the layer cache through `<repository>/buildcache`. */
  remoteCache: boolean;
}

const TEMP_TAG_PREFIX = 'build-tmp-';

/** The temporary tag of a platform image until the index exists: `build-tmp-<job id>-linux-arm64`. */
export function tempTag(parentId: string, platform: string): string {
  return `${TEMP_TAG_PREFIX}${parentId}-${platformSlug(platform)}`;
}

/** The build job a temporary tag belongs to, if `tag` is one. */
export function tempTagJob(tag: string): string | undefined {
  const id = new RegExp(`^${TEMP_TAG_PREFIX}([0-9a-f-]{36})-`).exec(tag)?.[1];
  return id !== undefined && isJobId(id) ? id : undefined;
}

/** Whose lease holds a platform's pushed content. */
export function leaseOwner(parentId: string, platform: string): string {
  return `build-${parentId}-${platformSlug(platform)}`;
}

export function platformBuildHandler(deps: PlatformBuildDeps): JobHandler<PlatformBuildRequest, PlatformBuildResult> {
  return (ctx) => buildPlatform(deps, ctx);
}

async function buildPlatform(deps: PlatformBuildDeps, ctx: JobContext<PlatformBuildRequest>): Promise<PlatformBuildResult> {
  const { request, signal } = ctx;
  if (!ctx.parent) throw new JobError('NOT_A_FLOW', 'a platform build runs only as part of a build job');
  const startedAt = new Date();
  const dir = join(deps.workDir, childJobId(ctx.parent.id, request.platform));
  await rm(dir, { recursive: true, force: true });
  try {
    ctx.progress({ phase: 'source' });
    const source = await fetchSource(request.context, join(dir, 'src'), { git: deps.git, driver: deps.driver, signal, log: (line) => ctx.log(line) });
    const sourced = Date.now();
    const dockerfile = request.recipe ? loadRecipe(request.recipe, deps.recipesDir).dockerfilePath : await dockerfileIn(source, request.dockerfile!);
    const buildArgs = { ...request.buildArgs, ...(source.commit ? { COMMIT_SHA: source.commit } : {}) };
    const labels = { ...request.labels, ...(source.commit ? { 'org.opencontainers.image.revision': source.commit } : {}) };
    const tag = tempTag(ctx.parent.id, request.platform);
    const cacheRepository = deps.remoteCache ? `${request.repository}/buildcache` : undefined;
    const destination = `${deps.endpoint.host}/${request.repository}:${tag}`;

    let authFile: string | undefined;
    const auth = await deps.authService();
    if (auth) {
      authFile = join(dir, 'auth.json');
      const bases = Object.values(buildArgs).map((value) => repositoryOnRegistry(value, deps.endpoint)).filter((name): name is string => name !== undefined);
      const scopes = buildScopes({ repository: request.repository, ...(cacheRepository ? { cacheRepository } : {}), baseRepositories: bases });
      await writeAuthFile(authFile, auth, deps.endpoint, `build:${ctx.parent.id}`, scopes, deps.timeoutMs + 600_000);
    }
    ctx.log(`building ${request.platform} of ${request.repository} with ${deps.engine.name}${source.commit ? ` at ${source.commit}` : ''} on ${hostname()} (pid ${process.pid})`);
    const engineStarted = Date.now();
    const built = await deps.engine.build({
      platform: request.platform,
      contextDir: source.contextDir,
      dockerfile,
      buildArgs,
      labels,
      destination,
      ...(cacheRepository ? { cacheRepository: `${deps.endpoint.host}/${cacheRepository}` } : {}),
      ...(authFile ? { authFile } : {}),
      insecureRegistries: deps.endpoint.insecure ? [deps.endpoint.host] : [],
      signal,
      timeoutMs: deps.timeoutMs,
      log: (line) => ctx.log(line),
      progress: (update) => ctx.progress(update),
    });

    // What was pushed, read back from storage: the parent needs sizes and the lease needs every digest.
    const digest = parseDigest(built.digest)!;
    let stored;
    try {
      stored = await deps.registry.manifests.get(request.repository, built.digest);
    } catch (error) {
      throw new RetryableJobError(`the pushed manifest ${built.digest} is not readable: ${(error as Error).message}`, { code: 'REGISTRY_UNAVAILABLE' });
    }
    const manifest = parseManifest(stored.bytes, stored.mediaType);
    const [config, ...layers] = manifest.blobs;
    if (!config) throw new JobError('PUSH_FAILED', `${built.digest} is not an image manifest`);
    await deps.leases.hold(leaseOwner(ctx.parent.id, request.platform), [built.digest, ...manifest.blobs.map((blob) => blob.digest)]);
    const pushedBytes = await newBytes(deps.driver, manifest.blobs, engineStarted);
    const finishedAt = new Date();
    ctx.log(`pushed ${destination} -> ${built.digest} (${layers.length} layers, ${pushedBytes} bytes new)`);
    ctx.progress({ phase: 'done', digest: built.digest });
    return {
      platform: request.platform,
      digest: digest.digest,
      mediaType: stored.mediaType,
      size: stored.bytes.length,
      config: config.digest,
      layers: layers.map((layer) => ({ digest: layer.digest, size: layer.size })),
      ...(source.commit ? { commit: source.commit } : {}),
      tempTag: tag,
      labels,
      buildArgs,
      pushedBytes,
      timings: { sourceMs: sourced - startedAt.getTime(), buildMs: built.buildMs, pushMs: built.pushMs, totalMs: finishedAt.getTime() - startedAt.getTime() },
      startedAt: startedAt.toISOString(),
      finishedAt: finishedAt.toISOString(),
    };
  } catch (error) {
    if (!signal.aborted && !(error instanceof JobError)) ctx.log(`error: ${(error as Error).message ?? String(error)}`);
    throw error;
  } finally {
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
}

/** Bytes of the blobs whose data was written since `since` (by this push; a blob the registry had is older). */
async function newBytes(driver: StorageDriver, blobs: Array<{ digest: string; size: number }>, since: number): Promise<number> {
  let total = 0;
  for (const blob of blobs) {
    try {
      const info = await driver.stat(paths.blobData(parseDigest(blob.digest)!));
      if (info.modTime.getTime() >= since - 1_000) total += blob.size;
    } catch {
      // gone already: nothing to count
    }
  }
  return total;
}

