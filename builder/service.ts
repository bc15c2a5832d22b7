// The builder as the registry and its workers use it: turns a build request into a flow (one child per
// platform on the `build-<os>-<arch>` work queues, the assembling parent on `build`), and registers the
// handlers a process runs: the parent where builds are accepted, the platforms a process builds.
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { StorageDriver } from '../storage-drivers/driver.js';
import { durationMs, type Config } from '../server/config.js';
import { AuthService } from '../server/auth/auth-service.js';
import type { JobRecord } from '../server/jobs/job.js';
import type { ChildJob, JobQueue } from '../server/jobs/queue.js';
import type { LeaseStore } from '../server/registry/leases.js';
import type { Registry } from '../server/registry/registry.js';
import { OciError } from '../server/registry/errors.js';
import { exists } from '../storage-drivers/driver.js';
import type { SharedState } from '../server/state/redis.js';
import { plannedTagNames } from './assembly.js';
import { buildHandler } from './build-job.js';
import { BuildahEngine } from './buildah-engine.js';
import type { BuildEngine } from './engine.js';
import { removeLeftoverTempTags } from './leftover-tags.js';
import { platformBuildHandler, type PlatformBuildRequest } from './platform-build.js';
import { registryEndpoint } from './registry-access.js';
import { buildVersion, isGitSource, knownTags, parseBuildRequest, platformQueue, type BuildRequest } from './request.js';
import type { Recipe } from './recipes.js';
import { TagOwners } from './tag-owners.js';
import { contextPath } from './uploads.js';

export interface BuildServiceDeps {
  driver: StorageDriver;
  registry: Registry;
  queue: JobQueue;
  leases: LeaseStore;
  shared?: SharedState;
  logger: Logger;
  /** For tests: another engine than the configured one. */
  engine?: BuildEngine;
}

export interface SubmittedBuild {
  job: JobRecord;
  /** What the submitter should know, e.g. a platform no worker takes now. */
  warnings: string[];
}

export class BuildService {
  readonly owners: TagOwners;
  private readonly builder: Config['builder'];
  private auth: Promise<AuthService | undefined> | undefined;

  constructor(
    private readonly config: Config,
    private readonly deps: BuildServiceDeps,
  ) {
    this.builder = config.builder;
    this.owners = new TagOwners(config.mirror.sync);
  }

  /** Accepts builds here: the `build` handler assembles finished flows. */
  registerServer(): void {
    // Without Redis a build runs its platforms inside its own run: builds at once are builds of every platform.
    const concurrency = this.deps.shared ? 4 : this.builder.concurrency;
    this.deps.queue.register('build', buildHandler({ registry: this.deps.registry, leases: this.deps.leases, owners: this.owners, engine: this.builder.engine }), { concurrency });
  }

  /**
   * Sweeps temporary tags that outlived their builds (leftover-tags.ts): a minute or two after start, then
   * hourly. Replicas may sweep at once: deleting a tag twice is harmless. Returns the stopper.
   */
  scheduleLeftoverSweep(intervalMs = 3_600_000): () => void {
    let stopped = false;
    let timer: NodeJS.Timeout;
    const sweep = async () => {
      try {
        await removeLeftoverTempTags({ queue: this.deps.queue, registry: this.deps.registry, logger: this.deps.logger });
      } catch (error) {
        this.deps.logger.warn({ err: (error as Error).message }, 'sweeping leftover temporary build tags failed');
      }
      if (!stopped) timer = setTimeout(() => void sweep(), intervalMs).unref();
    };
    timer = setTimeout(() => void sweep(), 60_000 * (1 + Math.random())).unref();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }

  /** Builds the platforms of builder.platforms in this process. */
  registerPlatforms(): void {
    if (this.builder.platforms.length === 0) return;
    const handler = this.platformHandler();
    for (const platform of this.builder.platforms) {
      // A worker lost mid-build is an infrastructure failure: its platform runs again once, elsewhere.
      this.deps.queue.registerWork(platformQueue(platform), handler, { concurrency: this.builder.concurrency, restartsAfterLoss: 1 });
    }
  }

  private platformHandler() {
    return platformBuildHandler({
      engine: this.deps.engine ?? new BuildahEngine({ ...this.builder.buildah, cachedir: this.builder.cachedir }),
      driver: this.deps.driver,
      registry: this.deps.registry,
      leases: this.deps.leases,
      endpoint: registryEndpoint(this.config),
      authService: () => this.authService(),
      workDir: join(this.builder.cachedir, 'work'),
      git: this.builder.git.path,
      timeoutMs: durationMs(this.builder.timeout),
      ...(this.builder.recipes ? { recipesDir: this.builder.recipes } : {}),
      remoteCache: this.builder.remotecache,
    });
  }

  private authService(): Promise<AuthService | undefined> {
    this.auth ??= AuthService.create(this.config, this.deps.driver, this.deps.shared, this.deps.logger);
    return this.auth;
  }

  /** Validates a POST /admin/v1/builds body and queues the build; OciError for what cannot work. */
  async submit(body: unknown): Promise<SubmittedBuild> {
    const { request, recipe } = parseBuildRequest(body, this.builder.recipes);
    if (!this.deps.shared) {
      // In one process, only what this process builds can ever run.
      const missing = request.platforms.filter((platform) => !this.builder.platforms.includes(platform));
      if (missing.length > 0) {
        throw new OciError(400, 'UNSUPPORTED', `this registry builds ${this.builder.platforms.join(', ') || 'no platform'} (builder.platforms), not ${missing.join(', ')}`, { missing });
      }
    }
    if (!isGitSource(request.context) && !(await exists(this.deps.driver, contextPath(request.context.upload)))) {
      throw new OciError(400, 'INVALID_REQUEST', `no uploaded context ${request.context.upload} (POST /admin/v1/contexts first)`);
    }
    if (!request.force) {
      const owned = await this.owners.owned(plannedTagNames({ ...request, tags: knownTags(request) }));
      if (owned.length > 0) {
        throw new OciError(409, 'DENIED', `${owned.map((o) => `${o.repository}:${o.tag}`).join(', ')} belong to mirror sync rule "${owned[0]!.rule}", whose next run would overwrite them; build with "force": true to write them anyway`, { owned });
      }
    }
    const job = await this.deps.queue.submit('build', request, { children: this.children(request, recipe) });
    return { job, warnings: await this.unattended(request.platforms) };
  }

  /**
   * With Redis, a platform whose queue no worker takes waits until one starts (as it should: a worker may
   * be restarting). Said at once, so nobody waits for a build that is not running anywhere.
   */
  private async unattended(platforms: string[]): Promise<string[]> {
    if (!this.deps.shared || !this.deps.queue.workersOn) return [];
    const counts = await Promise.all(platforms.map((platform) => this.deps.queue.workersOn!(platformQueue(platform))));
    return platforms
      .filter((_, i) => counts[i] === 0)
      .map((platform) => `no worker takes ${platform} builds now (queue ${platformQueue(platform)}): that platform waits until one starts (builder.platforms of a worker)`);
  }

  private children(request: BuildRequest, recipe: Recipe | undefined): ChildJob[] {
    const version = buildVersion(request);
    const labels: Record<string, string> = {
      ...(recipe?.labels ?? {}),
      'org.opencontainers.image.created': new Date().toISOString(),
      ...(version ? { 'org.opencontainers.image.version': version } : {}),
    };
    const buildArgs = this.buildArgs(request, recipe);
    return request.platforms.map((platform) => {
      const child: PlatformBuildRequest = {
        platform,
        ...(request.recipe ? { recipe: request.recipe } : { dockerfile: request.dockerfile! }),
        context: request.context,
        buildArgs,
        labels,
        repository: request.repository,
      };
      return { key: platform, queue: platformQueue(platform), request: child, attempts: this.builder.attempts, backoffMs: durationMs(this.builder.backoff) };
    });
  }

  /** The recipe's, then builder.buildargs, then the request's; base images mapped by builder.baseimages. */
  private buildArgs(request: BuildRequest, recipe: Recipe | undefined): Record<string, string> {
    const args: Record<string, string> = { ...(recipe?.baseImages ?? {}), ...(recipe?.buildArgs ?? {}), ...this.builder.buildargs, ...request.buildArgs };
    for (const [name, value] of Object.entries(args)) {
      const mapped = this.builder.baseimages[value];
      if (mapped !== undefined) args[name] = mapped;
    }
    return args;
  }
}
