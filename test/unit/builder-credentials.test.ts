import { expect } from 'chai';
import { loadSigningKeys } from '../../server/auth/keys.js';
import { TokenError, TokenService } from '../../server/auth/tokens.js';
import { loadConfig } from '../../server/config.js';
import { buildScopes, registryEndpoint, repositoryOnRegistry } from '../../builder/registry-access.js';
import { FilesystemDriver } from '../../storage-drivers/filesystem.js';
import { tempDir } from './support.js';

describe('builder: how a build reaches the registry', () => {
  it('finds the registry as the engine sees it: builder.registry, http.host, or http.addr on loopback', () => {
    const config = (env: Record<string, string>) => loadConfig(undefined, env, () => undefined);
    expect(registryEndpoint(config({}))).to.deep.equal({ url: 'http://127.0.0.1:5000', host: '127.0.0.1:5000', insecure: true });
    expect(registryEndpoint(config({ REGISTRY_HTTP_ADDR: '10.0.0.5:5001' })).host).to.equal('10.0.0.5:5001');
    expect(registryEndpoint(config({ REGISTRY_HTTP_HOST: 'https://registry.example.com' }))).to.deep.equal({ url: 'https://registry.example.com', host: 'registry.example.com', insecure: false });
    expect(registryEndpoint(config({ REGISTRY_HTTP_HOST: 'https://a.example', REGISTRY_BUILDER_REGISTRY: 'http://registry.internal:5000' })).host).to.equal('registry.internal:5000');
  });

  it('asks for exactly the build repositories: push its own and the cache, pull bases from here', () => {
    const endpoint = { url: 'http://r:5000', host: 'r:5000', insecure: true };
    expect(repositoryOnRegistry('r:5000/library/python:3.12-slim', endpoint)).to.equal('library/python');
    expect(repositoryOnRegistry('r:5000/library/python@sha256:abc', endpoint)).to.equal('library/python');
    expect(repositoryOnRegistry('docker.io/library/python:3.12', endpoint)).to.equal(undefined);
    expect(buildScopes({ repository: 'langgenius/dify-api', cacheRepository: 'langgenius/dify-api/buildcache', baseRepositories: ['library/python', 'library/python'] })).to.deep.equal([
      { type: 'repository', name: 'langgenius/dify-api', actions: ['pull', 'push'] },
      { type: 'repository', name: 'langgenius/dify-api/buildcache', actions: ['pull', 'push'] },
      { type: 'repository', name: 'library/python', actions: ['pull'] },
    ]);
  });

  it('issues a delegated credential that is never an access token itself', async () => {
    const dir = await tempDir('builder-keys');
    try {
      const issuer = loadConfig(undefined, {}, () => undefined).auth.issuer;
      const keys = await loadSigningKeys(issuer, new FilesystemDriver({ rootdirectory: dir.path }));
      const tokens = new TokenService(keys, { issuer: 'dify-registry', expirationMs: 300_000, refreshExpirationMs: 3_600_000 });
      const ceiling = [{ type: 'repository' as const, name: 'langgenius/dify-api', actions: ['pull', 'push'] }];
      const credential = await tokens.issueDelegated('build:x', 'registry:5000', ceiling, 60_000);
      expect(await tokens.verifyDelegated(credential, 'registry:5000')).to.deep.equal({ subject: 'build:x', ceiling });
      expect(await tokens.verifyDelegated(credential, 'elsewhere:5000')).to.equal(undefined);
      let refused: unknown;
      await tokens.verify(credential, 'registry:5000').catch((error: unknown) => (refused = error));
      expect(refused).to.be.instanceOf(TokenError);
      // An access token or a refresh token is not a delegated credential.
      const access = await tokens.issue('admin', 'registry:5000', ceiling);
      expect(await tokens.verifyDelegated(access.token, 'registry:5000')).to.equal(undefined);
      expect(await tokens.verifyDelegated(await tokens.issueRefresh('admin', 'registry:5000', 'fp'), 'registry:5000')).to.equal(undefined);
    } finally {
      await dir.cleanup();
    }
  });
});
