// Recipes: a named Dockerfile with what a build of it needs to know (builder/recipes/<name>/recipe.json):
// its default repository and source, the image's fixed labels, and which build args name base images.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';

const recipeSchema = z.strictObject({
  name: z.string().regex(/^[a-z0-9][a-z0-9._-]*$/),
  description: z.string().default(''),
  repository: z.string(),
  dockerfile: z.string().default('Dockerfile'),
  /** Where the source lives unless a build says otherwise; `path` is the context within the repository. */
  context: z.strictObject({ git: z.string().optional(), path: z.string().optional() }).default({}),
  /** OCI labels and index annotations that do not depend on the build (title, description, licenses, source, url). */
  labels: z.record(z.string(), z.string()).default({}),
  /** Build args that name a base image, with their defaults; builder.baseimages may replace them. */
  baseImages: z.record(z.string(), z.string()).default({}),
  buildArgs: z.record(z.string(), z.string()).default({}),
});

export type RecipeMetadata = z.infer<typeof recipeSchema>;

export interface Recipe extends RecipeMetadata {
  /** Absolute path of the recipe's Dockerfile. */
  dockerfilePath: string;
}

export class RecipeError extends Error {}

/**
 * The shipped recipes: next to this module when run from source (builder/recipes), or two levels up
 * from dist/builder when run compiled (tsc does not copy Dockerfiles).
 */
export function defaultRecipesDir(): string {
  const here = fileURLToPath(new URL('./recipes/', import.meta.url));
  if (existsSync(here)) return here;
  return fileURLToPath(new URL('../../builder/recipes/', import.meta.url));
}

export function loadRecipe(name: string, dir: string = defaultRecipesDir()): Recipe {
  if (!/^[a-z0-9][a-z0-9._-]*$/.test(name)) throw new RecipeError(`"${name}" is not a recipe name`);
  const metadataFile = join(dir, name, 'recipe.json');
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(metadataFile, 'utf8'));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new RecipeError(`no recipe named "${name}"`);
    throw new RecipeError(`recipe "${name}": ${metadataFile} is unreadable: ${(error as Error).message}`);
  }
  const parsed = recipeSchema.safeParse(raw);
  if (!parsed.success) throw new RecipeError(`recipe "${name}": ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  const dockerfilePath = join(dir, name, parsed.data.dockerfile);
  if (!existsSync(dockerfilePath)) throw new RecipeError(`recipe "${name}": ${dockerfilePath} is missing`);
  return { ...parsed.data, dockerfilePath };
}
