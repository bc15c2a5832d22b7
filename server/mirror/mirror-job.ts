// The `mirror` job: copies upstream tags into this registry byte for byte, in the requested layouts.
// Order per tag: every blob (verified while streaming; skipped when already stored, which is what makes
// an interrupted job resume where it stopped), then every manifest by digest, and only then the tags,
// so a tag never points at incomplete content. What the job stored is leased against garbage collection
// until its tags exist.
import type { Descriptor } from '../registry/descriptor.js';
import { parseDigest } from '../registry/digest.js';
import { parseManifest, type ParsedManifest } from '../registry/manifest.js';
import { isIndexMediaType } from '../registry/media-types.js';
import type { LeaseStore } from '../registry/leases.js';
import type { Registry } from '../registry/registry.js';
import { JobError, RetryableJobError, type JobContext, type JobHandler } from '../jobs/job.js';
import { allOrNone } from './all-or-none.js';
import { CONFIG_LIMIT, formatPlatform, platformOfConfig } from './platforms.js';
import { planMirror, upstreamRepository, type SourceManifest, type TagWrite } from './layouts.js';
import { selectTags, type MirrorJobRequest } from './mirror-request.js';
import type { PooledUpstream, UpstreamPool } from './upstream-pool.js';
import { splitSource } from './upstreams.js';
import { isUpstreamError } from './upstream-error.js';


export interface MirrorDeps {
  registry: Registry;
  pool: UpstreamPool;
  leases: LeaseStore;
}

export interface TagResult {
  tag: string;
  state: 'succeeded' | 'failed';
  /** Upstream digest of the tag's manifest or index. */
  digest?: string;
  writes?: Array<{ repository: string; tag: string; digest: string; platform?: string }>;
  error?: string;
  /** The failure may go away by itself (upstream 429, 5xx, network): a retry of the job may succeed. */
  retryable?: boolean;
}

export interface MirrorResult {
  source: string;
  upstreamRepository: string;
  tags: TagResult[];
  blobs: { fetched: number; present: number };
  bytes: { fetched: number };
}

interface FetchedManifest {
  digest: string;
  bytes: Buffer;
  mediaType: string;
  parsed: ParsedManifest;
}

export function mirrorHandler(deps: MirrorDeps): JobHandler<MirrorJobRequest, MirrorResult> {
  return (ctx) => new MirrorRun(deps, ctx).run();
}

class MirrorRun {
  private readonly progress = {
    tags: { done: 0, total: 0 },
    units: { done: 0, total: 0 },
    bytes: { done: 0, total: 0 },
    items: {} as Record<string, { state: string; units: { done: number; total: number }; bytes: { done: number; total: number } }>,
  };
  private readonly totals = { fetched: 0, present: 0, bytes: 0 };
  private readonly upstream: PooledUpstream;
  private readonly repository: string;
  private readonly upstreamRepository: string;

  constructor(
    private readonly deps: MirrorDeps,
    private readonly ctx: JobContext<MirrorJobRequest>,
  ) {
    const source = splitSource(ctx.request.source, deps.pool.upstreams);
    if (!source) {
      const known = [...deps.pool.upstreams.keys()].join(', ');
      throw new JobError('UPSTREAM_UNKNOWN', `source "${ctx.request.source}" does not start with a configured upstream (${known})`);
    }
    this.upstream = deps.pool.get(source.upstream);
    this.repository = source.repository;
    this.upstreamRepository = upstreamRepository(source.upstream.name, source.repository);
  }

  async run(): Promise<MirrorResult> {
    const { request, signal } = this.ctx;
    const tags = await selectTags(request, () => this.upstream.client.listTags(this.upstreamRepository, { signal }));
    if (tags.length === 0) throw new JobError('NO_TAGS', `no upstream tag of ${request.source} matches the request`);
    this.ctx.log(`mirroring ${tags.length} tag(s) of ${this.upstream.upstream.name}/${this.upstreamRepository} into ${request.layouts.map((l) => (typeof l === 'string' ? l : `prefix ${l.prefix}`)).join(', ')}`);
    this.progress.tags.total = tags.length;
    this.report();
    const results: TagResult[] = [];
    try {
      for (const tag of tags) {
        results.push(await this.mirrorTag(tag));
        this.progress.tags.done++;
        this.report();
      }
    } finally {
      await this.deps.leases.release(this.ctx.id).catch(() => undefined);
    }
    const failed = results.filter((r) => r.state === 'failed');
    if (failed.length > 0) {
      const message = `${failed.length} of ${results.length} tag(s) failed: ${failed.map((r) => `${r.tag}: ${r.error}`).join('; ')}`;
      // Another attempt skips what is stored already, so only the failed part is fetched again.
      if (failed.every((r) => r.retryable)) throw new RetryableJobError(message, { code: 'MIRROR_INCOMPLETE' });
      throw new JobError('MIRROR_INCOMPLETE', message);
    }
    return {
      source: request.source,
      upstreamRepository: this.upstreamRepository,
      tags: results,
      blobs: { fetched: this.totals.fetched, present: this.totals.present },
      bytes: { fetched: this.totals.bytes },
    };
  }

  private async mirrorTag(tag: string): Promise<TagResult> {
    const { signal } = this.ctx;
    try {
      const top = await this.fetchManifest(tag);
      const plan = planMirror({
        upstream: this.upstream.upstream.name,
        repository: this.repository,
        tag,
        manifest: await this.sourceManifest(top),
        layouts: this.ctx.request.layouts,
        ...(this.ctx.request.platforms ? { platforms: this.ctx.request.platforms } : {}),
      });
      for (const skipped of plan.skipped) {
        this.ctx.log(`${tag}: ${skipped.layout} skips ${skipped.digest}${skipped.platform ? ` (${skipped.platform})` : ''}: ${skipped.reason}`);
      }
      if (plan.writes.length === 0) throw new JobError('NOTHING_TO_WRITE', 'no manifest of this tag is wanted by the requested platforms and layouts');

      // Every manifest to store, by digest, and the repositories it goes to.
      const manifests = new Map<string, { fetched?: FetchedManifest; descriptor: Descriptor; repositories: Set<string>; platform?: string }>();
      const want = (descriptor: Descriptor, repository: string, platform?: string) => {
        const entry = manifests.get(descriptor.digest) ?? { descriptor, repositories: new Set<string>(), ...(platform ? { platform } : {}) };
        entry.repositories.add(repository);
        manifests.set(descriptor.digest, entry);
      };
      for (const write of plan.writes) {
        if (write.children.length > 0) for (const child of write.children) want(child, write.repository, platformOf(child));
        if (write.digest !== top.digest || !isIndexMediaType(top.mediaType)) {
          want({ mediaType: write.mediaType, digest: write.digest, size: 0 }, write.repository, write.platform);
        }
      }
      for (const entry of manifests.values()) {
        entry.fetched = entry.descriptor.digest === top.digest ? top : await this.fetchManifest(entry.descriptor.digest);
        if (isIndexMediaType(entry.fetched.mediaType)) {
          throw new JobError('NESTED_INDEX', `${entry.descriptor.digest} is an index inside an index; not mirrored`);
        }
      }

      // Blobs, once each, linked into every repository that needs them.
      const blobs = new Map<string, { descriptor: Descriptor; repositories: Set<string>; item: string }>();
      for (const entry of manifests.values()) {
        const item = `${tag}${entry.platform ? ` ${entry.platform}` : ''}`;
        for (const blob of entry.fetched!.parsed.blobs) {
          const known = blobs.get(blob.digest) ?? { descriptor: blob, repositories: new Set<string>(), item };
          for (const repository of entry.repositories) known.repositories.add(repository);
          blobs.set(blob.digest, known);
        }
      }
      await this.deps.leases.hold(this.ctx.id, [...blobs.keys(), ...manifests.keys(), top.digest]);
      for (const blob of blobs.values()) this.expect(blob.item, blob.descriptor.size);
      this.report();
      await allOrNone([...blobs.values()], signal, (blob, copying) => this.copyBlob(blob.descriptor, blob.repositories, blob.item, copying));

      // Manifests by digest, then the tags.
      for (const entry of manifests.values()) {
        for (const repository of entry.repositories) {
          await this.deps.registry.manifests.put(repository, entry.fetched!.digest, entry.fetched!.bytes, entry.fetched!.mediaType);
        }
      }
      signal.throwIfAborted();
      for (const write of plan.writes) {
        const bytes = write.digest === top.digest ? top : manifests.get(write.digest)!.fetched!;
        await this.deps.registry.manifests.put(write.repository, write.tag, bytes.bytes, bytes.mediaType);
        this.ctx.log(`${tag}: tagged ${write.repository}:${write.tag} -> ${write.digest}${write.platform ? ` (${write.platform})` : ''}`);
      }
      for (const item of Object.values(this.progress.items)) if (item.state === 'copying' && item.units.done === item.units.total) item.state = 'done';
      return {
        tag,
        state: 'succeeded',
        digest: top.digest,
        writes: plan.writes.map((w) => ({ repository: w.repository, tag: w.tag, digest: w.digest, ...(w.platform ? { platform: w.platform } : {}) })),
      };
    } catch (error) {
      for (const [key, item] of Object.entries(this.progress.items)) if (key.split(' ')[0] === tag && item.state !== 'done') item.state = signal.aborted ? 'cancelled' : 'failed';
      this.report();
      if (signal.aborted) throw error;
      const message = describe(error);
      this.ctx.log(`${tag}: failed: ${message}`);
      return { tag, state: 'failed', error: message, retryable: isUpstreamError(error) && error.retryable };
    }
  }

  private async fetchManifest(reference: string): Promise<FetchedManifest> {
    const manifest = await this.upstream.client.getManifest(this.upstreamRepository, reference, { signal: this.ctx.signal });
    return { digest: manifest.digest, bytes: manifest.bytes, mediaType: manifest.mediaType, parsed: parseManifest(manifest.bytes, manifest.mediaType) };
  }

  /** What the layouts need to know of the tag's manifest: an index's entries, or a single image's platform. */
  private async sourceManifest(top: FetchedManifest): Promise<SourceManifest> {
    const source: SourceManifest = { digest: top.digest, mediaType: top.mediaType };
    if (isIndexMediaType(top.mediaType)) return { ...source, manifests: top.parsed.manifests };
    const config = top.parsed.blobs[0];
    if (!config || config.size > CONFIG_LIMIT) return source;
    const platform = await platformOfConfig(await this.configBytes(config));
    return platform ? { ...source, platform } : source;
  }

  /** The config blob: from storage when an earlier (interrupted) run stored it, so a resumed job asks the upstream for no stored blob. */
  private async configBytes(config: Descriptor): Promise<AsyncIterable<Buffer>> {
    const digest = parseDigest(config.digest);
    if (digest && (await this.deps.registry.blobs.statGlobal(digest)) === config.size) return this.deps.registry.blobs.read(digest);
    return (await this.upstream.client.fetchBlob(this.upstreamRepository, config.digest, { size: config.size, signal: this.ctx.signal })).stream;
  }

  private async copyBlob(descriptor: Descriptor, repositories: Set<string>, item: string, signal: AbortSignal): Promise<void> {
    const { registry } = this.deps;
    const digest = parseDigest(descriptor.digest)!;
    const [first, ...rest] = [...repositories];
    const stored = await registry.blobs.statGlobal(digest);
    if (stored === descriptor.size) {
      this.totals.present++;
    } else {
      await this.upstream.throttle.run(async () => {
        const blob = await this.upstream.client.fetchBlob(this.upstreamRepository, descriptor.digest, { size: descriptor.size, signal });
        let session: { id: string } | undefined;
        try {
          session = await registry.uploads.create(first!);
          await registry.uploads.complete(first!, session.id, digest, {
            body: this.counting(this.upstream.throttle.limit(blob.stream, signal), item),
            length: descriptor.size,
          });
        } catch (error) {
          // Also when no session could be made: an unread response holds its upstream connection.
          blob.stream.destroy();
          if (session) await registry.uploads.cancel(first!, session.id).catch(() => undefined);
          throw error;
        }
      });
      this.totals.fetched++;
    }
    for (const repository of stored === descriptor.size ? repositories : rest) await registry.blobs.link(repository, digest);
    if (stored === descriptor.size) this.advance(item, descriptor.size);
    this.finishUnit(item);
  }

  private async *counting(source: AsyncIterable<Buffer>, item: string): AsyncGenerator<Buffer> {
    for await (const chunk of source) {
      this.totals.bytes += chunk.length;
      this.advance(item, chunk.length);
      yield chunk;
    }
  }

  private expect(item: string, bytes: number): void {
    const entry = (this.progress.items[item] ??= { state: 'copying', units: { done: 0, total: 0 }, bytes: { done: 0, total: 0 } });
    entry.units.total++;
    entry.bytes.total += bytes;
    this.progress.units.total++;
    this.progress.bytes.total += bytes;
  }

  private advance(item: string, bytes: number): void {
    this.progress.items[item]!.bytes.done += bytes;
    this.progress.bytes.done += bytes;
    this.report();
  }

  private finishUnit(item: string): void {
    this.progress.items[item]!.units.done++;
    this.progress.units.done++;
    this.report();
  }

  private report(): void {
    this.ctx.progress(structuredClone(this.progress));
  }
}

function platformOf(descriptor: Descriptor): string | undefined {
  return descriptor.platform ? formatPlatform(descriptor.platform) : undefined;
}

function describe(error: unknown): string {
  if (isUpstreamError(error)) return error.message;
  return error instanceof Error ? error.message : String(error);
}

export type { TagWrite };
