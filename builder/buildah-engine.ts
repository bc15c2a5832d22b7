// The buildah engine (Debian's buildah 1.28): `bud --layers` into a persistent storage root, so the layer
// cache survives between builds, then a push of the result. Its storage, registries and signature policy
// are its own (under builder.cachedir), never /var/lib/containers or /etc/containers.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { JobError, RetryableJobError } from '../server/jobs/job.js';
import { prepareDockerfile } from './dockerfile.js';
import type { BuildEngine, EngineBuild, EngineResult } from './engine.js';
import { execStreaming, type ExecResult } from './exec.js';
import { evictable, parseImageList, reusedImage } from './layer-cache.js';
import { chooseStorageDriver, overlayWorks } from './storage-driver.js';
import { formatPlatform, parsePlatform } from '../server/mirror/platforms.js';

export interface BuildahOptions {
  path: string;
  /** Storage root (the layer cache) and scratch space live here. */
  cachedir: string;
  /** A containers-storage driver, or `auto` (storage-driver.ts). */
  storagedriver: string;
  isolation: 'chroot' | 'oci' | 'rootless';
  pull: 'newer' | 'always' | 'missing' | 'never';
  /** Bytes a platform's layer cache may hold before builds trim it (layer-cache.ts); 0: no limit. */
  cachesize: number;
}

/** Runs a command for its output (buildah queries, du). */
const query = promisify(execFile);

const PULL_FLAG: Record<BuildahOptions['pull'], string> = { newer: 'true', always: 'always', missing: 'false', never: 'never' };

/** Output that means the registry or network failed, not the build: worth another attempt. */
const INFRASTRUCTURE = [
  /connection refused/i,
  /no such host/i,
  /i\/o timeout/i,
  /TLS handshake timeout/i,
  /connection reset by peer/i,
  /\b(502|503|504)\b.*(Bad Gateway|Service Unavailable|Gateway Timeout)/i,
  /too many requests|toomanyrequests/i,
  /unexpected EOF/i,
  /broken pipe/i,
  /network is unreachable/i,
];
const BAD_DOCKERFILE = [/dockerfile parse error/i, /unknown instruction/i, /parsing main Dockerfile/i, /no FROM statement/i, /no such file or directory.*Dockerfile|Dockerfile.*no such file/i];
const STEP = /^(?:\[(\d+)\/(\d+)\] )?STEP (\d+)\/(\d+): /;
const PULLING = /^Trying to pull (\S+)\.\.\.$/;
/**
 * containers/image's warning when a pulled image (not a list) is for another platform: it is used anyway.
 * Platforms print as Go structs (`{amd64 linux  [] }`) or, in later versions, as `linux/amd64`.
 */
const OTHER_PLATFORM = /image platform \(([^)]*)\) does not match the expected platform \(([^)]*)\)/;

export class BuildahEngine implements BuildEngine {
  readonly name = 'buildah';
  private readonly dirs: { storage: string; run: string; tmp: string; policy: string; registries: string };
  /** Builds running per platform. One that ran beside another does not trim: their uses of the cache mix. */
  private readonly running = new Map<string, Set<{ overlapped: boolean }>>();
  /** A trim in progress per platform: builds of the platform start after it. */
  private readonly trimming = new Map<string, Promise<void>>();

  constructor(private readonly options: BuildahOptions) {
    const base = options.cachedir;
    this.dirs = {
      storage: join(base, 'storage'),
      run: join(base, 'run'),
      tmp: join(base, 'tmp'),
      policy: join(base, 'policy.json'),
      registries: join(base, 'registries.conf'),
    };
  }

  async build(build: EngineBuild): Promise<EngineResult> {
    await this.prepare(build.insecureRegistries);
    // The result keeps a name per repository and platform and is never removed: `buildah rmi` of a fresh
    // image also removes the intermediate images of its build, which are the layer cache. The push names
    // the image by id, so concurrent builds of one repository cannot push each other's result.
    const local = `localhost/dify-registry-build/${build.destination.replace(/^[^/]+\//, '').replace(/:[^:/]+$/, '')}:${platformComponent(build.platform)}`;
    const scratch = join(this.dirs.tmp, randomBytes(8).toString('hex'));
    const idFile = `${scratch}.iid`;
    const dockerfile = `${scratch}.Dockerfile`;
    let original: string;
    try {
      original = await readFile(build.dockerfile, 'utf8');
    } catch {
      throw new JobError('DOCKERFILE_INVALID', `no Dockerfile ${build.dockerfile.split('/').slice(-2).join('/')} in the context`);
    }
    await writeFile(dockerfile, prepareDockerfile(original, build.buildArgs, build.labels));
    // Asked when a platform's storage root is made; from then on the root says which driver it has.
    const driver = await chooseStorageDriver(this.options.storagedriver, this.root(build.platform), () => overlayWorks(this.options.path, this.dirs.tmp));
    build.log(`buildah storage driver: ${driver}${this.options.storagedriver === 'auto' ? ' (auto)' : ''}`);
    while (this.trimming.has(build.platform)) await this.trimming.get(build.platform);
    const running = this.running.get(build.platform) ?? new Set<{ overlapped: boolean }>();
    this.running.set(build.platform, running);
    const self = { overlapped: running.size > 0 };
    for (const other of running) other.overlapped = true;
    running.add(self);
    try {
      // What the cache held before, to tell what this build made from what it found (layer-cache.ts).
      const cachedBefore = this.options.cachesize > 0 ? await this.cachedImages(build.platform, driver).catch(() => undefined) : undefined;
      const reused = new Set<string>();
      let instruction: string | undefined;
      let pulling: string | undefined;
      let otherPlatform: { image: string; found: string } | undefined;
      const started = Date.now();
      build.progress({ phase: 'building' });
      const bud = await this.run(driver, this.budArgs(build, local, idFile, dockerfile), build, (line) => {
        const cached = reusedImage(line);
        if (cached) reused.add(cached);
        pulling = PULLING.exec(line)?.[1] ?? pulling;
        const mismatch = OTHER_PLATFORM.exec(line);
        const found = mismatch && printedPlatform(mismatch[1]!);
        // Only another OS or architecture matters (a variant the image does not name, such as v8, does not).
        if (mismatch && found && pulling && !sameArchitecture(found, printedPlatform(mismatch[2]!) ?? build.platform)) {
          // A base image of another architecture ships its binaries under this platform's name; files that
          // COPY --from takes from one may be data, so that is only said.
          if (instruction === 'FROM') otherPlatform ??= { image: pulling, found };
          else build.log(`warning: ${pulling} is ${found}, not ${build.platform}: what ${instruction ?? 'the build'} takes from it is not built for ${build.platform}`);
        }
        const step = STEP.exec(line);
        if (step) {
          instruction = /^\S+/.exec(line.slice(step[0].length))?.[0]?.toUpperCase();
          build.progress({
            stage: { done: Number(step[1] ?? 1) - 1, total: Number(step[2] ?? 1) },
            step: { done: Number(step[3]) - 1, total: Number(step[4]) },
          });
        }
      });
      // A failed build leaves the images of the steps it finished: it is held to the limit too.
      if (bud.code !== 0 && !bud.stopped) await this.keepCacheWithinLimit(build, driver, cachedBefore, reused, self);
      this.check(bud, build, 'BUILD_FAILED', 'the build failed');
      if (otherPlatform) await this.refuseOtherPlatform(driver, build, otherPlatform);
      const imageId = (await readFile(idFile, 'utf8')).trim();
      const built = Date.now();
      build.progress({ phase: 'pushing', stage: { done: 1, total: 1 }, step: { done: 1, total: 1 } });
      const digestFile = join(this.dirs.tmp, `${randomBytes(8).toString('hex')}.digest`);
      try {
        const push = await this.run(
          driver,
          ['push', '--signature-policy', this.dirs.policy, ...this.auth(build), '--digestfile', digestFile, imageId, `docker://${build.destination}`],
          build,
        );
        this.check(push, build, 'PUSH_FAILED', 'the push failed');
        const digest = (await readFile(digestFile, 'utf8')).trim();
        if (!/^sha256:[0-9a-f]{64}$/.test(digest)) throw new JobError('PUSH_FAILED', `buildah wrote an unexpected digest: ${digest.slice(0, 100)}`);
        build.progress({ phase: 'pushed' });
        const pushMs = Date.now() - built;
        await this.keepCacheWithinLimit(build, driver, cachedBefore, reused, self);
        return { digest, buildMs: built - started, pushMs };
      } finally {
        await rm(digestFile, { force: true });
      }
    } finally {
      running.delete(self);
      await rm(idFile, { force: true });
      await rm(dockerfile, { force: true });
    }
  }

  /** Trims the cache after a build that ran alone here; no build of the platform starts until it is done. */
  private async keepCacheWithinLimit(
    build: EngineBuild,
    driver: string,
    cachedBefore: ReadonlySet<string> | undefined,
    reused: ReadonlySet<string>,
    self: { overlapped: boolean },
  ): Promise<void> {
    if (!cachedBefore || self.overlapped) return;
    const trim = this.trimCache(build, driver, cachedBefore, reused).finally(() => this.trimming.delete(build.platform));
    this.trimming.set(build.platform, trim);
    await trim;
  }

  /**
   * Over builder.buildah.cachesize, removes the cached images this build did not use (layer-cache.ts).
   * Only after a build that ran alone here (another may be about to use them); never fails the build.
   */
  private async trimCache(build: EngineBuild, driver: string, cachedBefore: ReadonlySet<string>, reused: ReadonlySet<string>): Promise<void> {
    const limit = this.options.cachesize;
    const root = this.root(build.platform);
    try {
      const size = await directorySize(root);
      if (size <= limit) return;
      const ids = evictable(parseImageList(await this.imageList(build.platform, driver)), cachedBefore, reused);
      const global = this.globalArgs(build.platform, driver);
      let removed = 0;
      let now = size;
      // Oldest first, a few at a time, until the cache fits: other repositories' caches go only when needed.
      while (removed < ids.length && now > limit) {
        const batch = ids.slice(removed, removed + TRIM_BATCH);
        await query(this.options.path, [...global, 'rmi', '--force', ...batch]);
        removed += batch.length;
        now = await directorySize(root);
      }
      build.log(`layer cache ${gib(size)} over builder.buildah.cachesize ${gib(limit)}: removed ${removed} cached images this build did not use, oldest first (now ${gib(now)})`);
    } catch (error) {
      build.log(`warning: trimming the layer cache failed: ${(error as Error).message.split('\n')[0]}`);
    }
  }

  private async cachedImages(platform: string, driver: string): Promise<Set<string>> {
    return new Set(parseImageList(await this.imageList(platform, driver)).map((image) => image.id));
  }

  private async imageList(platform: string, driver: string): Promise<string> {
    const listed = await query(this.options.path, [...this.globalArgs(platform, driver), 'images', '--all', '--json', '--no-trunc'], { maxBuffer: 64 * 1024 * 1024 });
    return listed.stdout;
  }

  private budArgs(build: EngineBuild, local: string, idFile: string, dockerfile: string): string[] {
    const args = [
      'bud',
      '--isolation', this.options.isolation,
      '--platform', build.platform,
      '--layers',
      '--identity-label=false',
      `--pull=${PULL_FLAG[this.options.pull]}`,
      '--signature-policy', this.dirs.policy,
      ...this.auth(build),
      '-f', dockerfile,
      '-t', local,
      '--iidfile', idFile,
    ];
    for (const [name, value] of Object.entries(build.buildArgs)) args.push('--build-arg', `${name}=${value}`);
    if (build.cacheRepository) args.push('--cache-from', build.cacheRepository, '--cache-to', build.cacheRepository);
    args.push(build.contextDir);
    return args;
  }

  /**
   * A base image that is not a list and is for another platform is used by buildah with a warning, and
   * its config is rewritten to the platform asked for: an arm64 image of x86 binaries that fails only when
   * it runs. Refused before anything is pushed; the base goes from this platform's storage, so the next
   * build pulls it again (and is refused again) rather than reusing it silently.
   */
  private async refuseOtherPlatform(driver: string, build: EngineBuild, other: { image: string; found: string }): Promise<never> {
    // Not --force: a concurrent build of this platform may be using it.
    await this.run(driver, ['rmi', other.image], build).catch(() => undefined);
    throw new JobError(
      'PLATFORM_MISMATCH',
      `${other.image} has no ${build.platform} image (it is ${other.found}): use a base image that has one, or build only the platforms it has`,
    );
  }

  private auth(build: EngineBuild): string[] {
    return build.authFile ? ['--authfile', build.authFile] : [];
  }

  /**
   * One storage per platform: its layers are its own anyway, and two platforms pulling the same base
   * name into one storage at once race (`locating pulled image ... image not known`).
   */
  private root(platform: string): string {
    return join(this.dirs.storage, platformComponent(platform));
  }

  private globalArgs(platform: string, driver: string): string[] {
    return ['--root', this.root(platform), '--runroot', join(this.dirs.run, platformComponent(platform)), '--storage-driver', driver, '--registries-conf', this.dirs.registries];
  }

  private run(driver: string, args: string[], build: EngineBuild, onLine?: (line: string) => void): Promise<ExecResult> {
    const env: NodeJS.ProcessEnv = { ...process.env, TMPDIR: this.dirs.tmp, BUILDAH_LAYERS: 'true' };
    delete env.BUILDAH_ISOLATION;
    delete env.CONTAINER_HOST;
    delete env.REGISTRY_AUTH_FILE;
    return execStreaming(this.options.path, [...this.globalArgs(build.platform, driver), ...args], {
      env,
      signal: build.signal,
      timeoutMs: build.timeoutMs,
      onLine: (line) => {
        build.log(line);
        onLine?.(line);
      },
    });
  }

  /** Turns a failed run into the job's error: stopped, retryable (infrastructure) or final. */
  private check(result: ExecResult, build: EngineBuild, code: string, what: string): void {
    if (result.stopped === 'aborted') throw build.signal.reason ?? new JobError('CANCELLED', 'the build was stopped');
    if (result.stopped === 'timeout') throw new JobError('BUILD_TIMEOUT', `${what}: stopped after ${Math.round(build.timeoutMs / 1000)} s (builder.timeout)`);
    if (result.code === 0) return;
    const text = result.tail.join('\n');
    const last = [...result.tail].reverse().find((line) => /error/i.test(line)) ?? result.tail.at(-1) ?? `exit ${result.code}`;
    if (BAD_DOCKERFILE.some((pattern) => pattern.test(text))) throw new JobError('DOCKERFILE_INVALID', `${what}: ${last}`);
    if (INFRASTRUCTURE.some((pattern) => pattern.test(text))) throw new RetryableJobError(`${what}: ${last}`, { code: 'REGISTRY_UNREACHABLE' });
    throw new JobError(code, `${what}: ${last}`);
  }

  /** Directories, a signature policy that accepts what the registry serves, and the insecure registries. */
  private async prepare(insecure: string[]): Promise<void> {
    for (const dir of [this.dirs.storage, this.dirs.run, this.dirs.tmp]) await mkdir(dir, { recursive: true });
    await writeAtomically(this.dirs.policy, JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
    const entries = [...new Set(insecure)].map((location) => `[[registry]]\nlocation = "${location}"\ninsecure = true\n`);
    // Short names (FROM python:3.12) resolve on Docker Hub, as docker does; mapped bases are fully qualified.
    await writeAtomically(this.dirs.registries, `unqualified-search-registries = ["docker.io"]\nshort-name-mode = "permissive"\n\n${entries.join('\n')}`);
  }
}

/** Concurrent builds write the same small files: each writes its own copy and renames it into place. */
async function writeAtomically(path: string, content: string): Promise<void> {
  const temporary = `${path}.${randomBytes(6).toString('hex')}`;
  await writeFile(temporary, content);
  await rename(temporary, path);
}

/** Cached images removed per `buildah rmi` while trimming, before the size is looked at again. */
const TRIM_BATCH = 20;

/** Disk space under `dir`, as `du` counts it: hard links once, mounts (a build's overlay) not at all. */
async function directorySize(dir: string): Promise<number> {
  const { stdout } = await query('du', ['-sx', '--block-size=1', dir]);
  return Number(stdout.split(/\s/)[0]);
}

function gib(bytes: number): string {
  return `${(bytes / 1024 ** 3).toFixed(1)} GiB`;
}

/** The platform as given, as one path or tag component (existing storage roots are named so). */
function platformComponent(platform: string): string {
  return platform.replace(/\//g, '-');
}

/**
 * A platform as containers/image prints it, as `os/arch[/variant]`: Go's struct printing of a v1.Platform
 * (`{amd64 linux  [] }`: architecture, os, os version, os features, variant) or already `linux/amd64`.
 */
export function printedPlatform(printed: string): string | undefined {
  const struct = /^\{(\S+) (\S+) +(?:\S+ +)?\[[^\]]*\] *(\S*)\}$/.exec(printed.trim());
  if (struct) return formatPlatform({ os: struct[2]!, architecture: struct[1]!, ...(struct[3] ? { variant: struct[3] } : {}) });
  return parsePlatform(printed) ? formatPlatform(printed.trim()) : undefined;
}

export function sameArchitecture(a: string, b: string): boolean {
  const [x, y] = [parsePlatform(a), parsePlatform(b)];
  return x !== undefined && y !== undefined && x.os === y.os && x.architecture === y.architecture;
}
