// Pull-through caching: a pull of content missing here fetches it from the upstream of its repository's
// rule, stores it, and serves it. Tags are revalidated against upstream after the rule's TTL (a HEAD);
// content addressed by digest never is. When the upstream fails or rate-limits, a stored copy is served.
// A blob is fetched once however many clients ask: in a process through one shared promise, across
// processes and replicas through a lock, whose holder streams to its client while storing and whose
// waiters serve the stored copy. A waiter whose copy is not stored within mirror.waitforfetch streams from
// the upstream itself instead (as Distribution's proxy does at once), so no proxy in front times it out.
import { PassThrough, type Writable } from 'node:stream';
import type { Logger } from 'pino';
import { isDigest, parseDigest, type ParsedDigest } from '../registry/digest.js';
import { OciError } from '../registry/errors.js';
import { parseManifest } from '../registry/manifest.js';
import { isIndexMediaType } from '../registry/media-types.js';
import type { Registry } from '../registry/registry.js';
import type { Locks } from '../state/locks.js';
import { CONFIG_LIMIT, formatPlatform, isUnknownPlatform, platformOfConfig } from './platforms.js';
import { upstreamTagOf, type PullThroughRules, type PullThroughTarget } from './pullthrough-rules.js';
import type { UpstreamPool } from './upstream-pool.js';
import { isNotFound as isUpstreamNotFound, isUpstreamError } from './upstream-error.js';

/**
 * With a stored copy to fall back on, how long a tag's revalidation may take (retries included) before the
 * stored copy is served, and how long after a failed one the upstream is left alone (at most the TTL).
 */
const REVALIDATE_TIMEOUT_MS = 10_000;
const RETRY_REVALIDATION_MS = 30_000;
/** How long the client that a blob is fetched for may read nothing before it is cut (see teeToClient). */
const CLIENT_STALL_MS = 30_000;
/** How far that client may fall behind storage (bytes buffered for it) before storage waits for it. */
const CLIENT_LAG_BYTES = 4 * 1024 * 1024;

export interface BlobResponse {
  size: number;
  digest: string;
  /** The bytes as they arrive from upstream (they are stored at the same time). */
  body: PassThrough;
}

export class PullThrough {
  /** Tags checked against upstream, by `<name>:<tag>`: until when the check holds, and the upstream digest seen. */
  private readonly checked = new Map<string, { until: number; upstreamDigest?: string }>();
  private readonly inflight = new Map<string, Promise<void>>();

  constructor(
    readonly rules: PullThroughRules,
    private readonly pool: UpstreamPool,
    private readonly registry: Registry,
    private readonly locks: Locks,
    private readonly logger: Logger,
    /** mirror.waitforfetch */
    private readonly waitForFetchMs = 30_000,
  ) {}

  /** Makes sure the manifest is stored here if upstream has it; afterwards the normal route serves it. */
  async ensureManifest(name: string, reference: string, upstream?: string): Promise<void> {
    const target = this.rules.match(name, upstream);
    if (!target) return;
    if (isDigest(reference)) {
      const digest = parseDigest(reference);
      if (!digest || (await this.hasManifest(name, reference))) return;
      return this.once(`manifest ${name}@${reference}`, () => this.fetchManifestByDigest(target, name, digest.digest));
    }
    const key = `${name}:${reference}`;
    const seen = this.checked.get(key);
    if (seen && seen.until > Date.now() && (await this.hasManifest(name, reference))) return;
    return this.once(`tag ${key}`, () => this.refreshTag(target, name, reference));
  }

  /**
   * For a blob not stored here: undefined when the caller should serve it from storage (it was there
   * after all, or another request just stored it), else the upstream bytes to answer with.
   */
  async fetchBlob(
    name: string,
    digest: ParsedDigest,
    method: 'GET' | 'HEAD',
    upstream?: string,
  ): Promise<BlobResponse | { size: number; digest: string; body?: undefined } | undefined> {
    const target = this.rules.match(name, upstream);
    if (!target) return undefined;
    // A HEAD is how pushing clients ask whether to upload a blob: with the upstream unreachable, the answer
    // is "not here" (they upload it), not 503, which would fail every push of a new layer under a
    // catch-all pull-through rule while the upstream is down or in an air-gapped installation.
    const unreachable = method === 'HEAD' ? 'not found' : undefined;
    if (await this.linkIfStored(target, name, digest, unreachable)) return undefined;
    const { client } = this.pool.get(target.rule.upstream);
    if (method === 'HEAD') {
      const head = await this.upstreamCall(() => client.headBlob(target.upstreamRepository, digest.digest), unreachable);
      if (head?.size === undefined) return undefined;
      return { size: head.size, digest: digest.digest };
    }
    // Another request of this process, or another process, is fetching it: wait for the stored copy, for a while.
    const running = this.inflight.get(`blob ${digest.digest}`);
    const lock = running ? undefined : await this.locks.tryLock(`pullthrough/${digest.hex}`);
    if (!lock) {
      if (await this.storedWithin(digest, running)) {
        if (await this.linkIfStored(target, name, digest)) return undefined;
        if (running) return this.fetchBlob(name, digest, method, upstream); // its fetch failed: maybe ours works
      }
      return this.streamFromUpstream(target, digest);
    }
    let done!: () => void;
    const finished = new Promise<void>((resolve) => (done = resolve));
    this.inflight.set(`blob ${digest.digest}`, finished);
    const release = () => {
      this.inflight.delete(`blob ${digest.digest}`);
      done();
      void lock.release().catch(() => undefined);
    };
    try {
      const blob = await this.upstreamCall(() => client.fetchBlob(target.upstreamRepository, digest.digest));
      if (!blob) {
        release();
        return undefined; // upstream does not have it either: the normal route answers BLOB_UNKNOWN
      }
      // The stream can fail (a corrupt body fails its digest at the end) before store() starts reading it:
      // without a listener that 'error' would end the process. store() still sees the error, through
      // its iterator.
      blob.stream.on('error', () => undefined);
      const body = new PassThrough({ writableHighWaterMark: CLIENT_LAG_BYTES });
      void this.store(name, digest, blob.stream, blob.size, body).finally(release);
      return { size: blob.size, digest: digest.digest, body };
    } catch (error) {
      release();
      throw error;
    }
  }

  /** Never rejects: it runs detached from any request. */
  private async store(name: string, digest: ParsedDigest, source: AsyncIterable<Buffer> & { destroy(): void }, size: number, client: PassThrough): Promise<void> {
    let session: { id: string } | undefined;
    try {
      session = await this.registry.uploads.create(name);
      await this.registry.uploads.complete(name, session.id, digest, { body: teeToClient(source, client), length: size });
      client.end();
    } catch (error) {
      source.destroy(); // an unread response would hold its upstream connection
      client.destroy(error as Error); // the client sees a cut response, never wrong bytes presented as whole
      if (session) await this.registry.uploads.cancel(name, session.id).catch(() => undefined);
      this.logger.warn({ repository: name, digest: digest.digest, err: (error as Error).message }, 'pull-through blob fetch failed');
    }
  }

  private async refreshTag(target: PullThroughTarget, name: string, tag: string): Promise<void> {
    const { client } = this.pool.get(target.rule.upstream);
    const wanted = upstreamTagOf(target.rule, tag);
    const stored = await this.hasManifest(name, tag);
    // With a stored copy, a slow or failing upstream must not hold the pull up for its retries.
    const options = stored ? { signal: AbortSignal.timeout(REVALIDATE_TIMEOUT_MS) } : {};
    let head = await this.upstreamCall(() => client.headManifest(target.upstreamRepository, wanted.tag, options), stored ? 'stored copy' : undefined);
    if (head === undefined && wanted.platform && wanted.tag !== tag) {
      // ddn-k8s: an upstream tag that itself ends like a platform suffix (see resolveDdnTag).
      head = await this.upstreamCall(() => client.headManifest(target.upstreamRepository, tag, options), stored ? 'stored copy' : undefined);
      if (head) return this.storeTag(target, name, tag, { tag }, head.digest);
    }
    if (head === undefined) return; // not upstream: the route answers MANIFEST_UNKNOWN, or serves what is stored
    if (head === null) {
      // Upstream unavailable: serve what is stored, and do not ask again on every pull for a while.
      const key = `${name}:${tag}`;
      this.remember(key, { until: Date.now() + Math.min(target.rule.ttlMs, RETRY_REVALIDATION_MS), upstreamDigest: this.checked.get(key)?.upstreamDigest });
      return;
    }
    await this.storeTag(target, name, tag, wanted, head.digest);
  }

  private async storeTag(target: PullThroughTarget, name: string, tag: string, wanted: { tag: string; platform?: string }, upstreamDigest: string | undefined): Promise<void> {
    const key = `${name}:${tag}`;
    const seen = this.checked.get(key);
    if (upstreamDigest && seen?.upstreamDigest === upstreamDigest && (await this.hasManifest(name, tag))) {
      this.remember(key, { until: Date.now() + target.rule.ttlMs, upstreamDigest });
      return;
    }
    const { client } = this.pool.get(target.rule.upstream);
    const top = await this.upstreamCall(() => client.getManifest(target.upstreamRepository, upstreamDigest ?? wanted.tag));
    if (!top) return;
    let chosen = top;
    if (target.rule.layout === 'ddn-k8s' && isIndexMediaType(top.mediaType) && wanted.platform) {
      const entry = parseManifest(top.bytes, top.mediaType).manifests.find(
        (m) => m.platform && !isUnknownPlatform(m.platform) && formatPlatform(m.platform) === wanted.platform,
      );
      if (!entry) return; // no such platform upstream: MANIFEST_UNKNOWN
      const child = await this.upstreamCall(() => client.getManifest(target.upstreamRepository, entry.digest));
      if (!child) return;
      chosen = child;
    } else if (target.rule.layout === 'ddn-k8s' && wanted.platform && !isIndexMediaType(top.mediaType)) {
      // A single-platform image answers only its own platform's tag (a plain tag is linux/amd64's).
      if ((await this.platformOf(target, top)) !== wanted.platform) return; // MANIFEST_UNKNOWN
    }
    try {
      await this.registry.manifests.put(name, tag, chosen.bytes, chosen.mediaType, { referencesArrive: 'later' });
    } catch (error) {
      // An immutable tag (retention rules) that moved upstream: the stored copy stays what is served.
      if (!(error instanceof OciError && error.code === 'DENIED' && (await this.hasManifest(name, tag)))) throw error;
      this.logger.warn({ repository: name, tag, upstreamDigest: top.digest }, 'pull-through: the upstream tag moved, but the tag is immutable here');
    }
    this.remember(key, { until: Date.now() + target.rule.ttlMs, upstreamDigest: top.digest });
  }

  private remember(key: string, check: { until: number; upstreamDigest?: string }): void {
    this.checked.delete(key);
    this.checked.set(key, check);
    if (this.checked.size > 100_000) this.checked.delete(this.checked.keys().next().value!);
  }

  /** The normalised platform of a single image manifest, from its config (undefined: none or unreadable). */
  private async platformOf(target: PullThroughTarget, manifest: { bytes: Buffer; mediaType: string }): Promise<string | undefined> {
    const config = parseManifest(manifest.bytes, manifest.mediaType).blobs[0];
    if (!config || config.size > CONFIG_LIMIT) return undefined;
    const { client } = this.pool.get(target.rule.upstream);
    const blob = await this.upstreamCall(() => client.fetchBlob(target.upstreamRepository, config.digest, { size: config.size }));
    if (!blob) return undefined;
    const platform = await platformOfConfig(blob.stream);
    return platform && formatPlatform(platform);
  }

  private async fetchManifestByDigest(target: PullThroughTarget, name: string, digest: string): Promise<void> {
    const { client } = this.pool.get(target.rule.upstream);
    const manifest = await this.upstreamCall(() => client.getManifest(target.upstreamRepository, digest));
    if (manifest) await this.registry.manifests.put(name, digest, manifest.bytes, manifest.mediaType, { referencesArrive: 'later' });
  }

  /**
   * Runs an upstream call. Not found upstream: undefined. Upstream failing: null when a stored copy can be
   * served instead (`onFailure` 'stored copy'), undefined when it is to be answered as not found, else 503
   * for the client to retry.
   */
  private async upstreamCall<T>(call: () => Promise<T>, onFailure?: 'stored copy' | 'not found'): Promise<T | undefined | null> {
    try {
      return await call();
    } catch (error) {
      if (isUpstreamNotFound(error)) return undefined;
      const upstream = isUpstreamError(error) ? error : undefined;
      // Docker Hub answers 401 for a repository that does not exist; 403 is content these credentials may not
      // read. Neither gets better by trying again: for the client, the content is not there.
      if (upstream?.status === 401 || upstream?.status === 403) {
        this.logger.warn({ err: upstream.message, status: upstream.status }, 'upstream refused; answering as not found');
        return undefined;
      }
      if (onFailure === 'stored copy') {
        this.logger.warn({ err: (error as Error).message }, 'upstream failed; serving the stored copy');
        return null;
      }
      if (onFailure === 'not found') {
        this.logger.warn({ err: (error as Error).message }, 'upstream failed; answering as not found');
        return undefined;
      }
      this.logger.warn({ err: (error as Error).message }, 'upstream failed');
      // The upstream's URL stays in our log: clients learn what failed, not where.
      const detail = { upstreamStatus: upstream?.status, upstreamCode: upstream?.code ?? 'NETWORK' };
      if (upstream?.status === 429) {
        const seconds = String(Math.max(1, Math.ceil((upstream.retryAfterMs ?? 60_000) / 1000)));
        throw new OciError(429, 'TOOMANYREQUESTS', 'the upstream registry rate-limits this registry; try again later', detail, { 'Retry-After': seconds });
      }
      throw new OciError(503, 'UNAVAILABLE', 'the upstream registry is unavailable; try again', detail, { 'Retry-After': '10' });
    }
  }

  private async hasManifest(name: string, reference: string): Promise<boolean> {
    try {
      await this.registry.manifests.get(name, reference);
      return true;
    } catch (error) {
      if (error instanceof OciError && error.status === 404) return false;
      throw error;
    }
  }

  /**
   * True when the blob can be served from storage in `name`: it is linked there, or it is stored and the
   * upstream confirms that its repository has it. Without the upstream's word, any blob stored here (a
   * private repository's) could be read by its digest through a pull-through name.
   */
  private async linkIfStored(target: PullThroughTarget, name: string, digest: ParsedDigest, unreachable?: 'not found'): Promise<boolean> {
    if (await this.registry.blobs.isLinked(name, digest)) return (await this.registry.blobs.statGlobal(digest)) !== undefined;
    if ((await this.registry.blobs.statGlobal(digest)) === undefined) return false;
    // A fetch of this process that has just stored the blob links it next: its link is the upstream's word
    // (asking the upstream again would answer 503 while it fails, for a blob we just fetched from it).
    // Bounded as any wait for another fetch (mirror.waitforfetch): it may be another repository's, still streaming.
    const running = this.inflight.get(`blob ${digest.digest}`);
    if (running) {
      await this.storedWithin(digest, running);
      if (await this.registry.blobs.isLinked(name, digest)) return true;
    }
    const { client } = this.pool.get(target.rule.upstream);
    if (!(await this.upstreamCall(() => client.headBlob(target.upstreamRepository, digest.digest), unreachable))) return false;
    await this.registry.blobs.link(name, digest);
    return true;
  }

  /**
   * Waits up to mirror.waitforfetch for another request's fetch: `running` in this process (true once it
   * ended, stored or not), else another process's, seen in storage. False: not stored in time.
   */
  private async storedWithin(digest: ParsedDigest, running: Promise<void> | undefined): Promise<boolean> {
    const deadline = Date.now() + this.waitForFetchMs;
    if (running) {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), this.waitForFetchMs)));
      const ended = running.then(() => true, () => true);
      return Promise.race([ended, late]).finally(() => clearTimeout(timer));
    }
    for (let delay = 50; Date.now() < deadline; delay = Math.min(delay * 2, 1_000)) {
      if ((await this.registry.blobs.statGlobal(digest)) !== undefined) return true;
      // The other fetch may have failed and released its lock: then there is nothing to wait for.
      const lock = await this.locks.tryLock(`pullthrough/${digest.hex}`);
      if (lock) {
        await lock.release();
        return (await this.registry.blobs.statGlobal(digest)) !== undefined;
      }
      await new Promise((resolve) => setTimeout(resolve, Math.min(delay, Math.max(0, deadline - Date.now()))));
    }
    return false;
  }

  /** The upstream's bytes straight to the client, verified but not stored (another request stores them). */
  private async streamFromUpstream(target: PullThroughTarget, digest: ParsedDigest): Promise<BlobResponse | undefined> {
    const { client } = this.pool.get(target.rule.upstream);
    const blob = await this.upstreamCall(() => client.fetchBlob(target.upstreamRepository, digest.digest));
    if (!blob) return undefined;
    blob.stream.on('error', () => undefined); // seen by the relay, through its iterator
    const body = new PassThrough();
    void relay(blob.stream, body);
    return { size: blob.size, digest: digest.digest, body };
  }

  /** One run of `task` per key in this process; concurrent callers share it. */
  private once(key: string, task: () => Promise<void>): Promise<void> {
    const running = this.inflight.get(key);
    if (running) return running;
    const promise = task().finally(() => this.inflight.delete(key));
    this.inflight.set(key, promise);
    return promise;
  }
}

/** Copies the upstream's bytes to the client, the last chunk only once verified (see teeToClient). Never rejects. */
async function relay(source: AsyncIterable<Buffer> & { destroy(): void }, client: PassThrough): Promise<void> {
  try {
    for await (const _chunk of teeToClient(source, client)) {
      if (client.destroyed) break; // the client left: nobody else wants these bytes
    }
    source.destroy();
    client.end();
  } catch (error) {
    source.destroy();
    client.destroy(error as Error);
  }
}

/**
 * Yields the upstream bytes to storage while writing them to the client; a client that left is let go.
 * The last chunk reaches the client only once the source has ended verified (size and digest): a
 * client must never receive every byte of its Content-Length when those bytes are wrong, or it would
 * take a cut connection for a complete answer.
 * Storage goes at the client's pace only within limits: other clients of the blob wait for it. A client
 * that takes in nothing for CLIENT_STALL_MS is cut (it retries, and finds the stored copy).
 */
async function* teeToClient(source: AsyncIterable<Buffer>, client: Writable): AsyncGenerator<Buffer> {
  let clientGone = false;
  client.once('close', () => (clientGone = true));
  client.once('error', () => (clientGone = true));
  const write = async (chunk: Buffer) => {
    if (clientGone || client.write(chunk)) return;
    await new Promise<void>((resolve) => {
      const settle = () => {
        clearTimeout(stalled);
        client.off('drain', settle);
        client.off('close', settle);
        resolve();
      };
      const stalled = setTimeout(() => {
        clientGone = true;
        client.destroy(new Error('the client stopped reading'));
        settle();
      }, CLIENT_STALL_MS);
      client.once('drain', settle);
      client.once('close', settle);
    });
  };
  let held: Buffer | undefined;
  for await (const chunk of source) {
    if (held) await write(held);
    held = chunk;
    yield chunk;
  }
  if (held) await write(held);
}
