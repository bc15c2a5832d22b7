// The push and pull flows of the Distribution API, as clients really use them.
import { createHash, type Hash } from 'node:crypto';
import { blobDigest, blobPieces, sha256, type BlobSpec } from './data.js';
import type { Client } from './http.js';

export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
export const OCI_LAYER = 'application/vnd.oci.image.layer.v1.tar';
/** What docker 28 sends when pulling. */
export const MANIFEST_ACCEPT = [
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.oci.image.index.v1+json',
  OCI_MANIFEST,
].join(', ');

function pathOf(client: Client, location: string | string[] | undefined): string {
  if (typeof location !== 'string') throw new Error('upload answered without a Location');
  const url = new URL(location, client.baseUrl);
  return url.pathname + url.search;
}

function withDigest(path: string, digest: string): string {
  return `${path}${path.includes('?') ? '&' : '?'}digest=${encodeURIComponent(digest)}`;
}

export async function startUpload(client: Client, repo: string): Promise<string> {
  const response = await client.expect(202, 'POST', `/v2/${repo}/blobs/uploads/`, { headers: { 'Content-Length': '0' } });
  return pathOf(client, response.headers.location);
}

/**
 * Whether the registry completes an upload in one `POST ?digest=` with the body. Distribution 2.8 answers
 * 202 and drops the body; such registries get the spec's other monolithic form (POST, then PUT with the body).
 */
export async function supportsSinglePost(client: Client, repo: string): Promise<boolean> {
  const bytes = Buffer.from(`single-post probe ${Date.now()} ${Math.random()}`);
  const response = await client.expect([201, 202], 'POST', `/v2/${repo}/blobs/uploads/?digest=${encodeURIComponent(sha256(bytes))}`, {
    headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': String(bytes.length) },
    body: bytes,
  });
  if (response.status === 202) {
    await client.request('DELETE', pathOf(client, response.headers.location)).catch(() => undefined);
    return false;
  }
  return true;
}

export async function pushMonolithic(client: Client, repo: string, blob: BlobSpec, singlePost: boolean): Promise<void> {
  const digest = blobDigest(blob);
  const headers = { 'Content-Type': 'application/octet-stream', 'Content-Length': String(blob.size) };
  if (singlePost) {
    await client.expect(201, 'POST', `/v2/${repo}/blobs/uploads/?digest=${encodeURIComponent(digest)}`, { headers, body: blobPieces(blob) });
    return;
  }
  const location = await startUpload(client, repo);
  await client.expect(201, 'PUT', withDigest(location, digest), { headers, body: blobPieces(blob) });
}

/**
 * POST, PATCHes of `chunkSize` with Content-Range and Content-Length, then a body-less PUT. With `hashWhileSending`,
 * the digest is computed from the bytes as they are sent instead of up front (blobDigest).
 */
export async function pushChunked(client: Client, repo: string, blob: BlobSpec, chunkSize: number, hashWhileSending = false): Promise<string> {
  const hash = hashWhileSending ? createHash('sha256') : undefined;
  const known = hash ? undefined : blobDigest(blob);
  let location = await startUpload(client, repo);
  for (let start = 0; start < blob.size; start += chunkSize) {
    const end = Math.min(blob.size, start + chunkSize);
    const response = await client.expect(202, 'PATCH', location, {
      headers: {
        'Content-Type': 'application/octet-stream',
        'Content-Length': String(end - start),
        'Content-Range': `${start}-${end - 1}`,
      },
      body: hash ? hashing(blobPieces(blob, start, end), hash) : blobPieces(blob, start, end),
    });
    location = pathOf(client, response.headers.location);
  }
  const digest = known ?? `sha256:${hash!.digest('hex')}`;
  await client.expect(201, 'PUT', withDigest(location, digest), { headers: { 'Content-Length': '0' } });
  return digest;
}

function* hashing(pieces: Iterable<Buffer>, hash: Hash): Generator<Buffer> {
  for (const piece of pieces) {
    hash.update(piece);
    yield piece;
  }
}

/**
 * What `docker push` does: POST, one PATCH streamed with chunked transfer encoding (no Content-Length,
 * no Content-Range), then a body-less PUT with the digest. Without a known digest, it is hashed while sent.
 */
export async function pushStreamed(client: Client, repo: string, blob: BlobSpec, knownDigest?: string): Promise<string> {
  const location = await startUpload(client, repo);
  const hash = knownDigest ? undefined : createHash('sha256');
  const pieces = hash ? hashing(blobPieces(blob), hash) : blobPieces(blob);
  const response = await client.expect(202, 'PATCH', location, { headers: { 'Content-Type': 'application/octet-stream' }, body: pieces });
  const digest = knownDigest ?? `sha256:${hash!.digest('hex')}`;
  await client.expect(201, 'PUT', withDigest(pathOf(client, response.headers.location), digest), { headers: { 'Content-Length': '0' } });
  return digest;
}

/** A small blob from memory (POST, PUT with body: the form every registry accepts). */
export async function pushBytes(client: Client, repo: string, bytes: Buffer): Promise<string> {
  const digest = sha256(bytes);
  const location = await startUpload(client, repo);
  await client.expect(201, 'PUT', withDigest(location, digest), {
    headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': String(bytes.length) },
    body: bytes,
  });
  return digest;
}

export interface Image {
  manifest: Buffer;
  digest: string;
  config: { digest: string; size: number };
  layers: { digest: string; size: number }[];
}

/** An OCI image manifest over a config and `layers` (digest, size) that are already pushed. */
export function imageManifest(config: { digest: string; size: number }, layers: { digest: string; size: number }[]): Image {
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: OCI_CONFIG, digest: config.digest, size: config.size },
      layers: layers.map((layer) => ({ mediaType: OCI_LAYER, digest: layer.digest, size: layer.size })),
    }),
  );
  return { manifest, digest: sha256(manifest), config, layers };
}

export async function putManifest(client: Client, repo: string, reference: string, manifest: Buffer): Promise<void> {
  await client.expect(201, 'PUT', `/v2/${repo}/manifests/${reference}`, {
    headers: { 'Content-Type': OCI_MANIFEST, 'Content-Length': String(manifest.length) },
    body: manifest,
  });
}

/** A config blob and layers of `layerSize` random bytes each, pushed, plus the manifest tagged `tag`. */
export async function pushImage(client: Client, repo: string, tag: string, layerSizes: number[]): Promise<Image> {
  const { randomBytes } = await import('node:crypto');
  const configBytes = Buffer.from(
    JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] }, created: new Date().toISOString(), nonce: randomBytes(8).toString('hex') }),
  );
  const config = { digest: await pushBytes(client, repo, configBytes), size: configBytes.length };
  const layers = [];
  for (const size of layerSizes) {
    const bytes = randomBytes(size);
    layers.push({ digest: await pushBytes(client, repo, bytes), size });
  }
  const image = imageManifest(config, layers);
  await putManifest(client, repo, tag, image.manifest);
  return image;
}
