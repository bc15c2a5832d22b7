// Generated blob content: never held in memory whole. Each blob is a 1 MiB random pattern repeated, with
// the blob id and offset stamped at the start of every MiB, so every blob (and every MiB of it) is distinct.
import { createHash, randomBytes } from 'node:crypto';

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;
const PIECE = MiB;
const PATTERN = randomBytes(PIECE);

export interface BlobSpec {
  id: string;
  size: number;
}

/** Bytes [start, end) of a generated blob, in pieces of at most 1 MiB (start must be a multiple of 1 MiB). */
export function* blobPieces(blob: BlobSpec, start = 0, end = blob.size): Generator<Buffer> {
  if (start % PIECE !== 0) throw new Error('blob ranges must start on a MiB boundary');
  for (let offset = start; offset < end; offset += PIECE) {
    const length = Math.min(PIECE, end - offset);
    const piece = Buffer.allocUnsafe(length);
    PATTERN.copy(piece, 0, 0, length);
    piece.write(`${blob.id}@${offset};`, 0, Math.min(length, 64), 'latin1');
    yield piece;
  }
}

const digests = new Map<string, string>();

/** sha256 digest of a generated blob (computed once, then remembered). */
export function blobDigest(blob: BlobSpec): string {
  const key = `${blob.id}/${blob.size}`;
  let digest = digests.get(key);
  if (!digest) {
    const hash = createHash('sha256');
    for (const piece of blobPieces(blob)) hash.update(piece);
    digest = `sha256:${hash.digest('hex')}`;
    digests.set(key, digest);
  }
  return digest;
}

export function sha256(bytes: Buffer): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}
