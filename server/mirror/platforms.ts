// Platforms as mirroring sees them: `os/arch[/variant]` strings, normalised the way containerd does,
// so that `linux/arm64/v8` and `linux/arm64` are one platform and `linux/arm` is `linux/arm/v7`.
import type { Platform } from '../registry/descriptor.js';

export interface NormalizedPlatform {
  os: string;
  architecture: string;
  /** Empty when the platform has none (or, for arm64 v8 and amd64 v1, the default one). */
  variant: string;
}

export type PlatformLike = string | Pick<Platform, 'os' | 'architecture' | 'variant'>;

/** `linux/arm64/v8` -> {linux, arm64, ''}; undefined for anything that is not `os/arch[/variant]`. */
export function parsePlatform(value: string): NormalizedPlatform | undefined {
  const parts = value.trim().split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => p === '')) return undefined;
  return normalizePlatform({ os: parts[0]!, architecture: parts[1]!, variant: parts[2] });
}

/** containerd's platforms.Normalize for the cases registries carry. */
export function normalizePlatform(platform: Pick<Platform, 'os' | 'architecture' | 'variant'>): NormalizedPlatform {
  const os = platform.os.toLowerCase();
  let architecture = platform.architecture.toLowerCase();
  let variant = (platform.variant ?? '').toLowerCase();
  switch (architecture) {
    case 'x86_64':
    case 'x86-64':
    case 'amd64':
      architecture = 'amd64';
      if (variant === 'v1') variant = '';
      break;
    case 'i386':
      architecture = '386';
      variant = '';
      break;
    case 'aarch64':
    case 'arm64':
      architecture = 'arm64';
      if (variant === '8' || variant === 'v8' || variant === 'v8.0') variant = '';
      else if (variant === '9' || variant === '9.0' || variant === 'v9.0') variant = 'v9';
      break;
    case 'armhf':
      architecture = 'arm';
      variant = 'v7';
      break;
    case 'armel':
      architecture = 'arm';
      variant = 'v6';
      break;
    case 'arm':
      if (variant === '' || variant === '7') variant = 'v7';
      else if (variant === '5' || variant === '6' || variant === '8') variant = `v${variant}`;
      break;
    default:
      break;
  }
  return { os, architecture, variant };
}

function toNormalized(platform: PlatformLike): NormalizedPlatform | undefined {
  return typeof platform === 'string' ? parsePlatform(platform) : normalizePlatform(platform);
}

/** `os/arch` or `os/arch/variant` of the normalised platform. */
export function formatPlatform(platform: PlatformLike): string {
  const p = toNormalized(platform);
  if (!p) return String(platform);
  return p.variant ? `${p.os}/${p.architecture}/${p.variant}` : `${p.os}/${p.architecture}`;
}

/** The normalised platform as one tag or path component: linux/arm64 -> linux-arm64. */
export function platformSlug(platform: PlatformLike): string {
  return formatPlatform(platform).replace(/\//g, '-');
}

export function samePlatform(a: PlatformLike, b: PlatformLike): boolean {
  return formatPlatform(a) === formatPlatform(b);
}

/** BuildKit's attestation manifests sit in the index with this platform. */
export function isUnknownPlatform(platform: PlatformLike): boolean {
  const p = toNormalized(platform);
  return p !== undefined && p.os === 'unknown' && p.architecture === 'unknown';
}

/**
 * The ddn-k8s tag suffix (DESIGN.md section 4): '' for linux/amd64 (the plain tag), `-<os><arch><variant>`
 * otherwise (`-linuxarm64`, `-linuxarmv7`, `-windowsamd64`), undefined for `unknown/unknown`
 * attestations and anything that is not a platform.
 */
export function platformTagSuffix(platform: PlatformLike): string | undefined {
  const p = toNormalized(platform);
  if (!p || isUnknownPlatform(p)) return undefined;
  if (!/^[a-z0-9]+$/.test(p.os + p.architecture + p.variant)) return undefined;
  if (p.os === 'linux' && p.architecture === 'amd64' && p.variant === '') return '';
  return `-${p.os}${p.architecture}${p.variant}`;
}

// Go's GOOS and GOARCH values: a suffix is read back only when it is spelled from these. Longer
// architectures first, so that `arm64` is not read as `arm` plus something.
const KNOWN_OS = ['aix', 'android', 'darwin', 'dragonfly', 'freebsd', 'illumos', 'ios', 'js', 'linux', 'netbsd', 'openbsd', 'plan9', 'solaris', 'wasip1', 'windows', 'zos'];
const KNOWN_ARCH = [
  'mips64p32le', 'mips64p32', 'mips64le', 'amd64p32', 'arm64be', 'riscv64', 'sparc64', 'loong64', 'ppc64le', 'mips64',
  'mipsle', 'ppc64', 's390x', 'amd64', 'arm64', 'armbe', 'riscv', 's390', 'sparc', 'wasm', 'mips', 'ppc', 'arm', '386',
];
const SUFFIX = new RegExp(`^(.+)-(${KNOWN_OS.join('|')})(${KNOWN_ARCH.join('|')})(v[0-9]+)?$`);

export interface DdnTag {
  /** The tag to ask the upstream for. */
  upstreamTag: string;
  /** The normalised platform whose manifest the ddn-k8s tag names (`linux/amd64` for a plain tag). */
  platform: string;
  /** The suffix that was read ('' for a plain tag). */
  suffix: string;
}

/**
 * The reverse of the ddn-k8s mapping, for pull-through: `1.12.1-linuxarm64` -> `1.12.1` + linux/arm64,
 * a plain tag -> itself + linux/amd64.
 *
 * The rule: a tag is a platform tag exactly when it ends in a suffix that platformTagSuffix would write
 * (`-` + known GOOS + known GOARCH + optional `v<N>`, not `-linuxamd64`, not arm64's dropped `v8`), so that
 * resolveDdnTag(tag + platformTagSuffix(p)) gives back tag and p. The suffix always wins: an upstream
 * tag that itself ends in `-linuxarm64` is read as a platform tag. Callers that must reach such a tag can
 * fall back to `{upstreamTag: tag, platform: 'linux/amd64'}` when the upstream has no `upstreamTag`.
 */
export function resolveDdnTag(tag: string): DdnTag {
  const plain: DdnTag = { upstreamTag: tag, platform: 'linux/amd64', suffix: '' };
  const match = SUFFIX.exec(tag);
  if (!match) return plain;
  const [, upstreamTag, os, architecture, variant] = match as unknown as [string, string, string, string, string | undefined];
  const platform = normalizePlatform({ os, architecture, variant });
  const suffix = `-${os}${architecture}${variant ?? ''}`;
  // Only suffixes the forward mapping writes: not the plain platform, not an un-normalised variant.
  if (platformTagSuffix(platform) !== suffix) return plain;
  return { upstreamTag, platform: formatPlatform(platform), suffix };
}

/** Image configs are small; anything bigger is not read for its platform. */
export const CONFIG_LIMIT = 4 * 1024 * 1024;

/** The platform an image config names (os, architecture, variant), or undefined (not an image config). */
export async function platformOfConfig(bytes: AsyncIterable<Buffer>): Promise<Pick<Platform, 'os' | 'architecture' | 'variant'> | undefined> {
  const parts: Buffer[] = [];
  for await (const part of bytes) parts.push(part);
  try {
    const document = JSON.parse(Buffer.concat(parts).toString('utf8')) as { os?: unknown; architecture?: unknown; variant?: unknown };
    if (typeof document.os !== 'string' || typeof document.architecture !== 'string') return undefined;
    return { os: document.os, architecture: document.architecture, ...(typeof document.variant === 'string' ? { variant: document.variant } : {}) };
  } catch {
    return undefined; // not an image config (an artifact)
  }
}
