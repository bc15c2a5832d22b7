// The body of POST /admin/v1/mirror (and of a sync rule's run), validated with messages that name the field.
import semver from 'semver';
import { z } from 'zod';
import { OciError } from '../registry/errors.js';
import { isValidTag } from '../registry/names.js';
import type { Layout } from './layouts.js';
import { parsePlatform } from './platforms.js';

const layout = z.union([
  z.literal('same-name'),
  z.literal('ddn-k8s'),
  z.strictObject({ prefix: z.string().min(1) }),
]);

export const mirrorRequestSchema = z
  .strictObject({
    /** `<upstream name>/<repository>`, e.g. `docker.io/langgenius/dify-api`. */
    source: z.string().min(3),
    tags: z.array(z.string().refine(isValidTag, 'not a valid tag')).min(1).max(1000).optional(),
    tagRegex: z
      .string()
      .refine((pattern) => {
        try {
          new RegExp(pattern);
          return true;
        } catch {
          return false;
        }
      }, 'not a valid regular expression')
      .optional(),
    semver: z.string().refine((range) => semver.validRange(range) !== null, 'not a valid semver range').optional(),
    platforms: z.array(z.string().refine((p) => parsePlatform(p) !== undefined, 'a platform such as linux/amd64 or linux/arm/v7')).optional(),
    layouts: z.array(layout).min(1).default(['same-name']),
  })
  .refine((request) => [request.tags, request.tagRegex, request.semver].filter((x) => x !== undefined).length === 1, {
    message: 'give exactly one of tags, tagRegex or semver',
  });

export type MirrorJobRequest = z.infer<typeof mirrorRequestSchema> & { layouts: Layout[] };

/** Parses a request body; 400 INVALID_REQUEST naming each bad field otherwise. */
export function parseMirrorRequest(body: unknown): MirrorJobRequest {
  const result = mirrorRequestSchema.safeParse(body);
  if (!result.success) {
    const problems = result.error.issues.map((issue) => `${issue.path.join('.') || '(body)'}: ${issue.message}`);
    throw new OciError(400, 'INVALID_REQUEST', `invalid mirror request: ${problems.join('; ')}`, { problems });
  }
  return result.data;
}

/** The upstream tags a request selects, from the upstream's full list when it filters. */
export function selectTags(request: MirrorJobRequest, upstreamTags: () => Promise<string[]>): Promise<string[]> {
  if (request.tags) return Promise.resolve([...new Set(request.tags)]);
  return upstreamTags().then((tags) => {
    if (request.tagRegex !== undefined) {
      // Anchored: `1\.12\..*` should not also pick `v1.12.1-rc`.
      const pattern = new RegExp(`^(?:${request.tagRegex})$`);
      return tags.filter((tag) => pattern.test(tag));
    }
    const range = request.semver!;
    // Tags that are versions (`1.12.1`, `v1.12.1`); pre-releases only when the range names one.
    return tags.filter((tag) => {
      const version = semver.valid(tag.replace(/^v/, ''));
      return version !== null && semver.satisfies(version, range);
    });
  });
}
