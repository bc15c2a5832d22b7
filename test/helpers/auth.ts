// Helpers for the token-auth tests: a registry whose http.host names its own URL, bcrypt users, an EC key and
// self-signed certificate made with openssl, the libtrust key id, token requests, challenge parsing,
// and a tiny runnable busybox image pushed over plain HTTP. Independent of the server code.
import { createHash, createPublicKey, X509Certificate, type KeyObject } from 'node:crypto';
import { mkdir, readFile, rm, symlink, copyFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import bcrypt from 'bcryptjs';
import { run } from './process.js';
import { startRegistry, type RunningRegistry } from './registry.js';
import { startDistribution, type RunningDistribution } from './distribution.js';

export interface AuthRegistry extends RunningRegistry {
  /** The registry's log (one JSON line per request). */
  logFile: string;
}

/** Our registry with http.host set to its own URL (the token realm's base); `config` may depend on that URL. */
export async function startAuthRegistry(options: {
  config: Record<string, unknown> | ((url: string) => Record<string, unknown>);
  env?: NodeJS.ProcessEnv;
  /** A storage root the caller owns (kept on stop), to restart on the same data. */
  rootDir?: string;
}): Promise<AuthRegistry> {
  const registry = await startRegistry({ ...options, publicUrl: true });
  return { ...registry, logFile: registry.daemon.logFile };
}

// ---------------------------------------------------------------------------------------------
// Users and keys

/** bcrypt with cost 4: the server must accept any cost, and the tests stay fast. */
export function bcryptHash(password: string): string {
  return bcrypt.hashSync(password, 4);
}

/** An htpasswd line as `htpasswd -B` writes it ($2y$). */
export function htpasswdLine(user: string, password: string): string {
  return `${user}:${bcryptHash(password).replace(/^\$2[ab]\$/, '$2y$')}`;
}

export function basicAuth(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
}

export interface KeyPairFiles {
  key: string;
  certificate: string;
  certificatePem: string;
}

/** An EC P-256 private key and a self-signed certificate for it, made by openssl. */
export async function makeEcCertificate(dir: string, name = 'issuer'): Promise<KeyPairFiles> {
  await mkdir(dir, { recursive: true });
  const key = join(dir, `${name}.key`);
  const certificate = join(dir, `${name}.crt`);
  await run('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', key, '-out', certificate, '-days', '30', '-subj', `/CN=${name}`,
  ]);
  return { key, certificate, certificatePem: await readFile(certificate, 'utf8') };
}

/** libtrust's key id: SHA-256 of the DER SPKI, first 30 bytes, base32 without padding, 12 groups of 4. */
export function libtrustKeyId(key: KeyObject | string): string {
  const publicKey = typeof key !== 'string' && key.type === 'public' ? key : createPublicKey(key);
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  const hash = createHash('sha256').update(spki).digest().subarray(0, 30);
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of hash) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += alphabet[(value << (5 - bits)) & 31];
  return out.match(/.{4}/g)!.join(':');
}

/** The PEM certificate of an x5c entry (standard base64 DER). */
export function x5cToPem(entry: string): string {
  return `-----BEGIN CERTIFICATE-----\n${entry.match(/.{1,64}/g)!.join('\n')}\n-----END CERTIFICATE-----\n`;
}

export function certificatePublicKeyId(pem: string): string {
  return libtrustKeyId(new X509Certificate(pem).publicKey);
}

// ---------------------------------------------------------------------------------------------
// Protocol

/** Parses `Bearer realm="…",service="…",scope="…"` (quoted values may hold commas). */
export function parseChallenge(header: string | null): { scheme: string; params: Record<string, string> } {
  if (!header) throw new Error('no WWW-Authenticate header');
  const match = /^(\S+)\s+(.*)$/.exec(header.trim());
  if (!match) return { scheme: header.trim(), params: {} };
  const params: Record<string, string> = {};
  const re = /\s*([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"\s*(?:,|$)/gy;
  let m: RegExpExecArray | null;
  while ((m = re.exec(match[2]!)) !== null) params[m[1]!] = m[2]!.replace(/\\(.)/g, '$1');
  return { scheme: match[1]!, params };
}

export interface TokenReply {
  status: number;
  body: Record<string, unknown>;
  text: string;
  headers: Headers;
}

async function reply(res: Response): Promise<TokenReply> {
  const text = await res.text();
  let body: Record<string, unknown> = {};
  try { body = JSON.parse(text) as Record<string, unknown>; } catch { /* not JSON */ }
  return { status: res.status, body, text, headers: res.headers };
}

/** GET /token (Distribution's token flow); `scope` may be repeated. */
export async function getToken(
  url: string,
  options: { user?: string; password?: string; service?: string; scopes?: string[]; offline?: boolean; account?: boolean; path?: string } = {},
): Promise<TokenReply> {
  const q = new URLSearchParams();
  if (options.service !== undefined) q.set('service', options.service);
  for (const scope of options.scopes ?? []) q.append('scope', scope);
  if (options.offline) q.set('offline_token', 'true');
  if (options.user && options.account !== false) q.set('account', options.user);
  q.set('client_id', 'auth-test');
  const headers: Record<string, string> = {};
  if (options.user !== undefined) headers.authorization = basicAuth(options.user, options.password ?? '');
  return reply(await fetch(`${url}${options.path ?? '/token'}?${q}`, { headers }));
}

/** POST /token with an OAuth2 form (password or refresh_token grant). */
export async function postToken(url: string, form: Record<string, string | string[]>, path = '/token'): Promise<TokenReply> {
  const body = new URLSearchParams();
  for (const [k, v] of Object.entries(form)) for (const one of Array.isArray(v) ? v : [v]) body.append(k, one);
  return reply(await fetch(`${url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: body.toString(),
  }));
}

/** A token for `scopes`, failing with the reply when there is none. */
export async function tokenFor(url: string, user: string | undefined, password: string | undefined, scopes: string[], service?: string): Promise<string> {
  const r = await getToken(url, { user, password, scopes, service });
  if (r.status !== 200 || typeof r.body.token !== 'string') throw new Error(`GET /token for ${user ?? 'anonymous'} ${scopes.join(' ')}: ${r.status} ${r.text}`);
  return r.body.token;
}

export const bearer = (token: string): string => `Bearer ${token}`;

// ---------------------------------------------------------------------------------------------
// A tiny runnable image, made and pushed without any container tool

export interface TinyImage {
  layer: Buffer;
  layerDigest: string;
  diffId: string;
  config: Buffer;
  configDigest: string;
  manifest: Buffer;
  manifestDigest: string;
  /** The uncompressed rootfs tar, for `docker import`. */
  tarFile: string;
}

export const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';

const digestOf = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** busybox (static, from busybox-static) with sh and echo links; one gzip layer, schema 2 manifest. */
export async function makeTinyImage(dir: string, marker: string): Promise<TinyImage> {
  const rootfs = join(dir, 'rootfs');
  await mkdir(join(rootfs, 'bin'), { recursive: true });
  await copyFile(process.env.TEST_BUSYBOX_AMD64 ?? '/usr/bin/busybox', join(rootfs, 'bin', 'busybox'));
  for (const applet of ['sh', 'echo', 'cat']) await symlink('busybox', join(rootfs, 'bin', applet));
  await writeFile(join(rootfs, 'marker'), `${marker}\n`);
  const tarFile = join(dir, 'rootfs.tar');
  await run('tar', ['--sort=name', '--owner=0', '--group=0', '--numeric-owner', '--mtime=@0', '-C', rootfs, '-cf', tarFile, '.']);
  await rm(rootfs, { recursive: true, force: true });
  const tar = await readFile(tarFile);
  const layer = gzipSync(tar);
  const diffId = digestOf(gunzipSync(layer));
  const config = Buffer.from(JSON.stringify({
    architecture: 'amd64',
    os: 'linux',
    config: { Env: ['PATH=/bin'], Cmd: ['sh'] },
    rootfs: { type: 'layers', diff_ids: [diffId] },
    history: [{ created_by: 'auth test' }],
  }));
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: DOCKER_MANIFEST,
    config: { mediaType: 'application/vnd.docker.container.image.v1+json', digest: digestOf(config), size: config.length },
    layers: [{ mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', digest: digestOf(layer), size: layer.length }],
  }));
  return {
    layer, layerDigest: digestOf(layer), diffId, config, configDigest: digestOf(config),
    manifest, manifestDigest: digestOf(manifest), tarFile,
  };
}

/** Monolithic blob uploads and a manifest PUT, all with `authorization`; throws with the reply on failure. */
export async function pushTinyImage(url: string, repo: string, tag: string, image: TinyImage, authorization: string): Promise<void> {
  for (const blob of [image.layer, image.config]) {
    const res = await fetch(`${url}/v2/${repo}/blobs/uploads/?digest=${encodeURIComponent(digestOf(blob))}`, {
      method: 'POST',
      headers: { authorization, 'content-type': 'application/octet-stream', 'content-length': String(blob.length) },
      body: new Uint8Array(blob),
    });
    if (res.status === 202) {
      // A registry that ignores a monolithic POST answers with a session: finish it with PUT.
      const location = new URL(res.headers.get('location') ?? '', url);
      location.searchParams.set('digest', digestOf(blob));
      await res.arrayBuffer();
      const put = await fetch(location, { method: 'PUT', headers: { authorization, 'content-type': 'application/octet-stream' }, body: new Uint8Array(blob) });
      if (put.status !== 201) throw new Error(`PUT blob to ${repo}: ${put.status} ${await put.text()}`);
    } else if (res.status !== 201) {
      throw new Error(`POST blob to ${repo}: ${res.status} ${await res.text()}`);
    } else {
      await res.arrayBuffer();
    }
  }
  const res = await fetch(`${url}/v2/${repo}/manifests/${tag}`, {
    method: 'PUT',
    headers: { authorization, 'content-type': DOCKER_MANIFEST },
    body: new Uint8Array(image.manifest),
  });
  if (res.status !== 201) throw new Error(`PUT manifest ${repo}:${tag}: ${res.status} ${await res.text()}`);
}

/** The digest of a manifest as the registry serves it, or the status when it does not. */
export async function manifestDigest(url: string, repo: string, ref: string, authorization?: string): Promise<string | number> {
  const headers: Record<string, string> = {
    accept: [DOCKER_MANIFEST, 'application/vnd.oci.image.manifest.v1+json', 'application/vnd.oci.image.index.v1+json',
      'application/vnd.docker.distribution.manifest.list.v2+json'].join(', '),
  };
  if (authorization) headers.authorization = authorization;
  const res = await fetch(`${url}/v2/${repo}/manifests/${ref}`, { headers });
  const body = Buffer.from(await res.arrayBuffer());
  return res.status === 200 ? digestOf(body) : res.status;
}

// ---------------------------------------------------------------------------------------------
// Distribution as a token-auth resource server

export type TokenDistribution = RunningDistribution;

/** Debian's docker-registry (CNCF Distribution 2.8.2) with `auth.token`: a resource server for our tokens. */
export function startTokenDistribution(token: { realm: string; service: string; issuer: string; rootcertbundle: string }): Promise<TokenDistribution> {
  return startDistribution({ auth: { token } });
}
