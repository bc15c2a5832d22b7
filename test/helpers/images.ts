// Tiny busybox test images, made locally (there is no Docker Hub here) and built with buildah,
// because `docker import --platform linux/arm64` on dockerd 20.10 records amd64 in the config.
import { chmod, copyFile, mkdir, mkdtemp, open, readFile, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { ContainerClient } from './clients.js';
import { run, tempDir } from './process.js';
import { removeTree } from './cleanup.js';

export type Arch = 'amd64' | 'arm64';

/** What `uname -m` prints inside an image of each architecture. */
export const UNAME_M: Record<Arch, string> = { amd64: 'x86_64', arm64: 'aarch64' };

/** ELF e_machine values, to check a downloaded binary really is the architecture we asked for. */
const ELF_MACHINE: Record<Arch, number> = { amd64: 0x3e, arm64: 0xb7 };

/**
 * A stable cache so repeated runs do not download again; /var/cache when writable (CI runs as
 * root), else the temp dir. TEST_CACHE_DIR overrides.
 */
async function cacheDir(): Promise<string> {
  const candidates = [process.env.TEST_CACHE_DIR, '/var/cache/dify-registry-test', join(tmpdir(), 'dify-registry-test-cache')];
  for (const dir of candidates) {
    if (!dir) continue;
    try {
      await mkdir(dir, { recursive: true });
      const probe = join(dir, `.probe-${process.pid}`);
      await writeFile(probe, '');
      await rm(probe);
      return dir;
    } catch { /* not writable, try the next */ }
  }
  throw new Error('no writable cache directory for test images');
}

async function elfMachine(file: string): Promise<number | undefined> {
  const handle = await open(file, 'r');
  try {
    const header = Buffer.alloc(20);
    const { bytesRead } = await handle.read(header, 0, 20, 0);
    if (bytesRead < 20 || header.readUInt32BE(0) !== 0x7f454c46) return undefined;
    return header.readUInt16LE(18);
  } finally {
    await handle.close();
  }
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(() => true, () => false);
}

/**
 * Debian's arm64 busybox-static, fetched without touching the system's apt state: private lists
 * and cache directories, arm64 as the only architecture. Downloaded once into the cache.
 */
async function fetchArm64Busybox(target: string): Promise<void> {
  const work = await mkdtemp(join(dirname(target), '.fetch-'));
  try {
    await mkdir(join(work, 'lists', 'partial'), { recursive: true });
    await mkdir(join(work, 'cache', 'archives', 'partial'), { recursive: true });
    const apt = [
      '-o', `Dir::State::Lists=${join(work, 'lists')}`,
      '-o', `Dir::Cache=${join(work, 'cache')}`,
      '-o', 'APT::Architecture=arm64',
      '-o', 'APT::Architectures=arm64',
      // Our private dirs are root-only; apt's _apt sandbox user could not write them.
      '-o', 'APT::Sandbox::User=root',
      '-qq',
    ];
    // A third-party source without arm64 may fail the update; Debian's lists are what we need.
    const update = await run('apt-get', [...apt, 'update'], { allowFailure: true });
    const download = await run('apt-get', [...apt, 'download', 'busybox-static:arm64'], { cwd: work, allowFailure: true });
    if (download.code !== 0) {
      throw new Error(`could not download busybox-static:arm64 with apt-get\n${update.stderr}\n${download.stdout}\n${download.stderr}`);
    }
    const deb = (await run('sh', ['-c', 'ls busybox-static_*_arm64.deb'], { cwd: work })).stdout.trim();
    await run('dpkg-deb', ['-x', join(work, deb), join(work, 'x')]);
    const binary = join(work, 'x', 'bin', 'busybox');
    if ((await elfMachine(binary)) !== ELF_MACHINE.arm64) throw new Error(`${deb} does not hold an arm64 busybox`);
    // Rename is atomic: a concurrent run sees either no file or a whole one.
    await rename(binary, target);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** Path to a static busybox binary for `arch`. */
export async function busyboxBinary(arch: Arch): Promise<string> {
  let path: string;
  if (arch === 'amd64') {
    path = process.env.TEST_BUSYBOX_AMD64 ?? '/usr/bin/busybox'; // from busybox-static
  } else {
    path = join(await cacheDir(), 'busybox-static-arm64', 'busybox');
    if (!(await exists(path))) {
      await mkdir(dirname(path), { recursive: true });
      await fetchArm64Busybox(path);
    }
  }
  if ((await elfMachine(path)) !== ELF_MACHINE[arch]) throw new Error(`${path} is not a static ${arch} busybox`);
  return path;
}

/** A file added to an image: inline content, or a file on disk (for big payloads). */
export type ExtraFile = string | Buffer | { source: string };

export interface BuildOptions {
  arch: Arch;
  /** Registry reference to push to (host:port/name:tag); omitted = build locally only. */
  ref?: string;
  /** Local image name; defaults to `ref`, or a random localhost/ name. */
  localName?: string;
  /** Absolute paths inside the image, added as a second layer over the busybox one. */
  extraFiles?: Record<string, ExtraFile>;
  /** One layer per extra file (a COPY each, built with --layers) instead of one layer for all of them. */
  layerPerFile?: boolean;
}

export interface BuiltImage {
  arch: Arch;
  localName: string;
  ref?: string;
  /** Manifest digest as pushed (sha256:…), when pushed. */
  digest?: string;
}

/** Busybox applets to link in /bin, as listed by the binary itself (qemu runs the arm64 one). */
async function applets(binary: string): Promise<string[]> {
  const listed = await run(binary, ['--list'], { allowFailure: true });
  const source = listed.code === 0 ? listed : await run('/usr/bin/busybox', ['--list']);
  return source.stdout.split('\n').map((s) => s.trim()).filter((s) => /^[a-z0-9_.[-]+$/.test(s) && s !== 'busybox');
}

async function writeContext(dir: string, arch: Arch, extraFiles: Record<string, ExtraFile>, layerPerFile = false): Promise<void> {
  const bin = join(dir, 'rootfs', 'bin');
  await mkdir(bin, { recursive: true });
  const binary = await busyboxBinary(arch);
  await copyFile(binary, join(bin, 'busybox'));
  await chmod(join(bin, 'busybox'), 0o755);
  for (const applet of await applets(binary)) await symlink('busybox', join(bin, applet)).catch(() => undefined);
  await mkdir(join(dir, 'rootfs', 'tmp'));
  await chmod(join(dir, 'rootfs', 'tmp'), 0o1777);
  const lines = ['FROM scratch', 'COPY rootfs/ /'];
  const entries = Object.entries(extraFiles);
  if (entries.length > 0) {
    for (const [i, [path, content]] of entries.entries()) {
      if (!path.startsWith('/')) throw new Error(`extra file path must be absolute: ${path}`);
      // Per file: extra/<i>/<path>, one COPY each; otherwise one tree and one COPY.
      const dest = layerPerFile ? join(dir, 'extra', String(i), path) : join(dir, 'extra', path);
      await mkdir(dirname(dest), { recursive: true });
      if (typeof content === 'object' && !Buffer.isBuffer(content)) await copyFile(content.source, dest);
      else await writeFile(dest, content);
    }
    if (layerPerFile) for (let i = 0; i < entries.length; i++) lines.push(`COPY extra/${i}/ /`);
    else lines.push('COPY extra/ /');
  }
  lines.push('ENV PATH=/bin', 'CMD ["sh"]', '');
  await writeFile(join(dir, 'Containerfile'), lines.join('\n'));
}

async function readDigest(file: string): Promise<string> {
  const digest = (await readFile(file, 'utf8')).trim();
  if (!/^sha256:[0-9a-f]{64}$/.test(digest)) throw new Error(`unexpected digest file content: ${digest}`);
  return digest;
}

/** Builds a busybox image for `arch` with buildah and, given `ref`, pushes it there. */
export async function buildBusyboxImage(buildah: ContainerClient, options: BuildOptions): Promise<BuiltImage> {
  const localName = options.localName ?? options.ref ?? `localhost/dify-test/busybox-${options.arch}-${randomBytes(4).toString('hex')}`;
  const context = await tempDir(`busybox-${options.arch}`);
  try {
    await writeContext(context, options.arch, options.extraFiles ?? {}, options.layerPerFile);
    await buildah.run([
      'bud', '--isolation', 'chroot', '--platform', `linux/${options.arch}`, `--layers=${options.layerPerFile ? 'true' : 'false'}`,
      '-f', join(context, 'Containerfile'), '-t', localName, context,
    ]);
    // dockerd 20.10 once recorded the host arch for an arm64 import: check the config itself.
    const recorded = (await buildah.run(['inspect', '--type', 'image', '--format', '{{.OCIv1.Architecture}}', localName])).stdout.trim();
    if (recorded !== options.arch) throw new Error(`built ${localName} for ${options.arch}, config says ${recorded}`);
    const image: BuiltImage = { arch: options.arch, localName };
    if (options.ref) {
      const digestFile = join(context, 'digest');
      await buildah.run(['push', '--tls-verify=false', '--digestfile', digestFile, localName, `docker://${options.ref}`]);
      image.ref = options.ref;
      image.digest = await readDigest(digestFile);
    }
    return image;
  } finally {
    await removeTree(context);
  }
}

/**
 * Builds one busybox image per architecture, assembles them into an OCI index with
 * `buildah manifest`, pushes it with `--all` and returns the index digest. `format: 'v2s2'` pushes a
 * Docker manifest list of Docker schema 2 manifests instead.
 */
export async function buildMultiArchIndex(
  buildah: ContainerClient,
  options: { ref: string; arches: Arch[]; extraFiles?: Record<string, ExtraFile>; layerPerFile?: boolean; format?: 'oci' | 'v2s2' },
): Promise<{ ref: string; digest: string; images: BuiltImage[] }> {
  const id = randomBytes(4).toString('hex');
  const list = `localhost/dify-test/index-${id}`;
  const images: BuiltImage[] = [];
  for (const arch of options.arches) {
    images.push(await buildBusyboxImage(buildah, {
      arch,
      localName: `localhost/dify-test/busybox-${arch}-${id}`,
      ...(options.extraFiles ? { extraFiles: options.extraFiles } : {}),
      ...(options.layerPerFile ? { layerPerFile: true } : {}),
    }));
  }
  const work = await tempDir('index');
  try {
    await buildah.run(['manifest', 'create', list]);
    for (const image of images) {
      await buildah.run(['manifest', 'add', '--arch', image.arch, '--os', 'linux', list, `containers-storage:${image.localName}`]);
    }
    const digestFile = join(work, 'digest');
    await buildah.run(['manifest', 'push', '--all', ...(options.format ? ['--format', options.format] : []), '--tls-verify=false', '--digestfile', digestFile, list, `docker://${options.ref}`]);
    return { ref: options.ref, digest: await readDigest(digestFile), images };
  } finally {
    await buildah.run(['manifest', 'rm', list], { allowFailure: true });
    await buildah.run(['rmi', ...images.map((i) => i.localName)], { allowFailure: true });
    await removeTree(work);
  }
}
