// Renders the Helm chart as `helm template` would, with no helm binary: test/helm-render/main.go (Helm's
// engine rebuilt from Debian's Go, sprig and sigs.k8s.io/yaml packages) is compiled once per run into a
// temp dir and run on value files the tests write.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { stringify } from 'yaml';
import { removeTree } from './cleanup.js';
import { run, tempDir } from './process.js';

export const CHART_DIR = fileURLToPath(new URL('../../charts/dify-registry/', import.meta.url));
const RENDERER_SOURCE = fileURLToPath(new URL('../helm-render/main.go', import.meta.url));

/** A rendered Kubernetes object, loosely typed: tests narrow what they read. */
export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [key: string]: unknown;
}

export interface Rendered {
  objects: K8sObject[];
  notes: string;
  /** The merged values (chart defaults + value files), as Helm validates them against values.schema.json. */
  values: Record<string, unknown>;
  /** stdout as printed, for debugging. */
  text: string;
  /** The one object of `kind` named `name` (or the only one of that kind); fails otherwise. */
  get(kind: string, name?: string): K8sObject;
  all(kind: string): K8sObject[];
}

export interface RenderOptions {
  /** Value documents, later ones winning (written to files, as `-f` would read them). */
  values?: Array<Record<string, unknown>>;
  /** Value files on disk (e.g. the chart's ci/*.yaml), before `values`. */
  valueFiles?: string[];
  name?: string;
  namespace?: string;
  upgrade?: boolean;
  apiVersions?: string[];
  /** Objects that `lookup` finds, keyed "<apiVersion>/<kind>/<namespace>/<name>", as on a live cluster. */
  lookup?: Record<string, unknown>;
}

export interface HelmRenderer {
  render(options?: RenderOptions): Promise<Rendered>;
  /** Renders and expects failure; returns stderr (Helm's "Error: execution error at (...): message"). */
  renderError(options?: RenderOptions): Promise<string>;
  /** The merged values only (chart defaults + value files), whether the templates render or fail. */
  mergedValues(options?: RenderOptions): Promise<Record<string, unknown>>;
  stop(): Promise<void>;
}

export const GO_ENV = { GO111MODULE: 'off', GOPATH: '/usr/share/gocode', GOFLAGS: '', CGO_ENABLED: '0' };

export async function startHelmRenderer(): Promise<HelmRenderer> {
  const dir = await tempDir('helm-render');
  const binary = join(dir, 'helm-render');
  // GOCACHE inside the temp dir: nothing written to $HOME, and the compile takes a few seconds.
  const env = { ...process.env, ...GO_ENV, GOCACHE: join(dir, 'go-cache'), HOME: dir };
  await run('go', ['build', '-o', binary, RENDERER_SOURCE], { env }).catch((error: Error) => {
    throw new Error(`cannot compile the Helm renderer (needs golang-go, golang-github-masterminds-sprig-dev, golang-k8s-sigs-yaml-dev: scripts/install-deps.sh)\n${error.message}`);
  });
  let counter = 0;

  async function invoke(options: RenderOptions): Promise<{ code: number; stdout: string; stderr: string; notes: string; values: Record<string, unknown> }> {
    const work = join(dir, `r${++counter}`);
    await mkdir(work);
    const args = ['--chart', CHART_DIR, '--name', options.name ?? 'reg', '--namespace', options.namespace ?? 'registry'];
    for (const file of options.valueFiles ?? []) args.push('--values', file);
    for (const [i, values] of (options.values ?? []).entries()) {
      const file = join(work, `values-${i}.yaml`);
      await writeFile(file, stringify(values));
      args.push('--values', file);
    }
    for (const apiVersion of options.apiVersions ?? []) args.push('--api-versions', apiVersion);
    if (options.upgrade) args.push('--upgrade');
    if (options.lookup) {
      await writeFile(join(work, 'lookup.json'), JSON.stringify(options.lookup));
      args.push('--lookup', join(work, 'lookup.json'));
    }
    args.push('--notes', join(work, 'NOTES.txt'), '--values-out', join(work, 'values.json'));
    const result = await run(binary, args, { allowFailure: true });
    const notes = await readFile(join(work, 'NOTES.txt'), 'utf8').catch(() => '');
    const values = JSON.parse(await readFile(join(work, 'values.json'), 'utf8').catch(() => '{}')) as Record<string, unknown>;
    return { ...result, notes, values };
  }

  return {
    async render(options = {}) {
      const result = await invoke(options);
      if (result.code !== 0) throw new Error(`helm-render failed: ${result.stderr}`);
      const objects: K8sObject[] = [];
      for (const doc of parseAllDocuments(result.stdout)) {
        if (doc.errors.length > 0) throw new Error(`rendered YAML does not parse: ${doc.errors[0]!.message}\n${result.stdout}`);
        const value = doc.toJS() as K8sObject | null;
        if (value !== null) objects.push(value);
      }
      const all = (kind: string) => objects.filter((o) => o.kind === kind);
      return {
        objects,
        notes: result.notes,
        values: result.values,
        text: result.stdout,
        all,
        get(kind, name) {
          const matches = all(kind).filter((o) => name === undefined || o.metadata.name === name);
          if (matches.length !== 1) {
            const names = all(kind).map((o) => o.metadata.name).join(', ');
            throw new Error(`expected one ${kind}${name ? ` named ${name}` : ''}, found ${matches.length} (${names || 'none'})`);
          }
          return matches[0]!;
        },
      };
    },
    async renderError(options = {}) {
      const result = await invoke(options);
      if (result.code === 0) throw new Error('helm-render succeeded where a failure was expected');
      return result.stderr;
    },
    async mergedValues(options = {}) {
      return (await invoke(options)).values;
    },
    stop: () => removeTree(dir),
  };
}
