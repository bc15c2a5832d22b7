// Checks rendered Kubernetes objects against the API as kubernetes-models describes it, two ways:
// - validateK8sObject: its runtime schemas (required fields, types, formats, enums);
// - typecheckK8sObjects: every object as a typed object literal compiled by tsc, whose excess-property check
//   catches what the runtime schemas allow (they accept unknown fields): a misspelled or misplaced field.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigMap, PersistentVolumeClaim, Secret, Service, ServiceAccount } from 'kubernetes-models/v1';
import { Deployment, StatefulSet } from 'kubernetes-models/apps/v1';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2';
import { Ingress, NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { PodMonitor, ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import { run } from './process.js';

interface Validatable {
  validate(): void;
}

type Model = new (data: never) => Validatable;

/** `apiVersion/kind` -> the model class, and the module and interface that type it. */
const KINDS: Record<string, { model: Model; module: string; type: string }> = {
  'v1/ConfigMap': { model: ConfigMap, module: 'kubernetes-models/v1', type: 'IConfigMap' },
  'v1/Secret': { model: Secret, module: 'kubernetes-models/v1', type: 'ISecret' },
  'v1/Service': { model: Service, module: 'kubernetes-models/v1', type: 'IService' },
  'v1/ServiceAccount': { model: ServiceAccount, module: 'kubernetes-models/v1', type: 'IServiceAccount' },
  'v1/PersistentVolumeClaim': { model: PersistentVolumeClaim, module: 'kubernetes-models/v1', type: 'IPersistentVolumeClaim' },
  'apps/v1/Deployment': { model: Deployment, module: 'kubernetes-models/apps/v1', type: 'IDeployment' },
  'apps/v1/StatefulSet': { model: StatefulSet, module: 'kubernetes-models/apps/v1', type: 'IStatefulSet' },
  'autoscaling/v2/HorizontalPodAutoscaler': { model: HorizontalPodAutoscaler, module: 'kubernetes-models/autoscaling/v2', type: 'IHorizontalPodAutoscaler' },
  'networking.k8s.io/v1/Ingress': { model: Ingress, module: 'kubernetes-models/networking.k8s.io/v1', type: 'IIngress' },
  'networking.k8s.io/v1/NetworkPolicy': { model: NetworkPolicy, module: 'kubernetes-models/networking.k8s.io/v1', type: 'INetworkPolicy' },
  'policy/v1/PodDisruptionBudget': { model: PodDisruptionBudget, module: 'kubernetes-models/policy/v1', type: 'IPodDisruptionBudget' },
  'monitoring.coreos.com/v1/ServiceMonitor': {
    model: ServiceMonitor,
    module: '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1',
    type: 'IServiceMonitor',
  },
  'monitoring.coreos.com/v1/PodMonitor': {
    model: PodMonitor,
    module: '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1',
    type: 'IPodMonitor',
  },
};

export interface K8sObjectLike {
  apiVersion: string;
  kind: string;
  metadata: { name: string };
}

function kindOf(object: K8sObjectLike) {
  const key = `${object.apiVersion}/${object.kind}`;
  const kind = KINDS[key];
  if (!kind) throw new Error(`${key} ${object.metadata.name}: no schema known for this kind (add it to test/helpers/k8s-schema.ts)`);
  return { key, ...kind };
}

/** Throws, naming the object and the schema's complaint, unless `object` passes its kind's runtime schema. */
export function validateK8sObject(object: K8sObjectLike): void {
  const { key, model: Model } = kindOf(object);
  try {
    new Model(structuredClone(object) as never).validate();
  } catch (error) {
    throw new Error(`${key} ${object.metadata.name} does not match the Kubernetes API schema: ${(error as Error).message}`);
  }
}

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/**
 * Compiles every object as a typed literal (`const o: IDeployment = {...}`); throws with tsc's messages,
 * each naming the object (`label`) it is about. The file lives under the checkout so packages resolve.
 */
export async function typecheckK8sObjects(objects: Array<{ label: string; object: K8sObjectLike }>): Promise<void> {
  const dir = await mkdtemp(join(REPO_ROOT, '.k8s-typecheck-'));
  try {
    const modules = new Map<string, Set<string>>();
    const lines: string[] = [];
    objects.forEach(({ label, object }, index) => {
      const { module, type } = kindOf(object);
      modules.set(module, (modules.get(module) ?? new Set()).add(type));
      lines.push(`// ${label.replace(/\n/g, ' ')}`, `export const o${index}: ${type} = ${JSON.stringify(object, null, 1)};`);
    });
    const imports = [...modules].map(([module, types]) => `import type { ${[...types].join(', ')} } from '${module}';`);
    const file = join(dir, 'objects.ts');
    await writeFile(file, [...imports, ...lines, ''].join('\n'));
    const tsc = join(REPO_ROOT, 'node_modules/typescript/bin/tsc');
    const result = await run(
      process.execPath,
      [tsc, '--noEmit', '--strict', '--skipLibCheck', '--target', 'es2022', '--module', 'nodenext', '--moduleResolution', 'nodenext', file],
      { cwd: REPO_ROOT, allowFailure: true },
    );
    if (result.code !== 0) {
      const source = [...imports, ...lines].join('\n').split('\n');
      // Point each diagnostic at the object it is in: the nearest `// label` line above it.
      const messages = result.stdout
        .split('\n')
        .filter((line) => /objects\.ts\(\d+,\d+\)/.test(line))
        .map((line) => {
          const at = Number(/objects\.ts\((\d+),/.exec(line)![1]);
          const label = source.slice(0, at).reverse().find((l) => l.startsWith('// ')) ?? '';
          return `${label.slice(3)}: ${line.replace(/^.*objects\.ts\(\d+,\d+\): /, '')}`;
        });
      throw new Error(`rendered objects do not type-check against the Kubernetes API:\n${messages.join('\n') || result.stdout}`);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
