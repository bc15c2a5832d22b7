// What a stored manifest references, read once per digest however many repositories hold it. Tolerant:
// a manifest is stored as received, so anything with digests in the usual places counts.
import { isNotFound, type StorageDriver } from '../../storage-drivers/driver.js';
import { parseDigest } from '../registry/digest.js';
import { paths } from '../registry/paths.js';

export interface ManifestRefs {
  /** config, layers, and `blobs` (the withdrawn OCI artifact manifest). */
  blobs: string[];
  /** Index entries: manifests, or blobs in BuildKit's cache export. */
  children: string[];
  subject?: string;
}

const NONE: ManifestRefs = { blobs: [], children: [] };

export class ManifestRefsReader {
  private readonly known = new Map<string, Promise<ManifestRefs | undefined>>();

  constructor(private readonly driver: StorageDriver) {}

  /** Undefined when the manifest's data is missing. */
  read(digest: string): Promise<ManifestRefs | undefined> {
    let refs = this.known.get(digest);
    if (!refs) {
      refs = this.load(digest);
      this.known.set(digest, refs);
    }
    return refs;
  }

  private async load(digest: string): Promise<ManifestRefs | undefined> {
    const parsed = parseDigest(digest);
    if (!parsed) return undefined;
    let bytes: Buffer;
    try {
      bytes = await this.driver.getContent(paths.blobData(parsed));
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
    return extractRefs(bytes);
  }
}

export function extractRefs(bytes: Buffer): ManifestRefs {
  let document: unknown;
  try {
    document = JSON.parse(bytes.toString('utf8'));
  } catch {
    return NONE;
  }
  if (typeof document !== 'object' || document === null) return NONE;
  const doc = document as Record<string, unknown>;
  const blobs = [digestOf(doc.config), ...digestsOf(doc.layers), ...digestsOf(doc.blobs)].filter((d): d is string => d !== undefined);
  return { blobs, children: digestsOf(doc.manifests).filter((d): d is string => d !== undefined), subject: digestOf(doc.subject) };
}

function digestsOf(list: unknown): Array<string | undefined> {
  return Array.isArray(list) ? list.map(digestOf) : [];
}

function digestOf(descriptor: unknown): string | undefined {
  if (typeof descriptor !== 'object' || descriptor === null) return undefined;
  const digest = (descriptor as { digest?: unknown }).digest;
  return typeof digest === 'string' && parseDigest(digest) ? digest : undefined;
}
