// Router options for every router of the registry: paths match exactly, case and trailing slash included.
// The authorization guard reads what a request needs from its path; a router that also served
// `/V2/...` or `.../tags/list/` would serve paths that the guard does not recognise.
export const EXACT_PATHS = { sensitive: true, strict: true } as const;
