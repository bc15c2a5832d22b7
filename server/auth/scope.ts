// Resource scopes of the Docker token protocol: "repository:<name>:pull,push", "registry:catalog:*".
import { MAX_NAME_LENGTH } from '../registry/names.js';

export type ResourceType = 'repository' | 'registry';

export interface ResourceScope {
  type: ResourceType;
  name: string;
  actions: string[];
}

/** Parses one scope; undefined when malformed. Repository names cannot contain ':', so the form is unambiguous. */
export function parseScope(scope: string): ResourceScope | undefined {
  const first = scope.indexOf(':');
  const last = scope.lastIndexOf(':');
  if (first <= 0 || last === first) return undefined;
  const type = scope.slice(0, first);
  if (type !== 'repository' && type !== 'registry') return undefined;
  const name = scope.slice(first + 1, last);
  const actions = scope.slice(last + 1).split(',').filter(Boolean);
  if (!name || actions.length === 0) return undefined;
  // No repository has a longer name; and the access rules' globs, whose cost grows with it, never see one.
  if (name.length > MAX_NAME_LENGTH) return undefined;
  return { type, name, actions: [...new Set(actions)] };
}

/** Several `scope` parameters, each possibly holding several space-separated scopes (OAuth2 style). */
export function parseScopes(values: string[]): ResourceScope[] {
  return values.flatMap((value) => value.split(' ')).map(parseScope).filter((s): s is ResourceScope => s !== undefined);
}

export function formatScope(scope: ResourceScope): string {
  return `${scope.type}:${scope.name}:${scope.actions.join(',')}`;
}

/** True when `granted` covers every action of `needed`. */
export function covers(granted: ResourceScope[], needed: ResourceScope): boolean {
  const actions = new Set(
    granted.filter((g) => g.type === needed.type && g.name === needed.name).flatMap((g) => g.actions),
  );
  return actions.has('*') || needed.actions.every((action) => actions.has(action));
}
