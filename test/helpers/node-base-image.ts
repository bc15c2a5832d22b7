// A Node base image made on this machine, standing in for node:<lts>-bookworm-slim (no Docker Hub here):
// Debian bookworm minbase from mmdebstrap (cached, one tarball a day) plus the Node binary and npm of
// this process, laid out as the official image does (/usr/local/bin/node, /usr/local/lib/node_modules/npm).
import { copyFile, link, mkdir, readdir, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import type { ContainerClient } from './clients.js';
import { removeTree } from './cleanup.js';
import { run, tempDir } from './process.js';

const SUITE = 'bookworm';
const ROOTFS_PREFIX = `debian-${SUITE}-minbase-`;

/** A cache that outlives the run: /var/cache when writable (CI runs as root), else the temp dir. */
async function cacheDir(): Promise<string> {
  for (const dir of [process.env.TEST_CACHE_DIR, '/var/cache/dify-registry-test', join(tmpdir(), 'dify-registry-test-cache')]) {
    if (!dir) continue;
    try {
      await mkdir(dir, { recursive: true });
      const probe = join(dir, `.probe-${process.pid}`);
      await writeFile(probe, '');
      await rm(probe);
      return dir;
    } catch { /* not writable: the next */ }
  }
  throw new Error('no writable cache directory');
}

const exists = (path: string) => stat(path).then(() => true, () => false);

/**
 * The minbase root filesystem as a tarball, made at most once a day (Debian's security updates land daily;
 * a day-old base is fine for a test) and shared by every run of that day. Older days are removed.
 */
export async function debianRootfs(): Promise<string> {
  const dir = await cacheDir();
  const file = join(dir, `${ROOTFS_PREFIX}${new Date().toISOString().slice(0, 10)}.tar`);
  if (await exists(file)) return file;
  // mmdebstrap picks the output format from the name: keep .tar, and say it too.
  const partial = `${file.slice(0, -'.tar'.length)}.partial-${process.pid}.tar`;
  try {
    await run('mmdebstrap', [
      '--variant=minbase',
      '--quiet',
      '--format=tar',
      // What a slim image leaves out, to keep the vfs copies small.
      '--dpkgopt=path-exclude=/usr/share/man/*',
      '--dpkgopt=path-exclude=/usr/share/doc/*',
      '--dpkgopt=path-exclude=/usr/share/locale/*',
      SUITE,
      partial,
    ]);
  } catch (error) {
    await rm(partial, { force: true, recursive: true });
    throw new Error(`mmdebstrap could not make a ${SUITE} minbase (apt-get install mmdebstrap; scripts/install-deps.sh)\n${(error as Error).message}`);
  }
  await rename(partial, file);
  for (const name of await readdir(dir)) {
    if (name.startsWith(ROOTFS_PREFIX) && join(dir, name) !== file && !name.includes('.partial-')) await rm(join(dir, name), { force: true, recursive: true });
  }
  return file;
}

/** npm of the Node in use: lib/node_modules/npm beside its bin/ (NodeSource, the official tarballs). */
async function npmDir(): Promise<string> {
  const candidate = resolve(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm');
  if (await exists(join(candidate, 'bin', 'npm-cli.js'))) return candidate;
  const root = (await run('npm', ['root', '-g'])).stdout.trim();
  return join(root, 'npm');
}

/**
 * Builds the base image into `buildah`'s storage as `tag`. This machine's CA bundle goes in too, with
 * NODE_EXTRA_CA_CERTS: its egress re-signs TLS with a local CA, and `npm ci` in a build must trust what
 * the host trusts (the official image needs nothing of the kind elsewhere).
 */
export async function buildNodeBaseImage(buildah: ContainerClient, tag = 'localhost/dify-test/node-base:bookworm-slim'): Promise<string> {
  const rootfs = await debianRootfs();
  const context = await tempDir('node-base');
  try {
    // A hard link is instant where the cache shares the temp dir's filesystem.
    await link(rootfs, join(context, 'rootfs.tar')).catch(() => copyFile(rootfs, join(context, 'rootfs.tar')));
    const local = join(context, 'local');
    await mkdir(join(local, 'bin'), { recursive: true });
    await mkdir(join(local, 'lib', 'node_modules'), { recursive: true });
    await copyFile(process.execPath, join(local, 'bin', 'node'));
    await run('cp', ['-a', await npmDir(), join(local, 'lib', 'node_modules', 'npm')]);
    await symlink('../lib/node_modules/npm/bin/npm-cli.js', join(local, 'bin', 'npm'));
    await symlink('../lib/node_modules/npm/bin/npx-cli.js', join(local, 'bin', 'npx'));
    const lines = ['FROM scratch', 'ADD rootfs.tar /', 'COPY local/ /usr/local/'];
    const caBundle = '/etc/ssl/certs/ca-certificates.crt';
    if (await exists(caBundle)) {
      await copyFile(caBundle, join(context, 'ca-certificates.crt'));
      lines.push(`COPY ca-certificates.crt ${caBundle}`, `ENV NODE_EXTRA_CA_CERTS=${caBundle}`);
    }
    lines.push('ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'CMD ["node"]', '');
    await writeFile(join(context, 'Containerfile'), lines.join('\n'));
    await buildah.run(['bud', '--isolation', 'chroot', '-f', join(context, 'Containerfile'), '-t', tag, context]);
    return tag;
  } finally {
    await removeTree(context);
  }
}
