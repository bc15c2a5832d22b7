// What builder tests build from, all made here (no Docker Hub, no PyPI): a tiny multi-arch stand-in for
// python:3.12-slim-bookworm (Debian's static busybox and bash, plus shell shims for the tools the dify-api
// recipe calls), and a local git repository shaped like Dify's, with its api/ folder.
import { chmod, copyFile, mkdir, mkdtemp, readFile, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { ContainerClient } from './clients.js';
import { busyboxBinary, type Arch } from './images.js';
import { run, tempDir } from './process.js';
import { removeTree } from './cleanup.js';

/** The seed's base environment (python:3.12-slim-bookworm), in the order it defines it. */
export const BASE_ENV: Array<[string, string]> = [
  ['PATH', '/usr/local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
  ['LANG', 'C.UTF-8'],
  ['GPG_KEY', '7169605F62C751356D054A26A821E680E5FA6305'],
  ['PYTHON_VERSION', '3.12.12'],
  ['PYTHON_SHA256', 'fb85a13414b028c49ba18bbd523c2d055a30b56b18b92ce454ea2c51edc656c4'],
];

const ELF_MACHINE: Record<Arch, number> = { amd64: 0x3e, arm64: 0xb7 };

async function cacheDir(): Promise<string> {
  for (const dir of [process.env.TEST_CACHE_DIR, '/var/cache/dify-registry-test', join(tmpdir(), 'dify-registry-test-cache')]) {
    if (!dir) continue;
    try {
      await mkdir(dir, { recursive: true });
      return dir;
    } catch {
      // not writable: the next one
    }
  }
  throw new Error('no writable cache directory for test binaries');
}

async function elfMachine(file: string): Promise<number | undefined> {
  const header = await readFile(file).then((b) => b.subarray(0, 20));
  return header.length === 20 && header.readUInt32BE(0) === 0x7f454c46 ? header.readUInt16LE(18) : undefined;
}

/**
 * A binary from a Debian package of `arch`, fetched without touching the system's apt state (private
 * lists and cache, `arch` as the only architecture; as images.ts does for busybox) and cached.
 */
export async function debianBinary(pkg: string, arch: Arch, pathInPackage: string): Promise<string> {
  const target = join(await cacheDir(), `${pkg}-${arch}`, pathInPackage.split('/').pop()!);
  if (await stat(target).then(() => true, () => false)) return target;
  await mkdir(dirname(target), { recursive: true });
  const work = await mkdtemp(join(dirname(target), '.fetch-'));
  try {
    await mkdir(join(work, 'lists', 'partial'), { recursive: true });
    await mkdir(join(work, 'cache', 'archives', 'partial'), { recursive: true });
    const apt = [
      '-o', `Dir::State::Lists=${join(work, 'lists')}`,
      '-o', `Dir::Cache=${join(work, 'cache')}`,
      '-o', `APT::Architecture=${arch}`,
      '-o', `APT::Architectures=${arch}`,
      '-o', 'APT::Sandbox::User=root',
      '-qq',
    ];
    const update = await run('apt-get', [...apt, 'update'], { allowFailure: true });
    const download = await run('apt-get', [...apt, 'download', `${pkg}:${arch}`], { cwd: work, allowFailure: true });
    if (download.code !== 0) throw new Error(`could not download ${pkg}:${arch}\n${update.stderr}\n${download.stderr}`);
    const deb = (await run('sh', ['-c', `ls ${pkg}_*_${arch}.deb`], { cwd: work })).stdout.trim();
    await run('dpkg-deb', ['-x', join(work, deb), join(work, 'x')]);
    const binary = join(work, 'x', pathInPackage);
    if ((await elfMachine(binary)) !== ELF_MACHINE[arch]) throw new Error(`${deb} does not hold an ${arch} ${pathInPackage}`);
    await rename(binary, target);
    return target;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** Shell stand-ins for what the recipe runs; each says what it was asked, and leaves what later steps need. */
const SHIMS: Record<string, string> = {
  pip: `echo "pip (test shim) $*"`,
  'apt-get': `echo "apt-get (test shim) $*"`,
  uv: [
    `echo "uv (test shim) $*"`,
    `if [ "$1" = sync ]; then mkdir -p .venv/bin && echo "installed from uv.lock: $(cat uv.lock | wc -l) lines" > .venv/INSTALLED; fi`,
    // A benchmark sizes the environment like a real one: `# fixture-venv-mb: N` in pyproject.toml.
    `mb=$(sed -n 's/^# fixture-venv-mb: *//p' pyproject.toml 2>/dev/null)`,
    `if [ "$1" = sync ] && [ -n "$mb" ]; then mkdir -p .venv/lib && dd if=/dev/urandom of=.venv/lib/site-packages.bin bs=1048576 count="$mb" 2>/dev/null; fi`,
    // ... and, with `# fixture-install-seconds: N`, the time downloading and building wheels takes.
    `seconds=$(sed -n 's/^# fixture-install-seconds: *//p' pyproject.toml 2>/dev/null)`,
    `if [ "$1" = sync ] && [ -n "$seconds" ]; then sleep "$seconds"; fi`,
  ].join('\n'),
  python: [
    `echo "python (test shim) $*"`,
    `case "$*" in *tiktoken*) mkdir -p "$TIKTOKEN_CACHE_DIR" && echo gpt2 > "$TIKTOKEN_CACHE_DIR/gpt2";; esac`,
    `case "$*" in *nltk*) mkdir -p "$NLTK_DATA/tokenizers" && echo punkt > "$NLTK_DATA/tokenizers/punkt";; esac`,
  ].join('\n'),
  curl: [`out=/dev/stdout`, `while [ $# -gt 0 ]; do case "$1" in -o) out=$2; shift 2;; *) shift;; esac; done`, `echo "test key" > "$out"`].join('\n'),
  gpg: [
    `case "$*" in`,
    `  *--show-keys*) echo "fpr:::::::::6F71F525282841EEDAF851B42F59B5F99B1BE0B4:";;`,
    `  *--dearmor*) out=""; in=""; while [ $# -gt 0 ]; do case "$1" in -o) out=$2; shift 2;; --*) shift;; *) in=$1; shift;; esac; done; cp "$in" "$out";;`,
    `esac`,
  ].join('\n'),
  groupadd: [`gid=""`, `while [ $# -gt 1 ]; do case "$1" in -g) gid=$2; shift 2;; *) shift;; esac; done`, `echo "$1:x:$gid:" >> /etc/group`].join('\n'),
  useradd: [
    `uid=""; gid=""; shell=/bin/sh`,
    `while [ $# -gt 1 ]; do case "$1" in -u) uid=$2; shift 2;; -g) gid=$2; shift 2;; -s) shell=$2; shift 2;; *) shift;; esac; done`,
    `echo "$1:x:$uid:$gid::/home/$1:$shell" >> /etc/passwd`,
  ].join('\n'),
};
const SHIM_ALIASES: Record<string, string> = { pip3: 'pip', python3: 'python' };

async function writeBaseContext(dir: string, arch: Arch): Promise<void> {
  const root = join(dir, 'rootfs');
  for (const sub of ['bin', 'etc/apt/sources.list.d', 'tmp', 'usr/local/bin', 'root']) await mkdir(join(root, sub), { recursive: true });
  await chmod(join(root, 'tmp'), 0o1777);
  await copyFile(await busyboxBinary(arch), join(root, 'bin', 'busybox'));
  await copyFile(await debianBinary('bash-static', arch, 'bin/bash-static'), join(root, 'bin', 'bash'));
  await chmod(join(root, 'bin', 'busybox'), 0o755);
  await chmod(join(root, 'bin', 'bash'), 0o755);
  // The applets as this machine's busybox (the same Debian version) lists them.
  const applets = (await run('/usr/bin/busybox', ['--list'])).stdout.split('\n').map((s) => s.trim()).filter((s) => /^[a-z0-9_.[-]+$/.test(s) && s !== 'busybox');
  for (const applet of applets) await symlink('busybox', join(root, 'bin', applet)).catch(() => undefined);
  for (const [name, body] of Object.entries(SHIMS)) {
    await writeFile(join(root, 'usr/local/bin', name), `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  }
  for (const [alias, target] of Object.entries(SHIM_ALIASES)) await symlink(target, join(root, 'usr/local/bin', alias));
  await writeFile(join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  await writeFile(join(root, 'etc/group'), 'root:x:0:\n');
  await writeFile(join(root, 'etc/apt/sources.list.d/debian.sources'), 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: main\n');
  const lines = ['FROM scratch', 'COPY rootfs/ /', ...BASE_ENV.map(([name, value]) => `ENV ${name}=${value}`), 'CMD ["python3"]', ''];
  await writeFile(join(dir, 'Containerfile'), lines.join('\n'));
}

/** Builds the stand-in base for amd64 and arm64 and pushes it as one index to `ref` (host:port/name:tag). */
export async function pushDifyBase(buildah: ContainerClient, ref: string, extraPushArgs: string[] = []): Promise<string> {
  const id = Math.random().toString(16).slice(2, 10);
  const list = `localhost/dify-test/base-${id}`;
  const locals: string[] = [];
  const work = await tempDir('dify-base');
  try {
    for (const arch of ['amd64', 'arm64'] as const) {
      const dir = join(work, arch);
      await mkdir(dir);
      await writeBaseContext(dir, arch);
      const local = `${list}-${arch}`;
      await buildah.run(['bud', '--isolation', 'chroot', '--platform', `linux/${arch}`, '--layers=false', '-f', join(dir, 'Containerfile'), '-t', local, dir]);
      locals.push(local);
    }
    await buildah.run(['manifest', 'create', list]);
    for (const [i, arch] of (['amd64', 'arm64'] as const).entries()) {
      await buildah.run(['manifest', 'add', '--arch', arch, '--os', 'linux', list, `containers-storage:${locals[i]}`]);
    }
    const digestFile = join(work, 'digest');
    await buildah.run(['manifest', 'push', '--all', '--tls-verify=false', ...extraPushArgs, '--digestfile', digestFile, list, `docker://${ref}`]);
    return (await readFile(digestFile, 'utf8')).trim();
  } finally {
    await buildah.run(['manifest', 'rm', list], { allowFailure: true });
    await buildah.run(['rmi', ...locals], { allowFailure: true });
    await removeTree(work);
  }
}

export interface DifyRepo {
  dir: string;
  /** file:// URL git fetches from. */
  url: string;
  /** Commits `files` (paths under the repository) and returns the new commit. */
  commit(files: Record<string, string>, message: string, tag?: string): Promise<string>;
  cleanup(): Promise<void>;
}

/** Dockerfiles the failure tests build (in api/, with the base as BASE_IMAGE). */
export const TEST_DOCKERFILES: Record<string, string> = {
  'api/Dockerfile.fail': 'ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN echo "about to fail" && exit 3\n',
  'api/Dockerfile.bad': 'FROMM nothing\nRUNN nothing at all\n',
  'api/Dockerfile.plain': 'ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY . /app\n',
  'api/Dockerfile.slow': 'ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN echo "sleeping now" && sleep 600\n',
  // Fast on amd64, slow on arm64: one platform has pushed while the other still builds.
  'api/Dockerfile.slowarm': 'ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nARG SALT\nRUN echo "salt $SALT" > /salt && if [ "$(uname -m)" = aarch64 ]; then echo "arm64 waits" && sleep 25; fi\n',
};

/** A git repository shaped like Dify's: its api/ folder with what the recipe copies, tagged `tag`. */
export async function difyRepo(tag: string): Promise<DifyRepo & { firstCommit: string }> {
  const dir = await tempDir('dify-git');
  const git = (args: string[]) =>
    run('git', ['-c', 'user.name=test', '-c', 'user.email=test@example.com', '-c', 'init.defaultBranch=main', ...args], { cwd: dir, env: { ...process.env, GIT_CONFIG_GLOBAL: '/dev/null', GIT_CONFIG_NOSYSTEM: '1' } });
  const files: Record<string, string> = {
    'README.md': '# Dify (test fixture)\n',
    'api/.dockerignore': '.venv\n__pycache__\n*.pyc\n',
    'api/app.py': 'from app_factory import create_app\n\napp = create_app()\n',
    'api/app_factory.py': 'def create_app():\n    return "dify"\n',
    'api/pyproject.toml': '[project]\nname = "dify-api"\nversion = "1.12.1"\nrequires-python = ">=3.11,<3.13"\n',
    'api/uv.lock': 'version = 1\nrevision = 2\nrequires-python = ">=3.11, <3.13"\n',
    'api/controllers/__init__.py': '',
    'api/configs/__init__.py': 'EDITION = "SELF_HOSTED"\n',
    'api/docker/entrypoint.sh': '#!/bin/bash\nset -e\necho "dify-api $(uname -m) user=$(id -un) commit=${COMMIT_SHA}"\n',
    ...TEST_DOCKERFILES,
  };
  const repo = {
    dir,
    url: `file://${dir}`,
    async commit(changed: Record<string, string>, message: string, newTag?: string): Promise<string> {
      for (const [path, content] of Object.entries(changed)) {
        await mkdir(dirname(join(dir, path)), { recursive: true });
        await writeFile(join(dir, path), content);
      }
      await git(['add', '-A']);
      await git(['commit', '-q', '-m', message]);
      if (newTag) await git(['tag', '-f', newTag]);
      return (await git(['rev-parse', 'HEAD'])).stdout.trim();
    },
    cleanup: () => removeTree(dir),
  };
  await git(['init', '-q']);
  const firstCommit = await repo.commit(files, 'Dify (test fixture)', tag);
  return { ...repo, firstCommit };
}

/** The seed's image history and config (a copy in test/fixtures): the JSON after its "镜像信息" line. */
export async function seedImageConfig(): Promise<{ Config: Record<string, unknown>; Architecture: string }> {
  const candidates = [process.env.TEST_DIFY_SEED, fileURLToPath(new URL('../fixtures/dify-api-1.12.1-arm64.txt', import.meta.url))];
  for (const file of candidates) {
    if (!file) continue;
    const text = await readFile(file, 'utf8').catch(() => undefined);
    if (!text) continue;
    const start = text.indexOf('{', text.indexOf('镜像信息'));
    return JSON.parse(text.slice(start)) as { Config: Record<string, unknown>; Architecture: string };
  }
  throw new Error('the dify-api seed (image history and config) is missing');
}
