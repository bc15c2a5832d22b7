// Manifest parsing and validation: the structure only. Existence of referenced content is checked by the store.
import { manifestInvalid, OciError } from './errors.js';
import { digestOf, parseDigest } from './digest.js';
import type { Descriptor } from './descriptor.js';
import {
  baseMediaType,
  DOCKER_MANIFEST,
  DOCKER_MANIFEST_LIST,
  DOCKER_SCHEMA1,
  DOCKER_SCHEMA1_SIGNED,
  isIndexMediaType,
  isManifestMediaType,
  OCI_INDEX,
  OCI_MANIFEST,
  type ManifestMediaType,
} from './media-types.js';

export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

export interface ParsedManifest {
  mediaType: ManifestMediaType;
  digest: string;
  size: number;
  /**
   * Config and layers of an image manifest that must exist in the repository, the config first. Layers
   * with `urls` (Windows base layers, non-distributable content) live elsewhere by design and are left out.
   */
  blobs: Descriptor[];
  /** Children of an index (manifests that must exist in the repository). */
  manifests: Descriptor[];
  subject?: Descriptor;
  artifactType?: string;
  annotations?: Record<string, string>;
}

type Json = Record<string, unknown>;

/**
 * The media type of stored bytes: the `mediaType` field when present, otherwise inferred the way OCI allows
 * (an object with `manifests` is an index, one with `config` an image manifest).
 */
export function detectMediaType(document: Json): string | undefined {
  if (typeof document.mediaType === 'string') return document.mediaType;
  if (Array.isArray(document.manifests)) return OCI_INDEX;
  if (document.config && typeof document.config === 'object') return OCI_MANIFEST;
  return undefined;
}

export function parseManifest(bytes: Buffer, contentType: string | undefined): ParsedManifest {
  if (bytes.length > MAX_MANIFEST_BYTES) {
    throw new OciError(413, 'SIZE_INVALID', `manifest larger than ${MAX_MANIFEST_BYTES} bytes`, { size: bytes.length });
  }
  let document: unknown;
  try {
    document = JSON.parse(bytes.toString('utf8'));
  } catch (error) {
    throw manifestInvalid('manifest is not valid JSON', { reason: (error as Error).message });
  }
  if (!isObject(document)) throw manifestInvalid('manifest must be a JSON object');

  const declared = typeof document.mediaType === 'string' ? document.mediaType : undefined;
  const header = baseMediaType(contentType);
  if (header === DOCKER_SCHEMA1 || header === DOCKER_SCHEMA1_SIGNED || document.schemaVersion === 1) {
    throw new OciError(400, 'MANIFEST_INVALID', 'Docker schema 1 manifests are not supported; push schema 2 or OCI');
  }
  if (declared !== undefined && header !== undefined && declared !== header && !isGenericJson(header)) {
    throw manifestInvalid('manifest mediaType does not match the Content-Type header', { mediaType: declared, contentType: header });
  }
  const mediaType = declared ?? (header && !isGenericJson(header) ? header : detectMediaType(document));
  if (!mediaType || !isManifestMediaType(mediaType)) {
    throw manifestInvalid('unsupported manifest media type', { mediaType: mediaType ?? null });
  }
  if (document.schemaVersion !== 2) throw manifestInvalid('schemaVersion must be 2');
  // Stored bytes are typed by their own mediaType field when read back, so Docker types must carry it
  // (as Distribution requires); OCI types may leave it out and are recognised by their structure.
  if (declared === undefined && (mediaType === DOCKER_MANIFEST || mediaType === DOCKER_MANIFEST_LIST)) {
    throw manifestInvalid('a Docker manifest must have a "mediaType" field', { contentType: header });
  }

  const parsed: ParsedManifest = {
    mediaType,
    digest: digestOf(bytes),
    size: bytes.length,
    blobs: [],
    manifests: [],
  };
  if (isIndexMediaType(mediaType)) {
    if (!Array.isArray(document.manifests)) throw manifestInvalid('an index needs a "manifests" array');
    parsed.manifests = document.manifests.map((entry, i) => parseDescriptor(entry, `manifests[${i}]`));
  } else {
    if (document.manifests !== undefined) throw manifestInvalid('an image manifest must not have "manifests"');
    const config = parseDescriptor(document.config, 'config');
    if (!Array.isArray(document.layers)) throw manifestInvalid('an image manifest needs a "layers" array');
    const layers = document.layers.map((entry, i) => parseDescriptor(entry, `layers[${i}]`));
    // Only layers may live elsewhere: the config must be here whatever its urls say.
    parsed.blobs = [config, ...layers.filter((layer) => !layer.urls?.length)];
    if (mediaType === DOCKER_MANIFEST && layers.length === 0) {
      throw manifestInvalid('a Docker image manifest needs at least one layer');
    }
  }
  if (document.subject !== undefined) {
    if (mediaType === DOCKER_MANIFEST || mediaType === DOCKER_MANIFEST_LIST) {
      throw manifestInvalid('"subject" is only allowed in OCI manifests');
    }
    parsed.subject = parseDescriptor(document.subject, 'subject');
  }
  parsed.artifactType = artifactTypeOf(document);
  if (document.annotations !== undefined) parsed.annotations = parseAnnotations(document.annotations, 'annotations');
  return parsed;
}

/** The referrers API's artifactType: the explicit field, else (empty or missing: the spec) the config media type. */
function artifactTypeOf(document: Json): string | undefined {
  if (document.artifactType !== undefined) {
    if (typeof document.artifactType !== 'string') throw manifestInvalid('"artifactType" must be a string');
    if (document.artifactType !== '') return document.artifactType;
  }
  const config = document.config;
  return isObject(config) && typeof config.mediaType === 'string' ? config.mediaType : undefined;
}

function parseDescriptor(value: unknown, where: string): Descriptor {
  if (!isObject(value)) throw manifestInvalid(`${where} must be a descriptor object`);
  const { mediaType, digest, size } = value;
  if (typeof mediaType !== 'string' || mediaType.length === 0) throw manifestInvalid(`${where}.mediaType must be a string`);
  if (typeof digest !== 'string' || !parseDigest(digest)) {
    throw manifestInvalid(`${where}.digest is not a valid digest`, { digest: typeof digest === 'string' ? digest.slice(0, 200) : null });
  }
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
    throw manifestInvalid(`${where}.size must be a non-negative integer`);
  }
  const descriptor: Descriptor = { mediaType, digest, size };
  if (value.urls !== undefined) {
    if (!Array.isArray(value.urls) || !value.urls.every((u) => typeof u === 'string')) {
      throw manifestInvalid(`${where}.urls must be an array of strings`);
    }
    // As Distribution: where a client would fetch the content, so absolute http(s) URLs only.
    const bad = value.urls.find((u) => !isFetchableUrl(u as string));
    if (bad !== undefined) throw manifestInvalid(`${where}.urls must be http or https URLs`, { url: (bad as string).slice(0, 200) });
    descriptor.urls = value.urls as string[];
  }
  if (typeof value.artifactType === 'string') descriptor.artifactType = value.artifactType;
  if (value.annotations !== undefined) descriptor.annotations = parseAnnotations(value.annotations, `${where}.annotations`);
  if (isObject(value.platform)) descriptor.platform = value.platform as unknown as Descriptor['platform'];
  return descriptor;
}

function parseAnnotations(value: unknown, where: string): Record<string, string> {
  if (!isObject(value) || !Object.values(value).every((v) => typeof v === 'string')) {
    throw manifestInvalid(`${where} must map strings to strings`);
  }
  return value as Record<string, string>;
}

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isGenericJson(contentType: string): boolean {
  return contentType === 'application/json' || contentType === 'application/octet-stream';
}

function isFetchableUrl(value: string): boolean {
  if (!URL.canParse(value)) return false;
  const url = new URL(value);
  return (url.protocol === 'http:' || url.protocol === 'https:') && url.hash === '';
}
