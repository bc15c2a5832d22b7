// Content digests: parsing, validation and hashing with Node's crypto (SHA-NI makes it the fast path).
import { createHash, type Hash } from 'node:crypto';
import { digestInvalid } from './errors.js';

export type Algorithm = 'sha256' | 'sha512';

export interface ParsedDigest {
  algorithm: Algorithm;
  hex: string;
  digest: string;
}

const HEX_LENGTH: Record<Algorithm, number> = { sha256: 64, sha512: 128 };
// The spec's general grammar; anything matching it but not a supported algorithm is UNSUPPORTED-ish, still a 400.
const DIGEST_GRAMMAR = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

export function parseDigest(value: string): ParsedDigest | undefined {
  if (!DIGEST_GRAMMAR.test(value)) return undefined;
  const colon = value.indexOf(':');
  const algorithm = value.slice(0, colon);
  const hex = value.slice(colon + 1);
  if (algorithm !== 'sha256' && algorithm !== 'sha512') return undefined;
  if (hex.length !== HEX_LENGTH[algorithm] || !/^[a-f0-9]+$/.test(hex)) return undefined;
  return { algorithm, hex, digest: value };
}

export function isDigest(value: string): boolean {
  return parseDigest(value) !== undefined;
}

export function assertDigest(value: string | undefined | null): ParsedDigest {
  if (!value) throw digestInvalid('digest missing');
  const parsed = parseDigest(value);
  if (!parsed) throw digestInvalid('invalid digest: expected sha256:<64 hex> or sha512:<128 hex>', { digest: value.slice(0, 200) });
  return parsed;
}

export function newHash(algorithm: Algorithm = 'sha256'): Hash {
  return createHash(algorithm);
}

export function digestOf(data: Buffer | string, algorithm: Algorithm = 'sha256'): string {
  return `${algorithm}:${createHash(algorithm).update(data).digest('hex')}`;
}
