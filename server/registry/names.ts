// Repository names and tags, as the distribution spec defines them.
import { OciError } from './errors.js';

const COMPONENT = '[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*';
const NAME_PATTERN = new RegExp(`^${COMPONENT}(?:/${COMPONENT})*$`);
const TAG_PATTERN = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;
export const MAX_NAME_LENGTH = 255;

export function isValidName(name: string): boolean {
  return name.length > 0 && name.length <= MAX_NAME_LENGTH && NAME_PATTERN.test(name);
}

export function isValidTag(tag: string): boolean {
  return TAG_PATTERN.test(tag);
}

export function assertValidName(name: string): string {
  if (!isValidName(name)) {
    throw new OciError(400, 'NAME_INVALID', 'invalid repository name', { name: name.slice(0, MAX_NAME_LENGTH + 1) });
  }
  return name;
}

export function assertValidTag(tag: string): string {
  if (!isValidTag(tag)) throw new OciError(400, 'TAG_INVALID', 'invalid tag', { tag: tag.slice(0, 200) });
  return tag;
}
