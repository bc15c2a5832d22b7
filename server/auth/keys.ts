// The token issuer's keys: PEM files from the config (the first signs, all verify: rotation), or on a
// single node one generated at first start and stored create-if-absent, so every process of the
// registry ends with the same key. Each key has a certificate, because resource servers that follow
// Distribution's token spec (CNCF Distribution itself) verify tokens through `x5c` and the
// libtrust-format `kid`.
import { createHash, createPrivateKey, generateKeyPairSync, X509Certificate, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { exportJWK, type JWK } from 'jose';
import type { StorageDriver } from '../../storage-drivers/driver.js';
import type { Config } from '../config.js';
import { selfSignedCertificate } from './self-signed.js';

export type SigningAlgorithm = 'ES256' | 'RS256';

export interface VerificationKey {
  kid: string;
  publicKey: KeyObject;
  certificate: X509Certificate;
}

export interface SigningKeys {
  algorithm: SigningAlgorithm;
  /** Signs new tokens. */
  current: VerificationKey & { privateKey: KeyObject };
  /** Every key whose tokens are accepted, by kid. */
  verification: Map<string, VerificationKey>;
}

const GENERATED_KEY_PATH = '/_auth/issuer.json';

export async function loadSigningKeys(issuer: Config['auth']['issuer'], driver: StorageDriver): Promise<SigningKeys> {
  const pairs =
    issuer.keys.length > 0
      ? issuer.keys.map((files) => ({ key: readFileSync(files.key, 'utf8'), certificate: readFileSync(files.certificate, 'utf8') }))
      : [await generatedKey(issuer.algorithm, driver)];
  const keys = pairs.map(({ key, certificate }) => {
    const cert = new X509Certificate(certificate);
    return { kid: libtrustKeyId(cert.publicKey), publicKey: cert.publicKey, certificate: cert, privateKey: createPrivateKey(key) };
  });
  const algorithm = algorithmOf(keys[0]!.privateKey);
  return { algorithm, current: keys[0]!, verification: new Map(keys.map((key) => [key.kid, key])) };
}

/** The public keys as a JWKS document. */
export async function jwks(keys: SigningKeys): Promise<{ keys: JWK[] }> {
  return {
    keys: await Promise.all(
      [...keys.verification.values()].map(async (key) => ({
        ...(await exportJWK(key.publicKey)),
        kid: key.kid,
        use: 'sig',
        alg: algorithmOf(key.publicKey),
        x5c: [key.certificate.raw.toString('base64')],
      })),
    ),
  };
}

/**
 * libtrust's key id: SHA-256 of the DER SubjectPublicKeyInfo, first 30 bytes, base32 without padding,
 * in 12 groups of 4 joined by ':'.
 */
export function libtrustKeyId(publicKey: KeyObject): string {
  const der = publicKey.export({ type: 'spki', format: 'der' });
  const encoded = base32(createHash('sha256').update(der).digest().subarray(0, 30));
  return encoded.match(/.{4}/g)!.join(':');
}

function base32(bytes: Buffer): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += alphabet[(value << (5 - bits)) & 31];
  return out;
}

export function algorithmOf(key: KeyObject): SigningAlgorithm {
  if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') return 'ES256';
  if (key.asymmetricKeyType === 'rsa') return 'RS256';
  throw new Error(`token signing keys must be EC P-256 or RSA, not ${key.asymmetricKeyType} ${key.asymmetricKeyDetails?.namedCurve ?? ''}`.trim());
}

/** The stored generated key, creating it if no process has yet. */
async function generatedKey(algorithm: SigningAlgorithm, driver: StorageDriver): Promise<{ key: string; certificate: string }> {
  const existing = await driver.getContent(GENERATED_KEY_PATH).catch(() => undefined);
  if (existing) return JSON.parse(existing.toString()) as { key: string; certificate: string };
  const fresh = await generateKeyAndCertificate(algorithm);
  if (await driver.putContentIfAbsent(GENERATED_KEY_PATH, JSON.stringify(fresh))) return fresh;
  // Another process won the race: use its key, so all of them sign and verify alike.
  return JSON.parse((await driver.getContent(GENERATED_KEY_PATH)).toString()) as { key: string; certificate: string };
}

export async function generateKeyAndCertificate(algorithm: SigningAlgorithm): Promise<{ key: string; certificate: string }> {
  const { privateKey, publicKey } =
    algorithm === 'ES256'
      ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
      : generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    certificate: selfSignedCertificate(privateKey, publicKey, 'dify-registry token issuer', 3650),
  };
}
