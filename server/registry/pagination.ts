// `n` / `last` pagination shared by tag listing and the catalog, in byte order as Distribution sorts.
export interface Page<T> {
  items: T[];
  /** The last item of this page when more follow (the next page's `last`). */
  next?: T;
}

export function compareCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** `sorted` must already be in compareCodeUnits order. */
export function paginate(sorted: string[], limit: number | undefined, last: string | undefined): Page<string> {
  const rest = last === undefined ? sorted : sorted.filter((item) => compareCodeUnits(item, last) > 0);
  if (limit === undefined || rest.length <= limit) return { items: rest };
  const items = rest.slice(0, limit);
  return { items, next: items.at(-1) };
}
