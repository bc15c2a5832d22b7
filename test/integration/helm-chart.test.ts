// The Helm chart, rendered by Helm's template engine (test/helm-render, no helm binary here) with its
// default values and the value files in charts/dify-registry/ci/: objects and their key fields, the
// registry configuration accepted by the registry's own loader, refusals (`fail`), values.schema.json.
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'chai';
import { z } from 'zod';
import { loadConfig, type Config } from '../../server/config.js';
import { removeTree } from '../helpers/cleanup.js';
import { CHART_DIR, startHelmRenderer, type HelmRenderer, type K8sObject, type Rendered } from '../helpers/helm.js';
import { typecheckK8sObjects, validateK8sObject } from '../helpers/k8s-schema.js';
import { tempDir } from '../helpers/process.js';

// Helm checks the merged values against values.schema.json; zod reads the same JSON Schema.
const valuesSchema = z.fromJSONSchema(JSON.parse(readFileSync(join(CHART_DIR, 'values.schema.json'), 'utf8')) as never);
const ci = (name: string) => join(CHART_DIR, 'ci', name);
const CI_FILES = readdirSync(join(CHART_DIR, 'ci')).filter((f) => f.endsWith('-values.yaml'));
const DASHBOARDS = (() => {
  try {
    return readdirSync(join(CHART_DIR, 'dashboards')).filter((f) => f.endsWith('.json'));
  } catch {
    return [];
  }
})();

// Loose views of the fields the assertions read.
interface Container {
  name: string;
  image: string;
  args?: string[];
  env?: Array<{ name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } }>;
  ports?: Array<{ name: string; containerPort: number }>;
  volumeMounts?: Array<{ name: string; mountPath: string; readOnly?: boolean }>;
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  startupProbe?: Probe;
  securityContext?: Record<string, unknown>;
  resources?: Record<string, unknown>;
}
interface Probe {
  httpGet?: { path: string; port: string | number };
  exec?: unknown;
  tcpSocket?: unknown;
}
interface PodSpec {
  containers: Container[];
  volumes?: Array<{ name: string; configMap?: { name: string }; secret?: { secretName: string; items?: Array<{ key: string; path: string }> }; persistentVolumeClaim?: { claimName: string }; emptyDir?: unknown }>;
  securityContext?: Record<string, unknown>;
  nodeSelector?: Record<string, string>;
  serviceAccountName?: string;
  tolerations?: unknown[];
  enableServiceLinks?: boolean;
  automountServiceAccountToken?: boolean;
}
interface Workload extends K8sObject {
  spec: {
    replicas?: number;
    strategy?: { type: string; rollingUpdate?: Record<string, unknown> };
    selector: { matchLabels: Record<string, string> };
    template: { metadata: { labels: Record<string, string>; annotations?: Record<string, string> }; spec: PodSpec };
    volumeClaimTemplates?: Array<{ metadata: { name: string } }>;
  };
}

const podSpec = (o: K8sObject) => (o as Workload).spec.template.spec;
const container = (o: K8sObject, name?: string) => {
  const found = podSpec(o).containers.find((c) => name === undefined || c.name === name);
  if (!found) throw new Error(`no container ${name ?? ''} in ${o.kind} ${o.metadata.name}`);
  return found;
};
const envNames = (c: Container) => (c.env ?? []).map((e) => e.name);
const envRef = (c: Container, name: string) => c.env?.find((e) => e.name === name)?.valueFrom?.secretKeyRef;
const data = (o: K8sObject): Record<string, string> => {
  const raw = (o.data ?? {}) as Record<string, string>;
  if (o.kind !== 'Secret') return raw;
  return { ...Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, Buffer.from(v, 'base64').toString()])), ...((o.stringData ?? {}) as Record<string, string>) };
};
const matches = (selector: Record<string, string>, labels: Record<string, string> = {}) =>
  Object.entries(selector).every(([k, v]) => labels[k] === v);

let configFiles = 0;

/** The registry's config file as the pod reads it, through our own loader, with the Secrets' env vars set. */
async function loadRenderedConfig(dir: string, rendered: Rendered, fileName: string, workload: K8sObject): Promise<Config> {
  const holder = rendered.objects.find((o) => (o.kind === 'ConfigMap' || o.kind === 'Secret') && o.metadata.name.endsWith('-config'));
  if (!holder) throw new Error('no configuration ConfigMap or Secret');
  const text = data(holder)[fileName];
  if (text === undefined) throw new Error(`${holder.kind} ${holder.metadata.name} has no ${fileName}`);
  const file = join(dir, `${++configFiles}-${fileName}`);
  await writeFile(file, text);
  // Values of REGISTRY_* variables come from Secrets in the cluster; any string stands in for them here.
  const env: NodeJS.ProcessEnv = {};
  for (const e of container(workload).env ?? []) if (e.name.startsWith('REGISTRY_')) env[e.name] = e.value ?? 'from-a-secret';
  const warnings: string[] = [];
  const config = loadConfig(file, env, (m) => warnings.push(m));
  expect(warnings, 'every REGISTRY_* variable names a configuration key').to.deep.equal([]);
  return config;
}

/** Every object checked by checkConsistency, type-checked together at the end (one tsc run). */
const checkedObjects: Array<{ label: string; object: K8sObject }> = [];

/** Checks that hold for every rendering: names, labels, selectors, volumes, secrets referenced, probes. */
function checkConsistency(rendered: Rendered, existingSecrets: string[] = []): void {
  const names = new Set<string>();
  const rendering = checkedObjects.length;
  for (const o of rendered.objects) {
    checkedObjects.push({ label: `rendering ${rendering}: ${o.kind} ${o.metadata.name}`, object: o });
    expect(o.apiVersion, `${o.kind} apiVersion`).to.be.a('string').and.not.empty;
    validateK8sObject(o);
    expect(o.metadata.name, `${o.kind} name`).to.match(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/).and.have.length.at.most(63);
    expect(o.metadata.namespace, `${o.kind} ${o.metadata.name} namespace`).to.equal('registry');
    const key = `${o.kind}/${o.metadata.name}`;
    expect(names.has(key), `${key} rendered twice`).to.equal(false);
    names.add(key);
    for (const [k, v] of Object.entries(o.metadata.labels ?? {})) {
      expect(v, `label ${k} of ${key}`).to.be.a('string').and.match(/^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/).and.have.length.at.most(63);
    }
  }
  const secrets = new Set([...rendered.all('Secret').map((s) => s.metadata.name), ...existingSecrets]);
  const secretKeys = (name: string) => (rendered.all('Secret').find((s) => s.metadata.name === name) ? Object.keys(data(rendered.get('Secret', name))) : undefined);
  const configMaps = new Set(rendered.all('ConfigMap').map((c) => c.metadata.name));
  const claims = new Set(rendered.all('PersistentVolumeClaim').map((c) => c.metadata.name));
  const workloads = [...rendered.all('Deployment'), ...rendered.all('StatefulSet')] as Workload[];
  for (const w of workloads) {
    const where = `${w.kind} ${w.metadata.name}`;
    expect(matches(w.spec.selector.matchLabels, w.spec.template.metadata.labels), `${where}: selector matches its pod labels`).to.equal(true);
    const spec = w.spec.template.spec;
    const volumes = new Set([...(spec.volumes ?? []).map((v) => v.name), ...(w.spec.volumeClaimTemplates ?? []).map((v) => v.metadata.name)]);
    for (const v of spec.volumes ?? []) {
      if (v.configMap) expect(configMaps.has(v.configMap.name), `${where}: ConfigMap ${v.configMap.name}`).to.equal(true);
      if (v.secret) {
        expect(secrets.has(v.secret.secretName), `${where}: Secret ${v.secret.secretName}`).to.equal(true);
        const keys = secretKeys(v.secret.secretName);
        for (const item of v.secret.items ?? []) if (keys) expect(keys, `${where}: key ${item.key} of ${v.secret.secretName}`).to.include(item.key);
      }
      if (v.persistentVolumeClaim && !existingSecrets.includes(v.persistentVolumeClaim.claimName)) {
        expect(claims.has(v.persistentVolumeClaim.claimName), `${where}: claim ${v.persistentVolumeClaim.claimName}`).to.equal(true);
      }
    }
    for (const c of spec.containers) {
      const mountPaths = new Set<string>();
      for (const m of c.volumeMounts ?? []) {
        expect(volumes.has(m.name), `${where}/${c.name}: mount of volume ${m.name}`).to.equal(true);
        expect(mountPaths.has(m.mountPath), `${where}/${c.name}: two mounts at ${m.mountPath}`).to.equal(false);
        mountPaths.add(m.mountPath);
      }
      for (const e of c.env ?? []) {
        const ref = e.valueFrom?.secretKeyRef;
        if (!ref) continue;
        expect(secrets.has(ref.name), `${where}/${c.name}: env ${e.name} from Secret ${ref.name}`).to.equal(true);
        const keys = secretKeys(ref.name);
        if (keys) expect(keys, `${where}/${c.name}: env ${e.name} key ${ref.key}`).to.include(ref.key);
      }
      const portNames = new Set((c.ports ?? []).map((p) => p.name));
      for (const p of c.ports ?? []) expect(p.name, 'port names are at most 15 characters').to.have.length.at.most(15);
      for (const probe of [c.livenessProbe, c.readinessProbe, c.startupProbe]) {
        const port = probe?.httpGet?.port;
        if (typeof port === 'string') expect(portNames.has(port), `${where}/${c.name}: probe port ${port}`).to.equal(true);
      }
    }
  }
  for (const s of rendered.all('Service')) {
    const selector = (s.spec as { selector: Record<string, string>; ports: Array<{ targetPort: string | number }> }).selector;
    const backing = workloads.filter((w) => matches(selector, w.spec.template.metadata.labels));
    expect(backing, `Service ${s.metadata.name} selects pods`).to.not.be.empty;
    for (const port of (s.spec as { ports: Array<{ targetPort: string | number }> }).ports) {
      if (typeof port.targetPort === 'string') {
        for (const w of backing) expect(w.spec.template.spec.containers.some((c) => c.ports?.some((p) => p.name === port.targetPort)), `Service ${s.metadata.name} port ${port.targetPort}`).to.equal(true);
      }
    }
  }
  for (const o of [...rendered.all('PodDisruptionBudget'), ...rendered.all('NetworkPolicy')]) {
    const selector = (o.spec as { selector?: { matchLabels: Record<string, string> }; podSelector?: { matchLabels: Record<string, string> } });
    const labels = (selector.selector ?? selector.podSelector)!.matchLabels;
    expect(workloads.some((w) => matches(labels, w.spec.template.metadata.labels)), `${o.kind} ${o.metadata.name} selects pods`).to.equal(true);
  }
}

/** The restricted Pod Security Standard, as the registry and Redis pods must meet it. */
function expectRestricted(o: K8sObject): void {
  const spec = podSpec(o);
  expect(spec.securityContext).to.include({ runAsNonRoot: true });
  expect(spec.securityContext?.seccompProfile).to.deep.equal({ type: 'RuntimeDefault' });
  for (const c of spec.containers) {
    expect(c.securityContext, c.name).to.deep.include({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
  }
}

describe('Helm chart', function () {
  this.timeout(120_000);
  let helm: HelmRenderer;
  let dir: string;

  before(async () => {
    helm = await startHelmRenderer();
    dir = await tempDir('helm-chart');
  });
  after(async () => {
    await helm?.stop();
    if (dir) await removeTree(dir);
  });

  describe('default values: one replica on a ReadWriteOnce volume', () => {
    let r: Rendered;
    before(async () => (r = await helm.render()));

    it('renders the registry objects and nothing optional', () => {
      const kinds = r.objects.map((o) => `${o.kind}/${o.metadata.name}`).sort();
      expect(kinds).to.deep.equal([
        'ConfigMap/reg-dify-registry-config',
        'Deployment/reg-dify-registry',
        'PersistentVolumeClaim/reg-dify-registry-data',
        'Service/reg-dify-registry',
        'ServiceAccount/reg-dify-registry',
      ]);
      checkConsistency(r);
    });

    it('runs one pod with probes, Recreate, resources and a restricted security context', () => {
      const d = r.get('Deployment') as Workload;
      expect(d.spec.replicas).to.equal(1);
      // A second pod could not attach the volume while the first holds it.
      expect(d.spec.strategy).to.deep.equal({ type: 'Recreate' });
      const c = container(d, 'registry');
      expect(c.image).to.equal('dify-registry:0.1.0');
      expect(c.args).to.deep.equal(['serve', '--config', '/etc/dify-registry/config/config.yml']);
      expect(c.livenessProbe?.httpGet).to.deep.equal({ path: '/healthz', port: 'http' });
      expect(c.readinessProbe?.httpGet).to.deep.equal({ path: '/readyz', port: 'http' });
      expect(c.startupProbe?.httpGet).to.deep.equal({ path: '/healthz', port: 'http' });
      expect(c.ports).to.deep.equal([
        { name: 'http', containerPort: 5000, protocol: 'TCP' },
        { name: 'metrics', containerPort: 5001, protocol: 'TCP' },
      ]);
      expect(c.resources).to.have.nested.property('limits.memory', '1Gi');
      expectRestricted(d);
      expect(podSpec(d).securityContext).to.include({ runAsUser: 10001, fsGroup: 10001 });
      expect(podSpec(d).serviceAccountName).to.equal('reg-dify-registry');
      expect(podSpec(d), 'no Service environment variables that look like REGISTRY_* keys').to.include({ enableServiceLinks: false, automountServiceAccountToken: false });
      expect(c.volumeMounts?.find((m) => m.name === 'data')?.mountPath).to.equal('/var/lib/registry');
      expect(c.volumeMounts?.find((m) => m.name === 'tmp')?.mountPath, 'a writable /tmp on a read-only root').to.equal('/tmp');
      expect(podSpec(d).volumes?.find((v) => v.name === 'data')?.persistentVolumeClaim?.claimName).to.equal('reg-dify-registry-data');
      // Draining (30s) plus the preStop pause fits in the grace period.
      expect((podSpec(d) as unknown as { terminationGracePeriodSeconds: number }).terminationGracePeriodSeconds).to.be.greaterThan(35);
    });

    it('serves port 80 on the Service while the unprivileged pod listens on 5000', async () => {
      const r80 = await helm.render({ values: [{ service: { port: 80 }, networkPolicy: { enabled: true, egress: [{ to: [{ ipBlock: { cidr: '10.0.0.0/8' } }] }] } }] });
      checkConsistency(r80);
      const d = r80.get('Deployment');
      expect(container(d).ports?.find((p) => p.name === 'http')).to.deep.equal({ name: 'http', containerPort: 5000, protocol: 'TCP' });
      expect((r80.get('Service').spec as { ports: Array<{ port: number; targetPort: string }> }).ports[0]).to.include({ port: 80, targetPort: 'http' });
      expect((await loadRenderedConfig(dir, r80, 'config.yml', d)).http.addr).to.equal(':5000');
      // Egress to the registry's pods names the pod's port.
      const egress = (r80.get('NetworkPolicy', 'reg-dify-registry').spec as { egress: Array<{ ports?: Array<{ port: number }> }> }).egress;
      expect(egress.flatMap((rule) => (rule.ports ?? []).map((p) => p.port))).to.include(5000).and.not.include(80);
    });

    it('probes with HTTPS when the registry serves TLS itself, and refuses build workers then', async () => {
      const tls = { config: { http: { tls: { certificate: '/etc/tls/tls.crt', key: '/etc/tls/tls.key' } } } };
      const c = container((await helm.render({ values: [tls] })).get('Deployment'));
      for (const probe of [c.livenessProbe, c.readinessProbe, c.startupProbe]) expect(probe?.httpGet).to.include({ port: 'http', scheme: 'HTTPS' });
      const builders = { storage: { type: 's3', s3: { bucket: 'b-1' } }, redis: { enabled: true }, builder: { enabled: true } };
      expect(await helm.renderError({ values: [builders, tls] })).to.include('build workers push to the registry\'s Service over plain HTTP');
    });

    it('annotates the pod with checksums of its configuration and secrets', () => {
      const annotations = (r.get('Deployment') as Workload).spec.template.metadata.annotations ?? {};
      expect(annotations['checksum/config']).to.match(/^[0-9a-f]{64}$/);
      expect(annotations['checksum/secrets']).to.match(/^[0-9a-f]{64}$/);
    });

    it('renders a configuration that the registry loads', async () => {
      const config = await loadRenderedConfig(dir, r, 'config.yml', r.get('Deployment'));
      expect(config.http.addr).to.equal(':5000');
      expect(config.storage.filesystem.rootdirectory).to.equal('/var/lib/registry');
      expect(config.storage.s3).to.equal(undefined);
      expect(config.redis).to.equal(undefined);
      expect(config.auth.htpasswd).to.equal(undefined);
      expect(config.http.host).to.equal(undefined);
      // Metrics on their own port only: an Ingress in front of the main port must not serve them.
      expect(config.http.debug).to.deep.equal({ addr: ':5001', prometheus: { enabled: true, path: '/metrics' } });
      expect(config.http.metrics?.enabled).to.equal(false);
    });

    it('claims a ReadWriteOnce volume that survives uninstall', () => {
      const pvc = r.get('PersistentVolumeClaim');
      expect(pvc.metadata.annotations).to.include({ 'helm.sh/resource-policy': 'keep' });
      expect(pvc.spec).to.deep.include({ accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '50Gi' } } });
    });

    it('prints docker push and pull commands through a port-forward in NOTES.txt', () => {
      expect(r.notes).to.include('kubectl --namespace registry port-forward service/reg-dify-registry 5000:5000');
      expect(r.notes).to.include('docker push 127.0.0.1:5000/library/busybox:latest');
      expect(r.notes).to.include('docker pull 127.0.0.1:5000/library/busybox:latest');
      expect(r.notes).to.not.include('docker login');
    });
  });

  describe('ci/filesystem-values.yaml', () => {
    let r: Rendered;
    before(async () => (r = await helm.render({ valueFiles: [ci('filesystem-values.yaml')] })));

    it('passes registry keys from config through and sets the storage class', async () => {
      checkConsistency(r);
      const config = await loadRenderedConfig(dir, r, 'config.yml', r.get('Deployment'));
      expect(config.log.level).to.equal('debug');
      expect(config.storage.delete.enabled).to.equal(false);
      expect(r.get('PersistentVolumeClaim').spec).to.deep.include({ storageClassName: 'standard', resources: { requests: { storage: '20Gi' } } });
    });
  });

  describe('ci/s3-ha-values.yaml: S3, external Redis, 3 replicas, Ingress TLS, auth, mirror, build workers, metrics', () => {
    let r: Rendered;
    before(async () => (r = await helm.render({ valueFiles: [ci('s3-ha-values.yaml')] })));

    it('renders every object the values ask for', () => {
      checkConsistency(r);
      const kinds = new Set(r.objects.map((o) => o.kind));
      for (const kind of ['Deployment', 'Service', 'Ingress', 'ConfigMap', 'Secret', 'ServiceAccount', 'PodDisruptionBudget', 'NetworkPolicy', 'ServiceMonitor']) {
        expect(kinds.has(kind), kind).to.equal(true);
      }
      expect(r.all('PersistentVolumeClaim'), 'S3 needs no volume').to.be.empty;
      expect(r.all('StatefulSet'), 'external Redis').to.be.empty;
      expect(r.all('HorizontalPodAutoscaler')).to.be.empty;
    });

    it('runs three replicas with a rolling update and credentials from the Secret', () => {
      const d = r.get('Deployment', 'reg-dify-registry') as Workload;
      expect(d.spec.replicas).to.equal(3);
      expect(d.spec.strategy).to.deep.equal({ type: 'RollingUpdate', rollingUpdate: { maxSurge: '25%', maxUnavailable: 0 } });
      const c = container(d, 'registry');
      expect(envRef(c, 'REGISTRY_STORAGE_S3_ACCESSKEY')).to.deep.equal({ name: 'reg-dify-registry', key: 's3-accesskey' });
      expect(envRef(c, 'REGISTRY_STORAGE_S3_SECRETKEY')).to.deep.equal({ name: 'reg-dify-registry', key: 's3-secretkey' });
      expect(envRef(c, 'REGISTRY_REDIS_PASSWORD')).to.deep.equal({ name: 'reg-dify-registry', key: 'redis-password' });
      expect(data(r.get('Secret', 'reg-dify-registry'))).to.deep.equal({ 's3-accesskey': 'AKIAEXAMPLE', 's3-secretkey': 'secret-example', 'redis-password': 'redis-example' });
      expect(c.ports?.map((p) => p.name)).to.deep.equal(['http', 'metrics']);
      expect(podSpec(d).volumes?.some((v) => v.name === 'data'), 'no data volume on S3').to.equal(false);
      expectRestricted(d);
    });

    it('keeps every credential out of the ConfigMap', () => {
      const text = JSON.stringify(r.get('ConfigMap', 'reg-dify-registry-config').data);
      for (const secret of ['AKIAEXAMPLE', 'secret-example', 'redis-example']) expect(text).to.not.include(secret);
    });

    it('renders a configuration that the registry loads: S3, Redis, public URL, auth files, mirror rules, metrics port', async () => {
      const config = await loadRenderedConfig(dir, r, 'config.yml', r.get('Deployment', 'reg-dify-registry'));
      expect(config.storage.s3).to.deep.include({
        bucket: 'registry-data', region: 'eu-central-1', regionendpoint: 'http://minio.storage.svc:9000', forcepathstyle: true,
        rootdirectory: '/registry', chunksize: 16777216, accesskey: 'from-a-secret', secretkey: 'from-a-secret',
      });
      expect(config.middleware.storage).to.deep.equal([{ name: 'redirect', options: { baseurl: 'https://blobs.example.com' } }]);
      expect(config.redis).to.deep.include({ url: 'redis://redis-master.redis.svc:6379/2', password: 'from-a-secret' });
      expect(config.http.host).to.equal('https://registry.example.com');
      expect(config.http.debug).to.deep.equal({ addr: ':5001', prometheus: { enabled: true, path: '/metrics' } });
      expect(config.http.metrics?.enabled, 'metrics only on their own port, not behind the Ingress').to.equal(false);
      expect(config.auth.htpasswd?.path).to.equal('/etc/dify-registry/htpasswd/htpasswd');
      expect(config.auth.issuer.keys).to.deep.equal([{ key: '/etc/dify-registry/token/token.key', certificate: '/etc/dify-registry/token/token.crt' }]);
      expect(config.auth.admins).to.deep.equal(['alice']);
      expect(config.auth.access).to.have.length(2);
      expect(config.mirror.upstreams.map((u) => u.name)).to.deep.equal(['ghcr.io']);
      expect(config.mirror.sync[0]).to.deep.include({ name: 'dify', upstream: 'docker.io', semver: '>=1.12.0', layouts: ['same-name', 'ddn-k8s'] });
      expect(config.mirror.pullthrough).to.deep.equal([{ upstream: 'docker.io', prefix: 'ddn-k8s/docker.io', layout: 'ddn-k8s', ttl: '10m' }]);
      expect(config.gc).to.deep.include({ enabled: true, untagged: '14d' });
      expect(config.retention.rules[0]).to.deep.include({ repository: 'ci/**', keeplast: 20, immutable: ['v*'] });
      expect(config.notifications?.endpoints.map((e) => e.name)).to.deep.equal(['audit']);
      expect(config.builder).to.deep.include({ enabled: true, platforms: [] });
      expect(config.ratelimit.enabled).to.equal(true);
    });

    it('mounts the htpasswd file and a token signing key that matches its certificate', () => {
      const d = r.get('Deployment', 'reg-dify-registry');
      const mounts = container(d).volumeMounts ?? [];
      expect(mounts.find((m) => m.name === 'htpasswd')).to.deep.include({ mountPath: '/etc/dify-registry/htpasswd', readOnly: true });
      expect(mounts.find((m) => m.name === 'token')).to.deep.include({ mountPath: '/etc/dify-registry/token', readOnly: true });
      expect(data(r.get('Secret', 'reg-dify-registry-htpasswd')).htpasswd).to.match(/^alice:\$2b\$05\$.{53}\n$/);
      const token = r.get('Secret', 'reg-dify-registry-token');
      expect(token.type).to.equal('kubernetes.io/tls');
      const { 'tls.key': key, 'tls.crt': crt } = data(token);
      const privateKey = createPrivateKey(key!);
      expect(privateKey.asymmetricKeyDetails?.namedCurve, 'ES256: P-256').to.equal('prime256v1');
      const certificate = new X509Certificate(crt!);
      expect(certificate.checkPrivateKey(privateKey), 'certificate of the signing key').to.equal(true);
    });

    it('serves the Ingress with TLS for the public host', () => {
      const ingress = r.get('Ingress');
      expect(ingress.spec).to.deep.include({ ingressClassName: 'nginx', tls: [{ hosts: ['registry.example.com'], secretName: 'registry-tls' }] });
      const rule = (ingress.spec as { rules: Array<{ host: string; http: { paths: Array<{ backend: { service: { name: string; port: { number: number } } } }> } }> }).rules[0]!;
      expect(rule.host).to.equal('registry.example.com');
      expect(rule.http.paths[0]!.backend.service).to.deep.equal({ name: 'reg-dify-registry', port: { number: 5000 } });
      expect(ingress.metadata.annotations).to.include({ 'nginx.ingress.kubernetes.io/proxy-body-size': '0' });
    });

    it('runs build workers per architecture on nodes of that architecture, each building its platforms', async () => {
      const workers = r.all('Deployment').filter((d) => d.metadata.name.includes('-builder-')) as Workload[];
      expect(workers.map((w) => w.metadata.name).sort()).to.deep.equal(['reg-dify-registry-builder-amd64', 'reg-dify-registry-builder-arm64']);
      for (const [arch, replicas] of [['amd64', 2], ['arm64', 1]] as const) {
        const w = r.get('Deployment', `reg-dify-registry-builder-${arch}`) as Workload;
        expect(w.spec.replicas).to.equal(replicas);
        expect(podSpec(w).nodeSelector).to.deep.equal({ 'kubernetes.io/os': 'linux', 'kubernetes.io/arch': arch });
        const c = container(w, 'builder');
        expect(c.image).to.equal('dify-registry-builder:0.1.0');
        expect(c.args).to.deep.equal(['worker', '--config', `/etc/dify-registry/config/worker-${arch}.yml`]);
        expect(c.securityContext).to.deep.include({ privileged: true, runAsUser: 0 });
        expect(c.volumeMounts?.find((m) => m.name === 'cache')?.mountPath).to.equal('/var/lib/dify-registry/builder');
        expect(w.spec.template.metadata.annotations?.['checksum/worker']).to.match(/^[0-9a-f]{64}$/);
        const config = await loadRenderedConfig(dir, r, `worker-${arch}.yml`, w);
        expect(config.builder).to.deep.include({ platforms: [`linux/${arch}`], registry: 'http://reg-dify-registry.registry.svc:5000', cachedir: '/var/lib/dify-registry/builder' });
        expect(config.redis?.url, 'the build queue').to.equal('redis://redis-master.redis.svc:6379/2');
      }
      expect(podSpec(r.get('Deployment', 'reg-dify-registry-builder-arm64')).tolerations).to.have.length(1);
      // The selectors of the two workers do not overlap: each Deployment owns its own pods.
      const [a, b] = workers;
      expect(matches(a!.spec.selector.matchLabels, b!.spec.template.metadata.labels)).to.equal(false);
    });

    it('scrapes metrics through a ServiceMonitor and ships the dashboards', () => {
      const sm = r.get('ServiceMonitor');
      expect(sm.apiVersion).to.equal('monitoring.coreos.com/v1');
      expect(sm.metadata.labels).to.include({ release: 'prometheus' });
      expect((sm.spec as { endpoints: unknown[] }).endpoints).to.deep.equal([{ port: 'metrics', path: '/metrics', interval: '30s', scrapeTimeout: '10s' }]);
      const service = r.get('Service');
      expect((service.spec as { ports: Array<{ name: string }> }).ports.map((p) => p.name)).to.deep.equal(['http', 'metrics']);
      // The build workers have no Service: a PodMonitor scrapes their metrics port.
      const pm = r.get('PodMonitor');
      expect(pm.metadata.labels).to.include({ release: 'prometheus' });
      expect((pm.spec as { podMetricsEndpoints: unknown[] }).podMetricsEndpoints).to.deep.equal([{ port: 'metrics', path: '/metrics', interval: '30s', scrapeTimeout: '10s' }]);
      for (const worker of r.all('Deployment').filter((d) => d.metadata.name.includes('-builder-')) as Workload[]) {
        expect(matches((pm.spec as { selector: { matchLabels: Record<string, string> } }).selector.matchLabels, worker.spec.template.metadata.labels), worker.metadata.name).to.equal(true);
        expect(container(worker, 'builder').ports, worker.metadata.name).to.deep.equal([{ name: 'metrics', containerPort: 5001, protocol: 'TCP' }]);
      }
      expect(matches((sm.spec as { selector: { matchLabels: Record<string, string> } }).selector.matchLabels, service.metadata.labels)).to.equal(true);
      const dashboards = r.all('ConfigMap').filter((c) => c.metadata.name.endsWith('-dashboards'));
      if (DASHBOARDS.length === 0) {
        expect(dashboards, 'no dashboards/*.json in the chart, no ConfigMap').to.be.empty;
      } else {
        expect(dashboards).to.have.length(1);
        expect(dashboards[0]!.metadata.labels).to.include({ grafana_dashboard: '1' });
        for (const file of DASHBOARDS) {
          const json = data(dashboards[0]!)[file];
          expect(json, file).to.equal(readFileSync(join(CHART_DIR, 'dashboards', file), 'utf8'));
          expect(() => JSON.parse(json!), `${file} is JSON`).to.not.throw();
        }
      }
    });

    it('limits disruptions and network access', () => {
      expect(r.get('PodDisruptionBudget').spec).to.deep.include({ maxUnavailable: 1 });
      const registryPolicy = r.get('NetworkPolicy', 'reg-dify-registry');
      const ingress = (registryPolicy.spec as { ingress: Array<{ ports: Array<{ port: string }>; from?: unknown[] }> }).ingress;
      expect(ingress[0]!.ports[0]!.port).to.equal('http');
      expect(ingress[0]!.from, 'the registry port is open to everyone by default').to.equal(undefined);
      expect(ingress[1]!.ports[0]!.port).to.equal('metrics');
      expect(ingress[1]!.from).to.deep.equal([{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } }]);
      // Nothing connects to the build workers but the metrics scrape.
      expect(r.get('NetworkPolicy', 'reg-dify-registry-builder').spec).to.deep.include({
        ingress: [{ ports: [{ port: 'metrics', protocol: 'TCP' }], from: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } }] }],
      });
    });

    it('lets the build workers push when only some peers may reach the registry', async () => {
      const ingressNginx = { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'ingress-nginx' } } };
      const restricted = await helm.render({ valueFiles: [ci('s3-ha-values.yaml')], values: [{ networkPolicy: { ingressFrom: [ingressNginx] } }] });
      const ingress = (restricted.get('NetworkPolicy', 'reg-dify-registry').spec as { ingress: Array<{ from?: Array<{ podSelector?: { matchLabels: Record<string, string> } }> }> }).ingress;
      const from = ingress[0]!.from!;
      expect(from[0]).to.deep.equal(ingressNginx);
      const workers = restricted.all('Deployment').filter((d) => d.metadata.name.includes('-builder-')) as Workload[];
      expect(workers).to.have.length(2);
      for (const worker of workers) {
        expect(from.some((peer) => peer.podSelector && matches(peer.podSelector.matchLabels, worker.spec.template.metadata.labels)), worker.metadata.name).to.equal(true);
      }
      const registry = restricted.get('Deployment', 'reg-dify-registry') as Workload;
      expect(from.some((peer) => peer.podSelector && matches(peer.podSelector.matchLabels, registry.spec.template.metadata.labels)), 'only the workers are added').to.equal(false);
    });

    it('prints docker login, push and pull for the public host in NOTES.txt', () => {
      expect(r.notes).to.include('docker login registry.example.com');
      expect(r.notes).to.include('docker push registry.example.com/library/busybox:latest');
      expect(r.notes).to.include('docker pull registry.example.com/ddn-k8s/docker.io/langgenius/dify-api:1.12.1');
      expect(r.notes).to.not.include('port-forward');
    });
  });

  describe('ci/in-chart-redis-values.yaml: the chart\'s Redis and an autoscaler', () => {
    let r: Rendered;
    before(async () => (r = await helm.render({ valueFiles: [ci('in-chart-redis-values.yaml')] })));

    it('runs Redis as a restricted StatefulSet with a generated password the registry reads', async () => {
      checkConsistency(r);
      const sts = r.get('StatefulSet', 'reg-dify-registry-redis') as Workload;
      expect(sts.spec.replicas).to.equal(1);
      expect(sts.spec.volumeClaimTemplates?.[0]?.metadata.name).to.equal('data');
      expectRestricted(sts);
      const redis = container(sts, 'redis');
      expect(redis.args).to.include('--requirepass');
      expect(envRef(redis, 'REDIS_PASSWORD')).to.deep.equal({ name: 'reg-dify-registry-redis', key: 'redis-password' });
      expect(data(r.get('Secret', 'reg-dify-registry-redis'))['redis-password']).to.match(/^[A-Za-z0-9]{32}$/);
      const d = r.get('Deployment', 'reg-dify-registry');
      expect(envRef(container(d), 'REGISTRY_REDIS_PASSWORD')).to.deep.equal({ name: 'reg-dify-registry-redis', key: 'redis-password' });
      const config = await loadRenderedConfig(dir, r, 'config.yml', d);
      expect(config.redis).to.deep.include({ addr: 'reg-dify-registry-redis:6379', password: 'from-a-secret' });
      const service = r.get('Service', 'reg-dify-registry-redis');
      expect((service.spec as { ports: Array<{ port: number }> }).ports[0]!.port).to.equal(6379);
    });

    it('scales with an HPA instead of fixed replicas, with a PDB', () => {
      const d = r.get('Deployment', 'reg-dify-registry') as Workload;
      expect(d.spec.replicas, 'the HPA owns replicas').to.equal(undefined);
      expect(r.get('HorizontalPodAutoscaler').spec).to.deep.include({
        minReplicas: 2, maxReplicas: 5, scaleTargetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'reg-dify-registry' },
      });
      expect(r.all('PodDisruptionBudget')).to.have.length(1);
    });

    it('lets only the registry reach Redis, and restricts egress when rules are given', () => {
      const policy = r.get('NetworkPolicy', 'reg-dify-registry-redis');
      const from = (policy.spec as { ingress: Array<{ from: Array<{ podSelector: { matchLabels: Record<string, string> } }> }> }).ingress[0]!.from;
      expect(from.some((peer) => matches(peer.podSelector.matchLabels, (r.get('Deployment') as Workload).spec.template.metadata.labels))).to.equal(true);
      const registryPolicy = r.get('NetworkPolicy', 'reg-dify-registry').spec as { policyTypes: string[]; egress: Array<{ ports?: Array<{ port: number }> }> };
      expect(registryPolicy.policyTypes).to.deep.equal(['Ingress', 'Egress']);
      const egressPorts = registryPolicy.egress.flatMap((rule) => (rule.ports ?? []).map((p) => p.port));
      expect(egressPorts).to.include.members([53, 6379, 443]);
    });
  });

  describe('ci/existing-secrets-values.yaml: credentials from Secrets made outside the chart', () => {
    let r: Rendered;
    const existing = ['shared-redis', 'registry-users', 'registry-token-key', 'registry-data'];
    before(async () => (r = await helm.render({ valueFiles: [ci('existing-secrets-values.yaml')] })));

    it('creates no Secret of its own but the configuration, and refers to the existing ones', () => {
      checkConsistency(r, existing);
      expect(r.all('Secret').map((s) => s.metadata.name), 'mirror credentials move the configuration into a Secret').to.deep.equal(['reg-dify-registry-config']);
      expect(r.all('ConfigMap')).to.be.empty;
      expect(r.all('PersistentVolumeClaim'), 'the existing claim').to.be.empty;
      const d = r.get('Deployment') as Workload;
      expect(d.spec.replicas).to.equal(2);
      expect(d.spec.strategy?.type, 'a ReadWriteMany volume rolls').to.equal('RollingUpdate');
      const volumes = podSpec(d).volumes ?? [];
      expect(volumes.find((v) => v.name === 'config')?.secret?.secretName).to.equal('reg-dify-registry-config');
      expect(volumes.find((v) => v.name === 'data')?.persistentVolumeClaim?.claimName).to.equal('registry-data');
      expect(volumes.find((v) => v.name === 'htpasswd')?.secret).to.deep.equal({ secretName: 'registry-users', items: [{ key: 'users.htpasswd', path: 'htpasswd' }] });
      expect(volumes.find((v) => v.name === 'token')?.secret).to.deep.equal({
        secretName: 'registry-token-key', items: [{ key: 'key.pem', path: 'token.key' }, { key: 'cert.pem', path: 'token.crt' }],
      });
      expect(envRef(container(d), 'REGISTRY_REDIS_PASSWORD')).to.deep.equal({ name: 'shared-redis', key: 'password' });
    });

    it('moves the configuration into a Secret for a Sentinel password and for a password in any URL', async () => {
      const cases: Array<[string, Record<string, unknown>, string]> = [
        ['a Sentinel password', { config: { redis: { sentinel: { name: 'mymaster', addrs: ['sentinel:26379'], password: 'sentinel-s3cret' } } } }, 'sentinel-s3cret'],
        ['a Redis URL in config', { redis: { enabled: false }, config: { redis: { url: 'redis://:url-s3cret@redis.shared:6379/0' } } }, 'url-s3cret'],
        ['a build argument', { builder: { enabled: true, config: { buildargs: { PIP_INDEX_URL: 'https://ci:pip-s3cret@pypi.example.com/simple' } } } }, 'pip-s3cret'],
      ];
      for (const [what, values, secret] of cases) {
        const rendered = await helm.render({ values: [{ storage: { type: 's3', s3: { bucket: 'b-1' } }, redis: { enabled: true } }, values] });
        for (const map of rendered.all('ConfigMap')) expect(JSON.stringify(map.data), `${what} in ConfigMap ${map.metadata.name}`).to.not.include(secret);
        expect(data(rendered.get('Secret', 'reg-dify-registry-config'))['config.yml'], what).to.include(secret);
      }
      // A URL without a password keeps the ConfigMap (externalRedis.url with one is refused by the schema).
      const plain = await helm.render({ values: [{ config: { redis: { url: 'redis://redis.shared:6379/0' } } }] });
      expect(plain.all('ConfigMap').map((c) => c.metadata.name)).to.include('reg-dify-registry-config');
    });

    it('moves the configuration into a Secret for notification headers too', async () => {
      const r2 = await helm.render({ values: [{ config: { notifications: { endpoints: [{ name: 'n', url: 'https://hooks.example.com/x', headers: { Authorization: ['Bearer t'] } }] } } }] });
      expect(r2.all('ConfigMap')).to.be.empty;
      expect(data(r2.get('Secret', 'reg-dify-registry-config'))['config.yml']).to.include('Bearer t');
      expect(podSpec(r2.get('Deployment')).volumes?.find((v) => v.name === 'config')?.secret?.secretName).to.equal('reg-dify-registry-config');
    });

    it('renders a configuration that the registry loads, upstream credentials included', async () => {
      const config = await loadRenderedConfig(dir, r, 'config.yml', r.get('Deployment'));
      expect(config.redis?.addr).to.equal('redis.shared.svc:6379');
      expect(config.mirror.upstreams[0]).to.deep.include({ name: 'harbor.example.com', username: 'robot$mirror', password: 'mirror-secret' });
    });
  });

  describe("the README's install example", () => {
    it('renders, passes the schema, and gives a configuration the registry loads', async () => {
      const readme = readFileSync(join(CHART_DIR, '..', '..', 'README.md'), 'utf8');
      const section = readme.slice(readme.indexOf('### Install with S3 and Redis'));
      const example = /```yaml\n([\s\S]*?)```/.exec(section)?.[1];
      expect(example, 'a yaml block in the README section').to.be.a('string');
      const file = join(dir, 'readme-values.yaml');
      await writeFile(file, example!);
      const r = await helm.render({ valueFiles: [file] });
      checkConsistency(r, ['registry-s3', 'registry-redis', 'registry-users']);
      expect(valuesSchema.safeParse(r.values).success).to.equal(true);
      const config = await loadRenderedConfig(dir, r, 'config.yml', r.get('Deployment'));
      expect(config.storage.s3?.bucket).to.equal('registry-data');
      expect(config.redis?.url).to.equal('redis://redis-master.redis.svc:6379/0');
      expect(r.notes).to.include('docker login registry.example.com');
    });
  });

  describe('refusals', () => {
    it('refuses more than one replica on a ReadWriteOnce volume', async () => {
      const error = await helm.renderError({ values: [{ replicaCount: 3, externalRedis: { addr: 'redis:6379' } }] });
      expect(error).to.match(/^Error: execution error at \(dify-registry\/templates\/[\w.]+:\d+:\d+\): /);
      expect(error).to.include('storage.type filesystem with 3 replicas needs a ReadWriteMany volume');
    });

    it('refuses an autoscaler that could add pods on a ReadWriteOnce volume', async () => {
      const error = await helm.renderError({ values: [{ autoscaling: { enabled: true, maxReplicas: 4 }, redis: { enabled: true } }] });
      expect(error).to.include('storage.type filesystem with 4 replicas needs a ReadWriteMany volume');
    });

    it('refuses several replicas without Redis, and S3 without a bucket', async () => {
      expect(await helm.renderError({ values: [{ replicaCount: 2, storage: { type: 's3', s3: { bucket: 'b-1' } } }] })).to.include('2 replicas share upload sessions');
      expect(await helm.renderError({ values: [{ storage: { type: 's3' } }] })).to.include('storage.s3.bucket is required when storage.type is s3');
    });

    it('refuses build workers without Redis or without shared storage', async () => {
      expect(await helm.renderError({ values: [{ builder: { enabled: true }, storage: { type: 's3', s3: { bucket: 'b-1' } } }] })).to.include('builder.enabled needs Redis');
      expect(await helm.renderError({ values: [{ builder: { enabled: true }, redis: { enabled: true } }] })).to.include('builder.enabled needs storage that the workers reach');
    });

    it('refuses two build worker entries for one architecture', async () => {
      const workers = [{ arch: 'amd64', replicas: 1, platforms: ['linux/amd64'] }, { arch: 'amd64', replicas: 1, platforms: ['linux/arm64'] }];
      const error = await helm.renderError({ values: [{ storage: { type: 's3', s3: { bucket: 'b-1' } }, redis: { enabled: true }, builder: { enabled: true, workers } }] });
      expect(error).to.include('builder.workers: two entries for arch amd64');
    });

    it('says how an existing release gets a ReadWriteMany volume (a claim cannot change its access modes)', async () => {
      const error = await helm.renderError({ values: [{ replicaCount: 2, redis: { enabled: true } }] });
      expect(error).to.include('storage.persistence.existingClaim');
    });

    it('accepts several replicas on a ReadWriteMany volume', async () => {
      const r = await helm.render({ values: [{ replicaCount: 2, redis: { enabled: true }, storage: { persistence: { accessModes: ['ReadWriteMany'] } } }] });
      expect((r.get('Deployment', 'reg-dify-registry') as Workload).spec.replicas).to.equal(2);
      expect(r.get('PersistentVolumeClaim').spec).to.deep.include({ accessModes: ['ReadWriteMany'] });
    });
  });

  describe('upgrades', () => {
    const annotations = (r: Rendered) => (r.get('Deployment', 'reg-dify-registry') as Workload).spec.template.metadata.annotations ?? {};

    it('rolls the pods when the configuration or a secret changes, and only then', async () => {
      const base = await helm.render();
      const same = await helm.render({ values: [{ podLabels: { team: 'infra' } }] });
      const config = await helm.render({ values: [{ config: { log: { level: 'warn' } } }] });
      const secret = await helm.render({ values: [{ storage: { type: 's3', s3: { bucket: 'b-1', accesskey: 'a', secretkey: 'b' } } }] });
      const rotated = await helm.render({ values: [{ storage: { type: 's3', s3: { bucket: 'b-1', accesskey: 'a', secretkey: 'c' } } }] });
      expect(annotations(same)).to.deep.equal(annotations(base));
      expect(annotations(config)['checksum/config']).to.not.equal(annotations(base)['checksum/config']);
      expect(annotations(config)['checksum/secrets']).to.equal(annotations(base)['checksum/secrets']);
      expect(annotations(rotated)['checksum/config'], 'credentials are not in the configuration').to.equal(annotations(secret)['checksum/config']);
      expect(annotations(rotated)['checksum/secrets']).to.not.equal(annotations(secret)['checksum/secrets']);
    });

    it('keeps the generated token key and Redis password across upgrades (lookup)', async () => {
      const values = [{ auth: { htpasswd: { users: ['alice:$2b$05$/rbDMF0p7SklRL2CiwGGAe50gh0fSa4EGHgMwGGEq9RLalMTqahB6'] } } }, { redis: { enabled: true } }];
      const first = await helm.render({ values });
      const token = first.get('Secret', 'reg-dify-registry-token');
      const redis = first.get('Secret', 'reg-dify-registry-redis');
      const again = await helm.render({ values });
      expect(data(again.get('Secret', 'reg-dify-registry-token'))['tls.key'], 'a fresh install generates a new key').to.not.equal(data(token)['tls.key']);
      const upgrade = await helm.render({
        values,
        upgrade: true,
        lookup: { 'v1/Secret/registry/reg-dify-registry-token': token, 'v1/Secret/registry/reg-dify-registry-redis': redis },
      });
      expect(data(upgrade.get('Secret', 'reg-dify-registry-token'))).to.deep.equal(data(token));
      expect(data(upgrade.get('Secret', 'reg-dify-registry-redis'))).to.deep.equal(data(redis));
      expect(annotations(upgrade), 'so the pods do not roll').to.deep.equal(annotations(first));
    });

    it('generates an RSA key for RS256', async () => {
      const r = await helm.render({ values: [{ auth: { issuer: { algorithm: 'RS256' }, htpasswd: { existingSecret: 'users' } } }] });
      const { 'tls.key': key, 'tls.crt': crt } = data(r.get('Secret', 'reg-dify-registry-token'));
      const privateKey = createPrivateKey(key!);
      expect(privateKey.asymmetricKeyType).to.equal('rsa');
      expect(new X509Certificate(crt!).checkPrivateKey(privateKey)).to.equal(true);
    });
  });

  describe('values.schema.json', () => {
    /** Helm validates the merged values (defaults + user files) against the schema before rendering. */
    const validate = async (values: Record<string, unknown>) => {
      const result = valuesSchema.safeParse(await helm.mergedValues({ values: [values] }));
      return result.success ? [] : result.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    };

    it('accepts the defaults and every ci/ value file', async () => {
      const defaults = (await helm.render()).values;
      expect(valuesSchema.safeParse(defaults).success, JSON.stringify(valuesSchema.safeParse(defaults).error?.issues)).to.equal(true);
      for (const file of CI_FILES) {
        const merged = (await helm.render({ valueFiles: [ci(file)] })).values;
        const result = valuesSchema.safeParse(merged);
        expect(result.success, `${file}: ${JSON.stringify(result.error?.issues)}`).to.equal(true);
      }
    });

    const bad: Array<[string, Record<string, unknown>, RegExp]> = [
      ['a misspelled top-level key', { replicas: 3 }, /Unrecognized key: "replicas"/],
      ['a misspelled nested key', { storage: { s3: { bukket: 'x' } } }, /^storage\.s3: Unrecognized key: "bukket"/],
      ['a string for a number', { replicaCount: 'three' }, /^replicaCount: .*expected number/],
      ['a fractional replica count', { replicaCount: 1.5 }, /^replicaCount: .*expected int/],
      ['an unknown storage type', { storage: { type: 'gcs' } }, /^storage\.type: Invalid option/],
      ['a port out of range', { service: { port: 70000 } }, /^service\.port: Too big/],
      ['a bad pull policy', { image: { pullPolicy: 'Sometimes' } }, /^image\.pullPolicy: Invalid option/],
      ['a plain-text htpasswd password', { auth: { htpasswd: { users: ['alice:secret'] } } }, /^auth\.htpasswd\.users\.0: Invalid string/],
      ['a worker for an unknown architecture', { builder: { workers: [{ arch: 'sparc', platforms: ['linux/sparc'] }] } }, /^builder\.workers\.0\.arch: Invalid option/],
      ['a mirror rule without repositories', { mirror: { sync: [{ name: 'x', upstream: 'docker.io' }] } }, /^mirror\.sync\.0\.repositories: /],
      ['a Redis URL with a password in it', { externalRedis: { url: 'redis://:pw@redis:6379' } }, /^externalRedis\.url: Invalid string/],
      ['a bad duration', { config: { http: { draintimeout: '30 seconds' } } }, /^config\.http\.draintimeout: Invalid string/],
      ['a chunk size below 5 MiB', { storage: { s3: { chunksize: 1024 } } }, /^storage\.s3\.chunksize: Too small/],
    ];
    for (const [what, values, message] of bad) {
      it(`rejects ${what}`, async () => {
        const issues = await validate(values);
        expect(issues.some((issue) => message.test(issue)), `${issues.join('\n')} should match ${message}`).to.equal(true);
      });
    }
  });

  describe('Kubernetes API types', () => {
    it('every rendered object type-checks against kubernetes-models, so a misspelled field fails', async function () {
      this.timeout(180_000);
      expect(checkedObjects.length, 'the renderings above ran').to.be.above(20);
      await typecheckK8sObjects(checkedObjects);
    });
  });
});
