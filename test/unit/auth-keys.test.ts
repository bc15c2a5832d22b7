import { execFileSync } from 'node:child_process';
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, X509Certificate, type JsonWebKey, type KeyObject } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'chai';
import { algorithmOf, generateKeyAndCertificate, jwks, libtrustKeyId, loadSigningKeys, type SigningAlgorithm } from '../../server/auth/keys.js';
import { selfSignedCertificate } from '../../server/auth/self-signed.js';
import { loadConfig, type Config } from '../../server/config.js';
import { FilesystemDriver } from '../../storage-drivers/filesystem.js';
import { rejectsWith, tempDir } from './support.js';

type IssuerConfig = Config['auth']['issuer'];
const baseIssuer = loadConfig(undefined, {}, () => undefined).auth.issuer;
const issuerConfig = (extra: Partial<IssuerConfig> = {}): IssuerConfig => ({ ...baseIssuer, ...extra });

const LIBTRUST_KID = /^[A-Z2-7]{4}(?::[A-Z2-7]{4}){11}$/;

/** RFC 4648 base32 via a bit string: independent of the implementation under test. */
function referenceKeyId(publicKey: KeyObject): string {
  const digest = createHash('sha256').update(publicKey.export({ type: 'spki', format: 'der' })).digest();
  const bits = [...digest.subarray(0, 30)].map((byte) => byte.toString(2).padStart(8, '0')).join('');
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let text = '';
  for (let i = 0; i < bits.length; i += 5) text += alphabet[parseInt(bits.slice(i, i + 5).padEnd(5, '0'), 2)];
  const groups: string[] = [];
  for (let i = 0; i < text.length; i += 4) groups.push(text.slice(i, i + 4));
  return groups.join(':');
}

const spki = (key: KeyObject) => key.export({ type: 'spki', format: 'der' });

function hasOpenssl(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

describe('auth: libtrust key ids', () => {
  it('are 12 groups of 4 base32 characters joined by colons', () => {
    for (const type of ['ec', 'rsa'] as const) {
      const { publicKey } =
        type === 'ec' ? generateKeyPairSync('ec', { namedCurve: 'P-256' }) : generateKeyPairSync('rsa', { modulusLength: 1024 });
      const kid = libtrustKeyId(publicKey);
      expect(kid).to.match(LIBTRUST_KID);
      expect(kid).to.have.length(59);
    }
  });

  it('match an independent computation (SHA-256 of the SPKI DER, 240 bits, base32)', () => {
    for (let i = 0; i < 20; i++) {
      const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      expect(libtrustKeyId(publicKey)).to.equal(referenceKeyId(publicKey));
    }
  });

  it("match openssl's own DER and digest of the key", function () {
    if (!hasOpenssl()) this.skip();
    const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
    // openssl's own DER and SHA-256, then the same base32 grouping.
    const der = execFileSync('openssl', ['pkey', '-pubin', '-outform', 'DER'], { input: pem });
    const digest = execFileSync('openssl', ['dgst', '-sha256', '-binary'], { input: der });
    expect(createHash('sha256').update(der).digest().equals(digest)).to.equal(true);
    expect(libtrustKeyId(createPublicKey({ key: der, format: 'der', type: 'spki' }))).to.equal(referenceKeyId(publicKey));
  });

  it('are the same for a key and the public key of its certificate', async () => {
    const { key, certificate } = await generateKeyAndCertificate('ES256');
    expect(libtrustKeyId(new X509Certificate(certificate).publicKey)).to.equal(libtrustKeyId(createPublicKey(createPrivateKey(key))));
  });
});

describe('auth: generated keys and certificates', () => {
  for (const algorithm of ['ES256', 'RS256'] as SigningAlgorithm[]) {
    it(`${algorithm}: the certificate parses, is self-issued, self-verifies and holds the key`, async () => {
      const { key, certificate } = await generateKeyAndCertificate(algorithm);
      const privateKey = createPrivateKey(key);
      const cert = new X509Certificate(certificate);
      expect(algorithmOf(privateKey)).to.equal(algorithm);
      expect(algorithmOf(cert.publicKey)).to.equal(algorithm);
      expect(cert.checkIssued(cert)).to.equal(true);
      expect(cert.verify(cert.publicKey)).to.equal(true);
      expect(cert.checkPrivateKey(privateKey)).to.equal(true);
      expect(spki(cert.publicKey).equals(spki(createPublicKey(privateKey)))).to.equal(true);
      expect(cert.subject).to.equal('CN=dify-registry token issuer');
      expect(cert.issuer).to.equal(cert.subject);
      expect(cert.ca).to.equal(false);
      const now = Date.now();
      expect(Date.parse(cert.validFrom)).to.be.at.most(now);
      expect(Date.parse(cert.validTo)).to.be.greaterThan(now + 9 * 365 * 86_400_000);
      expect(cert.serialNumber).to.match(/^[0-9A-F]+$/);
      // The private key really signs for that public key.
      const data = Buffer.from('payload');
      expect(verify('sha256', data, cert.publicKey, sign('sha256', data, privateKey))).to.equal(true);
      if (algorithm === 'ES256') expect(cert.publicKey.asymmetricKeyDetails?.namedCurve).to.equal('prime256v1');
      else expect(cert.publicKey.asymmetricKeyDetails?.modulusLength).to.equal(2048);
    });

    it(`${algorithm}: openssl verifies the certificate against itself`, async function () {
      if (!hasOpenssl()) this.skip();
      const dir = await tempDir('auth-cert');
      try {
        const { certificate } = await generateKeyAndCertificate(algorithm);
        const file = join(dir.path, 'cert.pem');
        await writeFile(file, certificate);
        const out = execFileSync('openssl', ['verify', '-CAfile', file, file], { encoding: 'utf8' });
        expect(out.trim()).to.equal(`${file}: OK`);
      } finally {
        await dir.cleanup();
      }
    });
  }

  it('writes valid DER for long names and past validity too', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const cert = new X509Certificate(selfSignedCertificate(privateKey, publicKey, 'n'.repeat(200), -1));
    expect(cert.subject).to.equal(`CN=${'n'.repeat(200)}`);
    expect(Date.parse(cert.validTo)).to.be.lessThan(Date.now());
    expect(cert.verify(publicKey)).to.equal(true);
  });

  it('gives every certificate its own positive serial number', async () => {
    const serials = new Set<string>();
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    for (let i = 0; i < 20; i++) {
      const serial = new X509Certificate(selfSignedCertificate(privateKey, publicKey, 'x', 1)).serialNumber;
      expect(parseInt(serial.slice(0, 2), 16)).to.be.below(0x80);
      serials.add(serial);
    }
    expect(serials.size).to.equal(20);
  });
});

describe('auth: algorithmOf', () => {
  it('maps EC P-256 to ES256 and RSA to RS256', () => {
    expect(algorithmOf(generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey)).to.equal('ES256');
    expect(algorithmOf(generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey)).to.equal('RS256');
  });

  it('refuses other key types', () => {
    expect(() => algorithmOf(generateKeyPairSync('ed25519').publicKey)).to.throw(/EC P-256 or RSA/);
  });

  // ES256 is ECDSA on P-256 only: a P-384 key loads, then every token signature fails (jose refuses the curve).
  it('refuses EC keys on other curves than P-256', () => {
    expect(() => algorithmOf(generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey)).to.throw(/EC P-256 or RSA/);
  });
});

describe('auth: loadSigningKeys', () => {
  let cleanup: () => Promise<void>;
  let dir: string;
  let n = 0;
  const freshDriver = () => new FilesystemDriver({ rootdirectory: join(dir, `store-${++n}`) });

  before(async () => {
    const temp = await tempDir('auth-keys');
    cleanup = temp.cleanup;
    dir = temp.path;
  });
  after(() => cleanup());

  async function keyFiles(algorithm: SigningAlgorithm): Promise<{ key: string; certificate: string }> {
    const pair = await generateKeyAndCertificate(algorithm);
    const id = ++n;
    const files = { key: join(dir, `key-${id}.pem`), certificate: join(dir, `cert-${id}.pem`) };
    await writeFile(files.key, pair.key);
    await writeFile(files.certificate, pair.certificate);
    return files;
  }

  it('generates a key once and stores it: a second load reads the same key', async () => {
    const driver = freshDriver();
    const first = await loadSigningKeys(issuerConfig(), driver);
    const second = await loadSigningKeys(issuerConfig(), driver);
    expect(first.algorithm).to.equal('ES256');
    expect(first.current.kid).to.match(LIBTRUST_KID);
    expect(second.current.kid).to.equal(first.current.kid);
    expect(first.verification.size).to.equal(1);
    expect(first.verification.get(first.current.kid)?.kid).to.equal(first.current.kid);
    expect(first.current.kid).to.equal(referenceKeyId(first.current.publicKey));
    expect(first.current.certificate.checkPrivateKey(first.current.privateKey)).to.equal(true);
    const stored = JSON.parse((await driver.getContent('/_auth/issuer.json')).toString()) as { key: string; certificate: string };
    expect(stored.key).to.contain('PRIVATE KEY');
    expect(stored.certificate).to.contain('BEGIN CERTIFICATE');
  });

  it('concurrent first loads end with the same key', async () => {
    const driver = freshDriver();
    const loads = await Promise.all(Array.from({ length: 6 }, () => loadSigningKeys(issuerConfig(), driver)));
    expect(new Set(loads.map((keys) => keys.current.kid)).size).to.equal(1);
    // Also two processes' worth of drivers over the same directory.
    const root = join(dir, `store-${++n}`);
    const [a, b] = await Promise.all([
      loadSigningKeys(issuerConfig(), new FilesystemDriver({ rootdirectory: root })),
      loadSigningKeys(issuerConfig(), new FilesystemDriver({ rootdirectory: root })),
    ]);
    expect(a.current.kid).to.equal(b.current.kid);
  });

  it('generates RSA keys when asked', async () => {
    const keys = await loadSigningKeys(issuerConfig({ algorithm: 'RS256' }), freshDriver());
    expect(keys.algorithm).to.equal('RS256');
    expect(keys.current.privateKey.asymmetricKeyType).to.equal('rsa');
  });

  it('reads configured key files: the first signs, all verify', async () => {
    const first = await keyFiles('ES256');
    const second = await keyFiles('RS256');
    const driver = freshDriver();
    const keys = await loadSigningKeys(issuerConfig({ keys: [first, second] }), driver);
    const kid1 = libtrustKeyId(new X509Certificate(await readFile(first.certificate, 'utf8')).publicKey);
    const kid2 = libtrustKeyId(new X509Certificate(await readFile(second.certificate, 'utf8')).publicKey);
    expect(keys.algorithm).to.equal('ES256');
    expect(keys.current.kid).to.equal(kid1);
    expect([...keys.verification.keys()]).to.deep.equal([kid1, kid2]);
    // Configured keys are never generated or stored.
    expect(await driver.getContent('/_auth/issuer.json').catch(() => undefined)).to.equal(undefined);
  });

  it('publishes every key as JWKS with kid, alg and x5c', async () => {
    const keys = await loadSigningKeys(issuerConfig({ keys: [await keyFiles('ES256'), await keyFiles('RS256')] }), freshDriver());
    const document = await jwks(keys);
    expect(document.keys).to.have.length(2);
    const [ec, rsa] = document.keys;
    expect(ec).to.include({ kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig', kid: keys.current.kid });
    expect(rsa).to.include({ kty: 'RSA', alg: 'RS256', use: 'sig' });
    for (const jwk of document.keys) {
      expect(jwk).to.not.have.property('d');
      const cert = new X509Certificate(Buffer.from(jwk.x5c![0]!, 'base64'));
      expect(libtrustKeyId(cert.publicKey)).to.equal(jwk.kid);
      expect(spki(createPublicKey({ key: jwk as JsonWebKey, format: 'jwk' })).equals(spki(cert.publicKey))).to.equal(true);
    }
  });

  it('refuses a key file on a curve ES256 cannot sign with (P-384) when loading, not at the first token', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-384' });
    const files = { key: join(dir, 'p384.pem'), certificate: join(dir, 'p384.crt') };
    await writeFile(files.key, privateKey.export({ type: 'pkcs8', format: 'pem' }));
    await writeFile(files.certificate, selfSignedCertificate(privateKey, publicKey, 'p384', 1));
    const loaded = await loadSigningKeys(issuerConfig({ keys: [files] }), freshDriver()).then(
      (keys) => `loaded as ${keys.algorithm} with kid ${keys.current.kid}`,
      (error: unknown) => error,
    );
    expect(loaded).to.be.instanceOf(Error);
  });

  it('fails on missing key files', async () => {
    await rejectsWith(
      loadSigningKeys(issuerConfig({ keys: [{ key: join(dir, 'missing.pem'), certificate: join(dir, 'missing.crt') }] }), freshDriver()),
      Error,
    );
  });
});
