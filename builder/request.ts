// The body of POST /admin/v1/builds, validated with messages that name the field, and normalised with
// the recipe's defaults: what the build job stores as its request and shows through the jobs API.
import { z } from 'zod';
import { OciError } from '../server/registry/errors.js';
import { isValidName, isValidTag } from '../server/registry/names.js';
import { formatPlatform, parsePlatform, platformSlug } from '../server/mirror/platforms.js';
import { loadRecipe, RecipeError, type Recipe } from './recipes.js';

export const DEFAULT_PLATFORMS = ['linux/amd64', 'linux/arm64'];

/**
 * Linux architectures (and their variants) images are built for. A platform names a work queue, and queues
 * are metric labels: a closed list keeps their number bounded whatever requests say.
 */
const BUILDABLE: Record<string, string[]> = {
  amd64: ['v2', 'v3', 'v4'],
  arm64: ['v9'],
  arm: ['v5', 'v6', 'v7'],
  '386': [],
  ppc64le: [],
  s390x: [],
  riscv64: [],
  mips64le: [],
  loong64: [],
};

function isBuildable(platform: string): boolean {
  const parsed = parsePlatform(platform);
  if (!parsed || parsed.os !== 'linux') return false;
  const variants = BUILDABLE[parsed.architecture];
  return variants !== undefined && (!parsed.variant || variants.includes(parsed.variant));
}

export const BUILD_LAYOUTS = ['same-name', 'ddn-k8s'] as const;
export type BuildLayout = (typeof BUILD_LAYOUTS)[number];

/** A path inside the context or repository: relative, no `..`, no empty parts. */
const innerPath = z
  .string()
  .min(1)
  .max(1000)
  .refine((path) => !path.startsWith('/') && path.split('/').every((part) => part !== '..' && part !== ''), 'a relative path inside the context, without ..');

const gitContext = z.strictObject({
  /** Any URL git fetches from; the recipe's repository when absent. */
  git: z.string().min(1).max(2000).optional(),
  ref: z.string().min(1).max(255).regex(/^[A-Za-z0-9._\/-]+$/, 'a branch, tag or commit').refine((ref) => !ref.startsWith('-') && !ref.includes('..'), 'not a ref'),
  /** The context's folder in the repository (the recipe's, e.g. `api`, when absent). */
  path: innerPath.optional(),
});

const uploadContext = z.strictObject({ upload: z.string().regex(/^[0-9a-f-]{36}$/, 'an id from POST /admin/v1/contexts') });

const schema = z
  .strictObject({
    recipe: z.string().optional(),
    /** A Dockerfile in the context, instead of a recipe. */
    dockerfile: innerPath.optional(),
    context: z.union([gitContext, uploadContext]),
    platforms: z
      .array(z.string().refine(isBuildable, `a platform such as linux/amd64 (linux/ and one of ${Object.keys(BUILDABLE).join(', ')}, with a variant where it has them)`))
      .min(1)
      .max(8)
      .optional(),
    buildArgs: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'a build arg name'), z.string().max(4096)).optional(),
    repository: z.string().refine(isValidName, 'a repository name').optional(),
    tags: z.array(z.string().refine(isValidTag, 'a tag')).min(1).max(32).optional(),
    layouts: z.array(z.enum(BUILD_LAYOUTS)).min(1).optional(),
    /** Build to tags a mirror sync rule owns anyway. */
    force: z.boolean().optional(),
  })
  .refine((body) => (body.recipe === undefined) !== (body.dockerfile === undefined), { message: 'give exactly one of recipe or dockerfile' })
  .refine((body) => body.recipe !== undefined || body.repository !== undefined, { message: 'a build from a dockerfile needs a repository', path: ['repository'] })
  .refine((body) => 'ref' in body.context || body.tags !== undefined, { message: 'a build from an uploaded context needs tags', path: ['tags'] });

export type GitSource = { git: string; ref: string; path?: string };
export type BuildSource = GitSource | { upload: string };

/** The stored request of a build job: every default filled in. */
export interface BuildRequest {
  recipe?: string;
  dockerfile?: string;
  context: BuildSource;
  platforms: string[];
  buildArgs: Record<string, string>;
  repository: string;
  /** Explicit tags; absent: the ref and the short commit SHA, known once the source is fetched. */
  tags?: string[];
  layouts: BuildLayout[];
  force: boolean;
}

export function isGitSource(source: BuildSource): source is GitSource {
  return 'git' in source;
}

export function parseBuildRequest(raw: unknown, recipesDir?: string): { request: BuildRequest; recipe?: Recipe } {
  const result = schema.safeParse(raw);
  if (!result.success) {
    const problems = result.error.issues.map((issue) => `${issue.path.join('.') || '(body)'}: ${issue.message}`);
    throw new OciError(400, 'INVALID_REQUEST', `invalid build request: ${problems.join('; ')}`, { problems });
  }
  const body = result.data;
  let recipe: Recipe | undefined;
  if (body.recipe !== undefined) {
    try {
      recipe = loadRecipe(body.recipe, recipesDir);
    } catch (error) {
      if (error instanceof RecipeError) throw new OciError(400, 'INVALID_REQUEST', error.message, { recipe: body.recipe });
      throw error;
    }
  }
  let context: BuildSource;
  if ('ref' in body.context) {
    const git = body.context.git ?? recipe?.context.git;
    if (!git) throw new OciError(400, 'INVALID_REQUEST', 'context.git is needed (the recipe names no repository)');
    const path = body.context.path ?? recipe?.context.path;
    context = { git, ref: body.context.ref, ...(path ? { path } : {}) };
  } else {
    context = { upload: body.context.upload };
  }
  const platforms = [...new Set((body.platforms ?? DEFAULT_PLATFORMS).map((p) => formatPlatform(p)))];
  const request: BuildRequest = {
    ...(recipe ? { recipe: recipe.name } : { dockerfile: body.dockerfile! }),
    context,
    platforms,
    buildArgs: body.buildArgs ?? {},
    repository: body.repository ?? recipe!.repository,
    ...(body.tags ? { tags: [...new Set(body.tags)] } : {}),
    layouts: [...new Set<BuildLayout>(body.layouts ?? ['same-name'])],
    force: body.force ?? false,
  };
  return { request, ...(recipe ? { recipe } : {}) };
}

/** Tags a build writes: the explicit ones, or the ref (when it is a valid tag) and the short commit. */
export function buildTags(request: BuildRequest, commit: string | undefined): string[] {
  if (request.tags) return request.tags;
  const tags: string[] = [];
  if (isGitSource(request.context)) {
    const ref = request.context.ref.replace(/^refs\/(heads|tags)\//, '');
    if (isValidTag(ref) && !/^[0-9a-f]{40}$/.test(ref)) tags.push(ref);
  }
  if (commit) tags.push(commit.slice(0, 7));
  return [...new Set(tags)];
}

/** The tags known before the source is fetched: what a submit can check against sync rules at once. */
export function knownTags(request: BuildRequest): string[] {
  return request.tags ?? buildTags(request, undefined);
}

/** `org.opencontainers.image.version`: the ref of a git build, else the first tag. */
export function buildVersion(request: BuildRequest): string | undefined {
  return isGitSource(request.context) ? request.context.ref : request.tags?.[0];
}

/** The work queue of a platform: `build-linux-amd64`, `build-linux-arm-v7`. */
export function platformQueue(platform: string): string {
  return `build-${platformSlug(platform)}`;
}
